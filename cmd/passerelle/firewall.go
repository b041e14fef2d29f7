package main

import (
	"errors"
	"fmt"
	"io"

	"passerelle/pkg/firewall"
)

// cmdFirewall inspects the box's firewall: `passerelle firewall show`
// prints the live table (read from the kernel, not the config) as nft
// text with every counter, so a technician sees what is loaded and what
// it counted.
func cmdFirewall(args []string, stdout, stderr io.Writer) int {
	if len(args) != 1 || args[0] != "show" {
		fmt.Fprintf(stderr, "passerelle firewall: expected show\n%s", usage)
		return 2
	}
	if err := firewall.Show(stdout); err != nil {
		if errors.Is(err, firewall.ErrNoTable) {
			fmt.Fprintf(stderr, "passerelle firewall show: %v: the firewall has not been applied in this network namespace\n", err)
		} else {
			fmt.Fprintf(stderr, "passerelle firewall show: %v\n", err)
		}
		return 1
	}
	return 0
}
