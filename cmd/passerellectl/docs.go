package main

import (
	"fmt"
	"io"

	"passerelle/pkg/config"
)

// cmdDocs prints the configuration reference; `make docs` stores it as
// docs/configuration.md.
func cmdDocs(args []string, stdout, stderr io.Writer) int {
	if len(args) != 0 {
		fmt.Fprint(stderr, "usage: passerellectl docs\n")
		return 2
	}
	if _, err := stdout.Write(config.Reference()); err != nil {
		fmt.Fprintf(stderr, "passerellectl docs: %v\n", err)
		return 1
	}
	return 0
}
