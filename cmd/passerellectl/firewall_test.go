package main

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestFirewallCompilePrintsTheGoldenTable checks the NOC command against
// the firewall package's golden tables.
func TestFirewallCompilePrintsTheGoldenTable(t *testing.T) {
	files, _ := filepath.Glob("../../configs/examples/*.yaml")
	files = append(files, "../../configs/demo.yaml")
	for _, f := range files {
		name := strings.TrimSuffix(filepath.Base(f), ".yaml")
		t.Run(name, func(t *testing.T) {
			var stdout, stderr bytes.Buffer
			if code := run([]string{"firewall", "compile", f}, &stdout, &stderr); code != 0 {
				t.Fatalf("exit %d: %s", code, stderr.String())
			}
			want, err := os.ReadFile(filepath.Join("../../pkg/firewall/testdata/golden", name+".nft"))
			if err != nil {
				t.Fatal(err)
			}
			if stdout.String() != string(want) {
				t.Errorf("passerellectl firewall compile %s differs from the golden table", f)
			}
		})
	}
}

func TestFirewallCompileRefusesBadInput(t *testing.T) {
	broken := filepath.Join(t.TempDir(), "broken.yaml")
	os.WriteFile(broken, []byte("version: 1\nzones: []\n"), 0o644)
	tests := []struct {
		args []string
		code int
		want string
	}{
		{[]string{"firewall"}, 2, "usage: passerellectl firewall compile CONFIG"},
		{[]string{"firewall", "show", "x"}, 2, "usage"},
		{[]string{"firewall", "compile", "/does/not/exist.yaml"}, 1, "no such file"},
		{[]string{"firewall", "compile", broken}, 1, "problem(s) found"},
	}
	for _, tt := range tests {
		var stdout, stderr bytes.Buffer
		if code := run(tt.args, &stdout, &stderr); code != tt.code || !strings.Contains(stderr.String(), tt.want) {
			t.Errorf("%v: exit %d, stderr %q; want exit %d and %q", tt.args, code, stderr.String(), tt.code, tt.want)
		}
		if stdout.Len() != 0 {
			t.Errorf("%v printed a table despite the error", tt.args)
		}
	}
}
