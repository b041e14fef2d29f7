package integration

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"tailscale.com/client/local"

	"passerelle/pkg/lab"
	"passerelle/pkg/lab/academy"
)

// TestTunnelBench is the tunnel's benchmark (tools/bench/tunnel/run.sh,
// figures in docs/benchmarks.md), skipped unless PASSERELLE_TUNNEL_BENCH
// is set. In one lab, PASSERELLE_TUNNEL_BENCH_RUNS times (default 5):
//
//   - iperf3 throughput from the admin client to the datacenter through the
//     tunnel and over the same lab path without it (box, Renater, internet,
//     academy: the academy's public address), back to back, the order
//     swapped every run so that a change of the machine's load does not
//     always favour the same path; with the CPU time each part of the path
//     spent per GB moved and the machine's idle share, so that a low ratio
//     can be told apart from a busy machine;
//   - the tunnel's gap after a Renater carrier loss.
//
// Then the round trip of each path (TCP connection set-up, the lab has no
// ping). Each figure is printed per run and as min/median/max.
func TestTunnelBench(t *testing.T) {
	if os.Getenv("PASSERELLE_TUNNEL_BENCH") == "" {
		t.Skip("benchmark: run tools/bench/tunnel/run.sh")
	}
	if _, err := exec.LookPath("iperf3"); err != nil {
		t.Skip("iperf3 missing (apt-get install iperf3)")
	}
	runs := 5
	if n, err := strconv.Atoi(os.Getenv("PASSERELLE_TUNNEL_BENCH_RUNS")); err == nil && n > 0 {
		runs = n
	}
	tl := startTunnelLab(t)
	tl.waitRecord(t, 0, 90*time.Second, "tunnel-state", map[string]string{"state": "up"})
	tl.waitReach(t, 30*time.Second)
	waitUntil(t, "a direct path to the academy", 60*time.Second, func() bool { return tl.path() == "direct" })
	if os.Getenv("PASSERELLE_TUNNEL_BENCH_PARTS") != "gap" {
		tl.benchThroughput(t, runs)
	}
	tl.benchGap(t, runs)
}

// benchThroughput is the throughput and round-trip half of TestTunnelBench.
func (tl *tunnelLab) benchThroughput(t *testing.T, runs int) {

	acad := tl.lab.Namespace(lab.RoleAcademy)
	srv := exec.Command("iperf3", "-s", "-p", "5201")
	srv.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := lab.StartCommand(acad, srv); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = srv.Process.Kill(); _ = srv.Wait() })
	time.Sleep(300 * time.Millisecond)
	bp := benchPath{
		t:     t,
		admin: tl.lab.Namespace(lab.RoleClient("admin")),
		procs: map[string]int{
			"box tailscaled":        pidWithArg(t, "--socket="+filepath.Join(tl.run, "tailscaled.sock")),
			"datacenter tailscaled": pidWithArg(t, "--socket="+tl.acad.RouterSocket()),
		},
	}
	service := academy.DefaultService.String()
	public := tl.lab.AcademyServer().String()

	var tun, plain []iperfRun
	var ratios []float64
	for i := range runs {
		var tr, pr iperfRun
		if i%2 == 0 {
			tr, pr = bp.iperf(service), bp.iperf(public)
		} else {
			pr, tr = bp.iperf(public), bp.iperf(service)
		}
		tun, plain = append(tun, tr), append(plain, pr)
		ratios = append(ratios, tr.mbps/pr.mbps)
		fmt.Printf("bench: throughput run %d (path %s): tunnel %.0f Mbit/s (machine idle %.0f%%), plain %.0f Mbit/s (idle %.0f%%), tunnel/plain %.2f\n",
			i+1, tl.path(), tr.mbps, 100*tr.idle, pr.mbps, 100*pr.idle, tr.mbps/pr.mbps)
	}
	fmt.Printf("bench: throughput, %d runs, min/median/max: tunnel %s Mbit/s, plain %s Mbit/s, tunnel/plain %s (target >= 0.5)\n",
		runs, spread(field(tun, func(r iperfRun) float64 { return r.mbps }), "%.0f"),
		spread(field(plain, func(r iperfRun) float64 { return r.mbps }), "%.0f"), spread(ratios, "%.2f"))
	for _, p := range []struct {
		name string
		runs []iperfRun
	}{{"tunnel", tun}, {"plain", plain}} {
		var parts []string
		for _, who := range p.runs[0].parts() {
			parts = append(parts, fmt.Sprintf("%s %s", who, spread(field(p.runs, func(r iperfRun) float64 { return r.cpuPerGB[who] }), "%.2f")))
		}
		fmt.Printf("bench: %s path, CPU seconds per GB moved, min/median/max: %s\n", p.name, strings.Join(parts, ", "))
	}
	fmt.Printf("bench: round trip: tunnel %s; plain %s\n", bp.connectRTT(service), bp.connectRTT(public))
}

