package telemetry

import (
	"encoding/json"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	"gopkg.in/yaml.v3"

	"passerelle/pkg/telemetry/nodecollect"
)

// The NOC's side of the push lives in configs/noc: alerting and recording
// rules (with promtool unit tests) and the Grafana dashboard.
const nocDir = "../../configs/noc"

func TestNOCRulesPassPromtool(t *testing.T) {
	promtool, err := exec.LookPath("promtool")
	if err != nil {
		t.Skip("promtool not installed (apt-get install prometheus)")
	}
	for _, args := range [][]string{
		{"check", "rules", "telemetry-rules.yml"},
		{"test", "rules", "telemetry-rules.test.yml"},
	} {
		cmd := exec.Command(promtool, args...)
		cmd.Dir = nocDir
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Errorf("promtool %s: %v\n%s", strings.Join(args, " "), err, out)
		}
	}
}

// Every alert has a promtool test case.
func TestNOCEveryAlertIsTested(t *testing.T) {
	rules := readRules(t)
	tests, err := os.ReadFile(filepath.Join(nocDir, "telemetry-rules.test.yml"))
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range rules {
		if r.Alert != "" && !strings.Contains(string(tests), "alertname: "+r.Alert+"\n") {
			t.Errorf("alert %s has no test in telemetry-rules.test.yml", r.Alert)
		}
	}
}

type rule struct {
	Record string `yaml:"record"`
	Alert  string `yaml:"alert"`
	Expr   string `yaml:"expr"`
}

func readRules(t *testing.T) []rule {
	t.Helper()
	data, err := os.ReadFile(filepath.Join(nocDir, "telemetry-rules.yml"))
	if err != nil {
		t.Fatal(err)
	}
	var f struct {
		Groups []struct {
			Rules []rule `yaml:"rules"`
		} `yaml:"groups"`
	}
	if err := yaml.Unmarshal(data, &f); err != nil {
		t.Fatal(err)
	}
	var out []rule
	for _, g := range f.Groups {
		out = append(out, g.Rules...)
	}
	return out
}

// The dashboard parses, and every metric it or a rule reads is one the box
// pushes (or a recording rule of telemetry-rules.yml).
func TestNOCDashboardAndRulesReadPushedMetrics(t *testing.T) {
	data, err := os.ReadFile(filepath.Join(nocDir, "telemetry-dashboard.json"))
	if err != nil {
		t.Fatal(err)
	}
	var dash map[string]any
	if err := json.Unmarshal(data, &dash); err != nil {
		t.Fatalf("dashboard: %v", err)
	}
	var exprs []string
	var walk func(v any)
	walk = func(v any) {
		switch x := v.(type) {
		case map[string]any:
			for k, e := range x {
				if s, ok := e.(string); ok && (k == "expr" || k == "definition") {
					exprs = append(exprs, s)
				}
				walk(e)
			}
		case []any:
			for _, e := range x {
				walk(e)
			}
		}
	}
	walk(dash)
	if len(exprs) < 20 {
		t.Fatalf("only %d queries in the dashboard", len(exprs))
	}
	records := map[string]bool{}
	for _, r := range readRules(t) {
		if r.Record != "" {
			records[r.Record] = true
		}
		exprs = append(exprs, r.Expr)
	}
	exported := exportedMetrics(t)
	name := regexp.MustCompile(`[a-zA-Z_:][a-zA-Z0-9_:]*`)
	for _, e := range exprs {
		for _, n := range name.FindAllString(stripStrings(e), -1) {
			switch {
			case strings.Contains(n, ":"):
				if !records[n] {
					t.Errorf("%q reads %s, which no recording rule defines", e, n)
				}
			case strings.HasPrefix(n, "node_") || strings.HasPrefix(n, "passerelle_"):
				if !exported(n) {
					t.Errorf("%q reads %s, which the box does not push", e, n)
				}
			}
		}
	}
}

// stripStrings removes quoted strings and {{ }} templates from a query, so
// label values are not taken for metric names.
func stripStrings(s string) string {
	s = regexp.MustCompile(`"[^"]*"`).ReplaceAllString(s, `""`)
	return regexp.MustCompile(`\{\{[^}]*\}\}`).ReplaceAllString(s, "")
}

// exportedMetrics says whether the box pushes a metric name: node_exporter's
// collectors as gathered here (hardware sensors and pressure may be missing
// on this machine: their collectors are enabled), and every passerelle_
// name in the firmware's sources.
func exportedMetrics(t *testing.T) func(string) bool {
	t.Helper()
	nc, err := nodecollect.New(slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	reg := prometheus.NewRegistry()
	reg.MustRegister(nc)
	mfs, _ := reg.Gather()
	names := map[string]bool{}
	for _, mf := range mfs {
		names[mf.GetName()] = true
	}
	var prefixes []string
	lit := regexp.MustCompile(`"(passerelle_[a-z0-9_]+)"`)
	filepath.Walk("../..", func(path string, info os.FileInfo, err error) error {
		if err != nil || info.IsDir() && (info.Name() == ".git" || info.Name() == "bin") {
			if info != nil && info.IsDir() {
				return filepath.SkipDir
			}
			return nil
		}
		if !strings.HasSuffix(path, ".go") || strings.HasSuffix(path, "_test.go") || !strings.Contains(path, "/pkg/") {
			return nil
		}
		src, _ := os.ReadFile(path)
		for _, m := range lit.FindAllStringSubmatch(string(src), -1) {
			if strings.HasSuffix(m[1], "_") {
				prefixes = append(prefixes, m[1]) // "passerelle_tunnel_" + name
			} else {
				names[m[1]] = true
			}
		}
		return nil
	})
	return func(n string) bool {
		if notPushed(n) {
			return false
		}
		if names[n] {
			return true
		}
		for _, p := range append(prefixes, "node_hwmon_", "node_thermal_zone_", "node_pressure_") {
			if strings.HasPrefix(n, p) {
				return true
			}
		}
		return false
	}
}
