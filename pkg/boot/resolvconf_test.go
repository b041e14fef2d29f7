package boot

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestResolvConfPointsAtTheBox: the file is written when absent or
// different (a leftover), names only 127.0.0.1, and a second boot keeps
// it as it is.
func TestResolvConfPointsAtTheBox(t *testing.T) {
	path := filepath.Join(t.TempDir(), "etc", "resolv.conf")
	for _, tt := range []struct {
		name, before, note string
	}{
		{"absent", "", "nameserver 127.0.0.1"},
		{"a leftover", "nameserver 8.8.8.8\n", "nameserver 127.0.0.1"},
		{"already ours", resolvConfText, "kept"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			if tt.before != "" {
				if err := os.WriteFile(path, []byte(tt.before), 0o644); err != nil {
					t.Fatal(err)
				}
			}
			note, err := WriteResolvConf(path)
			if err != nil || note != tt.note {
				t.Fatalf("WriteResolvConf: %q, %v; want %q", note, err, tt.note)
			}
			got, _ := os.ReadFile(path)
			var servers []string
			for line := range strings.Lines(string(got)) {
				if f := strings.Fields(line); len(f) == 2 && f[0] == "nameserver" {
					servers = append(servers, f[1])
				}
			}
			if len(servers) != 1 || servers[0] != "127.0.0.1" {
				t.Errorf("name servers %v, want only 127.0.0.1", servers)
			}
		})
	}
}
