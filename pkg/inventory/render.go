package inventory

import (
	"bytes"
	"errors"
	"fmt"
	"net/netip"
	"slices"
	"strings"

	"passerelle/pkg/config"
)

// Result is the outcome for one inventory row.
type Result struct {
	Line   int            // line of the row in the inventory
	UAI    string         // the row's uai column; names the output file
	Output []byte         // the validated document, with its provenance comment; nil on failure
	Config *config.Config // Output as parsed; nil on failure
	Errs   []*RowError    // every problem of the row, so one round of fixes is enough
}

// OK reports whether the row rendered into a valid configuration.
func (r *Result) OK() bool { return len(r.Errs) == 0 }

// RowError is one problem of one inventory row. Problems in the rendered
// configuration carry the config field path: the rendered document is not
// written, so its line numbers would point nowhere.
type RowError struct {
	File string // inventory name
	Line int
	UAI  string // empty when the row has none
	Path string // config field path, e.g. zones[0].subnet; empty otherwise
	Msg  string
}

// Error prints FILE:LINE: uai UAI: path: message.
func (e *RowError) Error() string {
	var b strings.Builder
	fmt.Fprintf(&b, "%s:%d: ", e.File, e.Line)
	if e.UAI != "" {
		fmt.Fprintf(&b, "uai %s: ", e.UAI)
	}
	if e.Path != "" {
		b.WriteString(e.Path)
		b.WriteString(": ")
	}
	b.WriteString(e.Msg)
	return b.String()
}

// Render executes the template for every row and validates each document
// with config.Parse. The error is for problems that concern every row (the
// template uses a column the inventory lacks); a problem with one row is in
// that row's Result, and the other rows are rendered all the same. Results
// are in inventory order.
func Render(t *Template, inv *Inventory) ([]Result, error) {
	if err := t.checkColumns(inv); err != nil {
		return nil, err
	}
	results := make([]Result, len(inv.Rows))
	var buf bytes.Buffer
	for i := range inv.Rows {
		row := &inv.Rows[i]
		res := &results[i]
		res.Line, res.UAI = row.Line, row.UAI
		for _, err := range row.Errs {
			res.fail(inv.Name, "", err.Error())
		}
		if row.Values == nil {
			continue
		}
		buf.Reset()
		fmt.Fprintf(&buf, "# Rendered from template %s and inventory %s line %d (uai %s).\n", t.name, inv.Name, row.Line, row.UAI)
		buf.WriteString("# Change those and render again: edits made here are lost at the next render.\n")
		if err := t.tmpl.Execute(&buf, row.Values); err != nil {
			res.fail(inv.Name, "", t.execMessage(err))
			continue
		}
		doc := bytes.Clone(buf.Bytes())
		cfg, err := config.Parse(inv.Name, doc)
		if err != nil {
			res.configErrors(inv.Name, doc, err)
			continue
		}
		if cfg.Identity.UAI != row.UAI {
			// The file is named after the row's UAI: a template that writes
			// another one would give a school some other school's box.
			res.fail(inv.Name, "identity.uai", fmt.Sprintf("the template wrote %q, but the row's uai is %q", cfg.Identity.UAI, row.UAI))
			continue
		}
		res.Output, res.Config = doc, cfg
	}
	duplicateUAIs(inv.Name, results)
	overlappingRoutes(inv.Name, results)
	sharedUplinkAddresses(inv.Name, results)
	for i := range results {
		if !results[i].OK() {
			results[i].Output, results[i].Config = nil, nil
		}
	}
	return results, nil
}

// execMessage shortens text/template's execution error, which names the
// template twice: "template: T:38:15: executing "T" at <host .x 1>: ...".
func (t *Template) execMessage(err error) string {
	msg := strings.TrimPrefix(err.Error(), "template: ")
	return strings.Replace(msg, fmt.Sprintf("executing %q at ", t.name), "", 1)
}

func (r *Result) fail(file, path, msg string) {
	r.Errs = append(r.Errs, &RowError{File: file, Line: r.Line, UAI: r.UAI, Path: path, Msg: msg})
}

// configErrors records what config.Parse found in a rendered document.
func (r *Result) configErrors(file string, doc []byte, err error) {
	var list config.ErrorList
	if !errors.As(err, &list) {
		r.fail(file, "", err.Error())
		return
	}
	for _, e := range list {
		msg := e.Msg
		if e.Path == "" {
			// A YAML syntax error has no field path; the rendered line
			// shows which value broke the document (often a name that
			// needed quote).
			if l := lineOf(doc, e.Pos.Line); l != "" {
				msg += fmt.Sprintf(" (rendered line %d: %s)", e.Pos.Line, l)
			}
		}
		r.fail(file, e.Path, msg)
	}
}

