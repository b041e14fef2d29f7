package config

import (
	"bytes"
	"os"
	"reflect"
	"strings"
	"testing"
)

const referenceFile = "../../docs/configuration.md"

// TestReferenceIsCurrent keeps docs/configuration.md what Reference
// generates: `make docs` (or -update) rewrites it.
func TestReferenceIsCurrent(t *testing.T) {
	got := Reference()
	if *updateSchema {
		if err := os.WriteFile(referenceFile, got, 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	want, err := os.ReadFile(referenceFile)
	if err != nil || !bytes.Equal(got, want) {
		t.Fatalf("docs/configuration.md is stale: run `make docs` (or go test ./pkg/config -run ReferenceIsCurrent -update)")
	}
}

// TestReferenceNamesEveryKey checks that every key of every mapping has
// its row, with its doc text.
func TestReferenceNamesEveryKey(t *testing.T) {
	ref := string(Reference())
	var walk func(t reflect.Type)
	seen := map[reflect.Type]bool{}
	walk = func(typ reflect.Type) {
		if seen[typ] {
			return
		}
		seen[typ] = true
		for _, f := range structFields(typ).list {
			if !strings.Contains(ref, "| `"+f.key+"` |") || !strings.Contains(ref, mdEscape(f.doc)) {
				t.Errorf("%s.%s: no row with its description", typ.Name(), f.key)
			}
			inner := typ.Field(f.index).Type
			if inner.Kind() == reflect.Slice {
				inner = inner.Elem()
			}
			if inner.Kind() == reflect.Struct && !reflect.PointerTo(inner).Implements(textUnmarshalerType) {
				walk(inner)
			}
		}
	}
	walk(reflect.TypeFor[Config]())
	for _, want := range []string{"| `gambling` | black |", "| `porn` | black | `adult` |", "**An administrative zone has no internet access until you allow it**"} {
		if !strings.Contains(ref, want) {
			t.Errorf("reference lacks %q", want)
		}
	}
}
