package integration

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/miekg/dns"

	"passerelle/pkg/lab"
)

// The metrics push of issue 15 against a real Prometheus, run with its
// remote-write receiver in the lab's academy datacenter: the lycée example
// (probe targets added, so its uplinks come up in the lab) pushes every
// 10 s (the shortest interval the config accepts).

const (
	telemetryUAI      = "0690001B"
	telemetryInterval = 10 * time.Second
	promAddr          = "203.0.113.100:9090" // the academy server's address
)

// promServer is a Prometheus in the academy namespace, restartable on the
// same storage.
type promServer struct {
	ns, dir, cfg string
	cmd          *exec.Cmd
	done         chan struct{}
	out          *eventLog
}

func startPrometheus(t *testing.T, ns string) *promServer {
	t.Helper()
	if _, err := exec.LookPath("prometheus"); err != nil {
		t.Skip("prometheus not installed (apt-get install prometheus): the telemetry lab test needs a real receiver")
	}
	dir := t.TempDir()
	p := &promServer{ns: ns, dir: dir, cfg: filepath.Join(dir, "prometheus.yml"), out: &eventLog{}}
	if err := os.WriteFile(p.cfg, []byte("global:\n  scrape_interval: 1m\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	p.start(t)
	t.Cleanup(func() {
		p.stop(t)
		if t.Failed() {
			t.Logf("prometheus output:\n%s", p.out.String())
		}
	})
	return p
}

func (p *promServer) start(t *testing.T) {
	t.Helper()
	p.cmd = exec.Command("prometheus", "--config.file="+p.cfg, "--storage.tsdb.path="+filepath.Join(p.dir, "data"),
		"--web.enable-remote-write-receiver", "--web.listen-address="+promAddr, "--log.level=warn")
	p.cmd.Stdout, p.cmd.Stderr = p.out, p.out
	p.cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := lab.StartCommand(p.ns, p.cmd); err != nil {
		t.Fatal(err)
	}
	p.done = make(chan struct{})
	go func(c *exec.Cmd, done chan struct{}) { c.Wait(); close(done) }(p.cmd, p.done)
	waitUntil(t, "prometheus ready", 60*time.Second, func() bool {
		resp, err := lab.HTTPClient(p.ns).Get("http://" + promAddr + "/-/ready")
		if err != nil {
			return false
		}
		resp.Body.Close()
		return resp.StatusCode == 200
	})
}

func (p *promServer) stop(t *testing.T) {
	if p.cmd == nil {
		return
	}
	p.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-p.done:
	case <-time.After(30 * time.Second):
		p.cmd.Process.Kill()
		<-p.done
	}
	p.cmd = nil
}

// api runs a Prometheus HTTP API call and returns its data.
func (p *promServer) api(t *testing.T, path string, q url.Values) json.RawMessage {
	t.Helper()
	resp, err := lab.HTTPClient(p.ns).Get("http://" + promAddr + path + "?" + q.Encode())
	if err != nil {
		t.Fatalf("prometheus %s: %v", path, err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	var r struct {
		Status string          `json:"status"`
		Data   json.RawMessage `json:"data"`
		Error  string          `json:"error"`
	}
	if err := json.Unmarshal(body, &r); err != nil || r.Status != "success" {
		t.Fatalf("prometheus %s %v: %s %v", path, q, body, err)
	}
	return r.Data
}

type promSample struct {
	Metric map[string]string `json:"metric"`
	Value  [2]any            `json:"value"`
	Values [][2]any          `json:"values"`
}

func (p *promServer) query(t *testing.T, expr string, at time.Time) []promSample {
	t.Helper()
	q := url.Values{"query": {expr}}
	if !at.IsZero() {
		q.Set("time", strconv.FormatFloat(float64(at.UnixMilli())/1000, 'f', 3, 64))
	}
	var d struct {
		Result []promSample `json:"result"`
	}
	if err := json.Unmarshal(p.api(t, "/api/v1/query", q), &d); err != nil {
		t.Fatal(err)
	}
	return d.Result
}

func sampleValue(t *testing.T, s promSample) float64 {
	t.Helper()
	v, err := strconv.ParseFloat(fmt.Sprint(s.Value[1]), 64)
	if err != nil {
		t.Fatal(err)
	}
	return v
}

// telemetryLycee is the lycée example as the lab runs it, pushing to the
// academy's Prometheus.
func telemetryLycee(t *testing.T) []byte {
	t.Helper()
	data, err := os.ReadFile("../configs/examples/lycee.yaml")
	if err != nil {
		t.Fatal(err)
	}
	s := string(data)
	w := "    weight: 1\n"
	if strings.Count(s, w) != 2 || !strings.Contains(s, "\ntunnel:\n") {
		t.Fatal("lycee.yaml changed: expected two uplinks with weight: 1 and a tunnel section")
	}
	s = strings.ReplaceAll(s, w, w+"    probe:\n      targets: [203.0.113.10]\n")
	s += fmt.Sprintf("telemetry:\n  enabled: true\n  remote_write_url: http://%s/api/v1/write\n  interval: %s\n  buffer_directory: %s\n",
		promAddr, telemetryInterval, filepath.Join(t.TempDir(), "telemetry"))
	return []byte(s)
}

func TestTelemetryLabPushBudgetsPrivacyOutage(t *testing.T) {
	needRoot(t)
	// The lycée's tunnel is on, with no auth key installed and a control
	// server the lab does not have: tailscaled runs and waits, as on a box
	// whose key is not installed yet.
	if _, err := tailscaledBin(); err != nil {
		t.Fatal(err)
	}
	fw := labFor(t, telemetryLycee(t), func(spec *lab.Spec) {
		for i, z := range spec.Zones {
			if z.Subnet.Bits() > 24 {
				spec.Zones[i].Client = netip.PrefixFrom(nthAddr(z.Subnet.Addr(), 5), z.Subnet.Bits())
			}
		}
	})
	prom := startPrometheus(t, fw.lab.Namespace(lab.RoleAcademy))
	state := t.TempDir()
	fw.launch(t, state, "--tunnel-run-dir", filepath.Join(state, "tunnel"))
	fw.waitEvent(t, 15*time.Second, "config-applied", nil)

	// 1. The box's series reach the academy: an uplink state and a
	// node_exporter metric, both with the box's UAI.
	uai := `uai="` + telemetryUAI + `"`
	for _, expr := range []string{`passerelle_uplink_state{` + uai + `,uplink="renater_a"}`, `node_load1{` + uai + `}`,
		`node_network_receive_bytes_total{` + uai + `,device="wan0"}`} {
		waitUntil(t, expr+" at the academy", 45*time.Second, func() bool { return len(prom.query(t, expr, time.Time{})) > 0 })
		s := prom.query(t, expr, time.Time{})[0]
		if s.Metric["academy"] != "lyon" || s.Metric["hostname"] != "passerelle-0690001b" {
			t.Errorf("%s labels %v", expr, s.Metric)
		}
	}

	// 2. Lab traffic the labels must never show: names asked by pupils,
	// pupils' addresses and MACs.
	secret := fmt.Sprintf("eleve-%d.lab.test", time.Now().UnixNano()%1e6)
	var forbidden []string
	for _, z := range fw.lab.Spec().Zones {
		ns := fw.lab.Namespace(lab.RoleClient(z.Name))
		forbidden = append(forbidden, z.Client.Addr().String())
		lab.RunInNamespace(ns, func() error {
			if ifc, err := net.InterfaceByName("eth0"); err == nil {
				forbidden = append(forbidden, ifc.HardwareAddr.String())
			}
			return nil
		})
		for _, name := range []string{secret, "www." + secret, "bad.lab.test"} {
			dnsQuery(t, ns, netip.AddrPortFrom(z.Gateway, 53).String(), dns.Fqdn(name), dns.TypeA, "udp")
		}
		forbidden = append(forbidden, secret, "www."+secret)
	}
	fw.get("peda")
	fw.get("admin")
	time.Sleep(2*telemetryInterval + 2*time.Second)

	// 3. Budgets: series per box, compressed bytes per push (one push a
	// minute at the default interval).
	var series []map[string]string
	q := url.Values{"match[]": {`{` + uai + `}`}, "start": {strconv.FormatInt(time.Now().Add(-telemetryInterval).Unix(), 10)}}
	if err := json.Unmarshal(prom.api(t, "/api/v1/series", q), &series); err != nil {
		t.Fatal(err)
	}
	t.Logf("series of the lycée box: %d", len(series))
	if len(series) > 500 || len(series) < 100 {
		t.Errorf("series of the lycée box: %d, want 100..500", len(series))
	}
	bytes := prom.query(t, `passerelle_telemetry_sent_bytes_total{`+uai+`}`, time.Time{})
	batches := prom.query(t, `passerelle_telemetry_sent_batches_total{`+uai+`}`, time.Time{})
	if len(bytes) != 1 || len(batches) != 1 {
		t.Fatalf("push metrics missing: %v %v", bytes, batches)
	}
	perPush := sampleValue(t, bytes[0]) / sampleValue(t, batches[0])
	t.Logf("compressed bytes per push: %.0f (%.0f pushes)", perPush, sampleValue(t, batches[0]))
	if perPush > 10*1024 {
		t.Errorf("%.0f compressed bytes per push: over the 10 KB per minute budget", perPush)
	}
	values := map[string]string{}
	for _, s := range series {
		for k, v := range s {
			values[v] = k + " of " + s["__name__"]
		}
	}
	for _, f := range forbidden {
		if where, ok := values[f]; ok {
			t.Errorf("label value %q (%s) pushed to the academy", f, where)
		}
	}
	for v, where := range values {
		if strings.Contains(v, secret) {
			t.Errorf("label value %q (%s) carries a queried name", v, where)
		}
	}

	// 4. /metrics: the administrative zone reads it; the other zones and
	// the internet (through the uplinks) do not.
	admin := fw.zoneByKind(t, "administrative")
	metricsURL := "http://" + netip.AddrPortFrom(admin.Address, 9100).String() + "/metrics"
	if body, err := getFrom(fw.lab.Namespace(lab.RoleClient(admin.Name)), metricsURL); err != nil || !strings.Contains(body, "node_load1") {
		t.Errorf("/metrics from the administrative zone: %v", err)
	}
	for _, z := range fw.cfg.Zones {
		if z.Name == admin.Name {
			continue
		}
		for _, target := range []netip.Addr{admin.Address, z.Address} {
			u := "http://" + netip.AddrPortFrom(target, 9100).String() + "/metrics"
			if _, err := getFrom(fw.lab.Namespace(lab.RoleClient(z.Name)), u); err == nil {
				t.Errorf("/metrics answers %s zone's client at %s", z.Name, u)
			}
		}
	}
	for _, u := range fw.cfg.Uplinks {
		target := "http://" + netip.AddrPortFrom(u.Address.Addr(), 9100).String() + "/metrics"
		if _, err := getFrom(fw.lab.Namespace(lab.RoleInternet), target); err == nil {
			t.Errorf("/metrics answers the internet on %s", target)
		}
	}

	// 5. Outage: the receiver stops for 2 minutes and the daemon restarts
	// once meanwhile; when the receiver is back the gap is filled.
	prom.stop(t)
	down := time.Now()
	t.Logf("receiver stopped at %s", down.Format(time.TimeOnly))
	time.Sleep(time.Minute)
	fw.restart(t, syscall.SIGTERM)
	fw.waitEvent(t, 15*time.Second, "config-applied", nil)
	time.Sleep(time.Until(down.Add(2 * time.Minute)))
	mark := fw.mark()
	prom.start(t)
	up := time.Now()
	fw.waitEventAfter(t, mark, 2*time.Minute, "telemetry-resumed", nil)
	t.Logf("backlog sent %s after the receiver came back", time.Since(up).Round(time.Second))

	rng := prom.query(t, `node_time_seconds{`+uai+`}[3m]`, up)
	if len(rng) != 1 {
		t.Fatalf("node_time_seconds over the outage: %d series", len(rng))
	}
	var inside []time.Time
	for _, v := range rng[0].Values {
		f, _ := strconv.ParseFloat(fmt.Sprint(v[0]), 64)
		at := time.UnixMilli(int64(f * 1000))
		if at.After(down) && at.Before(up) {
			inside = append(inside, at)
		}
	}
	sort.Slice(inside, func(i, j int) bool { return inside[i].Before(inside[j]) })
	t.Logf("samples inside the %s outage: %d", up.Sub(down).Round(time.Second), len(inside))
	want := int(up.Sub(down)/telemetryInterval) - 3 // the restart costs a push or two
	if len(inside) < want {
		t.Errorf("%d samples inside the outage, want at least %d", len(inside), want)
	}
	for i := 1; i < len(inside); i++ {
		if gap := inside[i].Sub(inside[i-1]); gap > 3*telemetryInterval {
			t.Errorf("gap of %s in the outage at %s", gap.Round(time.Second), inside[i-1].Format(time.TimeOnly))
		}
	}

	// 6. tailscaled without its auth key never crash-looped: it waited
	// for the key (the tunnel's enrolment event says so), across both
	// daemons.
	if rs := fw.log.find(0, "tunnel-enrolment", map[string]string{"state": "no-key"}); len(rs) == 0 {
		t.Error("no tunnel-enrolment no-key event: tailscaled did not run and wait for its key")
	}
	if rs := fw.log.find(0, "service-restart", map[string]string{"service": "tailscaled"}); len(rs) != 0 {
		t.Errorf("tailscaled exited %d times by itself (first: %s)", len(rs), rs[0].str("exit"))
	}
}

// zoneByKind returns the first zone of a kind.
func (fw *firmware) zoneByKind(t *testing.T, kind string) configZone {
	t.Helper()
	for _, z := range fw.cfg.Zones {
		if string(z.Kind) == kind {
			return configZone{Name: z.Name, Address: z.Address}
		}
	}
	t.Fatalf("no %s zone", kind)
	return configZone{}
}

type configZone struct {
	Name    string
	Address netip.Addr
}

// getFrom fetches url from inside namespace ns, failing fast.
func getFrom(ns, u string) (string, error) {
	c := lab.HTTPClient(ns)
	c.Timeout = 2 * time.Second
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	resp, err := c.Do(req)
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if resp.StatusCode != 200 {
		return string(b), fmt.Errorf("status %d", resp.StatusCode)
	}
	return string(b), err
}
