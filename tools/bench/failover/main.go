// Command failover measures how long a client behind the box loses its
// traffic when Renater fails, with the demo config's default probe
// settings: a client sends 100 UDP packets per second to a server on the
// lab's internet, and the outage is the longest gap between answers after
// the fault. Two faults: carrier loss (the ISP side of the cable goes
// down) and a silent blackhole (the ISP drops everything, carrier kept).
// Each run builds a fresh lab and runs the real firmware in it.
//
//	go run ./tools/bench/failover -firmware bin/passerelle [-runs 5]
//
// It needs root (network namespaces) and the ip and nft commands.
package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"time"

	"passerelle/pkg/config"
	"passerelle/pkg/lab"
)

// p200 is the default probe interval: the fault's phase is drawn over it.
const p200 = 200 * time.Millisecond

func main() {
	firmware := flag.String("firmware", "bin/passerelle", "passerelle binary to run in the lab")
	cfgPath := flag.String("config", "configs/demo.yaml", "box config (its probe settings are measured)")
	runs := flag.Int("runs", 5, "runs per fault")
	flag.Parse()
	if os.Geteuid() != 0 {
		fmt.Fprintln(os.Stderr, "failover: needs root (network namespaces)")
		os.Exit(1)
	}
	cfg, err := config.Load(*cfgPath)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	p := cfg.Uplinks[0].Probe
	bound := time.Duration(p.DownAfter)*p.Interval.D() + p.Timeout.D()
	fmt.Printf("config %s: probes every %s, timeout %s, offline after %d failed rounds (bound for a silent failure %s)\n",
		*cfgPath, p.Interval, p.Timeout, p.DownAfter, bound)

	results := map[string][]time.Duration{}
	for _, fault := range []string{"carrier", "blackhole"} {
		for i := range *runs {
			out, err := run(*firmware, *cfgPath, cfg, fault)
			if err != nil {
				fmt.Fprintf(os.Stderr, "failover: %s run %d: %v\n", fault, i+1, err)
				os.Exit(1)
			}
			fmt.Printf("%-9s run %d: outage %s\n", fault, i+1, ms(out))
			results[fault] = append(results[fault], out)
		}
	}
	fmt.Println()
	fmt.Printf("%-34s %8s %8s %8s\n", "outage seen by the client", "min", "median", "max")
	for _, fault := range []string{"carrier", "blackhole"} {
		r := results[fault]
		slices.Sort(r)
		name := map[string]string{"carrier": "passerelle, carrier loss", "blackhole": "passerelle, silent blackhole"}[fault]
		fmt.Printf("%-34s %8s %8s %8s\n", name, ms(r[0]), ms(r[len(r)/2]), ms(r[len(r)-1]))
	}
	// OpenWrt mwan3, documented interface defaults: interval 10 s,
	// timeout 4 s, down 5, count 1. mwan3track sleeps interval between
	// tests and a failed ping lasts timeout, so a silent failure is
	// declared after down tests: between (down-1)*(interval+timeout)+timeout
	// and that plus one interval. See docs/benchmarks.md.
	const interval, timeout, down = 10 * time.Second, 4 * time.Second, 5
	lo := (down-1)*(interval+timeout) + timeout
	fmt.Printf("%-34s %8s %8s %8s   (computed from its defaults: interval 10s, timeout 4s, down 5)\n",
		"mwan3 defaults, silent blackhole", ms(lo), ms(lo+interval/2), ms(lo+interval))
}

func ms(d time.Duration) string { return d.Round(time.Millisecond).String() }

// run builds a lab, runs the firmware, injects the fault on Renater and
// returns the longest gap between the client's answers.
func run(bin, cfgPath string, cfg *config.Config, fault string) (time.Duration, error) {
	spec, err := lab.SpecFromConfig(cfg)
	if err != nil {
		return 0, err
	}
	l, err := lab.Up(context.Background(), spec, slog.New(slog.NewTextHandler(io.Discard, nil)))
	if err != nil {
		return 0, err
	}
	defer l.Down()
	tmp, err := os.MkdirTemp("", "failover-")
	if err != nil {
		return 0, err
	}
	defer os.RemoveAll(tmp)
	logs := &buffer{}
	abs, err := filepath.Abs(cfgPath)
	if err != nil {
		return 0, err
	}
	cmd := exec.Command(bin, "run", "--config", abs, "--dhcp-lease-dir", tmp)
	cmd.Stdout, cmd.Stderr = logs, logs
	if err := lab.StartCommand(l.Namespace(lab.RoleBox), cmd); err != nil {
		return 0, err
	}
	defer func() { cmd.Process.Kill(); cmd.Wait() }()
	if err := logs.wait(`uplink=renater state=online`, 15*time.Second); err != nil {
		return 0, fmt.Errorf("%w\n%s", err, logs.String())
	}
	// 100 packets/s from the first zone's client to the lab's echo.
	c, err := lab.StartFlow(l.Namespace(lab.RoleClient(l.Spec().Zones[0].Name)), l.InternetServer(), 10*time.Millisecond)
	if err != nil {
		return 0, err
	}
	defer c.Stop()
	// Steady state through Renater, then the fault at a random point of
	// the probe cycle (a fixed delay would always hit the same phase).
	time.Sleep(time.Second + rand.N(p200))
	isp := l.Namespace(lab.RoleISP(cfg.Uplinks[0].Name))
	var args []string
	switch fault {
	case "carrier":
		args = []string{"ip", "-n", isp, "link", "set", "box", "down"}
	case "blackhole":
		args = []string{"ip", "netns", "exec", isp, "nft", "add table inet fault; add chain inet fault drops { type filter hook forward priority 0; policy drop; }"}
	}
	start := time.Now()
	if out, err := exec.Command(args[0], args[1:]...).CombinedOutput(); err != nil {
		return 0, fmt.Errorf("%s: %v: %s", strings.Join(args, " "), err, out)
	}
	time.Sleep(3 * time.Second)
	gap := c.LongestGap(start, time.Now())
	if r := c.Replies(); len(r) == 0 || r[len(r)-1].Src == cfg.Uplinks[0].Address.Addr() {
		return 0, fmt.Errorf("traffic still through %s after the fault", cfg.Uplinks[0].Name)
	}
	return gap, nil
}

type buffer struct {
	mu sync.Mutex
	b  strings.Builder
}

func (b *buffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.Write(p)
}

func (b *buffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.String()
}

func (b *buffer) wait(s string, timeout time.Duration) error {
	for deadline := time.Now().Add(timeout); time.Now().Before(deadline); time.Sleep(10 * time.Millisecond) {
		if strings.Contains(b.String(), s) {
			return nil
		}
	}
	return fmt.Errorf("firmware did not log %q within %s", s, timeout)
}
