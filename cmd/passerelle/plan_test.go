package main

import (
	"bytes"
	"flag"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

var updatePlans = flag.Bool("update-plans", false, "rewrite testdata/plans/*.golden")

// TestPlanGolden pins what every example config makes the box set up
// (interfaces, routes, nftables text): a change to a compiler shows up as a
// reviewable diff of these files.
func TestPlanGolden(t *testing.T) {
	files, _ := filepath.Glob("../../configs/examples/*.yaml")
	files = append(files, "../../configs/demo.yaml")
	for _, f := range files {
		name := strings.TrimSuffix(filepath.Base(f), ".yaml")
		t.Run(name, func(t *testing.T) {
			var stdout, stderr bytes.Buffer
			if code := run([]string{"plan", f}, &stdout, &stderr); code != 0 {
				t.Fatalf("plan %s: exit %d: %s", f, code, stderr.String())
			}
			golden := filepath.Join("testdata", "plans", name+".golden")
			if *updatePlans {
				if err := os.MkdirAll(filepath.Dir(golden), 0o755); err != nil {
					t.Fatal(err)
				}
				if err := os.WriteFile(golden, stdout.Bytes(), 0o644); err != nil {
					t.Fatal(err)
				}
			}
			want, err := os.ReadFile(golden)
			if err != nil {
				t.Fatalf("%v (run go test ./cmd/passerelle -run TestPlanGolden -update-plans)", err)
			}
			if got := stdout.String(); got != string(want) {
				t.Errorf("plan of %s differs from %s:\n--- got\n%s--- want\n%s", f, golden, got, want)
			}
		})
	}
}
