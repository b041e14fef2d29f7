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
	render := renderer(b, 500)
	for b.Loop() {
		for _, r := range render() {
			if !r.OK() {
				b.Fatal(r.Errs[0])
			}
		}
	}
}

// BenchmarkRenderWrite500 adds writing the 500 files atomically, fsync
// included, which is what the disk makes of the command's run time.
func BenchmarkRenderWrite500(b *testing.B) {
	render := renderer(b, 500)
	for b.Loop() {
		if n, err := WriteResults(b.TempDir(), render()); err != nil || n != 500 {
			b.Fatalf("wrote %d files: %v", n, err)
		}
	}
}

// renderer returns one run of the command's pure part over an inventory of
// n schools: parse the inventory, render and validate every row.
func renderer(b *testing.B, n int) func() []Result {
	text, csv := nocFixture(b, n)
	tmpl, err := ParseTemplate("college.yaml.tmpl", text)
	if err != nil {
		b.Fatal(err)
	}
	return func() []Result {
		inv, err := ParseInventory("schools.csv", csv)
		if err != nil {
			b.Fatal(err)
		}
		results, err := Render(tmpl, inv)
		if err != nil {
			b.Fatal(err)
		}
		return results
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
