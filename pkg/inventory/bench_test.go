package inventory

import (
	"bytes"
	"os"
	"path/filepath"
	"testing"

	"passerelle/pkg/inventory/inventorytest"
)

// BenchmarkRender500 measures the pure part (parse the inventory, render
// and validate 500 collèges with the NOC template), without disk writes.
func BenchmarkRender500(b *testing.B) {
	text, csv := nocFixture(b, 500)
	tmpl, err := ParseTemplate("college.yaml.tmpl", text)
	if err != nil {
		b.Fatal(err)
	}
	for b.Loop() {
		inv, err := ParseInventory("schools.csv", csv)
		if err != nil {
			b.Fatal(err)
		}
		results, err := Render(tmpl, inv)
		if err != nil {
			b.Fatal(err)
		}
		for i := range results {
			if !results[i].OK() {
				b.Fatal(results[i].Errs[0])
			}
		}
	}
}

// BenchmarkRenderWrite500 adds writing the 500 files atomically, fsync
// included, which is what the disk makes of the command's run time.
func BenchmarkRenderWrite500(b *testing.B) {
	text, csv := nocFixture(b, 500)
	tmpl, err := ParseTemplate("college.yaml.tmpl", text)
	if err != nil {
		b.Fatal(err)
	}
	for b.Loop() {
		inv, err := ParseInventory("schools.csv", csv)
		if err != nil {
			b.Fatal(err)
		}
		results, err := Render(tmpl, inv)
		if err != nil {
			b.Fatal(err)
		}
		if n, err := WriteResults(b.TempDir(), results); err != nil || n != 500 {
			b.Fatalf("wrote %d files: %v", n, err)
		}
	}
}

func nocFixture(b *testing.B, n int) (string, []byte) {
	text, err := os.ReadFile(filepath.Join("..", "..", "configs", "noc", "college.yaml.tmpl"))
	if err != nil {
		b.Fatal(err)
	}
	var csv bytes.Buffer
	if err := inventorytest.Generate(&csv, n); err != nil {
		b.Fatal(err)
	}
	return string(text), csv.Bytes()
}
