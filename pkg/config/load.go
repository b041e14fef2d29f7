package config

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"reflect"
	"strings"
	"syscall"
)

// MaxFileSize bounds a configuration document; a real one is a few KiB.
const MaxFileSize = 1 << 20

// Load reads and parses a configuration file. It reads regular files
// only, and at most MaxFileSize+1 bytes of them: /dev/zero or a FIFO
// named by mistake (or by an attacker) fails at once instead of filling
// memory or blocking the daemon forever (issue 12).
func Load(path string) (*Config, error) {
	data, err := readLimited(path, MaxFileSize)
	if err != nil {
		return nil, fmt.Errorf("config: %w", err)
	}
	return Parse(path, data)
}

// readLimited reads a regular file of at most limit bytes (one more is
// read, so that Parse reports the size). The file is opened with
// O_NONBLOCK, which makes opening a FIFO without a writer return at once,
// and checked again after opening (the path may have changed in between).
func readLimited(path string, limit int64) ([]byte, error) {
	st, err := os.Stat(path)
	if err != nil {
		var pe *fs.PathError
		if errors.As(err, &pe) {
			pe.Op = "open" // what the operator asked for
		}
		return nil, err
	}
	if !st.Mode().IsRegular() {
		return nil, fmt.Errorf("%s is not a regular file (%s)", path, fileKind(st.Mode()))
	}
	f, err := os.OpenFile(path, os.O_RDONLY|syscall.O_NONBLOCK, 0)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	if st, err = f.Stat(); err != nil {
		return nil, err
	} else if !st.Mode().IsRegular() {
		return nil, fmt.Errorf("%s is not a regular file (%s)", path, fileKind(st.Mode()))
	}
	return io.ReadAll(io.LimitReader(f, limit+1))
}

func fileKind(m os.FileMode) string {
	switch {
	case m.IsDir():
		return "a directory"
	case m&os.ModeNamedPipe != 0:
		return "a FIFO"
	case m&os.ModeCharDevice != 0:
		return "a character device"
	case m&os.ModeDevice != 0:
		return "a block device"
	case m&os.ModeSocket != 0:
		return "a socket"
	}
	return m.Type().String()
}

// Parse decodes, completes and validates one document. file names the
// source in errors. On failure the error is an ErrorList holding every
// problem, each with FILE:LINE:COL and the field path, sorted by position.
func Parse(file string, data []byte) (*Config, error) {
	if len(data) > MaxFileSize {
		return nil, ErrorList{{File: file, Pos: Pos{1, 1}, Msg: fmt.Sprintf("file is %d bytes, more than the %d a configuration may have", len(data), MaxFileSize)}}
	}
	cfg := New()
	d := &decoder{pos: map[string]Pos{}}
	d.decodeDocument(data, cfg)
	if d.readable {
		d.explicitZero(cfg) // sanity.go
	}
	list := d.list
	if d.readable {
		// Validation runs on a half-decoded document too, so that every
		// problem is reported at once; what it would say again about a
		// value the decoder already refused is left out.
		failed := d.failedPaths()
		applyDerived(cfg)
		var vl ErrorList
		if err := cfg.Validate(); err != nil && !errors.As(err, &vl) {
			return nil, err
		}
		for _, e := range vl {
			if related(e.Path, failed) {
				continue
			}
			e.Pos = d.lookup(e.Path)
			list = append(list, e)
		}
	}
	if len(list) > 0 {
		for _, e := range list {
			e.File = file
		}
		list.sort()
		return nil, list
	}
	return cfg, nil
}

// failedPaths returns the field paths the decoder reported a problem at,
// and those of the keys it suggested for unknown ones ("zone" for zones:
// a required key written with a typo is then not "missing" as well).
func (d *decoder) failedPaths() []string {
	out := make([]string, 0, len(d.list)+len(d.meant))
	for _, e := range d.list {
		if e.Path != "" { // the document itself: a second document after it
			out = append(out, e.Path)
		}
	}
	return append(out, d.meant...)
}

// related says whether path is one of paths, inside one, or holds one: a
// validation error there would repeat or follow from a decoding error.
func related(path string, paths []string) bool {
	for _, p := range paths {
		if path == p || within(path, p) || within(p, path) {
			return true
		}
	}
	return false
}

// within says whether path is a field or element of parent.
func within(path, parent string) bool {
	if parent == "" {
		return path != ""
	}
	return len(path) > len(parent) && strings.HasPrefix(path, parent) && (path[len(parent)] == '.' || path[len(parent)] == '[')
}

// lookup finds the position of a path, or of its closest decoded parent
// (a missing key is reported where its mapping is).
func (d *decoder) lookup(path string) Pos {
	for {
		if p, ok := d.pos[path]; ok {
			return p
		}
		i := strings.LastIndexAny(path, ".[")
		if i < 0 {
			if p, ok := d.pos[""]; ok {
				return p
			}
			return Pos{Line: 1, Col: 1}
		}
		path = path[:i]
	}
}

// Clone returns a deep copy, so a component can keep the config it applied
// while a new one is being planned.
func (c *Config) Clone() *Config {
	out := reflect.New(reflect.TypeOf(*c)).Elem()
	deepCopy(out, reflect.ValueOf(*c))
	cp := out.Interface().(Config)
	return &cp
}

func deepCopy(dst, src reflect.Value) {
	switch src.Kind() {
	case reflect.Struct:
		for i := 0; i < src.NumField(); i++ {
			if dst.Field(i).CanSet() {
				deepCopy(dst.Field(i), src.Field(i))
			} else {
				dst.Set(src) // unexported fields (netip types): values are immutable
				return
			}
		}
	case reflect.Slice:
		if src.IsNil() {
			return
		}
		s := reflect.MakeSlice(src.Type(), src.Len(), src.Len())
		for i := 0; i < src.Len(); i++ {
			deepCopy(s.Index(i), src.Index(i))
		}
		dst.Set(s)
	default:
		dst.Set(src)
	}
}
