package main

import (
	"errors"
	"fmt"
	"io"

	"passerelle/pkg/config"
	"passerelle/pkg/firewall"
)

// cmdFirewall is `passerellectl firewall compile CONFIG`: the nftables
// table a config would load, offline, for NOC review. The text is nft
// input with review comments; `nft -c -f` accepts it as is.
func cmdFirewall(args []string, stdout, stderr io.Writer) int {
	if len(args) != 2 || args[0] != "compile" {
		fmt.Fprint(stderr, "usage: passerellectl firewall compile CONFIG\n")
		return 2
	}
	path := args[1]
	cfg, err := config.Load(path)
	if err != nil {
		var list config.ErrorList
		if errors.As(err, &list) {
			for _, e := range list {
				fmt.Fprintln(stderr, e)
			}
			fmt.Fprintf(stderr, "%d problem(s) found\n", len(list))
			return 1
		}
		fmt.Fprintln(stderr, err)
		return 1
	}
	p, err := firewall.Compile(cfg)
	if err == nil {
		err = p.Validate()
	}
	if err != nil {
		fmt.Fprintf(stderr, "passerellectl firewall compile %s: %v\n", path, err)
		return 1
	}
	fmt.Fprint(stdout, p.String())
	return 0
}