// benchGap is the failover half of TestTunnelBench: each fault is made in
// the steady state, once the datacenter's tailscaled sends to the box's
// Renater address again (it keeps a working path for a while after
// Renater returns: a fault made before would measure an easier case).
func (tl *tunnelLab) benchGap(t *testing.T, runs int) {
	var gaps []time.Duration
	for i := range runs {
		dc := tl.academyBackOnRenater(t)
		// A busy tunnel: traffic for longer than the academy trusts a path
		// without an answer (6.5 s), so that its trust in Renater's
		// address is fresh at the fault (an idle tunnel is the easy case).
		g := tl.meter()
		time.Sleep(7 * time.Second)
		mark := tl.mark()
		issued := time.Now()
		carrier(t, tl.firmware, "renater", false)
		fault := time.Now()
		gap := g.wait(t, fault, 60*time.Second)
		g.close()
		gaps = append(gaps, gap)
		// The carrier went somewhere between issued and fault: the gap
		// counted from issued is its upper bound.
		fmt.Printf("bench: run %d: Renater carrier loss → tunnel gap %s (at most %s: ip link set took %s; the datacenter sent to %q before)\n", i+1,
			gap.Round(time.Millisecond), (gap + fault.Sub(issued)).Round(time.Millisecond), fault.Sub(issued).Round(time.Millisecond), dc)
		tl.waitEventAfter(t, mark, 10*time.Second, "tunnel-uplink", map[string]string{"via": "the active uplink"})
		mark = tl.mark()
		carrier(t, tl.firmware, "renater", true)
		tl.waitEventAfter(t, mark, 60*time.Second, "tunnel-uplink", map[string]string{"via": "renater"})
		tl.waitReach(t, 60*time.Second)
	}
	slices.Sort(gaps)
	fmt.Printf("bench: tunnel gap after Renater carrier loss, %d runs: min %s, median %s, max %s (target <= 3s)\n",
		len(gaps), gaps[0].Round(time.Millisecond), gaps[len(gaps)/2].Round(time.Millisecond), gaps[len(gaps)-1].Round(time.Millisecond))
}

// benchPath measures throughput from the admin client.
type benchPath struct {
	t     *testing.T
	admin string         // the admin client's namespace
	procs map[string]int // the tunnel's processes, by role
}

// iperfRun is one iperf3 measurement and what it cost.
type iperfRun struct {
	mbps float64
	// cpuPerGB is CPU seconds per GB moved: of each of the tunnel's
	// processes, of iperf3 (client and server), of the kernel's threads
	// (ksoftirqd and workers: forwarding deferred out of the processes'
	// context) and of other processes (the work of others sharing the
	// cores). This kernel accounts softirq time to the task it interrupted
	// (no IRQ_TIME_ACCOUNTING): forwarding done in a process's context
	// counts as that process's.
	cpuPerGB map[string]float64
	idle     float64 // the machine's idle share during the run
}

// parts names cpuPerGB's keys in a fixed order.
func (r iperfRun) parts() []string {
	var out []string
	for k := range r.cpuPerGB {
		out = append(out, k)
	}
	slices.Sort(out)
	return out
}

