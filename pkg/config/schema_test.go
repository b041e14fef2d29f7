package config

import (
	"bytes"
	"encoding/json"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"sort"
	"strings"
	"testing"

	"gopkg.in/yaml.v3"
)

var updateSchema = flag.Bool("update", false, "rewrite configs/schema/config.schema.json")

const schemaFile = "../../configs/schema/config.schema.json"

func TestSchemaIsCurrent(t *testing.T) {
	got, err := Schema()
	if err != nil {
		t.Fatal(err)
	}
	if *updateSchema {
		if err := os.WriteFile(schemaFile, got, 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	want, err := os.ReadFile(schemaFile)
	if err != nil || !bytes.Equal(got, want) {
		t.Fatalf("configs/schema/config.schema.json is stale: run `make schema` (or go test ./pkg/config -run SchemaIsCurrent -update)")
	}
}

// TestExamplesMatchSchema checks every example, converted to JSON as an
// editor would see it, against the generated schema: what Parse accepts,
// the schema must accept too.
func TestExamplesMatchSchema(t *testing.T) {
	schema := loadSchema(t)
	for _, file := range examples(t) {
		t.Run(filepath.Base(file), func(t *testing.T) {
			data, err := os.ReadFile(file)
			if err != nil {
				t.Fatal(err)
			}
			for _, p := range checkSchema(schema, yamlToJSON(t, data), "") {
				t.Error(p)
			}
			// So must the effective config, every default written out.
			c, err := Parse(file, data)
			if err != nil {
				t.Fatal(err)
			}
			effective, err := Marshal(c)
			if err != nil {
				t.Fatal(err)
			}
			for _, p := range checkSchema(schema, yamlToJSON(t, effective), "") {
				t.Error("effective config: " + p)
			}
		})
	}
}

// TestSchemaCheckerFindsProblems makes sure the checker above is not
// vacuous: it must see what Parse rejects structurally.
func TestSchemaCheckerFindsProblems(t *testing.T) {
	schema := loadSchema(t)
	for _, tc := range []struct {
		name, doc, want string
	}{
		{"unknown key", minimal + "colour: blue\n", `colour: unknown key`},
		{"missing required", strings.Replace(minimal, "version: 1\n", "", 1), `: missing required key "version"`},
		{"wrong type", strings.Replace(minimal, "version: 1", "version: one", 1), `version: expected integer`},
		{"list for mapping", strings.Replace(minimal, "identity:\n", "identity: []\nx:\n", 1), `identity: expected object`},
		{"bad enum", strings.Replace(minimal, "kind: pedagogical", "kind: classroom", 1), `zones[0].kind: "classroom" is not one of`},
		{"pattern", strings.Replace(minimal, "subnet: 10.75.12.0/24", "subnet: ten", 1), `zones[0].subnet: "ten" does not match`},
		{"oneOf", minimal + "firewall:\n  port_forwards:\n    - {name: w, port: [443], to_address: 10.75.12.2}\n", `port: matches no alternative`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			problems := checkSchema(schema, yamlToJSON(t, []byte(tc.doc)), "")
			if !slices.ContainsFunc(problems, func(p string) bool { return strings.Contains(p, tc.want) }) {
				t.Errorf("problems %q, want one containing %q", problems, tc.want)
			}
		})
	}
}

func loadSchema(t *testing.T) map[string]any {
	t.Helper()
	b, err := Schema()
	if err != nil {
		t.Fatal(err)
	}
	var s map[string]any
	if err := json.Unmarshal(b, &s); err != nil {
		t.Fatal(err)
	}
	return s
}

// yamlToJSON converts a document the way an editor's YAML plugin does
// before applying a JSON Schema, keeping integers apart from other numbers.
func yamlToJSON(t *testing.T, data []byte) any {
	t.Helper()
	var v any
	if err := yaml.Unmarshal(data, &v); err != nil {
		t.Fatal(err)
	}
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.UseNumber()
	var out any
	if err := dec.Decode(&out); err != nil {
		t.Fatal(err)
	}
	return out
}

// checkSchema validates v against the subset of JSON Schema that Schema()
// produces: type, properties, required, additionalProperties: false,
// items, enum, oneOf, pattern, minimum and maximum.
func checkSchema(s map[string]any, v any, path string) []string {
	var problems []string
	fail := func(format string, args ...any) {
		problems = append(problems, path+": "+fmt.Sprintf(format, args...))
	}
	if alts, ok := s["oneOf"].([]any); ok {
		matches := 0
		for _, a := range alts {
			if len(checkSchema(a.(map[string]any), v, path)) == 0 {
				matches++
			}
		}
		if matches != 1 {
			fail("matches no alternative of oneOf (or several): %v", v)
		}
	}
	if typ, ok := s["type"].(string); ok && !hasType(v, typ) {
		fail("expected %s, got %T %v", typ, v, v)
		return problems
	}
	if enum, ok := s["enum"].([]any); ok && !slices.Contains(enum, v) {
		fail("%q is not one of %v", v, enum)
	}
	if pattern, ok := s["pattern"].(string); ok {
		if str, isStr := v.(string); isStr && !regexp.MustCompile(pattern).MatchString(str) {
			fail("%q does not match %s", str, pattern)
		}
	}
	if n, ok := v.(json.Number); ok {
		f, _ := n.Float64()
		if lo, ok := s["minimum"].(float64); ok && f < lo {
			fail("%v is below %v", n, lo)
		}
		if hi, ok := s["maximum"].(float64); ok && f > hi {
			fail("%v is above %v", n, hi)
		}
	}
	switch v := v.(type) {
	case map[string]any:
		props, _ := s["properties"].(map[string]any)
		keys := make([]string, 0, len(v))
		for k := range v {
			keys = append(keys, k)
		}
		sort.Strings(keys)
		for _, k := range keys {
			sub := path + "." + k
			if path == "" {
				sub = k
			}
			ps, known := props[k].(map[string]any)
			switch {
			case known:
				problems = append(problems, checkSchema(ps, v[k], sub)...)
			case s["additionalProperties"] == false:
				problems = append(problems, sub+": unknown key")
			}
		}
		req, _ := s["required"].([]any)
		for _, r := range req {
			if _, ok := v[r.(string)]; !ok {
				fail("missing required key %q", r)
			}
		}
	case []any:
		if items, ok := s["items"].(map[string]any); ok {
			for i, item := range v {
				problems = append(problems, checkSchema(items, item, fmt.Sprintf("%s[%d]", path, i))...)
			}
		}
	}
	return problems
}

func hasType(v any, typ string) bool {
	switch typ {
	case "object":
		_, ok := v.(map[string]any)
		return ok
	case "array":
		_, ok := v.([]any)
		return ok
	case "string":
		_, ok := v.(string)
		return ok
	case "integer":
		n, ok := v.(json.Number)
		return ok && !strings.ContainsAny(n.String(), ".eE")
	case "number":
		_, ok := v.(json.Number)
		return ok
	case "boolean":
		_, ok := v.(bool)
		return ok
	}
	panic("schema type not handled by the test checker: " + typ)
}
