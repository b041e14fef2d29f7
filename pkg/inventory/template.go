package inventory

import (
	"fmt"
	"net/netip"
	"sort"
	"strings"
	"text/template"
	"text/template/parse"

	"passerelle/pkg/config"
)

// Template is a parsed configuration template: Go text/template producing
// one YAML document per school, where {{.column}} is the row's value.
type Template struct {
	name string
	tmpl *template.Template
}

// ParseTemplate parses a template once, to be executed for every row. A
// reference to a column the inventory lacks is an error (missingkey=error)
// rather than an empty value quietly written into 500 configs.
func ParseTemplate(name, text string) (*Template, error) {
	t, err := template.New(name).Option("missingkey=error").Funcs(funcs()).Parse(text)
	if err != nil {
		return nil, err // text/template's message already names the file and line
	}
	return &Template{name: name, tmpl: t}, nil
}

// Name is the name the template was parsed with.
func (t *Template) Name() string { return t.name }

// funcs are the helpers a NOC template needs. The map is built per template
// so no package state is shared.
func funcs() template.FuncMap {
	return template.FuncMap{
		"host":  host,
		"quote": quote,
		"lower": strings.ToLower,
		"upper": strings.ToUpper,
	}
}

// host returns the nth host address of an IPv4 subnet: 1 is the first host
// (usually the box), -1 the last one. Host bits in prefix are ignored, so
// an uplink address such as 193.54.60.2/29 works as well as its subnet.
func host(prefix string, n int) (string, error) {
	p, err := netip.ParsePrefix(prefix)
	if err != nil || !p.Addr().Is4() {
		return "", fmt.Errorf("%q is not an IPv4 subnet such as 10.33.0.0/22", prefix)
	}
	if p.Bits() > 30 {
		return "", fmt.Errorf("%s has no host addresses besides network and broadcast", p)
	}
	hosts := int64(1)<<(32-p.Bits()) - 2
	i := int64(n)
	if i < 0 {
		i += hosts + 1 // -1 is the last host
	}
	if n == 0 || i < 1 || i > hosts {
		return "", fmt.Errorf("%s has no host %d: hosts are 1 to %d, or -1 to -%d from the end", p.Masked(), n, hosts, hosts)
	}
	a := p.Masked().Addr().As4()
	v := uint32(a[0])<<24 | uint32(a[1])<<16 | uint32(a[2])<<8 | uint32(a[3])
	v += uint32(i)
	return netip.AddrFrom4([4]byte{byte(v >> 24), byte(v >> 16), byte(v >> 8), byte(v)}).String(), nil
}

// quote returns s as a YAML double-quoted scalar, so that school names with
// colons, quotes, a leading # or accents stay one string value.
func quote(s string) string {
	var b strings.Builder
	b.Grow(len(s) + 2)
	b.WriteByte('"')
	for _, r := range s {
		switch {
		case r == '"':
			b.WriteString(`\"`)
		case r == '\\':
			b.WriteString(`\\`)
		case r == '\n':
			b.WriteString(`\n`)
		case r == '\t':
			b.WriteString(`\t`)
		case r < 0x20, r >= 0x7f && r <= 0x9f, r == 0x2028, r == 0x2029, r == 0xfeff, r == 0xfffe, r == 0xffff:
			// Not printable in YAML, or read as a line break by YAML 1.1 parsers.
			fmt.Fprintf(&b, `\u%04X`, r)
		default:
			b.WriteRune(r)
		}
	}
	b.WriteByte('"')
	return b.String()
}

// checkColumns reports, once, every column the template uses that the
// inventory lacks. Without it the same missing-key error would be printed
// for each of the 500 rows.
func (t *Template) checkColumns(inv *Inventory) error {
	have := map[string]bool{}
	for _, c := range inv.Columns {
		have[c] = true
	}
	missing := map[string]bool{}
	for _, tt := range t.tmpl.Templates() {
		if tt.Tree == nil {
			continue
		}
		walkFields(tt.Tree.Root, func(name string) {
			if !have[name] {
				missing[name] = true
			}
		})
	}
	if len(missing) == 0 {
		return nil
	}
	var lines []string
	for name := range missing {
		l := fmt.Sprintf("%q", name)
		if near := config.Closest(name, inv.Columns); near != "" {
			l += fmt.Sprintf(" (did you mean %q?)", near)
		}
		lines = append(lines, l)
	}
	sort.Strings(lines)
	return fmt.Errorf("template %s uses %s, not in the header of %s (columns: %s)",
		t.name, plural(len(lines), "column", "columns")+" "+strings.Join(lines, ", "), inv.Name, strings.Join(inv.Columns, ", "))
}

func plural(n int, one, many string) string {
	if n == 1 {
		return one
	}
	return many
}

// walkFields calls use with the first name of every field reference ({{.x}},
// {{$.x}}) in a template tree. Inside range and with, dot is no longer the
// row, but the only data is the row's strings, so a field there is a
// mistake the check may as well report.
func walkFields(n parse.Node, use func(string)) {
	switch n := n.(type) {
	case *parse.ListNode:
		if n == nil {
			return
		}
		for _, c := range n.Nodes {
			walkFields(c, use)
		}
	case *parse.ActionNode:
		walkFields(n.Pipe, use)
	case *parse.PipeNode:
		if n == nil {
			return
		}
		for _, c := range n.Cmds {
			walkFields(c, use)
		}
	case *parse.CommandNode:
		for _, a := range n.Args {
			walkFields(a, use)
		}
	case *parse.FieldNode:
		use(n.Ident[0])
	case *parse.VariableNode:
		if n.Ident[0] == "$" && len(n.Ident) > 1 {
			use(n.Ident[1])
		}
	case *parse.ChainNode:
		walkFields(n.Node, use)
	case *parse.IfNode:
		walkBranch(&n.BranchNode, use)
	case *parse.RangeNode:
		walkBranch(&n.BranchNode, use)
	case *parse.WithNode:
		walkBranch(&n.BranchNode, use)
	case *parse.TemplateNode:
		walkFields(n.Pipe, use)
	}
}

func walkBranch(b *parse.BranchNode, use func(string)) {
	walkFields(b.Pipe, use)
	walkFields(b.List, use)
	walkFields(b.ElseList, use)
}
