// Command failover measures how long a client behind the box loses its
// traffic when Renater fails, with the demo config's default probe
// settings: a client sends 100 UDP packets per second to a server on the
// lab's internet, and the outage is the longest gap between answers after
// the fault. Each run builds a fresh lab and runs the real firmware in it.
//
// Faults (-faults, comma-separated; default all):
//
//	carrier    the ISP side of Renater's cable goes down: outage
//	blackhole  Renater's ISP drops everything, carrier kept: outage
//	silent     one probe target of three stops answering for 30 s: state
//	           changes and switches (want none), time to report the target
//	flap       Renater's carrier goes down and up every 2 s for 20 s:
//	           switches (bounded by the damping)
//	bothdown   both carriers down, then the backup's back: first answer
//	           through the backup after its carrier
//	dnsonly    Renater's ISP drops DNS only: longest time a client's
//	           queries (unique names, every 50 ms) go unanswered
//	latency    Renater's round trip becomes +300 ms (userspace ICMP
//	           responder; no netem here): time until degraded, and
//	           whether it is ever declared offline or flushed
//	standby    no fault, 60 s: bytes through each uplink, per month
//
//	go run ./tools/bench/failover -firmware bin/passerelle [-runs 5] [-faults carrier,blackhole]
//
// -silent-for, -flaps and -standby-for shorten the three long faults (a
// smoke run: make bench-smoke); the recorded figures use the defaults.
//
// It needs root (network namespaces) and the ip and nft commands.
package main

import (
	"bytes"
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/miekg/dns"

	"passerelle/pkg/config"
	"passerelle/pkg/lab"
)

// p200 is the default probe interval: the fault's phase is drawn over it.
const p200 = 200 * time.Millisecond

var allFaults = []string{"carrier", "blackhole", "silent", "flap", "bothdown", "dnsonly", "latency", "standby"}

// measure is one run's figures: the main one (a duration or a count) and
// notes.
type measure struct {
	value float64 // milliseconds, a count or MB
	note  string
}

var units = map[string]string{
	"carrier": "ms", "blackhole": "ms", "silent": "changes", "flap": "switches",
	"bothdown": "ms", "dnsonly": "ms", "latency": "ms", "standby": "MB/month",
}

// windows are the lengths of the long faults.
type windows struct {
	silent  time.Duration // one target silent
	flaps   int           // carrier down 1 s, up 1 s
	standby time.Duration // standby traffic counted
}

func titles(w windows) map[string]string {
	return map[string]string{
		"carrier":   "carrier loss: outage",
		"blackhole": "silent blackhole: outage",
		"silent":    fmt.Sprintf("1 of 3 targets silent %s: state changes", w.silent),
		"flap":      fmt.Sprintf("carrier flapping 2 s, %d s: switches", 2*w.flaps),
		"bothdown":  "both down, backup back: 1st answer",
		"dnsonly":   "DNS dropped by ISP: DNS outage",
		"latency":   "+300 ms: time to degraded",
		"standby":   fmt.Sprintf("standby backup probes, per month (%s)", w.standby),
	}
}

