// Command passerellectl is the NOC and technician tool: it validates and
// renders configurations, and drives the virtual school lab.
package main

import (
	"flag"
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
  passerellectl keygen --id NAME --out FILE
                                        create a NOC signing key
  passerellectl sign --key FILE [--out BUNDLE] CONFIG
                                        sign a configuration for its box
  passerellectl publish --key FILE --out DIR CONFIG...
                                        signed bundles for the boxes' pull mode
  passerellectl push --key FILE (--box URL CONFIG | --inventory CSV --configs DIR --url T)
                                        push configurations, in waves, and wait for each box's verdict
  passerellectl status (--box URL | --inventory CSV --url T)
                                        the fleet's versions, generations and health
  passerellectl generations list|diff|rollback --box URL
                                        a box's kept generations
  passerellectl cert push --key FILE --uai UAI --box URL CERT KEY
                                        give a box the certificate its status page and API serve
  passerellectl update sign|push|show   firmware update bundles: sign a slot image, push it in waves
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
	case "keygen":
		return cmdKeygen(args[1:], stdout, stderr)
	case "sign":
		return cmdSign(args[1:], stdout, stderr)
	case "publish":
		return cmdPublish(args[1:], stdout, stderr)
	case "push":
		return cmdPush(args[1:], stdout, stderr)
	case "status":
		return cmdStatus(args[1:], stdout, stderr)
	case "generations":
		return cmdGenerations(args[1:], stdout, stderr)
	case "cert":
		return cmdCert(args[1:], stdout, stderr)
	case "update":
		return cmdUpdate(args[1:], stdout, stderr)
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

// newFlagSet is a subcommand's flag set: errors and -h go to stderr, with
// the subcommand's usage text.
func newFlagSet(name, usage string, stderr io.Writer) *flag.FlagSet {
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() { fmt.Fprint(stderr, usage) }
	return fs
}
