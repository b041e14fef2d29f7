package config

import (
	"os"
	"path/filepath"
	"testing"
)

// FuzzParse feeds arbitrary documents to the decoder: it must never panic,
// and whatever it accepts must print and read back to an accepted config.
func FuzzParse(f *testing.F) {
	files, _ := filepath.Glob("../../configs/examples/*.yaml")
	files = append(files, "../../configs/demo.yaml")
	for _, p := range files {
		data, err := os.ReadFile(p)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(data)
	}
	f.Add([]byte("version: 1\nzones: &z [ *z ]\n"))
	f.Add([]byte("{version: 1, uplinks: [{name: a, <<: {x: 1}}]}"))
	f.Fuzz(func(t *testing.T, data []byte) {
		cfg, err := Parse("fuzz.yaml", data)
		if err != nil {
			return
		}
		out, err := Marshal(cfg)
		if err != nil {
			t.Fatalf("Marshal of an accepted config: %v", err)
		}
		if _, err := Parse("effective.yaml", out); err != nil {
			t.Fatalf("printed config does not read back: %v\n%s", err, out)
		}
	})
}