// iperf runs iperf3 for 5 s (the first second, TCP's slow start, left
// out of the throughput) to dst from the admin client, one TCP stream.
func (b *benchPath) iperf(dst string) iperfRun {
	t := b.t
	t.Helper()
	before := map[string]float64{}
	for who, pid := range b.procs {
		before[who] = procCPU(t, pid)
	}
	k0 := kernelThreadsCPU()
	m0 := readMachineCPU(t)
	out, err := exec.Command("ip", "netns", "exec", b.admin, "iperf3", "-c", dst, "-p", "5201", "-t", "5", "-O", "1", "-J").Output()
	if err != nil {
		t.Fatalf("iperf3 -c %s: %v: %s", dst, err, out)
	}
	m1 := readMachineCPU(t)
	k1 := kernelThreadsCPU()
	var r struct {
		Intervals []struct {
			Sum struct {
				Bytes   float64 `json:"bytes"`
				Seconds float64 `json:"seconds"`
			} `json:"sum"`
		} `json:"intervals"`
		End struct {
			SumReceived struct {
				BitsPerSecond float64 `json:"bits_per_second"`
			} `json:"sum_received"`
			CPU struct {
				Host   float64 `json:"host_total"`
				Remote float64 `json:"remote_total"`
			} `json:"cpu_utilization_percent"`
		} `json:"end"`
	}
	if err := json.Unmarshal(out, &r); err != nil {
		t.Fatalf("iperf3 -J: %v: %s", err, out)
	}
	// CPU time is taken over the whole run, the omitted second included:
	// so are the bytes.
	var gb, secs float64
	for _, iv := range r.Intervals {
		gb += iv.Sum.Bytes / 1e9
		secs += iv.Sum.Seconds
	}
	run := iperfRun{mbps: r.End.SumReceived.BitsPerSecond / 1e6, cpuPerGB: map[string]float64{}}
	ours := 0.0
	for who, pid := range b.procs {
		s := procCPU(t, pid) - before[who]
		run.cpuPerGB[who] = s / gb
		ours += s
	}
	perf := (r.End.CPU.Host + r.End.CPU.Remote) / 100 * secs
	run.cpuPerGB["iperf3"] = perf / gb
	kthreads := 0.0
	for pid, s := range k1 {
		kthreads += s - k0[pid]
	}
	run.cpuPerGB["kernel threads"] = kthreads / gb
	busy := (m1.total - m1.idle) - (m0.total - m0.idle)
	run.cpuPerGB["other processes"] = max(0, busy-ours-perf-kthreads) / gb
	run.idle = (m1.idle - m0.idle) / (m1.total - m0.total)
	return run
}

// connectRTT is the TCP connection set-up time (SYN to SYN-ACK) to :80 of
// dst, which the lab answers on every academy address, 50 times.
func (b *benchPath) connectRTT(dst string) string {
	t := b.t
	t.Helper()
	var rtts []time.Duration
	for range 50 {
		start := time.Now()
		c, err := lab.DialContext(context.Background(), b.admin, "tcp4", dst+":80")
		if err != nil {
			t.Fatalf("connect %s: %v", dst, err)
		}
		rtts = append(rtts, time.Since(start))
		c.Close()
		time.Sleep(20 * time.Millisecond)
	}
	slices.Sort(rtts)
	return fmt.Sprintf("TCP connect min/median/max %s/%s/%s", rtts[0].Round(time.Microsecond),
		rtts[len(rtts)/2].Round(time.Microsecond), rtts[len(rtts)-1].Round(time.Microsecond))
}

// field picks one figure of each run.
func field(runs []iperfRun, f func(iperfRun) float64) []float64 {
	out := make([]float64, len(runs))
	for i, r := range runs {
		out[i] = f(r)
	}
	return out
}

// spread formats min/median/max.
func spread(v []float64, format string) string {
	s := slices.Clone(v)
	slices.Sort(s)
	return fmt.Sprintf(format+"/"+format+"/"+format, s[0], s[len(s)/2], s[len(s)-1])
}

// clockTicks is USER_HZ, the unit of /proc's CPU times: 100 on every
// Linux architecture Go supports.
const clockTicks = 100

// procCPU is a process's CPU time so far (user and system), in seconds.
func procCPU(t *testing.T, pid int) float64 {
	t.Helper()
	cpu, _, err := procTimes(pid)
	if err != nil {
		t.Fatal(err)
	}
	return cpu
}

// procTimes reads a process's CPU time so far (user and system, in
// seconds) and its flags from /proc/PID/stat.
func procTimes(pid int) (cpu float64, flags uint64, err error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0, 0, err
	}
	// The command name may hold spaces: fields count from its ')'.
	f := strings.Fields(string(b[bytes.LastIndexByte(b, ')')+1:]))
	if len(f) < 13 {
		return 0, 0, fmt.Errorf("/proc/%d/stat: %q", pid, b)
	}
	flags, err1 := strconv.ParseUint(f[6], 10, 64)
	utime, err2 := strconv.ParseFloat(f[11], 64)
	stime, err3 := strconv.ParseFloat(f[12], 64)
	if err := errors.Join(err1, err2, err3); err != nil {
		return 0, 0, fmt.Errorf("/proc/%d/stat: %w", pid, err)
	}
	return (utime + stime) / clockTicks, flags, nil
}

