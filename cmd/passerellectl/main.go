// Command passerellectl is the NOC and technician tool: it validates and
// renders configurations, and drives the virtual school lab.
package main

import (
	"fmt"
	"io"
	"os"
)

const usage = `usage:
  passerellectl validate FILE...        validate configurations
  passerellectl render --template T --inventory CSV --out DIR
                                        render one config per school of an inventory
  passerellectl schema                  print the configuration's JSON Schema
  passerellectl lab up|down|status|exec run the virtual school network
  passerellectl firewall compile CONFIG print the nftables table a configuration loads
`

func main() {
	os.Exit(run(os.Args[1:], os.Stdout, os.Stderr))
}

func run(args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 {
		fmt.Fprint(stderr, usage)
		return 2
	}
	switch args[0] {
	case "validate":
		return cmdValidate(args[1:], stdout, stderr)
	case "render":
		return cmdRender(args[1:], stdout, stderr)
	case "schema":
		return cmdSchema(args[1:], stdout, stderr)
	case "lab":
		return cmdLab(args[1:], stdout, stderr)
	case "firewall":
		return cmdFirewall(args[1:], stdout, stderr)
	case "help", "-h", "--help":
		fmt.Fprint(stdout, usage)
		return 0
	}
	fmt.Fprintf(stderr, "passerellectl: unknown command %q\n%s", args[0], usage)
	return 2
}
