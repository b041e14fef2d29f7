package main

import (
	"fmt"
	"io"
)

func cmdLab(args []string, stdout, stderr io.Writer) int {
	fmt.Fprintln(stderr, "passerellectl lab: not built yet")
	return 1
}
