package config

import (
	"encoding"
	"fmt"
	"net/netip"
	"reflect"
	"regexp"
	"strconv"
	"strings"

	"gopkg.in/yaml.v3"
)

// decoder turns a YAML node tree into Go values, strictly: every key must
// be known, every scalar of the right type, and every problem is recorded
// with its position instead of stopping at the first.
type decoder struct {
	errs
	pos map[string]Pos // field path -> position of its value, for validation errors
}

var (
	textUnmarshalerType = reflect.TypeFor[encoding.TextUnmarshaler]()
	addrType            = reflect.TypeFor[netip.Addr]()
	prefixType          = reflect.TypeFor[netip.Prefix]()
	addrPortType        = reflect.TypeFor[netip.AddrPort]()
)

var yamlLineRE = regexp.MustCompile(`line (\d+)(?:, column (\d+))?`)

// decodeDocument parses data and decodes it into cfg (which already holds
// the static defaults).
func (d *decoder) decodeDocument(data []byte, cfg *Config) {
	var doc yaml.Node
	if err := yaml.Unmarshal(data, &doc); err != nil {
		pos := Pos{Line: 1, Col: 1}
		if m := yamlLineRE.FindStringSubmatch(err.Error()); m != nil {
			pos.Line, _ = strconv.Atoi(m[1])
			if m[2] != "" {
				pos.Col, _ = strconv.Atoi(m[2])
			}
		}
		msg := strings.TrimPrefix(err.Error(), "yaml: ")
		msg = yamlLineRE.ReplaceAllString(msg, "")
		msg = strings.TrimLeft(msg, ": ")
		d.add(pos, "", "invalid YAML: %s", msg)
		return
	}
	if doc.Kind == 0 || len(doc.Content) == 0 {
		d.add(Pos{Line: 1, Col: 1}, "", "empty document: expected a mapping starting with version: %d", CurrentVersion)
		return
	}
	d.decode(doc.Content[0], reflect.ValueOf(cfg).Elem(), "")
}

func describe(n *yaml.Node) string {
	switch n.Kind {
	case yaml.MappingNode:
		return "a mapping"
	case yaml.SequenceNode:
		return "a list"
	case yaml.ScalarNode:
		return fmt.Sprintf("%q", n.Value)
	}
	return "nothing"
}

func join(path, key string) string {
	if path == "" {
		return key
	}
	return path + "." + key
}

func (d *decoder) decode(n *yaml.Node, v reflect.Value, path string) {
	for n.Kind == yaml.AliasNode {
		n = n.Alias
	}
	pos := Pos{Line: n.Line, Col: n.Column}
	d.pos[path] = pos
	if n.Kind == yaml.ScalarNode && n.Tag == "!!null" {
		return // an empty value keeps the default
	}
	if v.Addr().Type().Implements(textUnmarshalerType) {
		if n.Kind != yaml.ScalarNode {
			d.add(pos, path, "expected %s, got %s", expectText(v.Type()), describe(n))
			return
		}
		if err := setText(v, n.Value); err != nil {
			d.add(pos, path, "%v", err)
		}
		return
	}
	switch v.Kind() {
	case reflect.Struct:
		d.decodeStruct(n, v, path)
	case reflect.Slice:
		if n.Kind != yaml.SequenceNode {
			d.add(pos, path, "expected a list, got %s", describe(n))
			return
		}
		s := reflect.MakeSlice(v.Type(), len(n.Content), len(n.Content))
		for i, item := range n.Content {
			elem := s.Index(i)
			applyDefaults(elem)
			d.decode(item, elem, fmt.Sprintf("%s[%d]", path, i))
		}
		v.Set(s)
	case reflect.String:
		if n.Kind != yaml.ScalarNode {
			d.add(pos, path, "expected a string, got %s", describe(n))
			return
		}
		v.SetString(n.Value)
	case reflect.Int:
		if n.Kind != yaml.ScalarNode || n.Tag != "!!int" {
			d.add(pos, path, "expected an integer, got %s", describe(n))
			return
		}
		i, err := strconv.ParseInt(n.Value, 0, 64)
		if err != nil {
			d.add(pos, path, "expected an integer, got %s", describe(n))
			return
		}
		v.SetInt(i)
	case reflect.Bool:
		if n.Kind != yaml.ScalarNode || n.Tag != "!!bool" {
			d.add(pos, path, "expected true or false, got %s", describe(n))
			return
		}
		b, _ := strconv.ParseBool(strings.ToLower(n.Value))
		v.SetBool(b)
	default:
		panic(fmt.Sprintf("config: no decoder for %s at %s", v.Type(), path))
	}
}

func (d *decoder) decodeStruct(n *yaml.Node, v reflect.Value, path string) {
	pos := Pos{Line: n.Line, Col: n.Column}
	if n.Kind != yaml.MappingNode {
		d.add(pos, path, "expected a mapping (key: value), got %s", describe(n))
		return
	}
	fields := structFields(v.Type())
	seen := map[string]int{} // key -> line where first seen
	for i := 0; i+1 < len(n.Content); i += 2 {
		k, val := n.Content[i], n.Content[i+1]
		kpos := Pos{Line: k.Line, Col: k.Column}
		if k.Kind != yaml.ScalarNode {
			d.add(kpos, path, "expected a key, got %s", describe(k))
			continue
		}
		if k.Value == "<<" {
			d.add(kpos, path, "merge keys (<<) are not supported: write the keys out")
			continue
		}
		if line, dup := seen[k.Value]; dup {
			d.add(kpos, join(path, k.Value), "duplicate key (first set at line %d)", line)
			continue
		}
		seen[k.Value] = k.Line
		f, ok := fields.byKey[k.Value]
		if !ok {
			d.add(kpos, join(path, k.Value), "unknown key %s", suggest(k.Value, fields.keys))
			continue
		}
		d.decode(val, v.Field(f.index), join(path, k.Value))
	}
	for _, f := range fields.list {
		if f.required {
			if _, ok := seen[f.key]; !ok {
				d.add(pos, join(path, f.key), "missing (required): %s", f.doc)
			}
		}
	}
}

