package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"os/signal"
	"sort"
	"strings"
	"syscall"
	"time"

	"passerelle/pkg/config"
	"passerelle/pkg/lab"
)

const labUsage = `usage:
  passerellectl lab up [--config FILE] [--run COMMAND]
        build the lab for a box config (default configs/demo.yaml), run COMMAND in
        the box namespace if given, and wait; Ctrl-C tears everything down
  passerellectl lab down [--all]
        remove what killed lab runs left (with --all, running labs too)
  passerellectl lab status
        list the lab runs on this machine
`

func cmdLab(args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 {
		fmt.Fprint(stderr, labUsage)
		return 2
	}
	log := slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
	switch args[0] {
	case "up":
		return labUp(args[1:], stdout, stderr)
	case "down":
		fs := flag.NewFlagSet("lab down", flag.ContinueOnError)
		fs.SetOutput(stderr)
		all := fs.Bool("all", false, "also remove labs whose process is still running")
		if err := fs.Parse(args[1:]); err != nil {
			return 2
		}
		clean := lab.Cleanup
		if *all {
			clean = lab.CleanupAll
		}
		removed, err := clean(log)
		for _, r := range removed {
			fmt.Fprintf(stdout, "removed %s\n", r)
		}
		if err != nil {
			fmt.Fprintf(stderr, "passerellectl lab down: %v\n", err)
			return 1
		}
		if len(removed) == 0 {
			fmt.Fprintln(stdout, "nothing to remove")
		}
		return 0
	case "status":
		runs, err := lab.List()
		if err != nil {
			fmt.Fprintf(stderr, "passerellectl lab status: %v\n", err)
			return 1
		}
		if len(runs) == 0 {
			fmt.Fprintln(stdout, "no lab runs")
		}
		for _, r := range runs {
			state := "running"
			if !r.Alive {
				state = "left over (run `passerellectl lab down`)"
			}
			fmt.Fprintf(stdout, "lab %s  pid %d  started %s  %s  namespaces: %s\n", r.ID, r.PID,
				r.Started.Format(time.DateTime), state, strings.Join(r.Present, " "))
			if r.Problem != "" {
				fmt.Fprintf(stdout, "  problem: %s\n", r.Problem)
			}
		}
		return 0
	}
	fmt.Fprintf(stderr, "passerellectl lab: unknown command %q\n%s", args[0], labUsage)
	return 2
}

func labUp(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("lab up", flag.ContinueOnError)
	fs.SetOutput(stderr)
	cfgPath := fs.String("config", "configs/demo.yaml", "box configuration the lab is built for")
	runCmd := fs.String("run", "", "command to run in the box namespace (e.g. the firmware)")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	if os.Geteuid() != 0 {
		fmt.Fprintln(stderr, "passerellectl lab up: needs root (network namespaces)")
		return 1
	}
	cfg, err := config.Load(*cfgPath)
	if err != nil {
		fmt.Fprintf(stderr, "passerellectl lab up: %v\n", err)
		return 1
	}
	spec, err := lab.SpecFromConfig(cfg)
	if err != nil {
		fmt.Fprintf(stderr, "passerellectl lab up: %v\n", err)
		return 1
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM, syscall.SIGHUP)
	defer stop()
	log := slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: slog.LevelInfo}))
	l, err := lab.Up(ctx, spec, log)
	if err != nil {
		fmt.Fprintf(stderr, "passerellectl lab up: %v\n", err)
		return 1
	}
	defer func() {
		if err := l.Down(); err != nil {
			fmt.Fprintf(stderr, "passerellectl lab: teardown: %v (run `passerellectl lab down`)\n", err)
		} else {
			fmt.Fprintln(stdout, "lab torn down")
		}
	}()

	var child *exec.Cmd
	childDone := make(chan error, 1)
	if *runCmd != "" {
		child = exec.Command("/bin/sh", "-c", "exec "+*runCmd)
		child.Stdout, child.Stderr = stdout, stderr
		if err := lab.StartCommand(l.Namespace(lab.RoleBox), child); err != nil {
			fmt.Fprintf(stderr, "passerellectl lab up: start %q: %v\n", *runCmd, err)
			return 1
		}
		go func() { childDone <- child.Wait() }()
	}
	printTryThis(stdout, l, cfg)

	select {
	case <-ctx.Done():
		if child != nil {
			child.Process.Signal(syscall.SIGTERM)
			select {
			case <-childDone:
			case <-time.After(5 * time.Second):
				child.Process.Kill()
				<-childDone
			}
		}
		return 0
	case err := <-childDone:
		fmt.Fprintf(stderr, "passerellectl lab: %q exited: %v\n", *runCmd, err)
		return 1
	}
}

// printTryThis tells a newcomer what to do with the running lab.
func printTryThis(w io.Writer, l *lab.Lab, cfg *config.Config) {
	fmt.Fprintf(w, "\nLab %s is up for %s (%s).\n\n", l.ID, cfg.Identity.Name, cfg.Identity.UAI)
	fmt.Fprintf(w, "Namespaces:\n")
	ns := l.Namespaces()
	roles := make([]string, 0, len(ns))
	for r := range ns {
		roles = append(roles, r)
	}
	sort.Strings(roles)
	for _, r := range roles {
		fmt.Fprintf(w, "  %-18s %s\n", r, ns[r])
	}
	fmt.Fprintf(w, "\nTry, in another terminal (as root):\n")
	for _, z := range cfg.Zones {
		fmt.Fprintf(w, "  ip netns exec %s bash    # a shell on a %s client (zone %s, %s)\n",
			l.Namespace(lab.RoleClient(z.Name)), z.Kind, z.Name, z.Subnet)
	}
	client := l.Namespace(lab.RoleClient(cfg.Zones[0].Name))
	fmt.Fprintf(w, "  ip netns exec %s ping -c3 %s               # the internet test server\n", client, l.InternetServer())
	fmt.Fprintf(w, "  ip netns exec %s curl http://%s/           # its web page\n", client, l.InternetServer())
	// DNS from a client goes to the box whatever server it names (the
	// firewall redirects it), so the host's resolver settings do.
	fmt.Fprintf(w, "  ip netns exec %s getent hosts www.lab.test          # DNS through the box's filter: resolves\n", client)
	fmt.Fprintf(w, "  ip netns exec %s getent hosts adult-demo.lab.test   # a (synthetic) adult name: blocked, no answer\n", client)
	fmt.Fprintf(w, "  ip netns exec %s dhclient -v -1 -sf /bin/true eth0  # DHCP from the box, if isc-dhcp-client is installed\n", client)
	fmt.Fprintf(w, "  ip netns exec %s ip addr; ip netns exec %[1]s nft list ruleset   # the box\n", l.Namespace(lab.RoleBox))
	fmt.Fprintf(w, "\nCtrl-C stops the firmware and removes the lab.\n\n")
}
