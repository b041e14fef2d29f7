package main

import (
	"bytes"
	"flag"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

var updateGolden = flag.Bool("update", false, "rewrite the golden files of testdata/broken")

// validConfigs are the configs check-config must accept: the demo, the
// documented examples and the valid test documents.
func validConfigs(t *testing.T) []string {
	t.Helper()
	var files []string
	for _, pattern := range []string{
		"../../configs/demo.yaml",
		"../../configs/examples/*.yaml",
		"testdata/valid/*.yaml",
	} {
		m, err := filepath.Glob(pattern)
		if err != nil {
			t.Fatal(err)
		}
		if len(m) == 0 {
			t.Fatalf("no file matches %s", pattern)
		}
		files = append(files, m...)
	}
	return files
}

// TestCheckConfigBroken runs check-config on each broken config and compares
// its whole stderr, FILE:LINE:COL included, with NAME.golden. Run
// `go test ./cmd/passerelle -run CheckConfigBroken -update` to rewrite the
// goldens, then read every changed one as an operator would.
func TestCheckConfigBroken(t *testing.T) {
	files, err := filepath.Glob("testdata/broken/*.yaml")
	if err != nil {
		t.Fatal(err)
	}
	if len(files) < 25 {
		t.Fatalf("only %d broken configs under testdata/broken; the acceptance criterion asks for at least 25", len(files))
	}
	for _, file := range files {
		name := strings.TrimSuffix(filepath.Base(file), ".yaml")
		t.Run(name, func(t *testing.T) {
			// Forward slashes: the golden files hold the path as typed.
			path := filepath.ToSlash(file)
			var stdout, stderr bytes.Buffer
			code := run([]string{"check-config", path}, &stdout, &stderr)
			if code != 1 {
				t.Errorf("exit code %d, want 1", code)
			}
			if stdout.Len() != 0 {
				t.Errorf("stdout not empty:\n%s", stdout.String())
			}
			golden := strings.TrimSuffix(file, ".yaml") + ".golden"
			if *updateGolden {
				if err := os.WriteFile(golden, stderr.Bytes(), 0o644); err != nil {
					t.Fatal(err)
				}
				return
			}
			want, err := os.ReadFile(golden)
			if err != nil {
				t.Fatalf("%v (run with -update to create it)", err)
			}
			if got := stderr.String(); got != string(want) {
				t.Errorf("stderr differs from %s\n--- got:\n%s--- want:\n%s", golden, got, want)
			}
		})
	}
	if !*updateGolden {
		// A golden left behind by a renamed or deleted case would be
		// dead weight that nobody reads.
		goldens, _ := filepath.Glob("testdata/broken/*.golden")
		for _, g := range goldens {
			if _, err := os.Stat(strings.TrimSuffix(g, ".golden") + ".yaml"); err != nil {
				t.Errorf("%s has no matching .yaml", g)
			}
		}
	}
}

func TestCheckConfigValid(t *testing.T) {
	for _, file := range validConfigs(t) {
		t.Run(filepath.Base(file), func(t *testing.T) {
			var stdout, stderr bytes.Buffer
			if code := run([]string{"check-config", file}, &stdout, &stderr); code != 0 {
				t.Errorf("exit code %d, want 0", code)
			}
			if stderr.Len() != 0 {
				t.Errorf("stderr not empty:\n%s", stderr.String())
			}
			if stdout.Len() != 0 {
				t.Errorf("stdout not empty without --print-effective:\n%s", stdout.String())
			}
		})
	}
}

// TestPrintEffectiveRoundTrip checks that the effective config is itself a
// valid config, and that printing it again changes nothing: every default
// is already filled in.
func TestPrintEffectiveRoundTrip(t *testing.T) {
	dir := t.TempDir()
	for _, file := range validConfigs(t) {
		t.Run(filepath.Base(file), func(t *testing.T) {
			first := printEffective(t, file)
			again := filepath.Join(dir, filepath.Base(file))
			if err := os.WriteFile(again, first, 0o644); err != nil {
				t.Fatal(err)
			}
			second := printEffective(t, again)
			if !bytes.Equal(first, second) {
				t.Errorf("printing the effective config of %s again changes it\n--- first:\n%s--- second:\n%s", file, first, second)
			}
		})
	}
}

func printEffective(t *testing.T, file string) []byte {
	t.Helper()
	var stdout, stderr bytes.Buffer
	if code := run([]string{"check-config", "--print-effective", file}, &stdout, &stderr); code != 0 {
		t.Fatalf("check-config --print-effective %s: exit code %d\n%s", file, code, stderr.String())
	}
	if stderr.Len() != 0 {
		t.Errorf("stderr not empty:\n%s", stderr.String())
	}
	if stdout.Len() == 0 {
		t.Fatalf("check-config --print-effective %s printed nothing", file)
	}
	return stdout.Bytes()
}