func main() {
	firmware := flag.String("firmware", "bin/passerelle", "passerelle binary to run in the lab")
	cfgPath := flag.String("config", "configs/demo.yaml", "box config (its probe settings are measured)")
	runs := flag.Int("runs", 5, "runs per fault")
	faultList := flag.String("faults", strings.Join(allFaults, ","), "faults to measure, comma-separated")
	var w windows
	flag.DurationVar(&w.silent, "silent-for", 30*time.Second, "how long one probe target stays silent (silent)")
	flag.IntVar(&w.flaps, "flaps", 10, "carrier down-up cycles of 2 s (flap)")
	flag.DurationVar(&w.standby, "standby-for", 60*time.Second, "how long the uplinks' traffic is counted (standby)")
	flag.Parse()
	if w.silent <= 0 || w.flaps < 1 || w.standby <= 0 {
		fmt.Fprintln(os.Stderr, "failover: -silent-for and -standby-for must be positive, -flaps at least 1")
		os.Exit(2)
	}
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
	fmt.Printf("config %s: probes every %s, timeout %s, offline after %d failed rounds (bound for a silent failure %s); standby backups every %s\n",
		*cfgPath, p.Interval, p.Timeout, p.DownAfter, bound, p.StandbyInterval)

	faults := strings.Split(*faultList, ",")
	results := map[string][]float64{}
	for _, fault := range faults {
		if units[fault] == "" {
			fmt.Fprintf(os.Stderr, "failover: unknown fault %q\n", fault)
			os.Exit(2)
		}
		for i := range *runs {
			m, err := run(*firmware, *cfgPath, cfg, fault, w)
			if err != nil {
				fmt.Fprintf(os.Stderr, "failover: %s run %d: %v\n", fault, i+1, err)
				os.Exit(1)
			}
			fmt.Printf("%-9s run %d: %s %s  %s\n", fault, i+1, num(m.value), units[fault], m.note)
			results[fault] = append(results[fault], m.value)
		}
	}
	fmt.Println()
	fmt.Printf("%-44s %10s %10s %10s\n", "fault", "min", "median", "max")
	for _, fault := range faults {
		r := results[fault]
		slices.Sort(r)
		u := units[fault]
		fmt.Printf("%-44s %10s %10s %10s\n", titles(w)[fault], num(r[0])+" "+u, num(r[len(r)/2])+" "+u, num(r[len(r)-1])+" "+u)
	}
	if slices.Contains(faults, "blackhole") {
		// OpenWrt mwan3, documented interface defaults: interval 10 s,
		// timeout 4 s, down 5, count 1. mwan3track sleeps interval
		// between tests and a failed ping lasts timeout, so a silent
		// failure is declared after down tests: between
		// (down-1)*(interval+timeout)+timeout and that plus one
		// interval. See docs/benchmarks.md.
		const interval, timeout, down = 10 * time.Second, 4 * time.Second, 5
		lo := (down-1)*(interval+timeout) + timeout
		fmt.Printf("%-44s %10s %10s %10s   (computed from its defaults: interval 10s, timeout 4s, down 5)\n",
			"mwan3 defaults, silent blackhole", ms(lo), ms(lo+interval/2), ms(lo+interval))
	}
}

func ms(d time.Duration) string { return d.Round(time.Millisecond).String() }

func num(v float64) string {
	if v == float64(int64(v)) {
		return fmt.Sprint(int64(v))
	}
	return fmt.Sprintf("%.1f", v)
}

func msOf(d time.Duration) float64 { return float64(d.Round(time.Millisecond).Milliseconds()) }

// box is one run: a fresh lab and the firmware in it.
type box struct {
	l    *lab.Lab
	cfg  *config.Config
	logs *jsonLog
	w    windows
}

func (b *box) isp(uplink string) string { return b.l.Namespace(lab.RoleISP(uplink)) }

func sh(args ...string) error {
	if out, err := exec.Command(args[0], args[1:]...).CombinedOutput(); err != nil {
		return fmt.Errorf("%s: %v: %s", strings.Join(args, " "), err, out)
	}
	return nil
}

func (b *box) nft(ns, script string) error { return sh("ip", "netns", "exec", ns, "nft", script) }

func (b *box) carrier(uplink string, up bool) error {
	state := "down"
	if up {
		state = "up"
	}
	return sh("ip", "-n", b.isp(uplink), "link", "set", "box", state)
}

