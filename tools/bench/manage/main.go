// Command manage is the NOC push and pull benchmark (issue 16,
// docs/benchmarks.md).
//
//	manage push -n 10000    a fleet of simulated boxes on loopback in this
//	                        process; passerellectl push (a child process)
//	                        rolls a signed bundle out to all of them in
//	                        waves over TLS, each box pinned by its
//	                        certificate's fingerprint: wall time and the
//	                        NOC's peak RSS
//	manage pull -n 10000 -cycle 60s
//	                        one HTTPS bundle server (a child process) and
//	                        the boxes' real pull clients, each polling once
//	                        per cycle at a random time: the server's CPU per
//	                        cycle, first with new bundles (200), then
//	                        unchanged (304 with ETags)
package main

import (
	"context"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"flag"
	"fmt"
	"io"
	"log"
	"math/big"
	mrand "math/rand/v2"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"passerelle/pkg/box"
	"passerelle/pkg/config"
	"passerelle/pkg/health"
	"passerelle/pkg/manage"
	"passerelle/pkg/manage/fleettest"
)

func main() {
	if len(os.Args) < 2 {
		log.Fatal("usage: manage push|pull|serve [flags]")
	}
	fs := flag.NewFlagSet(os.Args[1], flag.ExitOnError)
	n := fs.Int("n", 10000, "boxes")
	ctl := fs.String("ctl", "bin/passerellectl", "passerellectl binary (push)")
	cycle := fs.Duration("cycle", time.Minute, "one polling period, compressed (pull)")
	dir := fs.String("dir", "", "work directory (default a temporary one)")
	parallel := fs.Int("parallel", 256, "boxes pushed to at once (push)")
	rounds := fs.Int("rounds", 3, "polling cycles (pull): the first fetches new bundles")
	fs.Parse(os.Args[2:])
	if *dir == "" {
		d, err := os.MkdirTemp("", "bench-manage-")
		if err != nil {
			log.Fatal(err)
		}
		defer os.RemoveAll(d)
		*dir = d
	}
	switch os.Args[1] {
	case "push":
		benchPush(*n, *ctl, *dir, *parallel)
	case "pull":
		benchPull(*n, *cycle, *dir, *rounds)
	case "serve":
		serve(*dir)
	default:
		log.Fatalf("unknown mode %q", os.Args[1])
	}
}

func benchPush(n int, ctl, dir string, parallel int) {
	start := time.Now()
	f, err := fleettest.Start(fleettest.Options{N: n, Dir: filepath.Join(dir, "boxes"), Window: 10 * time.Second, Hold: 200 * time.Millisecond})
	if err != nil {
		log.Fatal(err)
	}
	defer f.Close()
	log.Printf("%d boxes up in %s", n, time.Since(start).Round(time.Millisecond))
	configs := filepath.Join(dir, "configs")
	os.MkdirAll(configs, 0o755)
	var csv strings.Builder
	csv.WriteString("uai,api,fingerprint\n")
	for i, b := range f.Boxes {
		os.WriteFile(filepath.Join(configs, b.UAI+".yaml"), []byte(fleettest.Config(i, "v2", f.Key)), 0o644)
		fmt.Fprintf(&csv, "%s,%s,%s\n", b.UAI, strings.TrimPrefix(b.URL, "https://"), b.Fingerprint)
	}
	inv := filepath.Join(dir, "schools.csv")
	os.WriteFile(inv, []byte(csv.String()), 0o644)
	key := filepath.Join(dir, "noc.key")
	kf, _ := json.Marshal(map[string]string{"key_id": f.Key.ID, "private_key": base64.StdEncoding.EncodeToString(f.Key.Private)})
	os.WriteFile(key, kf, 0o600)

	cmd := exec.Command(ctl, "push", "--json", "--key", key, "--version", "2", "--inventory", inv, "--configs", configs,
		"--url", "https://{api}", "--parallel", strconv.Itoa(parallel), "--known-boxes", filepath.Join(dir, "known_boxes"))
	var out strings.Builder
	cmd.Stdout, cmd.Stderr = &out, os.Stderr
	t0 := time.Now()
	if err := cmd.Start(); err != nil {
		log.Fatal(err)
	}
	// The peak RSS from /proc (VmHWM of the child's own address space):
	// wait4's ru_maxrss would include this process's RSS, shared before
	// the exec.
	var hwm int
	stop := make(chan struct{})
	done := make(chan struct{})
	go func() {
		defer close(done)
		for {
			if v := vmHWM(cmd.Process.Pid); v > hwm {
				hwm = v
			}
			select {
			case <-stop:
				return
			case <-time.After(100 * time.Millisecond):
			}
		}
	}()
	err = cmd.Wait()
	close(stop)
	<-done
	wall := time.Since(t0)
	var rep manage.Report
	json.Unmarshal([]byte(out.String()), &rep)
	ru := cmd.ProcessState.SysUsage().(*syscall.Rusage)
	fmt.Printf("push: %v\n", rep.Summary())
	shown := 0
	for _, o := range rep.Outcomes {
		if o.Failed() && shown < 3 {
			fmt.Printf("push: failed %s: %s %s %s\n", o.UAI, o.Outcome, o.Reason, o.Detail)
			shown++
		}
	}
	fmt.Printf("push: %d boxes, waves %v, pushed %d, failed %d, exit %v\n", n, rep.Waves, rep.Pushed, rep.Failed, err)
	fmt.Printf("push: wall %s (rollout %s; the rest is validating and signing), NOC peak RSS %.1f MiB, NOC CPU %.2f s user + %.2f s sys\n",
		wall.Round(time.Millisecond), rep.Took.Round(time.Millisecond), float64(hwm)/1024,
		time.Duration(ru.Utime.Nano()).Seconds(), time.Duration(ru.Stime.Nano()).Seconds())
}

