package boot

import (
	"bufio"
	"fmt"
	"io"
	"path"
	"strings"
)

// ModuleIndex is what modules.dep and modules.builtin say about the
// kernel's modules.
type ModuleIndex struct {
	path    map[string]string   // module name -> path relative to the modules dir
	deps    map[string][]string // path -> paths it needs, as modules.dep lists them
	builtin map[string]bool     // names built into the kernel
}

// ModuleName turns a module file path or a name into the kernel's name:
// base name without .ko and compression suffix, '-' read as '_'.
func ModuleName(p string) string {
	n := path.Base(p)
	for _, ext := range []string{".xz", ".gz", ".zst"} {
		n = strings.TrimSuffix(n, ext)
	}
	n = strings.TrimSuffix(n, ".ko")
	return strings.ReplaceAll(n, "-", "_")
}

// ParseModules reads modules.dep ("path: dep dep ...") and, if not nil,
// modules.builtin (one path per line).
func ParseModules(dep, builtin io.Reader) (*ModuleIndex, error) {
	ix := &ModuleIndex{path: map[string]string{}, deps: map[string][]string{}, builtin: map[string]bool{}}
	sc := bufio.NewScanner(dep)
	sc.Buffer(make([]byte, 0, 64<<10), 1<<20)
	line := 0
	for sc.Scan() {
		line++
		text := strings.TrimSpace(sc.Text())
		if text == "" || strings.HasPrefix(text, "#") {
			continue
		}
		mod, rest, ok := strings.Cut(text, ":")
		if !ok || mod == "" {
			return nil, fmt.Errorf("modules.dep:%d: expected \"path: deps\", got %q", line, text)
		}
		ix.path[ModuleName(mod)] = mod
		ix.deps[mod] = strings.Fields(rest)
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("modules.dep: %w", err)
	}
	if builtin != nil {
		sc := bufio.NewScanner(builtin)
		for sc.Scan() {
			if t := strings.TrimSpace(sc.Text()); t != "" {
				ix.builtin[ModuleName(t)] = true
			}
		}
		if err := sc.Err(); err != nil {
			return nil, fmt.Errorf("modules.builtin: %w", err)
		}
	}
	return ix, nil
}

// LoadOrder returns the module files to load for names, each after the
// modules it depends on, each once. Built-in modules need nothing. An
// unknown name is an error, but the others are still ordered.
func (ix *ModuleIndex) LoadOrder(names []string) ([]string, error) {
	var order []string
	seen := map[string]bool{}
	var visit func(p string, stack []string) error
	visit = func(p string, stack []string) error {
		if seen[p] {
			return nil
		}
		for _, s := range stack {
			if s == p {
				return fmt.Errorf("dependency cycle through %s", p)
			}
		}
		stack = append(stack, p)
		// modules.dep lists every dependency, direct or not, with the
		// ones loaded first at the end (that is how modprobe reads it).
		deps := ix.deps[p]
		for i := len(deps) - 1; i >= 0; i-- {
			if err := visit(deps[i], stack); err != nil {
				return err
			}
		}
		seen[p] = true
		order = append(order, p)
		return nil
	}
	var unknown []string
	for _, n := range names {
		n = ModuleName(n)
		if ix.builtin[n] {
			continue
		}
		p, ok := ix.path[n]
		if !ok {
			unknown = append(unknown, n)
			continue
		}
		if err := visit(p, nil); err != nil {
			return order, fmt.Errorf("module %s: %w", n, err)
		}
	}
	if len(unknown) > 0 {
		return order, fmt.Errorf("modules not in modules.dep nor built in: %s", strings.Join(unknown, ", "))
	}
	return order, nil
}