// run builds a lab, runs the firmware and measures one fault.
func run(bin, cfgPath string, cfg *config.Config, fault string, w windows) (measure, error) {
	var tmp string
	if fault == "silent" {
		// Three targets on both uplinks: the default probing's shape.
		data, err := os.ReadFile(cfgPath)
		if err != nil {
			return measure{}, err
		}
		const one = "      targets: [203.0.113.10]\n"
		text := strings.ReplaceAll(string(data), one, "      targets: [203.0.113.10, 203.0.113.11, 203.0.113.12]\n")
		f, err := os.CreateTemp("", "failover-*.yaml")
		if err != nil {
			return measure{}, err
		}
		defer os.Remove(f.Name())
		if _, err := f.WriteString(text); err != nil {
			return measure{}, err
		}
		f.Close()
		cfgPath = f.Name()
		if cfg, err = config.Load(cfgPath); err != nil {
			return measure{}, err
		}
	}
	spec, err := lab.SpecFromConfig(cfg)
	if err != nil {
		return measure{}, err
	}
	l, err := lab.Up(context.Background(), spec, slog.New(slog.NewTextHandler(io.Discard, nil)))
	if err != nil {
		return measure{}, err
	}
	defer l.Down()
	if fault == "silent" {
		for _, a := range []string{"203.0.113.11", "203.0.113.12"} {
			if err := sh("ip", "-n", l.Namespace(lab.RoleInternet), "addr", "add", a+"/32", "dev", "lo"); err != nil {
				return measure{}, err
			}
		}
	}
	tmp, err = os.MkdirTemp("", "failover-")
	if err != nil {
		return measure{}, err
	}
	defer os.RemoveAll(tmp)
	abs, err := filepath.Abs(cfgPath)
	if err != nil {
		return measure{}, err
	}
	b := &box{l: l, cfg: cfg, logs: &jsonLog{}, w: w}
	cmd := exec.Command(bin, "run", "--config", abs, "--dhcp-lease-dir", tmp, "--log-format", "json")
	cmd.Stdout, cmd.Stderr = b.logs, b.logs
	if err := lab.StartCommand(l.Namespace(lab.RoleBox), cmd); err != nil {
		return measure{}, err
	}
	defer func() { cmd.Process.Kill(); cmd.Wait() }()
	for _, name := range []string{cfg.Uplinks[0].Name, cfg.Uplinks[1].Name} {
		if _, err := b.logs.wait(0, 15*time.Second, "uplink-state", map[string]string{"uplink": name, "state": "online"}); err != nil {
			return measure{}, fmt.Errorf("%w\n%s", err, b.logs.String())
		}
	}
	switch fault {
	case "carrier", "blackhole":
		return b.outage(fault)
	case "silent":
		return b.silent()
	case "flap":
		return b.flap()
	case "bothdown":
		return b.bothDown()
	case "dnsonly":
		return b.dnsOnly()
	case "latency":
		return b.latency()
	case "standby":
		return b.standby()
	}
	return measure{}, fmt.Errorf("unknown fault %s", fault)
}

func (b *box) flow() (*lab.Flow, error) {
	// 100 packets/s from the first zone's client to the lab's echo.
	return lab.StartFlow(b.l.Namespace(lab.RoleClient(b.l.Spec().Zones[0].Name)), b.l.InternetServer(), 10*time.Millisecond)
}

func (b *box) outage(fault string) (measure, error) {
	c, err := b.flow()
	if err != nil {
		return measure{}, err
	}
	defer c.Stop()
	// Steady state through Renater, then the fault at a random point of
	// the probe cycle (a fixed delay would always hit the same phase).
	time.Sleep(time.Second + rand.N(p200))
	isp := b.isp(b.cfg.Uplinks[0].Name)
	start := time.Now()
	switch fault {
	case "carrier":
		err = b.carrier(b.cfg.Uplinks[0].Name, false)
	case "blackhole":
		err = b.nft(isp, "add table inet fault; add chain inet fault drops { type filter hook forward priority 0; policy drop; }")
	}
	if err != nil {
		return measure{}, err
	}
	time.Sleep(3 * time.Second)
	gap := c.LongestGap(start, time.Now())
	if r := c.Replies(); len(r) == 0 || r[len(r)-1].Src == b.cfg.Uplinks[0].Address.Addr() {
		return measure{}, fmt.Errorf("traffic still through %s after the fault", b.cfg.Uplinks[0].Name)
	}
	return measure{value: msOf(gap)}, nil
}

