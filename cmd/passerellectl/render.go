package main

import (
	"flag"
	"fmt"
	"io"
	"os"

	"passerelle/pkg/inventory"
)

const renderUsage = `usage: passerellectl render --template T --inventory CSV --out DIR

Renders one configuration per school of a NOC inventory (CSV with a header
row; each column is a template variable, and a uai column is required) into
DIR/<uai>.yaml. Every configuration is validated before it is written; a
bad row is reported with its line number and the other schools are still
written. Exit status: 0 if every school rendered, 1 if any failed, 2 on
usage errors.

Template helpers: host SUBNET N (Nth host, -1 the last), quote, lower, upper.
`

func cmdRender(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("render", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() { fmt.Fprint(stderr, renderUsage) }
	tmplPath := fs.String("template", "", "configuration `template` (Go text/template producing YAML)")
	invPath := fs.String("inventory", "", "NOC inventory `CSV`, one row per school")
	outDir := fs.String("out", "", "output `directory`, created if missing")
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

	text, err := os.ReadFile(*tmplPath)
	if err != nil {
		fmt.Fprintf(stderr, "passerellectl render: template: %v\n", err)
		return 1
	}
	tmpl, err := inventory.ParseTemplate(*tmplPath, string(text))
	if err != nil {
		fmt.Fprintf(stderr, "passerellectl render: %v\n", err)
		return 1
	}
	data, err := os.ReadFile(*invPath)
	if err != nil {
		fmt.Fprintf(stderr, "passerellectl render: inventory: %v\n", err)
		return 1
	}
	inv, err := inventory.ParseInventory(*invPath, data)
	if err != nil {
		fmt.Fprintf(stderr, "passerellectl render: %v\n", err)
		return 1
	}
	if len(inv.Rows) == 0 {
		// Most likely a truncated export: say so rather than succeed.
		fmt.Fprintf(stderr, "passerellectl render: %s has a header but no school\n", *invPath)
		return 1
	}
	results, err := inventory.Render(tmpl, inv)
	if err != nil {
		fmt.Fprintf(stderr, "passerellectl render: %v\n", err)
		return 1
	}
	failed := 0
	for i := range results {
		if results[i].OK() {
			continue
		}
		failed++
		for _, e := range results[i].Errs {
			fmt.Fprintln(stderr, e)
		}
	}
	written, err := inventory.WriteResults(*outDir, results)
	if err != nil {
		fmt.Fprintf(stderr, "passerellectl render: %v\n", err)
		fmt.Fprintf(stderr, "%d school(s) in %s: %d written to %s before the error\n", len(results), *invPath, written, *outDir)
		return 1
	}
	fmt.Fprintf(stderr, "%d school(s) in %s: %d written to %s, %d failed\n", len(results), *invPath, written, *outDir, failed)
	if failed > 0 {
		return 1
	}
	return 0
}
