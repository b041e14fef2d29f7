// Command passerellectl is the NOC and technician tool: it validates and
// renders configurations, and drives the virtual school lab.
package main

import (
	"fmt"
	"io"
	"os"
	"runtime"

	"passerelle/pkg/version"
)

const usage = `usage:
  passerellectl validate [--json] FILE...
                                        validate configurations
  passerellectl render [--prune] [--json] --template T --inventory CSV --out DIR
                                        render one config per school of an inventory
  passerellectl schema                  print the configuration's JSON Schema
  passerellectl docs                    print the configuration reference (docs/configuration.md)
  passerellectl lab up|down|status      run the virtual school network (Linux, root)
  passerellectl firewall compile CONFIG print the nftables table a configuration loads
  passerellectl version                 print the version
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
	case "docs":
		return cmdDocs(args[1:], stdout, stderr)
	case "version", "--version":
		fmt.Fprintf(stdout, "passerellectl %s (%s, %s %s/%s)\n", version.Version, version.Commit, runtime.Version(), runtime.GOOS, runtime.GOARCH)
		return 0
	case "help", "-h", "--help":
		fmt.Fprint(stdout, usage)
		return 0
	}
	fmt.Fprintf(stderr, "passerellectl: unknown command %q\n%s", args[0], usage)
	return 2
}
