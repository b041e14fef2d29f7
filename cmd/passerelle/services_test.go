package main

import (
	"context"
	"path/filepath"
	"strings"
	"testing"
)

func TestParseServicesValidates(t *testing.T) {
	tests := []struct {
		name, yaml, err string
	}{
		{"unknown key", "- name: a\n  comand: [/bin/true]\n", "field comand not found"},
		{"no name", "- command: [/bin/true]\n", "services[0]: name is required"},
		{"no command", "- name: a\n", "services[0] (a): command is required"},
		{"relative command", "- name: a\n  command: [sh, -c, true]\n", `command "sh" must start with an absolute path`},
		{"relative ready file", "- name: a\n  command: [/bin/true]\n  ready_file: x\n", `ready_file "x" must be an absolute path`},
		{"duplicate", "- name: a\n  command: [/bin/true]\n- name: a\n  command: [/bin/true]\n", `services[1]: name "a" used twice`},
		{"not a list", "name: a\n", "cannot unmarshal"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := parseServices("s.yaml", []byte(tt.yaml))
			if err == nil || !strings.Contains(err.Error(), tt.err) {
				t.Errorf("error %v, want one containing %q", err, tt.err)
			}
		})
	}
}

func TestParseServicesBuildsSpecs(t *testing.T) {
	ready := filepath.Join(t.TempDir(), "ready")
	specs, err := parseServices("s.yaml", []byte(`
- name: tailscaled
  command: [/usr/sbin/tailscaled, --tun=tailscale0]
  env: [TS_LOGS_DIR=/perm/tailscale]
  ready_file: `+ready+`
  critical: true
`))
	if err != nil {
		t.Fatal(err)
	}
	s := specs[0]
	if s.Name != "tailscaled" || !s.Critical || s.Command.Path != "/usr/sbin/tailscaled" || strings.Join(s.Command.Args, " ") != "--tun=tailscale0" {
		t.Errorf("spec = %+v, command %+v", s, s.Command)
	}
	if env := s.Command.Env; len(env) == 0 || env[len(env)-1] != "TS_LOGS_DIR=/perm/tailscale" {
		t.Errorf("env does not end with the service's: %v", env)
	}
	if s.Ready(context.Background()) == nil {
		t.Error("ready before the ready file exists")
	}
}
