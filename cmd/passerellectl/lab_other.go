//go:build !linux

package main

import (
	"fmt"
	"io"
)

// cmdLab: the lab is network namespaces, which only Linux has. The rest of
// passerellectl (validate, render, firewall compile, schema) runs on the
// NOC operator's laptop, whatever its system.
func cmdLab(args []string, stdout, stderr io.Writer) int {
	fmt.Fprintln(stderr, "passerellectl lab: the virtual school network needs Linux (network namespaces); run it on a Linux machine as root")
	return 1
}