// suggest names the closest known key, or lists them all.
func suggest(key string, keys []string) string {
	best, bestDist := "", 3
	for _, k := range keys {
		if dist := editDistance(key, k); dist < bestDist {
			best, bestDist = k, dist
		}
	}
	if best != "" {
		return fmt.Sprintf("%q (did you mean %q?)", key, best)
	}
	return fmt.Sprintf("%q (expected one of: %s)", key, strings.Join(keys, ", "))
}

func editDistance(a, b string) int {
	prev := make([]int, len(b)+1)
	cur := make([]int, len(b)+1)
	for j := range prev {
		prev[j] = j
	}
	for i := 1; i <= len(a); i++ {
		cur[0] = i
		for j := 1; j <= len(b); j++ {
			cost := 1
			if a[i-1] == b[j-1] {
				cost = 0
			}
			cur[j] = min(prev[j]+1, cur[j-1]+1, prev[j-1]+cost)
		}
		prev, cur = cur, prev
	}
	return prev[len(b)]
}

// expectText describes what a text-decoded type accepts.
func expectText(t reflect.Type) string {
	switch t {
	case addrType:
		return "an IPv4 address such as 192.0.2.1"
	case prefixType:
		return "a subnet in CIDR form such as 10.10.0.0/24"
	case addrPortType:
		return "an address with optional port such as 193.51.24.1:53"
	}
	return "a single value"
}

// setText decodes one scalar into a text-decoded value, with messages an
// operator understands rather than the parser's.
func setText(v reflect.Value, s string) error {
	switch v.Type() {
	case addrType:
		a, err := netip.ParseAddr(s)
		if err != nil {
			return fmt.Errorf("expected %s, got %q", expectText(addrType), s)
		}
		v.Set(reflect.ValueOf(a))
		return nil
	case prefixType:
		p, err := netip.ParsePrefix(s)
		if err != nil {
			return fmt.Errorf("expected %s, got %q", expectText(prefixType), s)
		}
		v.Set(reflect.ValueOf(p))
		return nil
	case addrPortType:
		ap, err := netip.ParseAddrPort(s)
		if err != nil {
			a, aerr := netip.ParseAddr(s)
			if aerr != nil {
				return fmt.Errorf("expected %s, got %q", expectText(addrPortType), s)
			}
			ap = netip.AddrPortFrom(a, 53) // DNS is what these name
		}
		v.Set(reflect.ValueOf(ap))
		return nil
	}
	return v.Addr().Interface().(encoding.TextUnmarshaler).UnmarshalText([]byte(s))
}

// field is one decodable struct field.
type field struct {
	index    int
	key      string
	def      string
	hasDef   bool
	required bool
	doc      string
}

type fieldSet struct {
	list  []field
	byKey map[string]field
	keys  []string
}

func structFields(t reflect.Type) fieldSet {
	fs := fieldSet{byKey: map[string]field{}}
	for i := 0; i < t.NumField(); i++ {
		sf := t.Field(i)
		key := sf.Tag.Get("yaml")
		if key == "" || !sf.IsExported() {
			continue
		}
		def, hasDef := sf.Tag.Lookup("default")
		f := field{index: i, key: key, def: def, hasDef: hasDef, required: sf.Tag.Get("required") == "true", doc: sf.Tag.Get("doc")}
		fs.list = append(fs.list, f)
		fs.byKey[key] = f
		fs.keys = append(fs.keys, key)
	}
	return fs
}

// applyDefaults fills a zero struct (and its nested structs) with the
// default tags. It panics on a malformed tag: that is a bug in this package,
// caught by its tests.
func applyDefaults(v reflect.Value) {
	if v.Kind() != reflect.Struct || v.Addr().Type().Implements(textUnmarshalerType) {
		return
	}
	for _, f := range structFields(v.Type()).list {
		fv := v.Field(f.index)
		if f.hasDef {
			if err := setDefault(fv, f.def); err != nil {
				panic(fmt.Sprintf("config: bad default %q for %s.%s: %v", f.def, v.Type(), f.key, err))
			}
			continue
		}
		applyDefaults(fv)
	}
}

func setDefault(v reflect.Value, s string) error {
	if v.Kind() == reflect.Slice && !v.Addr().Type().Implements(textUnmarshalerType) {
		parts := strings.Split(s, ",")
		out := reflect.MakeSlice(v.Type(), len(parts), len(parts))
		for i, p := range parts {
			if err := setDefault(out.Index(i), strings.TrimSpace(p)); err != nil {
				return err
			}
		}
		v.Set(out)
		return nil
	}
	if v.Addr().Type().Implements(textUnmarshalerType) {
		return setText(v, s)
	}
	switch v.Kind() {
	case reflect.String:
		v.SetString(s)
	case reflect.Int:
		i, err := strconv.Atoi(s)
		if err != nil {
			return err
		}
		v.SetInt(int64(i))
	case reflect.Bool:
		b, err := strconv.ParseBool(s)
		if err != nil {
			return err
		}
		v.SetBool(b)
	default:
		return fmt.Errorf("no default for kind %s", v.Kind())
	}
	return nil
}
