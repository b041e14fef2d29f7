package main

import (
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"

	"passerelle/pkg/inventory"
)

const renderUsage = `usage: passerellectl render [--prune] [--json] --template T --inventory CSV --out DIR

Renders one configuration per school of a NOC inventory (CSV with a header
row; each column is a template variable, and a uai column is required) into
DIR/<uai>.yaml. Every configuration is validated before it is written; a
bad row is reported with its line number and the other schools are still
written. Configurations in DIR of schools no longer in the inventory are
reported as stale, and removed with --prune. --json prints the outcome as
one JSON document on stdout instead of text on stderr. Exit status: 0 if
every school rendered, 1 if any failed, 2 on usage errors.

Template helpers: host SUBNET N (Nth host, -1 the last), quote, lower, upper.
`

// renderReport is the outcome of a render, as --json prints it.
type renderReport struct {
	Template  string         `json:"template"`
	Inventory string         `json:"inventory"`
	Out       string         `json:"out"`
	Schools   []renderSchool `json:"schools"`
	Written   int            `json:"written"`
	Failed    int            `json:"failed"`
	Stale     []string       `json:"stale"`  // files of schools not in the inventory, kept
	Pruned    []string       `json:"pruned"` // the same, removed by --prune
	Error     string         `json:"error,omitempty"`
}

type renderSchool struct {
	Line     int             `json:"line"`
	UAI      string          `json:"uai"`
	OK       bool            `json:"ok"`
	File     string          `json:"file,omitempty"`
	Problems []renderProblem `json:"problems"`
}

type renderProblem struct {
	Path    string `json:"path,omitempty"`
	Message string `json:"message"`
	Text    string `json:"text"` // the line the text output prints
}

func cmdRender(args []string, stdout, stderr io.Writer) int {
	fs := newFlagSet("render", renderUsage, stderr)
	tmplPath := fs.String("template", "", "configuration `template` (Go text/template producing YAML)")
	invPath := fs.String("inventory", "", "NOC inventory `CSV`, one row per school")
	outDir := fs.String("out", "", "output `directory`, created if missing")
	prune := fs.Bool("prune", false, "remove the configurations of schools no longer in the inventory")
	asJSON := fs.Bool("json", false, "print the outcome as JSON on stdout")
	if err := fs.Parse(args); err != nil {
		if err == flag.ErrHelp {
			return 0
		}
		return 2
	}
	if *tmplPath == "" || *invPath == "" || *outDir == "" || fs.NArg() != 0 {
		fs.Usage()
		return 2
	}
	rep := &renderReport{Template: *tmplPath, Inventory: *invPath, Out: *outDir, Schools: []renderSchool{}, Stale: []string{}, Pruned: []string{}}
	code := render(rep, *prune, stderr, *asJSON)
	if *asJSON {
		enc := json.NewEncoder(stdout)
		enc.SetIndent("", "  ")
		enc.SetEscapeHTML(false)
		if err := enc.Encode(rep); err != nil {
			fmt.Fprintf(stderr, "passerellectl render: %v\n", err)
			return 1
		}
	}
	return code
}

// render does the work of cmdRender, filling rep; it prints text to
// stderr unless quiet (--json).
func render(rep *renderReport, prune bool, stderr io.Writer, quiet bool) int {
	fail := func(format string, args ...any) int {
		rep.Error = fmt.Sprintf(format, args...)
		if !quiet {
			fmt.Fprintf(stderr, "passerellectl render: %s\n", rep.Error)
		}
		return 1
	}
	say := func(format string, args ...any) {
		if !quiet {
			fmt.Fprintf(stderr, format, args...)
		}
	}
	text, err := os.ReadFile(rep.Template)
	if err != nil {
		return fail("template: %v", err)
	}
	tmpl, err := inventory.ParseTemplate(rep.Template, string(text))
	if err != nil {
		return fail("%v", err)
	}
	data, err := os.ReadFile(rep.Inventory)
	if err != nil {
		return fail("inventory: %v", err)
	}
	inv, err := inventory.ParseInventory(rep.Inventory, data)
	if err != nil {
		return fail("%v", err)
	}
	if len(inv.Rows) == 0 {
		// Most likely a truncated export: say so rather than succeed.
		return fail("%s has a header but no school", rep.Inventory)
	}
	results, err := inventory.Render(tmpl, inv)
	if err != nil {
		return fail("%v", err)
	}
	for i := range results {
		r := &results[i]
		s := renderSchool{Line: r.Line, UAI: r.UAI, OK: r.OK(), Problems: []renderProblem{}}
		if r.OK() {
			s.File = filepath.Join(rep.Out, r.UAI+".yaml")
		} else {
			rep.Failed++
		}
		for _, e := range r.Errs {
			say("%s\n", e)
			s.Problems = append(s.Problems, renderProblem{Path: e.Path, Message: e.Msg, Text: e.Error()})
		}
		rep.Schools = append(rep.Schools, s)
	}
	rep.Written, err = inventory.WriteResults(rep.Out, results)
	if err != nil {
		fail("%v", err)
		say("%d school(s) in %s: %d written to %s before the error\n", len(results), rep.Inventory, rep.Written, rep.Out)
		return 1
	}
	stale, err := inventory.StaleFiles(rep.Out, results)
	if err != nil {
		return fail("%v", err)
	}
	if prune {
		if err := inventory.Prune(rep.Out, stale); err != nil {
			return fail("%v", err)
		}
		rep.Pruned = append(rep.Pruned, stale...)
		for _, f := range stale {
			say("removed %s: no school of %s has this uai\n", filepath.Join(rep.Out, f), rep.Inventory)
		}
	} else {
		rep.Stale = append(rep.Stale, stale...)
		for _, f := range stale {
			say("stale: %s: no school of %s has this uai (remove it with --prune)\n", filepath.Join(rep.Out, f), rep.Inventory)
		}
	}
	summary := fmt.Sprintf("%d school(s) in %s: %d written to %s, %d failed", len(results), rep.Inventory, rep.Written, rep.Out, rep.Failed)
	switch {
	case len(rep.Stale) > 0:
		summary += fmt.Sprintf(", %d stale file(s) kept", len(rep.Stale))
	case len(rep.Pruned) > 0:
		summary += fmt.Sprintf(", %d stale file(s) removed", len(rep.Pruned))
	}
	say("%s\n", summary)
	if rep.Failed > 0 {
		return 1
	}
	return 0
}