// silent: one target of three silent for 30 s by default (the old loss
// rule degraded the link after 100 rounds, 20 s).
func (b *box) silent() (measure, error) {
	inet := b.l.Namespace(lab.RoleInternet)
	time.Sleep(2 * time.Second)
	mark := b.logs.mark()
	start := time.Now()
	if err := b.nft(inet, "add table inet fault; add chain inet fault in { type filter hook input priority 0; }; add rule inet fault in ip daddr 203.0.113.12 drop"); err != nil {
		return measure{}, err
	}
	time.Sleep(b.w.silent)
	changes := len(b.logs.find(mark, "uplink-state", nil)) + len(b.logs.find(mark, "uplink-switch", nil))
	note := "target never reported"
	if r := b.logs.find(mark, "uplink-target-silent", map[string]string{"uplink": b.cfg.Uplinks[0].Name, "targets": "203.0.113.12"}); len(r) > 0 {
		note = fmt.Sprintf("target reported silent after %s", ms(r[0].at().Sub(start)))
	}
	if d := b.logs.find(mark, "uplink-state", map[string]string{"state": "degraded"}); len(d) > 0 {
		note += fmt.Sprintf("; %s degraded after %s", d[0].str("uplink"), ms(d[0].at().Sub(start)))
	}
	return measure{value: float64(changes), note: note}, nil
}

// flap: Renater's carrier down 1 s, up 1 s, ten times by default.
func (b *box) flap() (measure, error) {
	name := b.cfg.Uplinks[0].Name
	mark := b.logs.mark()
	for range b.w.flaps {
		if err := b.carrier(name, false); err != nil {
			return measure{}, err
		}
		time.Sleep(time.Second)
		if err := b.carrier(name, true); err != nil {
			return measure{}, err
		}
		time.Sleep(time.Second)
	}
	sw := b.logs.find(mark, "uplink-switch", nil)
	damp := b.logs.find(mark, "uplink-damping", map[string]string{"uplink": name})
	note := "no damping event"
	if len(damp) > 0 {
		note = fmt.Sprintf("%d damping events, last hold-down %s", len(damp), damp[len(damp)-1].str("hold"))
	}
	return measure{value: float64(len(sw)), note: note}, nil
}

// bothDown: both carriers down; 2 s later the backup's comes back.
func (b *box) bothDown() (measure, error) {
	c, err := b.flow()
	if err != nil {
		return measure{}, err
	}
	defer c.Stop()
	time.Sleep(time.Second)
	mark := b.logs.mark()
	for _, u := range b.cfg.Uplinks[:2] {
		if err := b.carrier(u.Name, false); err != nil {
			return measure{}, err
		}
	}
	if _, err := b.logs.wait(mark, 5*time.Second, "uplink-state", map[string]string{"uplink": b.cfg.Uplinks[1].Name, "state": "offline"}); err != nil {
		return measure{}, err
	}
	time.Sleep(2*time.Second + rand.N(p200))
	back := time.Now()
	if err := b.carrier(b.cfg.Uplinks[1].Name, true); err != nil {
		return measure{}, err
	}
	src := b.cfg.Uplinks[1].Address.Addr()
	for deadline := back.Add(5 * time.Second); time.Now().Before(deadline); time.Sleep(10 * time.Millisecond) {
		for _, r := range c.Replies() {
			if r.Src == src && r.At.After(back) {
				return measure{value: msOf(r.At.Sub(back))}, nil
			}
		}
	}
	return measure{}, fmt.Errorf("no answer through the backup within 5 s of its carrier")
}

