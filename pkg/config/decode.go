package config

import (
	"bytes"
	"encoding"
	"fmt"
	"io"
	"net/netip"
	"reflect"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"unicode/utf8"

	"gopkg.in/yaml.v3"
)

// decoder turns a YAML node tree into Go values, strictly: every key must
// be known, every scalar of the right type, and every problem is recorded
// with its position instead of stopping at the first.
type decoder struct {
	errs
	pos map[string]Pos // field path -> position of its value, for validation errors

	// Aliases can make a small document expand without bound (or into
	// itself): count decoded values and track the aliases being expanded.
	budget    int
	expanding map[*yaml.Node]bool

	// readable is set once the document parsed as YAML: its values can
	// then be validated, even if some of them could not be decoded.
	readable bool
	// meant are the paths of keys suggested for unknown ones.
	meant []string
}

// maxValues bounds how many values one document may expand to; real
// configs have a few thousand.
const maxValues = 200_000

var (
	textUnmarshalerType = reflect.TypeFor[encoding.TextUnmarshaler]()
	addrType            = reflect.TypeFor[netip.Addr]()
	prefixType          = reflect.TypeFor[netip.Prefix]()
	addrPortType        = reflect.TypeFor[netip.AddrPort]()
)

// decodeDocument parses data and decodes it into cfg (which already holds
// the static defaults).
func (d *decoder) decodeDocument(data []byte, cfg *Config) {
	dec := yaml.NewDecoder(bytes.NewReader(data))
	var doc yaml.Node
	if err := dec.Decode(&doc); err != nil && err != io.EOF {
		d.yamlError(data, err)
		return
	}
	if len(doc.Content) == 0 || isNull(doc.Content[0]) {
		d.add(Pos{Line: 1, Col: 1}, "", "empty document: expected a mapping starting with version: %d", CurrentVersion)
		return
	}
	// yaml.Unmarshal would silently drop whatever follows a stray ---.
	var extra yaml.Node
	switch err := dec.Decode(&extra); {
	case err == io.EOF:
	case err != nil:
		d.yamlError(data, err)
		return
	case len(extra.Content) > 0 && !isNull(extra.Content[0]):
		d.add(Pos{Line: extra.Line, Col: extra.Column}, "", "a second YAML document starts here: a configuration is one document, remove this ---")
	}
	// A document that is not a mapping has nothing to validate.
	d.readable = doc.Content[0].Kind == yaml.MappingNode
	d.decode(doc.Content[0], reflect.ValueOf(cfg).Elem(), "")
}

// listDedent finds, in the block list starting at line (1-based), the
// first line indented less than the item it follows but not starting a new
// item: what makes yaml.v3 complain that it "did not find expected '-'
// indicator". It returns line and column 0 when no such line is found.
func listDedent(lines []string, line int) (int, int) {
	indent := func(s string) int { return len(s) - len(strings.TrimLeft(s, " ")) }
	// item returns the indentation of an item's content ("- name:" -> 2 more).
	item := func(s string) int {
		rest := strings.TrimLeft(s, " ")[1:]
		return indent(s) + 1 + indent(rest)
	}
	first := lines[line-1]
	dash := indent(first)
	if !strings.HasPrefix(first[dash:], "-") {
		return line, 0
	}
	content := item(first)
	for i := line; i < len(lines); i++ {
		t := strings.TrimSpace(lines[i])
		n := indent(lines[i])
		switch {
		case t == "" || t[0] == '#':
		case n < dash:
			return line, 0
		case n == dash && t[0] == '-':
			content = item(lines[i])
		case n < content:
			return i + 1, n + 1
		}
	}
	return line, 0
}

func isNull(n *yaml.Node) bool {
	return n.Kind == yaml.ScalarNode && n.Tag == "!!null"
}

var (
	yamlLineRE   = regexp.MustCompile(`^line (\d+): `)
	yamlAnchorRE = regexp.MustCompile(`^unknown anchor '(.*)' referenced$`)
)

// yamlParserProblems are the errors of yaml.v3's parser (as opposed to its
// scanner): it prints their line 0-based, one before the line at fault.
var yamlParserProblems = map[string]bool{
	"did not find expected ',' or ']'":       true,
	"did not find expected ',' or '}'":       true,
	"did not find expected '-' indicator":    true,
	"did not find expected <document start>": true,
	"did not find expected key":              true,
	"did not find expected node content":     true,
	"found duplicate %TAG directive":         true,
	"found duplicate %YAML directive":        true,
	"found incompatible YAML document":       true,
	"found undefined tag handle":             true,
}

