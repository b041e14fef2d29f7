// Command passerelle is the firmware of a Passerelle school gateway: one
// daemon that configures and supervises the whole box. On the board it is
// the init (PID 1): it mounts the filesystems and /perm, reaps orphans,
// drives the watchdog and reboots on SIGTERM (powers off on SIGUSR2). Run
// as an ordinary process (lab, development) it does none of that.
//
//	passerelle run --config FILE
//	passerelle check-config [--print-effective] FILE
//	passerelle version
package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"

	"passerelle/pkg/config"
	"passerelle/pkg/version"
)

const usage = `usage:
  passerelle run --config FILE          run the box with this configuration (as PID 1: also the init)
  passerelle check-config [--print-effective] FILE
                                        validate a configuration; print it with defaults
  passerelle plan FILE                  print what the configuration sets up, applying nothing
  passerelle firewall show              print the live nftables table, with its counters
  passerelle version                    print the firmware version
  passerelle status [--json]            the status page's first screen, from the running daemon
  passerelle why NAME [--zone ZONE]     is NAME blocked, in which zone, and by what rule
  passerelle leases [ZONE]              the live DHCP leases
  passerelle log [-n N] [--event E]     the persistent event log (survives reboots)
`

func main() {
	os.Exit(run(os.Args[1:], os.Stdout, os.Stderr))
}

// run dispatches a subcommand and returns the exit status: 0 success,
// 1 failure, 2 usage error.
func run(args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 {
		fmt.Fprint(stderr, usage)
		return 2
	}
	switch args[0] {
	case "run":
		return cmdRun(args[1:], stderr)
	case "check-config":
		return cmdCheckConfig(args[1:], stdout, stderr)
	case "plan":
		return cmdPlan(args[1:], stdout, stderr)
	case "firewall":
		return cmdFirewall(args[1:], stdout, stderr)
	case "status":
		return cmdStatus(args[1:], stdout, stderr)
	case "why":
		return cmdWhy(args[1:], stdout, stderr)
	case "leases":
		return cmdLeases(args[1:], stdout, stderr)
	case "log":
		return cmdLog(args[1:], stdout, stderr)
	case "version", "--version":
		fmt.Fprintln(stdout, version.String())
		return 0
	case "help", "-h", "--help":
		fmt.Fprint(stdout, usage)
		return 0
	}
	fmt.Fprintf(stderr, "passerelle: unknown command %q\n%s", args[0], usage)
	return 2
}

func cmdCheckConfig(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("check-config", flag.ContinueOnError)
	fs.SetOutput(stderr)
	effective := fs.Bool("print-effective", false, "print the configuration with every default filled in")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	if fs.NArg() != 1 {
		fmt.Fprintf(stderr, "passerelle check-config: expected one FILE\n%s", usage)
		return 2
	}
	cfg, err := config.Load(fs.Arg(0))
	if err != nil {
		printConfigError(stderr, err)
		return 1
	}
	if *effective {
		out, err := config.Marshal(cfg)
		if err != nil {
			fmt.Fprintf(stderr, "passerelle check-config: %v\n", err)
			return 1
		}
		stdout.Write(out)
	}
	return 0
}

// printConfigError prints one problem per line, FILE:LINE:COL first, so
// editors and CI can jump to them.
func printConfigError(w io.Writer, err error) {
	var list config.ErrorList
	if errors.As(err, &list) {
		for _, e := range list {
			fmt.Fprintln(w, e.Error())
		}
		fmt.Fprintf(w, "%d problem(s) found\n", len(list))
		return
	}
	fmt.Fprintln(w, err)
}

// cmdPlan prints every component's plan for a config: what the box would
// configure, for review before a config is pushed.
func cmdPlan(args []string, stdout, stderr io.Writer) int {
	if len(args) != 1 {
		fmt.Fprintf(stderr, "passerelle plan: expected one FILE\n%s", usage)
		return 2
	}
	cfg, err := config.Load(args[0])
	if err != nil {
		printConfigError(stderr, err)
		return 1
	}
	c, err := compose(slog.New(slog.DiscardHandler), composeOptions{})
	if err != nil {
		fmt.Fprintf(stderr, "passerelle plan: %v\n", err)
		return 1
	}
	text, err := c.box.Plans(cfg)
	if err != nil {
		fmt.Fprintf(stderr, "passerelle plan: %v\n", err)
		return 1
	}
	fmt.Fprint(stdout, text)
	return 0
}