func lineOf(doc []byte, n int) string {
	for i, l := range bytes.Split(doc, []byte("\n")) {
		if i+1 == n {
			return strings.TrimSpace(string(l))
		}
	}
	return ""
}

// duplicateUAIs fails every row of a UAI given more than once: which row is
// right is for the NOC to decide, and writing either could push one school's
// configuration to another school's box.
func duplicateUAIs(file string, results []Result) {
	lines := map[string][]int{}
	for _, r := range results {
		if r.UAI != "" {
			lines[r.UAI] = append(lines[r.UAI], r.Line)
		}
	}
	for i := range results {
		r := &results[i]
		all := lines[r.UAI]
		if len(all) < 2 {
			continue
		}
		var others []string
		for _, l := range all {
			if l != r.Line {
				others = append(others, fmt.Sprint(l))
			}
		}
		r.fail(file, "", fmt.Sprintf("the same uai is on %s %s: a school has one row", plural(len(others), "line", "lines"), strings.Join(others, ", ")))
	}
}

// overlappingRoutes fails rows whose tunnel offers the academy a subnet that
// another school offers too: the academy would route both schools' traffic
// to one of them.
func overlappingRoutes(file string, results []Result) {
	type route struct {
		p          netip.Prefix
		last       netip.Addr
		res, index int
	}
	var routes []route
	for i, r := range results {
		if r.Config == nil || !r.Config.Tunnel.Enabled {
			continue
		}
		for j, p := range r.Config.Tunnel.AdvertiseRoutes {
			p = p.Masked()
			routes = append(routes, route{p, lastAddr(p), i, j})
		}
	}
	slices.SortFunc(routes, func(a, b route) int { return a.p.Addr().Compare(b.p.Addr()) })
	for i, a := range routes {
		// Sorted by first address: the routes overlapping a start within it.
		for _, b := range routes[i+1:] {
			if a.last.Less(b.p.Addr()) {
				break
			}
			if a.res == b.res {
				continue
			}
			ra, rb := &results[a.res], &results[b.res]
			ra.fail(file, fmt.Sprintf("tunnel.advertise_routes[%d]", a.index), fmt.Sprintf("%s overlaps %s, advertised by line %d (uai %s)", a.p, b.p, rb.Line, rb.UAI))
			rb.fail(file, fmt.Sprintf("tunnel.advertise_routes[%d]", b.index), fmt.Sprintf("%s overlaps %s, advertised by line %d (uai %s)", b.p, a.p, ra.Line, ra.UAI))
		}
	}
}

// sharedUplinkAddresses fails rows whose uplink has the address another
// school's uplink has: one of the two rows is wrong, and both boxes would
// fight over the address (Renater gives each school its own link).
func sharedUplinkAddresses(file string, results []Result) {
	type use struct{ res, index int }
	users := map[netip.Addr][]use{}
	for i, r := range results {
		if r.Config == nil {
			continue
		}
		for j, u := range r.Config.Uplinks {
			if u.Address.IsValid() {
				a := u.Address.Addr()
				users[a] = append(users[a], use{i, j})
			}
		}
	}
	for i := range results {
		r := &results[i]
		if r.Config == nil {
			continue
		}
		for j, u := range r.Config.Uplinks {
			if !u.Address.IsValid() {
				continue
			}
			var others []string
			for _, o := range users[u.Address.Addr()] {
				if o.res != i {
					others = append(others, fmt.Sprintf("line %d (uai %s)", results[o.res].Line, results[o.res].UAI))
				}
			}
			if len(others) > 0 {
				r.fail(file, fmt.Sprintf("uplinks[%d].address", j), fmt.Sprintf("%s is also the uplink address of %s: each school has its own", u.Address.Addr(), strings.Join(others, ", ")))
			}
		}
	}
}

// lastAddr is the last address of a masked IPv4 or IPv6 prefix.
func lastAddr(p netip.Prefix) netip.Addr {
	b := p.Addr().AsSlice()
	for i := p.Bits(); i < len(b)*8; i++ {
		b[i/8] |= 0x80 >> (i % 8)
	}
	a, _ := netip.AddrFromSlice(b)
	return a
}