// tabMessage replaces yaml.v3's two ways of saying it met a tab in the
// indentation.
const tabMessage = "tabs cannot indent YAML"

// yamlHints says in the operator's terms what usually causes a YAML error.
var yamlHints = map[string]string{
	"mapping values are not allowed in this context": "is this line indented deeper than the one above, or does a value hold an unquoted \": \"?",
	tabMessage:                                    "indent this line with spaces",
	"did not find expected key":                   "check the indentation of this line against the keys above it",
	"did not find expected ',' or ']'":            "the [ list starting on this line is not closed with ]",
	"did not find expected ',' or '}'":            "the { mapping starting on this line is not closed with }",
	"found character that cannot start any token": "quote a value that starts with @, ` or %",
	"found unexpected end of stream":              "is a closing quote missing?",
	"did not find expected '-' indicator":         "this line is indented less than the list item it belongs to",
	"could not find expected ':'":                 "a key must be followed by a colon",
}

// yamlError reports a YAML syntax error where it is. yaml.v3 gives a line
// only, sometimes the one before the fault, sometimes none; this corrects
// the line and points at its first character (at the tab, for a tab).
func (d *decoder) yamlError(data []byte, err error) {
	msg := strings.TrimPrefix(err.Error(), "yaml: ")
	line := 0
	if m := yamlLineRE.FindStringSubmatch(msg); m != nil {
		line, _ = strconv.Atoi(m[1])
		msg = msg[len(m[0]):]
	}
	if yamlParserProblems[msg] {
		line++
	}
	lines := strings.Split(string(data), "\n")
	line = max(1, min(line, len(lines)))
	col := 0
	// tabAt is the column of a tab in the indentation of line i (0-based),
	// or 0.
	tabAt := func(i int) int {
		indent := lines[i][:len(lines[i])-len(strings.TrimLeft(lines[i], " \t"))]
		return strings.IndexByte(indent, '\t') + 1
	}
	switch {
	case strings.Contains(msg, "tab character") || msg == "found character that cannot start any token" && tabAt(line-1) > 0:
		// A tab at the start of a line reads as a token yaml.v3 cannot
		// start; either way, the tab is the problem.
		for i := line - 1; i < len(lines) && col == 0; i++ {
			if t := tabAt(i); t > 0 {
				line, col = i+1, t
			}
		}
		msg = tabMessage
	case yamlAnchorRE.MatchString(msg):
		name := yamlAnchorRE.FindStringSubmatch(msg)[1]
		for i := range lines {
			if c := strings.Index(lines[i], "*"+name); c >= 0 {
				line, col = i+1, utf8.RuneCountInString(lines[i][:c])+1
				break
			}
		}
		msg += fmt.Sprintf(" (*%s needs an anchor &%s defined above it)", name, name)
	case msg == "did not find expected '-' indicator":
		// yaml.v3 names the start of the list; find the line at fault.
		line, col = listDedent(lines, line)
	}
	if col == 0 {
		l := lines[line-1]
		col = len(l) - len(strings.TrimLeft(l, " \t")) + 1
	}
	if hint, ok := yamlHints[msg]; ok {
		msg += " (" + hint + ")"
	}
	d.add(Pos{Line: line, Col: col}, "", "invalid YAML: %s", msg)
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

// unquoteHint explains a quoted scalar that would have the expected type
// without its quotes ("1" is a string, 1 an integer).
func unquoteHint(n *yaml.Node, tag string) string {
	if n.Kind != yaml.ScalarNode || n.Style&(yaml.DoubleQuotedStyle|yaml.SingleQuotedStyle) == 0 {
		return ""
	}
	var plain yaml.Node
	if err := yaml.Unmarshal([]byte(n.Value), &plain); err != nil || len(plain.Content) == 0 || plain.Content[0].Tag != tag {
		return ""
	}
	return " in quotes (a string): remove the quotes"
}

func join(path, key string) string {
	if path == "" {
		return key
	}
	return path + "." + key
}

func (d *decoder) decode(n *yaml.Node, v reflect.Value, path string) {
	pos := Pos{Line: n.Line, Col: n.Column}
	if d.budget++; d.budget > maxValues {
		if d.budget == maxValues+1 {
			d.add(pos, path, "the document expands to more than %d values (aliases?)", maxValues)
		}
		return
	}
	if n.Kind == yaml.AliasNode {
		if d.expanding == nil {
			d.expanding = map[*yaml.Node]bool{}
		}
		if d.expanding[n.Alias] {
			d.add(pos, path, "alias *%s refers to itself", n.Value)
			return
		}
		d.expanding[n.Alias] = true
		defer delete(d.expanding, n.Alias)
		d.decode(n.Alias, v, path)
		return
	}
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
			d.add(pos, path, "expected an integer, got %s%s", describe(n), unquoteHint(n, "!!int"))
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
			d.add(pos, path, "expected true or false, got %s%s", describe(n), unquoteHint(n, "!!bool"))
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
	seen := map[string]int{}   // key -> line where first seen
	meant := map[string]bool{} // keys suggested for unknown ones
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
			best := Closest(k.Value, fields.keys)
			meant[best] = true
			if best != "" {
				d.meant = append(d.meant, join(path, best))
			}
			d.add(kpos, join(path, k.Value), "unknown key %s", suggest(k.Value, best, fields.keys))
			continue
		}
		if f.required && val.Kind == yaml.ScalarNode && val.Tag == "!!null" {
			d.add(Pos{Line: val.Line, Col: val.Column}, join(path, k.Value), "empty, but required: %s", f.doc)
			continue
		}
		d.decode(val, v.Field(f.index), join(path, k.Value))
	}
	for _, f := range fields.list {
		// A required key written with a typo is reported once, as the
		// unknown key whose suggestion names it.
		if f.required && !meant[f.key] {
			if _, ok := seen[f.key]; !ok {
				d.add(pos, join(path, f.key), "missing (required): %s", f.doc)
			}
		}
	}
}

