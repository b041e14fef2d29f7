package integration

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"fmt"
	"math/big"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"passerelle/pkg/manage"
)

// NOC configuration push (issue 16): the demo school trusting a NOC key
// made by passerellectl keygen, polling https://203.0.113.100:8443 (a web
// server in the academy datacenter's namespace serving what passerellectl
// publish wrote) every second, with a 10 s confirm window.

const manageConfirm = 10 * time.Second

type manageLab struct {
	*firmware
	dir, key, pub string // work directory, key file, published tree
	state         string // the daemon's state directory
	confirm       time.Duration
}

// startManageLab builds the lab, the NOC key and the pull server, and
// starts the firmware on the demo configuration plus its management
// section; nothing is published yet.
func startManageLab(t *testing.T) *manageLab {
	t.Helper()
	return startManageLabWith(t, "", manageConfirm)
}

// startManageLabWith is startManageLab with more configuration (extra,
// appended) and another confirm window.
func startManageLabWith(t *testing.T, extra string, confirm time.Duration) *manageLab {
	t.Helper()
	needRoot(t)
	ml := &manageLab{dir: t.TempDir(), confirm: confirm}
	ml.key = filepath.Join(ml.dir, "noc.key")
	ml.pub = filepath.Join(ml.dir, "pub")
	k := nocKeygen(t, bins(t).ctl, "noc-lab", ml.key)
	caFile, cert := labCert(t, ml.dir, "203.0.113.100")
	cfg := readDemo(t) + fmt.Sprintf(`management:
  trusted_keys:
    - name: noc-lab
      public_key: %s
  pull_url: https://203.0.113.100:8443/bundles/{uai}.bundle
  ca_file: %s
`, k.PublicKey, caFile) + extra
	fw := labFor(t, []byte(cfg), nil)
	ml.firmware = fw
	servePull(t, ml, cert)
	ml.state = t.TempDir()
	ml.launch(t)
	fw.waitEvent(t, 10*time.Second, "config-applied", nil)
	return ml
}

func (ml *manageLab) launch(t *testing.T) {
	ml.firmware.launch(t, ml.state, "--manage-dir", filepath.Join(ml.state, "manage"),
		"--confirm-timeout", ml.confirm.String(), "--pull-every", "1s")
}

// publish signs cfg (the demo config with edit applied) as version v
// into the pull server's tree with passerellectl publish.
func (ml *manageLab) publish(t *testing.T, v int, edit func(string) string) {
	t.Helper()
	data, err := os.ReadFile(ml.path)
	if err != nil {
		t.Fatal(err)
	}
	file := filepath.Join(ml.dir, fmt.Sprintf("v%d", v), "0599999Y.yaml")
	os.MkdirAll(filepath.Dir(file), 0o755)
	if err := os.WriteFile(file, []byte(edit(string(data))), 0o644); err != nil {
		t.Fatal(err)
	}
	out, err := exec.Command(bins(t).ctl, "publish", "--key", ml.key, "--version", fmt.Sprint(v), "--out", ml.pub, file).CombinedOutput()
	if err != nil {
		t.Fatalf("publish: %v\n%s", err, out)
	}
}

// generation reads the daemon's generations state.
func (ml *manageLab) generations(t *testing.T) (manage.State, []manage.Generation) {
	t.Helper()
	s, err := manage.OpenStore(filepath.Join(ml.state, "manage"))
	if err != nil {
		t.Fatal(err)
	}
	st, err := s.State()
	if err != nil {
		t.Fatal(err)
	}
	gs, _ := s.List()
	return st, gs
}

func TestManagePullCommit(t *testing.T) {
	ml := startManageLab(t)
	mark := ml.mark()
	ml.publish(t, 1, func(s string) string {
		return strings.Replace(s, "deny: [bad.lab.test]", "deny: [bad.lab.test, worse.lab.test]", 1)
	})
	pend := ml.waitEventAfter(t, mark, 10*time.Second, manage.EvBundlePending, map[string]string{"source": "pull"})
	at := ml.waitEventAfter(t, mark, manageConfirm+5*time.Second, manage.EvBundleCommitted, nil)
	t.Logf("committed %s after the apply", at.Sub(pend).Round(time.Millisecond))
	st, gs := ml.generations(t)
	if st.Pending != nil || st.Highest != 1 || len(gs) != 2 || gs[0].State != manage.StateCommitted || gs[0].KeyID != "noc-lab" {
		t.Fatalf("state %+v, generations %+v", st, gs)
	}
	// A restart boots the committed generation, not the file.
	ml.cmd.Process.Signal(syscall.SIGTERM)
	ml.wait(10 * time.Second)
	mark = ml.mark()
	ml.launch(t)
	ml.waitEventAfter(t, mark, 10*time.Second, "config-applied", map[string]string{"source": "start"})
	var booted bool
	for _, r := range ml.log.records(mark) {
		if strings.Contains(r.str("msg"), "last committed generation") && r.str("gen") == "2" {
			booted = true
		}
	}
	if !booted {
		t.Error("the restarted daemon did not boot generation 2")
	}
}

