package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"passerelle/pkg/config"
	"passerelle/pkg/inventory/inventorytest"
)

// runCmd runs passerellectl in-process and returns its exit code and output.
func runCmd(t *testing.T, args ...string) (code int, stdout, stderr string) {
	t.Helper()
	var out, errb bytes.Buffer
	code = run(args, &out, &errb)
	return code, out.String(), errb.String()
}

func writeFile(t *testing.T, dir, name, content string) string {
	t.Helper()
	path := filepath.Join(dir, name)
	if err := os.WriteFile(path, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
	return path
}

const (
	nocTemplate  = "../../configs/noc/college.yaml.tmpl"
	nocInventory = "../../configs/noc/schools.csv"
)

func TestUsage(t *testing.T) {
	tests := []struct {
		args []string
		code int
	}{
		{nil, 2},
		{[]string{"frobnicate"}, 2},
		{[]string{"help"}, 0},
		{[]string{"validate"}, 2},
		{[]string{"schema", "extra"}, 2},
		{[]string{"render"}, 2},
		{[]string{"render", "--template", "t", "--inventory", "i"}, 2},
		{[]string{"render", "--template", "t", "--inventory", "i", "--out", "o", "extra"}, 2},
		{[]string{"render", "--tempalte", "t"}, 2},
		{[]string{"render", "-h"}, 0},
	}
	for _, tt := range tests {
		code, _, stderr := runCmd(t, tt.args...)
		if code != tt.code {
			t.Errorf("%q: exit %d, want %d (stderr %q)", tt.args, code, tt.code, stderr)
		}
	}
}

func TestValidate(t *testing.T) {
	dir := t.TempDir()
	bad := writeFile(t, dir, "bad.yaml", `version: 1
identity:
  uai: 0751234a
  name: École
  academy: paris
uplinks:
  - name: renater
    interface: wan0
    addressing: dhcp
zones:
  - name: ecole
    kind: pedagogical
    interfaces: [lan0]
    subnet: 10.75.12.1/24
    address: 10.75.12.1
    dns_profile: primaire
dns:
  profiles:
    - name: primaire
`)
	examples, err := filepath.Glob("../../configs/examples/*.yaml")
	if err != nil || len(examples) == 0 {
		t.Fatalf("no examples: %v", err)
	}
	tests := []struct {
		name   string
		files  []string
		code   int
		stderr []string // lines, in order
	}{
		{
			name:   "valid examples",
			files:  examples,
			code:   0,
			stderr: []string{fmt.Sprintf("%d file(s) checked, 0 invalid", len(examples))},
		},
		{
			name:  "every problem of an invalid file, then the summary",
			files: append([]string{bad}, examples[0]),
			code:  1,
			stderr: []string{
				bad + `:3:8: identity.uai: "0751234a" is not a UAI: expected 7 digits and an upper-case letter, e.g. 0751234J`,
				bad + `:14:13: zones[0].subnet: 10.75.12.1/24 has host bits set: did you mean 10.75.12.0/24?`,
				"2 file(s) checked, 1 invalid",
			},
		},
		{
			name:   "missing file",
			files:  []string{filepath.Join(dir, "absent.yaml")},
			code:   1,
			stderr: []string{filepath.Join(dir, "absent.yaml") + ": no such file or directory", "1 file(s) checked, 1 invalid"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			code, stdout, stderr := runCmd(t, append([]string{"validate"}, tt.files...)...)
			if code != tt.code {
				t.Errorf("exit %d, want %d", code, tt.code)
			}
			if stdout != "" {
				t.Errorf("stdout %q, want nothing", stdout)
			}
			if want := strings.Join(tt.stderr, "\n") + "\n"; stderr != want {
				t.Errorf("stderr:\n%s\nwant:\n%s", stderr, want)
			}
		})
	}
}

func TestSchemaPrintsConfigSchema(t *testing.T) {
	code, stdout, stderr := runCmd(t, "schema")
	if code != 0 || stderr != "" {
		t.Fatalf("exit %d, stderr %q", code, stderr)
	}
	if !json.Valid([]byte(stdout)) {
		t.Fatal("output is not valid JSON")
	}
	want, err := config.Schema()
	if err != nil {
		t.Fatal(err)
	}
	if stdout != string(want) {
		t.Error("output differs from config.Schema()")
	}
}

func TestRenderCommittedNOCExample(t *testing.T) {
	out := t.TempDir()
	code, stdout, stderr := runCmd(t, "render", "--template", nocTemplate, "--inventory", nocInventory, "--out", out)
	if code != 0 {
		t.Fatalf("exit %d:\n%s", code, stderr)
	}
	if stdout != "" {
		t.Errorf("stdout %q, want nothing", stdout)
	}
	if want := "6 school(s) in " + nocInventory + ": 6 written to " + out + ", 0 failed\n"; stderr != want {
		t.Errorf("stderr %q, want %q", stderr, want)
	}
	cfg, err := config.Load(filepath.Join(out, "0331577K.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	if cfg.Identity.Name != "Collège Les Eyquems, Mérignac" || cfg.Zones[1].Address.String() != "10.33.104.1" {
		t.Errorf("rendered %q with admin address %s", cfg.Identity.Name, cfg.Zones[1].Address)
	}
}

func TestRender500Schools(t *testing.T) {
	dir := t.TempDir()
	var csv bytes.Buffer
	if err := inventorytest.Generate(&csv, 500); err != nil {
		t.Fatal(err)
	}
	inv := writeFile(t, dir, "schools.csv", csv.String())
	out := filepath.Join(dir, "rendered")

	start := time.Now()
	code, _, stderr := runCmd(t, "render", "--template", nocTemplate, "--inventory", inv, "--out", out)
	t.Logf("rendered 500 schools in %v", time.Since(start))
	if code != 0 {
		t.Fatalf("exit %d:\n%s", code, stderr)
	}
	files, err := filepath.Glob(filepath.Join(out, "*.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	if len(files) != 500 {
		t.Fatalf("%d files, want 500", len(files))
	}
	entries, _ := os.ReadDir(out)
	if len(entries) != 500 {
		t.Errorf("%d entries in the output directory, want only the 500 configs", len(entries))
	}
	for _, f := range files {
		cfg, err := config.Load(f)
		if err != nil {
			t.Fatal(err)
		}
		if want := cfg.Identity.UAI + ".yaml"; filepath.Base(f) != want {
			t.Errorf("%s holds uai %s", f, cfg.Identity.UAI)
		}
	}
}

func TestRenderBadRows(t *testing.T) {
	dir := t.TempDir()
	data, err := os.ReadFile(nocInventory)
	if err != nil {
		t.Fatal(err)
	}
	inv := writeFile(t, dir, "schools.csv", string(data)+
		"0330022V,Collège X,bordeaux,193.54.60.50/29,193.54.60.49,10.34.1.0/22,10.34.8.0/24,10.34.16.0/24\n"+
		"0330023W,Collège Y,bordeaux,193.54.60.58/29\n"+
		"0330021U,Collège Jean Moulin bis,bordeaux,193.54.60.66/29,193.54.60.65,10.35.0.0/22,10.35.8.0/24,10.35.16.0/24\n")
	out := filepath.Join(dir, "out")
	code, _, stderr := runCmd(t, "render", "--template", nocTemplate, "--inventory", inv, "--out", out)
	if code != 1 {
		t.Errorf("exit %d, want 1", code)
	}
	want := []string{
		inv + ":5: uai 0330021U: the same uai is on line 13: a school has one row",
		inv + ":11: uai 0330022V: zones[0].subnet: 10.34.1.0/22 has host bits set: did you mean 10.34.0.0/22?",
		inv + ":12: uai 0330023W: 4 fields, but the header has 8 columns",
		inv + ":13: uai 0330021U: the same uai is on line 5: a school has one row",
		"9 school(s) in " + inv + ": 5 written to " + out + ", 4 failed",
	}
	if got := strings.Split(strings.TrimSuffix(stderr, "\n"), "\n"); strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Errorf("stderr:\n%s\nwant:\n%s", stderr, strings.Join(want, "\n"))
	}
	entries, _ := os.ReadDir(out)
	if len(entries) != 5 {
		t.Errorf("%d files written, want the 5 good schools", len(entries))
	}
}

func TestRenderFatalProblems(t *testing.T) {
	dir := t.TempDir()
	typo := writeFile(t, dir, "typo.yaml.tmpl", "identity:\n  uai: {{.uai}}\n  name: {{quote .nom}}\n")
	broken := writeFile(t, dir, "broken.yaml.tmpl", "identity:\n  uai: {{.uai}\n")
	noUAI := writeFile(t, dir, "no-uai.csv", "name,academy\nX,bordeaux\n")
	empty := writeFile(t, dir, "empty.csv", "uai,name\n")
	tests := []struct {
		name, tmpl, inv, want string
	}{
		{"template uses an unknown column", typo, nocInventory, `passerellectl render: template ` + typo + ` uses column "nom" (did you mean "name"?), not in the header of ` + nocInventory},
		{"template syntax", broken, nocInventory, "passerellectl render: template: " + broken + ":2:"},
		{"missing template", filepath.Join(dir, "absent.tmpl"), nocInventory, "passerellectl render: template: open "},
		{"inventory without uai", nocTemplate, noUAI, `passerellectl render: ` + noUAI + `:1: no "uai" column`},
		{"inventory without schools", nocTemplate, empty, "passerellectl render: " + empty + " has a header but no school"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			out := filepath.Join(dir, "out-"+strings.ReplaceAll(tt.name, " ", "-"))
			code, _, stderr := runCmd(t, "render", "--template", tt.tmpl, "--inventory", tt.inv, "--out", out)
			if code != 1 {
				t.Errorf("exit %d, want 1", code)
			}
			if !strings.HasPrefix(stderr, tt.want) || strings.Count(stderr, "\n") != 1 {
				t.Errorf("stderr:\n%s\nwant one line starting with:\n%s", stderr, tt.want)
			}
			if _, err := os.Stat(out); err == nil {
				t.Error("output directory created despite the error")
			}
		})
	}
}

func TestRenderUnwritableOutput(t *testing.T) {
	out := writeFile(t, t.TempDir(), "not-a-directory", "")
	code, _, stderr := runCmd(t, "render", "--template", nocTemplate, "--inventory", nocInventory, "--out", out)
	if code != 1 {
		t.Errorf("exit %d, want 1", code)
	}
	if !strings.Contains(stderr, "passerellectl render: output directory: ") {
		t.Errorf("stderr %q does not name the output directory problem", stderr)
	}
}

func TestVersion(t *testing.T) {
	code, stdout, stderr := runCmd(t, "version")
	if code != 0 || stderr != "" || !strings.HasPrefix(stdout, "passerellectl ") || strings.Count(stdout, "\n") != 1 {
		t.Errorf("exit %d, stdout %q, stderr %q", code, stdout, stderr)
	}
}

func TestDocsPrintsTheReference(t *testing.T) {
	code, stdout, stderr := runCmd(t, "docs")
	if code != 0 || stderr != "" || stdout != string(config.Reference()) {
		t.Errorf("exit %d, stderr %q, stdout is not config.Reference()", code, stderr)
	}
}

func TestValidateJSON(t *testing.T) {
	dir := t.TempDir()
	bad := writeFile(t, dir, "bad.yaml", "version: 1\nidentity:\n  uai: 0751234A\n")
	code, stdout, stderr := runCmd(t, "validate", "--json", bad, "../../configs/examples/ecole.yaml")
	if code != 1 || stderr != "" {
		t.Fatalf("exit %d, stderr %q", code, stderr)
	}
	var rep validateReport
	if err := json.Unmarshal([]byte(stdout), &rep); err != nil {
		t.Fatalf("%v\n%s", err, stdout)
	}
	if rep.Checked != 2 || rep.Invalid != 1 || len(rep.Files) != 2 || rep.Files[0].Valid || !rep.Files[1].Valid {
		t.Fatalf("report %+v", rep)
	}
	p := rep.Files[0].Problems[0]
	if p.Line != 1 || p.Col != 1 || p.Path != "uplinks" || p.Text != bad+`:1:1: uplinks: missing (required): Internet links, most preferred first: Renater, then backups.` {
		t.Errorf("first problem %+v", p)
	}
	var uai *validateProblem
	for i := range rep.Files[0].Problems {
		if rep.Files[0].Problems[i].Path == "identity.uai" {
			uai = &rep.Files[0].Problems[i]
		}
	}
	if uai == nil || uai.Line != 3 || uai.Col != 8 || !strings.Contains(uai.Message, "the check letter of 0751234 is J, not A") {
		t.Errorf("uai problem %+v", uai)
	}
}

func TestRenderStaleFilesPruneAndJSON(t *testing.T) {
	dir := t.TempDir()
	out := filepath.Join(dir, "out")
	if code, _, stderr := runCmd(t, "render", "--template", nocTemplate, "--inventory", nocInventory, "--out", out); code != 0 {
		t.Fatalf("first render: exit %d\n%s", code, stderr)
	}
	// Two schools leave the inventory; a file that is no config stays.
	data, err := os.ReadFile(nocInventory)
	if err != nil {
		t.Fatal(err)
	}
	var kept []string
	for _, l := range strings.Split(string(data), "\n") {
		if !strings.HasPrefix(l, "0330116X") && !strings.HasPrefix(l, "0333214P") {
			kept = append(kept, l)
		}
	}
	inv := writeFile(t, dir, "schools.csv", strings.Join(kept, "\n"))
	writeFile(t, out, "README.txt", "not a config")

	code, _, stderr := runCmd(t, "render", "--template", nocTemplate, "--inventory", inv, "--out", out)
	want := "stale: " + filepath.Join(out, "0330116X.yaml") + ": no school of " + inv + " has this uai (remove it with --prune)\n" +
		"stale: " + filepath.Join(out, "0333214P.yaml") + ": no school of " + inv + " has this uai (remove it with --prune)\n" +
		"4 school(s) in " + inv + ": 4 written to " + out + ", 0 failed, 2 stale file(s) kept\n"
	if code != 0 || stderr != want {
		t.Errorf("exit %d, stderr:\n%s\nwant:\n%s", code, stderr, want)
	}
	if _, err := os.Stat(filepath.Join(out, "0330116X.yaml")); err != nil {
		t.Errorf("a stale file was removed without --prune: %v", err)
	}

	code, stdout, stderr := runCmd(t, "render", "--prune", "--json", "--template", nocTemplate, "--inventory", inv, "--out", out)
	if code != 0 || stderr != "" {
		t.Fatalf("exit %d, stderr %q", code, stderr)
	}
	var rep renderReport
	if err := json.Unmarshal([]byte(stdout), &rep); err != nil {
		t.Fatalf("%v\n%s", err, stdout)
	}
	if rep.Written != 4 || rep.Failed != 0 || len(rep.Schools) != 4 || strings.Join(rep.Pruned, ",") != "0330116X.yaml,0333214P.yaml" || len(rep.Stale) != 0 {
		t.Errorf("report %+v", rep)
	}
	if s := rep.Schools[0]; !s.OK || s.UAI != "0330021U" || s.File != filepath.Join(out, "0330021U.yaml") {
		t.Errorf("first school %+v", s)
	}
	entries, _ := os.ReadDir(out)
	var names []string
	for _, e := range entries {
		names = append(names, e.Name())
	}
	if want := "0330021U.yaml 0331460H.yaml 0331577K.yaml 0332346W.yaml README.txt"; strings.Join(names, " ") != want {
		t.Errorf("output directory holds %s, want %s", strings.Join(names, " "), want)
	}
}

func TestRenderJSONReportsProblems(t *testing.T) {
	dir := t.TempDir()
	data, err := os.ReadFile(nocInventory)
	if err != nil {
		t.Fatal(err)
	}
	inv := writeFile(t, dir, "schools.csv", string(data)+
		"0330022V,Collège X,bordeaux,193.54.60.2/29,193.54.60.1,10.34.0.0/22,10.34.8.0/24,10.34.16.0/24\n")
	code, stdout, _ := runCmd(t, "render", "--json", "--template", nocTemplate, "--inventory", inv, "--out", filepath.Join(dir, "out"))
	if code != 1 {
		t.Errorf("exit %d, want 1", code)
	}
	var rep renderReport
	if err := json.Unmarshal([]byte(stdout), &rep); err != nil {
		t.Fatalf("%v\n%s", err, stdout)
	}
	if rep.Failed != 2 || rep.Written != 5 {
		t.Fatalf("report %+v", rep)
	}
	p := rep.Schools[6].Problems[0]
	if p.Path != "uplinks[0].address" || p.Message != "193.54.60.2 is also the uplink address of line 5 (uai 0330021U): each school has its own" {
		t.Errorf("problem %+v", p)
	}
}
