package catalogue

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestCatalogue(t *testing.T) {
	for _, tc := range []struct {
		name, usage, alias string
	}{
		{"adult", "black", ""},
		{"malware", "black", ""},
		{"phishing", "black", ""},
		{"gambling", "black", ""},
		{"liste_bu", "white", ""},
		{"porn", "black", "adult"},
		{"ads", "black", "publicite"},
	} {
		c, ok := Lookup(tc.name)
		if !ok || c.Usage() != tc.usage || c.Alias != tc.alias {
			t.Errorf("Lookup(%q) = %+v, %v; want usage %s, alias %q", tc.name, c, ok, tc.usage, tc.alias)
		}
	}
	for _, typo := range []string{"gamblig", "adulte", "", "#"} {
		if _, ok := Lookup(typo); ok {
			t.Errorf("Lookup(%q) found a category", typo)
		}
	}
	for _, c := range All() {
		if c.Alias == "" {
			continue
		}
		if target, ok := Lookup(c.Alias); !ok || target.Alias != "" || target.White != c.White {
			t.Errorf("alias %s -> %s: target %+v, %v", c.Name, c.Alias, target, ok)
		}
	}
}

// TestMatchesSnapshot checks the catalogue against the UT1 snapshot beside
// the repository, when it is there: every category folder, with its usage,
// and every alias.
func TestMatchesSnapshot(t *testing.T) {
	dir := "../../../../shared/data/ut1"
	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Skipf("no UT1 snapshot: %v", err)
	}
	for _, e := range entries {
		p := filepath.Join(dir, e.Name())
		info, err := os.Stat(p)
		if err != nil {
			t.Fatal(err)
		}
		switch {
		case info.IsDir():
			c, ok := Lookup(e.Name())
			if !ok {
				t.Errorf("category %s of the snapshot is not in catalogue.txt", e.Name())
				continue
			}
			usage, _ := os.ReadFile(filepath.Join(p, "usage"))
			want := "black" // the loader's reading of a folder without usage
			for _, l := range strings.Fields(string(usage)) {
				if l == "black" || l == "white" {
					want = l
					break
				}
			}
			if c.Usage() != want {
				t.Errorf("%s: catalogue says %s, the snapshot's usage %s", c.Name, c.Usage(), want)
			}
		case info.Size() > 0 && info.Size() <= 64 && e.Name() == strings.ToLower(e.Name()):
			target, _ := os.ReadFile(p)
			if c, ok := Lookup(e.Name()); !ok || c.Alias != strings.TrimSpace(string(target)) {
				t.Errorf("alias %s -> %s of the snapshot: catalogue has %+v, %v", e.Name(), target, c, ok)
			}
		}
	}
}