// machineCPU is the machine's CPU time so far, in seconds (all cores).
type machineCPU struct{ total, idle float64 }

func readMachineCPU(t *testing.T) machineCPU {
	t.Helper()
	b, err := os.ReadFile("/proc/stat")
	if err != nil {
		t.Fatal(err)
	}
	line, _, _ := strings.Cut(string(b), "\n")
	f := strings.Fields(line) // cpu user nice system idle iowait irq softirq steal ...
	if len(f) < 9 || f[0] != "cpu" {
		t.Fatalf("/proc/stat: %q", line)
	}
	var m machineCPU
	for i, s := range f[1:9] {
		v, err := strconv.ParseFloat(s, 64)
		if err != nil {
			t.Fatalf("/proc/stat: %q", line)
		}
		m.total += v / clockTicks
		switch i {
		case 3, 4: // idle, iowait
			m.idle += v / clockTicks
		}
	}
	return m
}

// kernelThreadsCPU is the CPU time so far of each kernel thread, in
// seconds (threads that vanish meanwhile are missed: they are few).
func kernelThreadsCPU() map[int]float64 {
	const pfKthread = 0x00200000 // PF_KTHREAD, in /proc/PID/stat's flags
	out := map[int]float64{}
	dirs, _ := os.ReadDir("/proc")
	for _, d := range dirs {
		pid, err := strconv.Atoi(d.Name())
		if err != nil {
			continue
		}
		if cpu, flags, err := procTimes(pid); err == nil && flags&pfKthread != 0 {
			out[pid] = cpu
		}
	}
	return out
}

// pidWithArg finds the process with arg on its command line.
func pidWithArg(t *testing.T, arg string) int {
	t.Helper()
	dirs, err := os.ReadDir("/proc")
	if err != nil {
		t.Fatal(err)
	}
	for _, d := range dirs {
		pid, err := strconv.Atoi(d.Name())
		if err != nil {
			continue
		}
		cmd, err := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", pid))
		if err == nil && slices.Contains(strings.Split(string(cmd), "\x00"), arg) {
			return pid
		}
	}
	t.Fatalf("no process with %s", arg)
	return 0
}

// academyBackOnRenater waits until the datacenter's tailscaled sends to the
// box's Renater address, so that each fault is made in the steady state.
// After Renater returns, the academy keeps answering through the backup's
// address for minutes (pkg/tunnel, refresh): the wait is cut short by
// restarting the box's tailscaled, which makes it forget that address. It
// returns where the datacenter sent before the fault.
func (tl *tunnelLab) academyBackOnRenater(t *testing.T) string {
	t.Helper()
	wait := func(d time.Duration) string {
		dc := ""
		for end := time.Now().Add(d); time.Now().Before(end); time.Sleep(200 * time.Millisecond) {
			if dc = tl.datacenterPathToBox(t); dc == renaterBoxAddr {
				break
			}
		}
		return dc
	}
	if dc := wait(10 * time.Second); dc == renaterBoxAddr {
		return dc
	}
	mark := tl.mark()
	if err := syscall.Kill(tl.tailscaledPID(t), syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	tl.waitEventAfter(t, mark, 10*time.Second, "service-ready", map[string]string{"service": "tailscaled"})
	dc := wait(60 * time.Second)
	tl.waitReach(t, 60*time.Second)
	time.Sleep(time.Second)
	return dc
}

// renaterBoxAddr is the box's address on Renater in the demo config.
const renaterBoxAddr = "192.0.2.2"

// datacenterPathToBox is the address the datacenter's tailscaled sends
// the box's traffic to directly ("" when relayed or unknown).
func (tl *tunnelLab) datacenterPathToBox(t *testing.T) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	lc := local.Client{Socket: tl.acad.RouterSocket(), UseSocketOnly: true}
	st, err := lc.Status(ctx)
	if err != nil {
		t.Logf("datacenter tailscaled status: %v", err)
		return ""
	}
	for _, p := range st.Peer {
		if ap, err := netip.ParseAddrPort(p.CurAddr); err == nil && strings.HasPrefix(ap.Addr().String(), "192.0.2.") {
			return ap.Addr().String()
		}
	}
	return ""
}
