package firewall

import (
	"flag"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"passerelle/pkg/config"
)

var update = flag.Bool("update", false, "rewrite testdata/golden/*.nft")

// exampleConfigs are the configs whose compiled table is pinned: every
// example, the demo, and testdata/features.yaml for what they lack.
func exampleConfigs(t *testing.T) map[string]string {
	t.Helper()
	files, err := filepath.Glob("../../configs/examples/*.yaml")
	if err != nil || len(files) == 0 {
		t.Fatalf("no example configs: %v", err)
	}
	files = append(files, "../../configs/demo.yaml", "testdata/features.yaml")
	out := map[string]string{}
	for _, f := range files {
		out[strings.TrimSuffix(filepath.Base(f), ".yaml")] = f
	}
	return out
}

func loadConfig(t testing.TB, path string) *config.Config {
	t.Helper()
	cfg, err := config.Load(path)
	if err != nil {
		t.Fatalf("load %s: %v", path, err)
	}
	return cfg
}

// TestCompileGolden pins the ruleset text of every example config: a
// change to the compiler shows up as a reviewable diff of these files.
func TestCompileGolden(t *testing.T) {
	for name, path := range exampleConfigs(t) {
		t.Run(name, func(t *testing.T) {
			p, err := Compile(loadConfig(t, path))
			if err != nil {
				t.Fatal(err)
			}
			got := p.String()
			golden := filepath.Join("testdata", "golden", name+".nft")
			if *update {
				if err := os.WriteFile(golden, []byte(got), 0o644); err != nil {
					t.Fatal(err)
				}
			}
			want, err := os.ReadFile(golden)
			if err != nil {
				t.Fatalf("%v (run go test ./pkg/firewall -run TestCompileGolden -update)", err)
			}
			if got != string(want) {
				t.Errorf("compiled table of %s differs from %s:\n%s", path, golden, lineDiff(string(want), got))
			}
		})
	}
}

// lineDiff shows the lines that differ, enough to review a golden change.
func lineDiff(want, got string) string {
	w, g := strings.Split(want, "\n"), strings.Split(got, "\n")
	var b strings.Builder
	for i := 0; i < len(w) || i < len(g); i++ {
		var wl, gl string
		if i < len(w) {
			wl = w[i]
		}
		if i < len(g) {
			gl = g[i]
		}
		if wl != gl {
			b.WriteString("line " + itoa(i+1) + ":\n  want: " + wl + "\n  got:  " + gl + "\n")
		}
	}
	return b.String()
}

func itoa(i int) string {
	const digits = "0123456789"
	if i < 10 {
		return digits[i : i+1]
	}
	return itoa(i/10) + digits[i%10:i%10+1]
}
