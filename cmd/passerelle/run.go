package main

import (
	"fmt"
	"io"
)

func cmdRun(args []string, stderr io.Writer) int {
	fmt.Fprintln(stderr, "not yet")
	return 1
}
