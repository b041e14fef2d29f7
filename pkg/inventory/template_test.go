package inventory

import (
	"bytes"
	"strings"
	"testing"

	"gopkg.in/yaml.v3"
)

func TestHost(t *testing.T) {
	tests := []struct {
		prefix string
		n      int
		want   string
		err    string
	}{
		{"10.33.0.0/22", 1, "10.33.0.1", ""},
		{"10.33.0.0/22", 256, "10.33.1.0", ""},
		{"10.33.0.0/22", -1, "10.33.3.254", ""},
		{"10.33.0.0/22", 1022, "10.33.3.254", ""},
		{"193.54.60.2/29", 1, "193.54.60.1", ""}, // an address with its length works too
		{"192.0.2.0/30", 2, "192.0.2.2", ""},
		{"192.0.2.0/30", -2, "192.0.2.1", ""},
		{"192.0.2.0/30", 3, "", "has no host 3: hosts are 1 to 2"},
		{"192.0.2.0/30", -3, "", "has no host -3"},
		{"10.33.0.0/22", 0, "", "has no host 0"},
		{"192.0.2.0/31", 1, "", "no host addresses"},
		{"10.33.0.0/33", 1, "", `"10.33.0.0/33" is not an IPv4 subnet`},
		{"10.33.0.0", 1, "", "is not an IPv4 subnet"},
		{"2001:db8::/64", 1, "", "is not an IPv4 subnet"},
		{"", 1, "", "is not an IPv4 subnet"},
	}
	for _, tt := range tests {
		got, err := host(tt.prefix, tt.n)
		if tt.err != "" {
			if err == nil || !strings.Contains(err.Error(), tt.err) {
				t.Errorf("host(%q, %d) = %q, %v; want error containing %q", tt.prefix, tt.n, got, err, tt.err)
			}
			continue
		}
		if err != nil || got != tt.want {
			t.Errorf("host(%q, %d) = %q, %v; want %q", tt.prefix, tt.n, got, err, tt.want)
		}
	}
}

func TestQuoteReadsBackAsTheSameString(t *testing.T) {
	for _, s := range []string{
		"Collège Jean Moulin",
		"Cité scolaire: collège du Grand Air",
		"Collège d'Aliénor d'Aquitaine",
		`Lycée "Les Iris"`,
		"# not a comment",
		"- not a list",
		"yes",
		"0330021",
		"back\\slash",
		"tab\there",
		"line\nbreak",
		"bell\a and del\x7f and next-line\u0085 and sep\u2028",
		"",
	} {
		doc := "name: " + quote(s) + "\n"
		var v struct{ Name string }
		if err := yaml.Unmarshal([]byte(doc), &v); err != nil {
			t.Errorf("quote(%q) = %s: %v", s, quote(s), err)
			continue
		}
		if v.Name != s {
			t.Errorf("quote(%q) = %s reads back as %q", s, quote(s), v.Name)
		}
		if strings.Count(doc, "\n") != 1 {
			t.Errorf("quote(%q) = %s spans lines", s, quote(s))
		}
	}
}

func TestLowerUpper(t *testing.T) {
	tmpl, err := ParseTemplate("t", `{{lower .a}} {{upper .a}} {{.a | lower}}`)
	if err != nil {
		t.Fatal(err)
	}
	var b bytes.Buffer
	if err := tmpl.tmpl.Execute(&b, map[string]string{"a": "Élève"}); err != nil {
		t.Fatal(err)
	}
	if got, want := b.String(), "élève ÉLÈVE élève"; got != want {
		t.Errorf("got %q, want %q", got, want)
	}
}

func TestParseTemplateSyntaxErrorNamesTheFile(t *testing.T) {
	_, err := ParseTemplate("college.yaml.tmpl", "a: 1\nb: {{hots .x 1}}\n")
	if err == nil || !strings.Contains(err.Error(), "college.yaml.tmpl:2") || !strings.Contains(err.Error(), "hots") {
		t.Errorf("error %v does not name the file, line and function", err)
	}
}

func TestCheckColumns(t *testing.T) {
	inv := &Inventory{Name: "schools.csv", Columns: []string{"uai", "name", "peda_subnet"}}
	tests := []struct {
		name string
		text string
		want string // substring of the error; empty for none
	}{
		{"all known", `{{.uai}} {{quote .name}} {{host .peda_subnet 1}}`, ""},
		{"typo with a suggestion", `{{host .peda_subnett 1}}`, `column "peda_subnett" (did you mean "peda_subnet"?), not in the header of schools.csv (columns: uai, name, peda_subnet)`},
		{"several, listed once each", `{{.guest}} {{.guest}} {{.admin}}`, `columns "admin", "guest", not in the header`},
		{"inside if and else", `{{if .uai}}{{.x}}{{else}}{{.y}}{{end}}`, `columns "x", "y"`},
		{"inside with and range", `{{with .uai}}{{.}}{{end}}{{range $i, $c := .name}}{{$.z}}{{end}}`, `column "z"`},
		{"in a defined template", `{{define "zone"}}{{.w}}{{end}}{{template "zone" .}}`, `column "w"`},
		{"in a pipeline argument", `{{.uai | printf "%s-%s" .v}}`, `column "v"`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tmpl, err := ParseTemplate("college.yaml.tmpl", tt.text)
			if err != nil {
				t.Fatal(err)
			}
			err = tmpl.checkColumns(inv)
			switch {
			case tt.want == "" && err != nil:
				t.Errorf("unexpected error: %v", err)
			case tt.want != "" && (err == nil || !strings.Contains(err.Error(), tt.want)):
				t.Errorf("error %v, want one containing %q", err, tt.want)
			}
		})
	}
}
