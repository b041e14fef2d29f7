package main

import (
	"fmt"
	"io"

	"passerelle/pkg/config"
)

// cmdSchema prints the configuration's JSON Schema; `make schema` stores it
// as configs/schema/config.schema.json for editors.
func cmdSchema(args []string, stdout, stderr io.Writer) int {
	if len(args) != 0 {
		fmt.Fprint(stderr, "usage: passerellectl schema\n")
		return 2
	}
	s, err := config.Schema()
	if err != nil {
		fmt.Fprintf(stderr, "passerellectl schema: %v\n", err)
		return 1
	}
	if _, err := stdout.Write(s); err != nil {
		fmt.Fprintf(stderr, "passerellectl schema: %v\n", err)
		return 1
	}
	return 0
}
