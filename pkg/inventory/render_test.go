package inventory

import (
	"bytes"
	"fmt"
	"strings"
	"testing"

	"passerelle/pkg/config"
	"passerelle/pkg/inventory/inventorytest"
)

// ecoleTemplate is a small école template: one link, one zone, a tunnel
// advertising the zone.
const ecoleTemplate = `version: 1
board: rpi4
identity:
  uai: {{.uai}}
  name: {{quote .name}}
  academy: {{.academy}}
uplinks:
  - name: renater
    interface: wan0
    address: {{.renater_address}}
    gateway: {{host .renater_address 1}}
zones:
  - name: ecole
    kind: pedagogical
    interfaces: [lan0]
    subnet: {{.peda_subnet}}
    address: {{host .peda_subnet 1}}
    dns_profile: primaire
dns:
  profiles:
    - name: primaire
      categories: [adult, malware]
tunnel:
  enabled: true
  control_url: https://headscale.ac-{{.academy}}.fr
  advertise_routes: [{{.peda_subnet}}]
`

const ecoleHeader = "uai,name,academy,renater_address,peda_subnet\n"

func render(t *testing.T, tmplText, csv string) []Result {
	t.Helper()
	tmpl, err := ParseTemplate("ecole.yaml.tmpl", tmplText)
	if err != nil {
		t.Fatal(err)
	}
	inv, err := ParseInventory("schools.csv", []byte(csv))
	if err != nil {
		t.Fatal(err)
	}
	results, err := Render(tmpl, inv)
	if err != nil {
		t.Fatal(err)
	}
	return results
}

// errLines is every error of the results, one line each, as the CLI prints them.
func errLines(results []Result) []string {
	var out []string
	for _, r := range results {
		for _, e := range r.Errs {
			out = append(out, e.Error())
		}
	}
	return out
}

func TestRenderValidRows(t *testing.T) {
	results := render(t, ecoleTemplate, ecoleHeader+
		"0751234J,École élémentaire Jules Ferry,paris,193.50.10.6/30,10.75.12.0/24\n"+
		"0330021U,\"Cité scolaire: école du Grand Air, Bordeaux\",bordeaux,193.54.60.2/29,10.33.0.0/24\n")
	if errs := errLines(results); len(errs) > 0 {
		t.Fatalf("errors: %s", strings.Join(errs, "\n"))
	}
	want := []struct {
		line     int
		uai      string
		name     string
		zoneAddr string
	}{
		{2, "0751234J", "École élémentaire Jules Ferry", "10.75.12.1"},
		{3, "0330021U", "Cité scolaire: école du Grand Air, Bordeaux", "10.33.0.1"},
	}
	for i, w := range want {
		r := results[i]
		if r.Line != w.line || r.UAI != w.uai {
			t.Errorf("result %d: line %d uai %s, want line %d uai %s", i, r.Line, r.UAI, w.line, w.uai)
		}
		if r.Config.Identity.Name != w.name || r.Config.Zones[0].Address.String() != w.zoneAddr {
			t.Errorf("result %d: name %q zone address %s", i, r.Config.Identity.Name, r.Config.Zones[0].Address)
		}
		// What is written is what was validated, provenance comment included.
		if _, err := config.Parse("out.yaml", r.Output); err != nil {
			t.Errorf("result %d: output does not parse: %v", i, err)
		}
		head := fmt.Sprintf("# Rendered from template ecole.yaml.tmpl and inventory schools.csv line %d (uai %s).\n", w.line, w.uai)
		if !bytes.HasPrefix(r.Output, []byte(head)) {
			t.Errorf("result %d: output starts with %q, want %q", i, strings.SplitN(string(r.Output), "\n", 2)[0], head)
		}
	}
}