func TestManageRollbackBrokenUplinks(t *testing.T) {
	ml := startManageLab(t)
	mark := ml.mark()
	// Both uplinks take their ISP's address: the gateway is the box's
	// old address, which nobody answers.
	ml.publish(t, 1, func(s string) string {
		s = strings.Replace(s, "address: 192.0.2.2/30\n    gateway: 192.0.2.1", "address: 192.0.2.1/30\n    gateway: 192.0.2.2", 1)
		return strings.Replace(s, "address: 192.0.2.6/30\n    gateway: 192.0.2.5", "address: 192.0.2.5/30\n    gateway: 192.0.2.6", 1)
	})
	pend := ml.waitEventAfter(t, mark, 10*time.Second, manage.EvBundlePending, nil)
	r := ml.waitRecord(t, mark, manageConfirm+10*time.Second, manage.EvBundleRolledBack, map[string]string{"reason": manage.RollbackGate})
	t.Logf("rolled back %s after the apply: %s", r.at().Sub(pend).Round(time.Millisecond), r.str("detail"))
	if !strings.Contains(r.str("detail"), "uplinks: no uplink online") {
		t.Errorf("detail %q", r.str("detail"))
	}
	ml.waitEventAfter(t, mark, 5*time.Second, "config-applied", map[string]string{"source": "rollback"})
	waitUntil(t, "the admin client reaching the internet again", 15*time.Second, func() bool {
		_, err := ml.get("admin")
		return err == nil
	})
	st, gs := ml.generations(t)
	if st.Pending != nil || st.Current != 1 || gs[0].State != manage.StateRolledBack {
		t.Fatalf("state %+v, newest generation %+v", st, gs[0].State)
	}
}

func TestManageRollbackAdminSubnet(t *testing.T) {
	ml := startManageLab(t)
	// The admin zone has a client (the box sees it as a neighbour).
	waitUntil(t, "the admin client reaching the internet", 10*time.Second, func() bool {
		_, err := ml.get("admin")
		return err == nil
	})
	mark := ml.mark()
	ml.publish(t, 1, func(s string) string {
		return strings.Replace(s, "subnet: 10.20.0.0/24\n    address: 10.20.0.1", "subnet: 10.21.0.0/24\n    address: 10.21.0.1", 1)
	})
	pend := ml.waitEventAfter(t, mark, 10*time.Second, manage.EvBundlePending, nil)
	r := ml.waitRecord(t, mark, manageConfirm+10*time.Second, manage.EvBundleRolledBack, map[string]string{"reason": manage.RollbackGate})
	t.Logf("rolled back %s after the apply: %s", r.at().Sub(pend).Round(time.Millisecond), r.str("detail"))
	if !strings.Contains(r.str("detail"), "zone admin had clients") {
		t.Errorf("detail %q", r.str("detail"))
	}
	waitUntil(t, "the admin client reaching the internet again", 15*time.Second, func() bool {
		_, err := ml.get("admin")
		return err == nil
	})
}

func TestManageRestartInWindow(t *testing.T) {
	ml := startManageLab(t)
	mark := ml.mark()
	ml.publish(t, 1, func(s string) string {
		return strings.Replace(s, "deny: [bad.lab.test]", "deny: [bad.lab.test, worse.lab.test]", 1)
	})
	ml.waitEventAfter(t, mark, 10*time.Second, manage.EvBundlePending, nil)
	// A crash inside the window.
	ml.cmd.Process.Signal(syscall.SIGKILL)
	ml.wait(10 * time.Second)
	mark = ml.mark()
	ml.launch(t)
	ml.waitEventAfter(t, mark, 10*time.Second, manage.EvBundleRolledBack, map[string]string{"reason": manage.RollbackCrash})
	ml.waitEventAfter(t, mark, 10*time.Second, "config-applied", map[string]string{"source": "start"})
	st, gs := ml.generations(t)
	if st.Pending != nil || st.Current != 1 || gs[0].State != manage.StateRolledBack {
		t.Fatalf("state %+v, newest %+v", st, gs[0])
	}
	// The same bundle, polled again, is a replay: never applied again.
	ml.waitEventAfter(t, mark, 10*time.Second, manage.EvBundleRejected, map[string]string{"reason": string(manage.ReasonReplay)})
}

// labCert makes a CA and a server certificate for ip; it returns the
// CA's PEM file and the server's key pair.
func labCert(t *testing.T, dir, ip string) (string, tls.Certificate) {
	t.Helper()
	caKey, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	ca := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "lab NOC CA"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(24 * time.Hour),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign}
	caDER, err := x509.CreateCertificate(rand.Reader, ca, ca, &caKey.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	caCert, _ := x509.ParseCertificate(caDER)
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	leaf := &x509.Certificate{SerialNumber: big.NewInt(2), Subject: pkix.Name{CommonName: ip},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(24 * time.Hour),
		IPAddresses: []net.IP{net.ParseIP(ip)}, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}}
	der, err := x509.CreateCertificate(rand.Reader, leaf, caCert, &key.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	caFile := filepath.Join(dir, "ca.pem")
	os.WriteFile(caFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: caDER}), 0o644)
	return caFile, tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key}
}