// Closest returns the candidate nearest to name (at most two edits away),
// or "": the "did you mean" of config keys, and of the NOC's inventory
// columns.
func Closest(key string, keys []string) string {
	best, bestDist := "", 3
	for _, k := range keys {
		if dist := editDistance(key, k); dist < bestDist {
			best, bestDist = k, dist
		}
	}
	return best
}

// suggest names the closest known key, or lists them all.
func suggest(key, best string, keys []string) string {
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
			addr, bits, slash := strings.Cut(s, "/")
			a, aerr := netip.ParseAddr(addr)
			switch {
			case aerr == nil && !slash:
				return fmt.Errorf("%q has no prefix length: add it in CIDR form, e.g. /24 for netmask 255.255.255.0", s)
			case aerr == nil && a.Is4():
				return fmt.Errorf("%q: the prefix length /%s is not a number from 0 to 32", s, bits)
			}
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
	max      int // max tag: most items a list may hold (0: none)
}

type fieldSet struct {
	list  []field
	byKey map[string]field
	keys  []string
}

// fieldCache holds the decoded tags of each struct type, like
// encoding/json's: the types are fixed at compile time, so this is a
// memo, not state. The NOC renders thousands of configs in one run.
var fieldCache sync.Map // reflect.Type -> fieldSet

func structFields(t reflect.Type) fieldSet {
	if fs, ok := fieldCache.Load(t); ok {
		return fs.(fieldSet)
	}
	fs := parseFields(t)
	fieldCache.Store(t, fs)
	return fs
}

func parseFields(t reflect.Type) fieldSet {
	fs := fieldSet{byKey: map[string]field{}}
	for i := 0; i < t.NumField(); i++ {
		sf := t.Field(i)
		key := sf.Tag.Get("yaml")
		if key == "" || !sf.IsExported() {
			continue
		}
		def, hasDef := sf.Tag.Lookup("default")
		f := field{index: i, key: key, def: def, hasDef: hasDef, required: sf.Tag.Get("required") == "true", doc: sf.Tag.Get("doc")}
		if m, ok := sf.Tag.Lookup("max"); ok {
			n, err := strconv.Atoi(m)
			if err != nil || n < 1 {
				panic(fmt.Sprintf("config: bad max tag %q on %s.%s", m, t, key))
			}
			f.max = n
		}
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
