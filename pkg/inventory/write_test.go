package inventory

import (
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

func TestWriteResultsWritesTheGoodRowsOnly(t *testing.T) {
	results := render(t, ecoleTemplate, ecoleHeader+
		"0751234J,A,paris,193.50.10.6/30,10.75.12.0/24\n"+
		"0751235K,B,paris,193.50.10.10/30,10.75.13.0/33\n"+
		"0751236L,C,paris,193.50.10.14/30,10.75.14.0/24\n")
	dir := filepath.Join(t.TempDir(), "rendered") // created by WriteResults
	n, err := WriteResults(dir, results)
	if err != nil {
		t.Fatal(err)
	}
	if n != 2 {
		t.Errorf("wrote %d files, want 2", n)
	}
	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, e := range entries {
		names = append(names, e.Name())
		info, err := e.Info()
		if err != nil {
			t.Fatal(err)
		}
		if info.Mode().Perm() != 0o644 {
			t.Errorf("%s has mode %v, want 0644", e.Name(), info.Mode().Perm())
		}
	}
	// No temporary file left behind, and nothing for the failed row.
	if want := []string{"0751234J.yaml", "0751236L.yaml"}; !slices.Equal(names, want) {
		t.Errorf("files %v, want %v", names, want)
	}
	got, err := os.ReadFile(filepath.Join(dir, "0751236L.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	if string(got) != string(results[2].Output) {
		t.Errorf("file content differs from the validated output")
	}
}

func TestWriteResultsReplacesAndKeepsFailedSchoolsFiles(t *testing.T) {
	dir := t.TempDir()
	for name, content := range map[string]string{"0751234J.yaml": "old A\n", "0751235K.yaml": "old B\n"} {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	results := render(t, ecoleTemplate, ecoleHeader+
		"0751234J,A,paris,193.50.10.6/30,10.75.12.0/24\n"+
		"0751235K,B,paris,193.50.10.10/30,10.75.13.1/24\n")
	if _, err := WriteResults(dir, results); err != nil {
		t.Fatal(err)
	}
	a, _ := os.ReadFile(filepath.Join(dir, "0751234J.yaml"))
	b, _ := os.ReadFile(filepath.Join(dir, "0751235K.yaml"))
	if !strings.HasPrefix(string(a), "# Rendered from") {
		t.Errorf("0751234J.yaml was not replaced: %q", a)
	}
	if string(b) != "old B\n" {
		t.Errorf("0751235K.yaml (failed row) was changed: %q", b)
	}
}

func TestWriteResultsRefusesAUAIThatIsAPath(t *testing.T) {
	for _, uai := range []string{"../0751234J", "a/b", `a\b`, ".hidden", ""} {
		dir := t.TempDir()
		results := []Result{{Line: 2, UAI: uai, Output: []byte("x\n")}}
		if _, err := WriteResults(dir, results); err == nil {
			t.Errorf("uai %q: no error", uai)
		}
		if entries, _ := os.ReadDir(dir); len(entries) != 0 {
			t.Errorf("uai %q: wrote %d files", uai, len(entries))
		}
	}
}

func TestWriteResultsReportsAnUnwritableDirectory(t *testing.T) {
	file := filepath.Join(t.TempDir(), "file")
	if err := os.WriteFile(file, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	results := []Result{{Line: 2, UAI: "0751234J", Output: []byte("x\n")}}
	if _, err := WriteResults(file, results); err == nil || !strings.Contains(err.Error(), "output directory") {
		t.Errorf("error %v, want one about the output directory", err)
	}
}