// dnsOnly: Renater's ISP drops DNS; a client of the admin zone asks a
// unique name every 50 ms (no cache); the figure is the longest time
// without an answer after the fault.
func (b *box) dnsOnly() (measure, error) {
	zone := b.l.Spec().Zones[0]
	for _, z := range b.l.Spec().Zones {
		if z.Name == "admin" { // the demo's unfiltered profile
			zone = z
		}
	}
	client := b.l.Namespace(lab.RoleClient(zone.Name))
	server := netip.AddrPortFrom(b.zoneAddr(zone.Name), 53).String()
	var mu sync.Mutex
	var ok []time.Time
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var wg sync.WaitGroup
	wg.Go(func() {
		for i := 0; ctx.Err() == nil; i++ {
			at := time.Now()
			if resolve(client, server, fmt.Sprintf("b%d-%d.%s", i, at.UnixNano(), lab.Domain)) {
				mu.Lock()
				ok = append(ok, time.Now())
				mu.Unlock()
			}
			time.Sleep(time.Until(at.Add(50 * time.Millisecond)))
		}
	})
	time.Sleep(time.Second + rand.N(p200))
	mark := b.logs.mark()
	fault := time.Now()
	if err := b.nft(b.isp(b.cfg.Uplinks[0].Name), "add table inet fault; add chain inet fault drops { type filter hook forward priority 0; }; add rule inet fault drops udp dport 53 drop; add rule inet fault drops tcp dport 53 drop"); err != nil {
		return measure{}, err
	}
	time.Sleep(8 * time.Second)
	cancel()
	wg.Wait()
	prev, gap := fault, time.Duration(0)
	for _, t := range ok {
		if t.After(fault) {
			gap = max(gap, t.Sub(prev))
			prev = t
		}
	}
	gap = max(gap, time.Since(prev)-time.Second) // still failing at the end
	note := "renater never degraded"
	if d := b.logs.find(mark, "uplink-state", map[string]string{"uplink": b.cfg.Uplinks[0].Name, "state": "degraded"}); len(d) > 0 {
		note = fmt.Sprintf("degraded after %s", ms(d[0].at().Sub(fault)))
	}
	return measure{value: msOf(gap), note: note}, nil
}

func (b *box) zoneAddr(name string) netip.Addr {
	for _, z := range b.cfg.Zones {
		if z.Name == name {
			return z.Address
		}
	}
	return netip.Addr{}
}

func resolve(ns, server, name string) bool {
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	conn, err := lab.DialContext(ctx, ns, "udp4", server)
	if err != nil {
		return false
	}
	defer conn.Close()
	conn.SetDeadline(time.Now().Add(time.Second))
	c := &dns.Conn{Conn: conn}
	q := new(dns.Msg)
	q.SetQuestion(name, dns.TypeA)
	if err := c.WriteMsg(q); err != nil {
		return false
	}
	r, err := c.ReadMsg()
	return err == nil && (r.Rcode == dns.RcodeSuccess || r.Rcode == dns.RcodeNameError)
}

// latency: Renater's probes get +300 ms (the lab internet answers echo
// requests from userspace, delaying those from Renater's address).
func (b *box) latency() (measure, error) {
	c, err := b.flow()
	if err != nil {
		return measure{}, err
	}
	defer c.Stop()
	time.Sleep(time.Second + rand.N(p200))
	name := b.cfg.Uplinks[0].Name
	src := b.cfg.Uplinks[0].Address.Addr()
	mark := b.logs.mark()
	start := time.Now()
	resp, err := lab.StartICMPResponder(b.l.Namespace(lab.RoleInternet), []netip.Addr{b.l.InternetServer()}, func(a netip.Addr) time.Duration {
		if a == src {
			return 300 * time.Millisecond
		}
		return 0
	})
	if err != nil {
		return measure{}, err
	}
	defer resp.Stop()
	time.Sleep(5 * time.Second)
	off := len(b.logs.find(mark, "uplink-state", map[string]string{"uplink": name, "state": "offline"}))
	flushed := len(b.logs.find(mark, "uplink-flush", map[string]string{"uplink": name}))
	gap := c.LongestGap(start, time.Now())
	d := b.logs.find(mark, "uplink-state", map[string]string{"uplink": name, "state": "degraded"})
	note := fmt.Sprintf("offline declarations %d, flushes %d, longest gap of the client's flow %s", off, flushed, ms(gap))
	if len(d) == 0 {
		return measure{value: -1, note: "never degraded; " + note}, nil
	}
	return measure{value: msOf(d[0].at().Sub(start)), note: note}, nil
}