func TestRenderReportsBadRowsAndRendersTheOthers(t *testing.T) {
	tests := []struct {
		name string
		tmpl string // ecoleTemplate when empty
		rows string
		ok   []int    // lines that render
		errs []string // every error line, in order
	}{
		{
			name: "subnet with host bits",
			rows: "0751234J,A,paris,193.50.10.6/30,10.75.12.0/24\n" +
				"0751235K,B,paris,193.50.10.10/30,10.75.13.1/24\n" +
				"0751236L,C,paris,193.50.10.14/30,10.75.14.0/24\n",
			ok: []int{2, 4},
			errs: []string{
				"schools.csv:3: uai 0751235K: zones[0].subnet: 10.75.13.1/24 has host bits set: did you mean 10.75.13.0/24?",
				"schools.csv:3: uai 0751235K: tunnel.advertise_routes[0]: 10.75.13.1/24 has host bits set",
			},
		},
		{
			name: "subnet that is not one",
			rows: "0751234J,A,paris,193.50.10.6/30,10.75.12.0/24\n" +
				"0751235K,B,paris,193.50.10.10/30,10.75.13.0/33\n",
			ok:   []int{2},
			errs: []string{`schools.csv:3: uai 0751235K: ecole.yaml.tmpl:17:15: <host .peda_subnet 1>: error calling host: "10.75.13.0/33" is not an IPv4 subnet such as 10.33.0.0/22`},
		},
		{
			name: "duplicate uai fails every copy",
			rows: "0751234J,A,paris,193.50.10.6/30,10.75.12.0/24\n" +
				"0751235K,B,paris,193.50.10.10/30,10.75.13.0/24\n" +
				"0751234J,A bis,paris,193.50.10.14/30,10.75.14.0/24\n",
			ok: []int{3},
			errs: []string{
				"schools.csv:2: uai 0751234J: the same uai is on line 4: a school has one row",
				"schools.csv:4: uai 0751234J: the same uai is on line 2: a school has one row",
			},
		},
		{
			name: "wrong field count",
			rows: "0751234J,A,paris,193.50.10.6/30\n" +
				"0751235K,B,paris,193.50.10.10/30,10.75.13.0/24\n",
			ok:   []int{3},
			errs: []string{"schools.csv:2: uai 0751234J: 4 fields, but the header has 5 columns"},
		},
		{
			name: "unquoted colon breaks the YAML: the rendered line shows it",
			tmpl: strings.Replace(ecoleTemplate, "{{quote .name}}", "{{.name}}", 1),
			rows: "0751234J,École: Jules Ferry,paris,193.50.10.6/30,10.75.12.0/24\n" +
				"0751235K,École Jean Jaurès,paris,193.50.10.10/30,10.75.13.0/24\n",
			ok:   []int{3},
			errs: []string{`schools.csv:2: uai 0751234J: invalid YAML: mapping values are not allowed in this context`},
		},
		{
			name: "several problems of one config, each on its line",
			rows: "0751234J,A,Paris,193.50.10.6/30,10.75.12.0/30\n" +
				"0751235b,B,paris,193.50.10.10/30,10.75.13.0/24\n",
			errs: []string{
				`schools.csv:2: uai 0751234J: identity.academy: "Paris" is not an academy name`,
				`schools.csv:2: uai 0751234J: zones[0].subnet: prefix length /30 is out of range /16-/29`,
				`schools.csv:3: uai 0751235b: column uai: "0751235b" is not a UAI`,
			},
		},
		{
			name: "a UAI whose check letter does not match its digits",
			rows: "0751234A,A,paris,193.50.10.6/30,10.75.12.0/24\n" +
				"0751235K,B,paris,193.50.10.10/30,10.75.13.0/24\n",
			ok:   []int{3},
			errs: []string{`schools.csv:2: uai 0751234A: column uai: "0751234A" is not a UAI: the check letter of 0751234 is J, not A (is a digit or the letter mistyped?)`},
		},
		{
			name: "the same uplink address at two schools",
			rows: "0751234J,A,paris,193.50.10.6/30,10.75.12.0/24\n" +
				"0751235K,B,paris,193.50.10.6/30,10.75.13.0/24\n" +
				"0751236L,C,paris,193.50.10.14/30,10.76.0.0/24\n",
			ok: []int{4},
			errs: []string{
				"schools.csv:2: uai 0751234J: uplinks[0].address: 193.50.10.6 is also the uplink address of line 3 (uai 0751235K): each school has its own",
				"schools.csv:3: uai 0751235K: uplinks[0].address: 193.50.10.6 is also the uplink address of line 2 (uai 0751234J): each school has its own",
			},
		},
		{
			name: "an unquoted comma in a name",
			rows: "0751234J,École Jules Ferry, Paris 12e,paris,193.50.10.6/30,10.75.12.0/24\n" +
				"0751235K,B,paris,193.50.10.10/30,10.75.13.0/24\n",
			ok:   []int{3},
			errs: []string{`schools.csv:2: uai 0751234J: 6 fields, but the header has 5 columns: does column name hold an unquoted comma? Write it in double quotes: "École Jules Ferry, Paris 12e"`},
		},
		{
			name: "template writing another school's uai",
			tmpl: strings.Replace(ecoleTemplate, "uai: {{.uai}}", "uai: 0751234J", 1),
			rows: "0751234J,A,paris,193.50.10.6/30,10.75.12.0/24\n" +
				"0751235K,B,paris,193.50.10.10/30,10.75.13.0/24\n",
			ok:   []int{2},
			errs: []string{`schools.csv:3: uai 0751235K: identity.uai: the template wrote "0751234J", but the row's uai is "0751235K"`},
		},
		{
			name: "two schools advertising overlapping subnets to the academy",
			rows: "0751234J,A,paris,193.50.10.6/30,10.75.12.0/24\n" +
				"0751235K,B,paris,193.50.10.10/30,10.75.0.0/16\n" +
				"0751236L,C,paris,193.50.10.14/30,10.76.0.0/24\n",
			ok: []int{4},
			errs: []string{
				"schools.csv:2: uai 0751234J: tunnel.advertise_routes[0]: 10.75.12.0/24 overlaps 10.75.0.0/16, advertised by line 3 (uai 0751235K)",
				"schools.csv:3: uai 0751235K: tunnel.advertise_routes[0]: 10.75.0.0/16 overlaps 10.75.12.0/24, advertised by line 2 (uai 0751234J)",
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tmpl := tt.tmpl
			if tmpl == "" {
				tmpl = ecoleTemplate
			}
			results := render(t, tmpl, ecoleHeader+tt.rows)
			var ok []int
			for _, r := range results {
				if r.OK() {
					ok = append(ok, r.Line)
					if r.Output == nil || r.Config == nil {
						t.Errorf("line %d: OK without output", r.Line)
					}
				} else if r.Output != nil || r.Config != nil {
					t.Errorf("line %d: failed but has output", r.Line)
				}
			}
			if fmt.Sprint(ok) != fmt.Sprint(tt.ok) {
				t.Errorf("lines rendered: %v, want %v", ok, tt.ok)
			}
			got := errLines(results)
			if len(got) != len(tt.errs) {
				t.Fatalf("errors:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(tt.errs, "\n"))
			}
			for i := range got {
				if !strings.HasPrefix(got[i], tt.errs[i]) {
					t.Errorf("error %d:\n got %s\nwant %s", i, got[i], tt.errs[i])
				}
			}
		})
	}
}

func TestRenderYAMLErrorShowsTheRenderedLine(t *testing.T) {
	tmpl := strings.Replace(ecoleTemplate, "{{quote .name}}", "{{.name}}", 1)
	results := render(t, tmpl, ecoleHeader+"0751234J,École: Jules Ferry,paris,193.50.10.6/30,10.75.12.0/24\n")
	errs := errLines(results)
	if len(errs) != 1 || !strings.Contains(errs[0], "(rendered line 7: name: École: Jules Ferry)") {
		t.Errorf("errors %q do not show the rendered line", errs)
	}
}

func TestRenderUnknownColumnIsOneError(t *testing.T) {
	tmpl, err := ParseTemplate("ecole.yaml.tmpl", strings.ReplaceAll(ecoleTemplate, ".peda_subnet", ".peda_sbnet"))
	if err != nil {
		t.Fatal(err)
	}
	var csv bytes.Buffer
	if err := inventorytest.Generate(&csv, 500); err != nil {
		t.Fatal(err)
	}
	inv, err := ParseInventory("schools.csv", csv.Bytes())
	if err != nil {
		t.Fatal(err)
	}
	results, err := Render(tmpl, inv)
	if err == nil {
		t.Fatalf("no error; %d results", len(results))
	}
	if results != nil {
		t.Errorf("%d results despite the error", len(results))
	}
	want := `template ecole.yaml.tmpl uses column "peda_sbnet" (did you mean "peda_subnet"?), not in the header of schools.csv`
	if !strings.HasPrefix(err.Error(), want) || strings.Count(err.Error(), "\n") != 0 {
		t.Errorf("error:\n%v\nwant one line starting with\n%s", err, want)
	}
}

func TestRenderGeneratedInventory(t *testing.T) {
	tmpl, err := ParseTemplate("ecole.yaml.tmpl", ecoleTemplate)
	if err != nil {
		t.Fatal(err)
	}
	var csv bytes.Buffer
	if err := inventorytest.Generate(&csv, 300); err != nil {
		t.Fatal(err)
	}
	inv, err := ParseInventory("schools.csv", csv.Bytes())
	if err != nil {
		t.Fatal(err)
	}
	results, err := Render(tmpl, inv)
	if err != nil {
		t.Fatal(err)
	}
	if errs := errLines(results); len(errs) > 0 {
		t.Fatalf("%d errors, first: %s", len(errs), errs[0])
	}
	if len(results) != 300 {
		t.Errorf("%d results, want 300", len(results))
	}
}
