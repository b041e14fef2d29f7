// Command geninventory writes a synthetic NOC inventory of N collèges to
// stdout, for tools/bench/render/run.sh. The schools are deterministic and
// valid for configs/noc/college.yaml.tmpl (see pkg/inventory/inventorytest).
package main

import (
	"bufio"
	"flag"
	"fmt"
	"os"

	"passerelle/pkg/inventory/inventorytest"
)

func main() {
	n := flag.Int("n", 500, "number of schools")
	flag.Parse()
	w := bufio.NewWriter(os.Stdout)
	if err := inventorytest.Generate(w, *n); err != nil {
		fmt.Fprintln(os.Stderr, "geninventory:", err)
		os.Exit(1)
	}
	if err := w.Flush(); err != nil {
		fmt.Fprintln(os.Stderr, "geninventory:", err)
		os.Exit(1)
	}
}