// standby: no fault; what the uplinks exchange in 60 s (by default) with
// nothing but the box's own traffic, on the ISP side of each cable, per 30
// days.
func (b *box) standby() (measure, error) {
	time.Sleep(3 * time.Second) // past the start-up rounds
	names := []string{b.cfg.Uplinks[0].Name, b.cfg.Uplinks[1].Name}
	before := map[string]uint64{}
	for _, n := range names {
		v, err := b.linkBytes(n)
		if err != nil {
			return measure{}, err
		}
		before[n] = v
	}
	window := b.w.standby // 60 s: 6 or 7 standby rounds
	time.Sleep(window)
	month := float64(30*24*time.Hour) / float64(window)
	per := map[string]float64{}
	for _, n := range names {
		v, err := b.linkBytes(n)
		if err != nil {
			return measure{}, err
		}
		per[n] = float64(v-before[n]) * month / 1e6
	}
	note := fmt.Sprintf("%s (active, full rate, with the box's own DNS checks and NTP): %.0f MB/month; config budget %d MB",
		names[0], per[names[0]], b.cfg.Uplinks[1].Probe.StandbyBudgetMB)
	return measure{value: float64(int(per[names[1]]*10+0.5)) / 10, note: note}, nil
}

// linkBytes is what the ISP side of an uplink's cable sent and received.
func (b *box) linkBytes(uplink string) (uint64, error) {
	out, err := exec.Command("ip", "-n", b.isp(uplink), "-s", "-j", "link", "show", "box").Output()
	if err != nil {
		return 0, fmt.Errorf("link stats of %s: %w", uplink, err)
	}
	var links []struct {
		Stats struct {
			RX struct{ Bytes uint64 } `json:"rx"`
			TX struct{ Bytes uint64 } `json:"tx"`
		} `json:"stats64"`
	}
	if err := json.Unmarshal(out, &links); err != nil || len(links) != 1 {
		return 0, fmt.Errorf("link stats of %s: %v: %s", uplink, err, out)
	}
	return links[0].Stats.RX.Bytes + links[0].Stats.TX.Bytes, nil
}

// jsonLog keeps the firmware's output and its JSON records.
type jsonLog struct {
	mu      sync.Mutex
	b       bytes.Buffer
	partial []byte
	recs    []record
}

type record map[string]any

func (r record) str(k string) string {
	if v, ok := r[k]; ok && v != nil {
		return fmt.Sprint(v)
	}
	return ""
}

func (r record) at() time.Time {
	t, _ := time.Parse(time.RFC3339Nano, r.str("time"))
	return t
}

func (l *jsonLog) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.b.Write(p)
	l.partial = append(l.partial, p...)
	consumed := 0
	for {
		i := bytes.IndexByte(l.partial[consumed:], '\n')
		if i < 0 {
			break
		}
		line := l.partial[consumed : consumed+i]
		consumed += i + 1
		var r record
		if json.Unmarshal(line, &r) == nil {
			l.recs = append(l.recs, r)
		}
	}
	l.partial = append(l.partial[:0], l.partial[consumed:]...)
	return len(p), nil
}

func (l *jsonLog) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

func (l *jsonLog) mark() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return len(l.recs)
}

func (l *jsonLog) find(mark int, event string, attrs map[string]string) []record {
	l.mu.Lock()
	defer l.mu.Unlock()
	var out []record
next:
	for _, r := range l.recs[mark:] {
		if r.str("event") != event {
			continue
		}
		for k, v := range attrs {
			if r.str(k) != v {
				continue next
			}
		}
		out = append(out, r)
	}
	return out
}

func (l *jsonLog) wait(mark int, timeout time.Duration, event string, attrs map[string]string) (record, error) {
	for deadline := time.Now().Add(timeout); time.Now().Before(deadline); time.Sleep(10 * time.Millisecond) {
		if rs := l.find(mark, event, attrs); len(rs) > 0 {
			return rs[0], nil
		}
	}
	return nil, fmt.Errorf("firmware did not log event %s %v within %s", event, attrs, timeout)
}
