package boot

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"os"
	"path"
	"path/filepath"
	"sort"
	"strings"
)

// ModuleIndex is what modules.dep, modules.builtin, modules.softdep and
// modules.alias say about the kernel's modules.
type ModuleIndex struct {
	path    map[string]string   // module name -> path relative to the modules dir
	deps    map[string][]string // path -> paths it needs, as modules.dep lists them
	builtin map[string]bool     // names built into the kernel
	// pre and post are the soft dependencies ("softdep M pre: A post: B"):
	// modules the kernel does not link against but that M needs at run
	// time, e.g. libcrc32c needs a crc32c implementation (crc32c_generic)
	// loaded first, or its init fails and with it nf_tables.
	pre, post map[string][]string
	// aliases are the alias patterns (modules.alias) with the modules
	// that declare them, in file order.
	aliases []moduleAlias
}

type moduleAlias struct{ pattern, module string }

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
	ix := &ModuleIndex{path: map[string]string{}, deps: map[string][]string{}, builtin: map[string]bool{},
		pre: map[string][]string{}, post: map[string][]string{}}
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

// ReadModuleIndex reads the index files of a modules directory
// (/lib/modules/<release>): modules.dep is required, modules.builtin,
// modules.softdep and modules.alias are read when present.
func ReadModuleIndex(dir string) (*ModuleIndex, error) {
	dep, err := os.Open(filepath.Join(dir, "modules.dep"))
	if err != nil {
		return nil, fmt.Errorf("modules: %w", err)
	}
	defer dep.Close()
	var builtin io.Reader
	if f, err := os.Open(filepath.Join(dir, "modules.builtin")); err == nil {
		defer f.Close()
		builtin = f
	}
	ix, err := ParseModules(dep, builtin)
	if err != nil {
		return nil, err
	}
	for _, extra := range []struct {
		name  string
		parse func(io.Reader) error
	}{{"modules.softdep", ix.ParseSoftdeps}, {"modules.alias", ix.ParseAliases}} {
		f, err := os.Open(filepath.Join(dir, extra.name))
		if errors.Is(err, os.ErrNotExist) {
			continue
		}
		if err != nil {
			return nil, err
		}
		err = extra.parse(f)
		f.Close()
		if err != nil {
			return nil, err
		}
	}
	return ix, nil
}

// ParseSoftdeps reads modules.softdep ("softdep M pre: A B post: C", as
// depmod writes it from the modules' MODULE_SOFTDEP).
func (ix *ModuleIndex) ParseSoftdeps(r io.Reader) error {
	sc := bufio.NewScanner(r)
	line := 0
	for sc.Scan() {
		line++
		f := strings.Fields(sc.Text())
		if len(f) == 0 || strings.HasPrefix(f[0], "#") {
			continue
		}
		if f[0] != "softdep" || len(f) < 2 {
			return fmt.Errorf("modules.softdep:%d: expected \"softdep MODULE pre: ... post: ...\"", line)
		}
		mod := ModuleName(f[1])
		var into map[string][]string
		for _, w := range f[2:] {
			switch w {
			case "pre:":
				into = ix.pre
			case "post:":
				into = ix.post
			default:
				// Words before pre: or post: say neither: some modules
				// declare MODULE_SOFTDEP("gcm") (cifs on 6.1); modprobe
				// ignores them, so does the box.
				if into != nil {
					into[mod] = append(into[mod], w)
				}
			}
		}
	}
	return sc.Err()
}

// ParseAliases reads modules.alias ("alias PATTERN MODULE"); patterns
// may hold shell wildcards (device aliases do).
func (ix *ModuleIndex) ParseAliases(r io.Reader) error {
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 0, 64<<10), 1<<20)
	line := 0
	for sc.Scan() {
		line++
		f := strings.Fields(sc.Text())
		if len(f) == 0 || strings.HasPrefix(f[0], "#") {
			continue
		}
		if f[0] != "alias" || len(f) != 3 {
			return fmt.Errorf("modules.alias:%d: expected \"alias PATTERN MODULE\"", line)
		}
		ix.aliases = append(ix.aliases, moduleAlias{pattern: f[1], module: ModuleName(f[2])})
	}
	return sc.Err()
}

// Resolve returns the modules a name stands for: itself if it is a
// module (or built in), else the modules whose alias matches it (a
// softdep on "crc32c" means crc32c_generic or a CPU-specific one), sorted.
// Nothing means unknown.
func (ix *ModuleIndex) Resolve(name string) []string {
	n := ModuleName(name)
	if _, ok := ix.path[n]; ok || ix.builtin[n] {
		return []string{n}
	}
	seen := map[string]bool{}
	var out []string
	for _, a := range ix.aliases {
		if ok, _ := path.Match(a.pattern, name); (ok || a.pattern == name) && !seen[a.module] {
			seen[a.module] = true
			out = append(out, a.module)
		}
	}
	sort.Strings(out)
	return out
}

// Has reports whether name is a module of the index or built in, directly
// or through an alias.
func (ix *ModuleIndex) Has(name string) bool { return len(ix.Resolve(name)) > 0 }

// LoadOrder returns the module files to load for names, each after the
// modules it depends on (modules.dep) and after its soft "pre"
// dependencies, before its "post" ones, each once. Names may be aliases.
// Built-in modules need nothing. An unknown name is an error, but the
// others are still ordered; an unknown soft dependency is skipped, as
// modprobe does.
func (ix *ModuleIndex) LoadOrder(names []string) ([]string, error) {
	var order []string
	done := map[string]bool{}   // names visited
	active := map[string]bool{} // names on the current path
	var visit func(n string, stack []string) error
	visit = func(n string, stack []string) error {
		if done[n] {
			return nil
		}
		if active[n] {
			// A soft dependency back to a module being loaded (post:
			// of its own dependency): the order of the hard
			// dependencies already covers it.
			return nil
		}
		if ix.builtin[n] {
			done[n] = true
			return nil
		}
		p, ok := ix.path[n]
		if !ok {
			return nil
		}
		active[n] = true
		defer delete(active, n)
		for _, s := range ix.pre[n] {
			for _, m := range ix.Resolve(s) {
				if err := visit(m, append(stack, n)); err != nil {
					return err
				}
			}
		}
		// modules.dep lists every dependency, direct or not, with the
		// ones loaded first at the end (that is how modprobe reads it).
		deps := ix.deps[p]
		for i := len(deps) - 1; i >= 0; i-- {
			d := ModuleName(deps[i])
			if active[d] {
				return fmt.Errorf("dependency cycle through %s", strings.Join(append(stack, n, d), " -> "))
			}
			if err := visit(d, append(stack, n)); err != nil {
				return err
			}
		}
		done[n] = true
		order = append(order, p)
		for _, s := range ix.post[n] {
			for _, m := range ix.Resolve(s) {
				if err := visit(m, append(stack, n)); err != nil {
					return err
				}
			}
		}
		return nil
	}
	var unknown []string
	for _, n := range names {
		mods := ix.Resolve(n)
		if len(mods) == 0 {
			unknown = append(unknown, ModuleName(n))
			continue
		}
		for _, m := range mods {
			if err := visit(m, nil); err != nil {
				return order, fmt.Errorf("module %s: %w", n, err)
			}
		}
	}
	if len(unknown) > 0 {
		return order, fmt.Errorf("modules not in modules.dep nor built in: %s", strings.Join(unknown, ", "))
	}
	return order, nil
}