// serve is the pull server child: HTTPS on 127.0.0.1, FileServer of dir/pub.
func serve(dir string) {
	cert, err := tls.LoadX509KeyPair(filepath.Join(dir, "cert.pem"), filepath.Join(dir, "key.pem"))
	if err != nil {
		log.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println(ln.Addr().String())
	srv := &http.Server{Handler: http.StripPrefix("/bundles", manage.FileServer(filepath.Join(dir, "pub"))),
		TLSConfig: &tls.Config{Certificates: []tls.Certificate{cert}}, ErrorLog: log.New(io.Discard, "", 0)}
	log.Fatal(srv.Serve(tls.NewListener(ln, srv.TLSConfig)))
}

type nopSubmit struct{}

func (nopSubmit) Submit(context.Context, *config.Config, string) error { return nil }

func benchPull(n int, cycle time.Duration, dir string, rounds int) {
	writeCert(dir)
	_, priv, _ := ed25519Key()
	key := manage.Key{ID: "noc-sim", Private: priv}
	pub := filepath.Join(dir, "pub")
	os.MkdirAll(pub, 0o755)
	srv := exec.Command(os.Args[0], "serve", "-dir", dir)
	stdout, _ := srv.StdoutPipe()
	srv.Stderr = os.Stderr
	if err := srv.Start(); err != nil {
		log.Fatal(err)
	}
	defer srv.Process.Kill()
	var addr string
	fmt.Fscanln(stdout, &addr)

	// The boxes: real managers with the pull URL of the server.
	boxes := make([]*manage.Manager, n)
	now := time.Now()
	for i := range n {
		text := fleettest.Config(i, "base", key) + fmt.Sprintf("  pull_url: https://%s/bundles/{uai}.bundle\n  ca_file: %s\n", addr, filepath.Join(dir, "cert.pem"))
		cfg, err := config.Parse("box.yaml", []byte(text))
		if err != nil {
			log.Fatal(err)
		}
		m, err := manage.New(box.Deps{Metrics: prometheus.NewRegistry(), Health: health.New(time.Now)}, manage.Options{
			Dir: filepath.Join(dir, "boxes", cfg.Identity.UAI), Submitter: nopSubmit{}, Confirm: time.Second, Hold: 10 * time.Millisecond, Every: 100 * time.Millisecond})
		if err != nil {
			log.Fatal(err)
		}
		m.Boot([]byte(text), "box.yaml")
		m.Running(cfg, []byte(text))
		boxes[i] = m
		b, _ := manage.Sign(manage.Payload{UAI: cfg.Identity.UAI, Version: 2, Expires: now.Add(time.Hour), SignedAt: now,
			Config: fleettest.Config(i, "v2", key) + fmt.Sprintf("  pull_url: https://%s/bundles/{uai}.bundle\n  ca_file: %s\n", addr, filepath.Join(dir, "cert.pem"))}, key)
		os.WriteFile(filepath.Join(pub, cfg.Identity.UAI+".bundle"), b, 0o644)
	}
	log.Printf("%d boxes ready; server %s", n, addr)
	for round := range rounds {
		what := "unchanged (304)"
		if round == 0 {
			what = "new bundles (200)"
		}
		cpu0 := procCPU(srv.Process.Pid)
		var wg sync.WaitGroup
		var mu sync.Mutex
		fails := 0
		t0 := time.Now()
		for _, m := range boxes {
			wg.Add(1)
			go func() {
				defer wg.Done()
				time.Sleep(time.Duration(mrand.Int64N(int64(cycle))))
				if err := m.PollOnce(context.Background()); err != nil {
					mu.Lock()
					fails++
					mu.Unlock()
				}
			}()
		}
		wg.Wait()
		el := time.Since(t0)
		cpu := procCPU(srv.Process.Pid) - cpu0
		fmt.Printf("pull round %d, %s: %d polls in %s (%d failed), server CPU %.2f s = %.1f %% of one core over the compressed cycle; at one poll per box every 5 min: %.2f %% of one core\n",
			round+1, what, n, el.Round(time.Millisecond), fails, cpu, 100*cpu/el.Seconds(), 100*cpu/300)
		time.Sleep(2 * time.Second) // windows end (commits)
	}
	for _, m := range boxes {
		m.Close()
	}
}

// vmHWM is a process's peak resident set in KiB (0 once it is gone).
func vmHWM(pid int) int {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0
	}
	for _, line := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, "VmHWM:"); ok {
			n, _ := strconv.Atoi(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(v), "kB")))
			return n
		}
	}
	return 0
}

// procCPU is a process's user+system CPU seconds.
func procCPU(pid int) float64 {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0
	}
	f := strings.Fields(string(b[strings.LastIndexByte(string(b), ')')+2:]))
	u, _ := strconv.ParseFloat(f[11], 64)
	s, _ := strconv.ParseFloat(f[12], 64)
	return (u + s) / 100 // USER_HZ
}

func writeCert(dir string) {
	k, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "127.0.0.1"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(24 * time.Hour), IsCA: true, BasicConstraintsValid: true,
		KeyUsage: x509.KeyUsageCertSign | x509.KeyUsageDigitalSignature, IPAddresses: []net.IP{net.ParseIP("127.0.0.1")}}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &k.PublicKey, k)
	if err != nil {
		log.Fatal(err)
	}
	kd, _ := x509.MarshalECPrivateKey(k)
	os.WriteFile(filepath.Join(dir, "cert.pem"), pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o644)
	os.WriteFile(filepath.Join(dir, "key.pem"), pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: kd}), 0o600)
}

func ed25519Key() ([]byte, []byte, error) {
	pub, priv, err := ed25519.GenerateKey(nil)
	return pub, priv, err
}
