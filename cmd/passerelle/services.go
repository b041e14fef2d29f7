package main

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"path/filepath"

	"gopkg.in/yaml.v3"

	"passerelle/pkg/supervisor"
)

// serviceFile is one entry of the --services file.
type serviceFile struct {
	Name      string   `yaml:"name"`
	Command   []string `yaml:"command"`
	Env       []string `yaml:"env"`
	Dir       string   `yaml:"dir"`
	ReadyFile string   `yaml:"ready_file"`
	Critical  bool     `yaml:"critical"`
}

// loadServices reads the --services file: a YAML list of commands to
// supervise, strictly decoded.
func loadServices(path string) ([]supervisor.Spec, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("--services: %w", err)
	}
	return parseServices(path, data)
}

func parseServices(path string, data []byte) ([]supervisor.Spec, error) {
	dec := yaml.NewDecoder(bytes.NewReader(data))
	dec.KnownFields(true)
	var list []serviceFile
	if err := dec.Decode(&list); err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	var out []supervisor.Spec
	seen := map[string]bool{}
	for i, s := range list {
		where := fmt.Sprintf("%s: services[%d]", path, i)
		switch {
		case s.Name == "":
			return nil, fmt.Errorf("%s: name is required", where)
		case seen[s.Name]:
			return nil, fmt.Errorf("%s: name %q used twice", where, s.Name)
		case len(s.Command) == 0:
			return nil, fmt.Errorf("%s (%s): command is required", where, s.Name)
		case !filepath.IsAbs(s.Command[0]):
			return nil, fmt.Errorf("%s (%s): command %q must start with an absolute path", where, s.Name, s.Command[0])
		case s.ReadyFile != "" && !filepath.IsAbs(s.ReadyFile):
			return nil, fmt.Errorf("%s (%s): ready_file %q must be an absolute path", where, s.Name, s.ReadyFile)
		}
		seen[s.Name] = true
		spec := supervisor.Spec{
			Name:     s.Name,
			Command:  &supervisor.Command{Path: s.Command[0], Args: s.Command[1:], Env: s.Env, Dir: s.Dir},
			Critical: s.Critical,
		}
		if s.Env != nil {
			spec.Command.Env = append(os.Environ(), s.Env...)
		}
		if f := s.ReadyFile; f != "" {
			spec.Ready = func(context.Context) error {
				_, err := os.Stat(f)
				return err
			}
		}
		out = append(out, spec)
	}
	return out, nil
}
