package boot

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"testing"
	"time"

	"passerelle/pkg/health"
)

const hostMountinfo = `22 1 8:1 / / rw,relatime shared:1 - ext4 /dev/sda1 rw
23 22 0:21 / /proc rw,nosuid,nodev,noexec,relatime shared:12 - proc proc rw
24 22 0:22 / /sys rw,nosuid,nodev,noexec,relatime shared:2 - sysfs sysfs rw
25 22 0:5 / /dev rw,nosuid shared:3 - devtmpfs udev rw,mode=755
26 25 0:23 / /dev/pts rw,nosuid,noexec shared:4 - devpts devpts rw,mode=620
27 22 0:24 / /run rw,nosuid,nodev shared:5 - tmpfs tmpfs rw,mode=755
28 22 0:25 / /media/my\040disk rw shared:6 - vfat /dev/sdb1 rw
`

func TestParseMountinfo(t *testing.T) {
	es, err := ParseMountinfo(strings.NewReader(hostMountinfo))
	if err != nil {
		t.Fatal(err)
	}
	if len(es) != 7 {
		t.Fatalf("%d entries, want 7", len(es))
	}
	want := MountEntry{ID: 28, Parent: 22, Target: "/media/my disk", Options: "rw", FSType: "vfat", Source: "/dev/sdb1"}
	if es[6] != want {
		t.Errorf("entry = %+v, want %+v", es[6], want)
	}
	if _, err := ParseMountinfo(strings.NewReader("1 2 3\n")); err == nil {
		t.Error("malformed line accepted")
	}
}

func TestMountsComeAfterTheirParents(t *testing.T) {
	mounts := Mounts()
	idx := func(target string) int {
		for i, m := range mounts {
			if m.Target == target {
				return i
			}
		}
		return -1
	}
	for _, pair := range [][2]string{{"/dev", "/dev/pts"}, {"/dev", "/dev/shm"}, {"/sys", "/sys/fs/cgroup"}} {
		if idx(pair[0]) < 0 || idx(pair[0]) > idx(pair[1]) {
			t.Errorf("%s must be mounted before %s", pair[0], pair[1])
		}
	}
}

func TestMountsHaveRestrictiveFlags(t *testing.T) {
	for _, m := range Mounts() {
		if !m.NoSuid {
			t.Errorf("%s allows setuid", m.Target)
		}
		if m.FSType != "devtmpfs" && !m.NoExec {
			t.Errorf("%s allows exec", m.Target)
		}
		if m.FSType != "devtmpfs" && m.FSType != "devpts" && !m.NoDev {
			t.Errorf("%s allows device nodes", m.Target)
		}
	}
}

// fakePerm plays a disk whose operations fail as told, and records calls.
type fakePerm struct {
	resolveErr              error
	mountErrs               []error // one per mount call, then nil
	fsckErr, mkfsErr, tmpfs error
	isBlank                 bool
	calls                   []string
	released                bool
}

func (f *fakePerm) blank(string) bool {
	f.calls = append(f.calls, "blank")
	return f.isBlank
}

func (f *fakePerm) resolve(context.Context) (string, func(), error) {
	f.calls = append(f.calls, "resolve")
	if f.resolveErr != nil {
		return "", nil, f.resolveErr
	}
	return "/dev/loop7", func() { f.released = true }, nil
}

func (f *fakePerm) mount(dev, dir string) error {
	f.calls = append(f.calls, "mount")
	if len(f.mountErrs) > 0 {
		err := f.mountErrs[0]
		f.mountErrs = f.mountErrs[1:]
		return err
	}
	return nil
}

func (f *fakePerm) fsck(context.Context, string) error {
	f.calls = append(f.calls, "fsck")
	return f.fsckErr
}

func (f *fakePerm) mkfs(context.Context, string) error {
	f.calls = append(f.calls, "mkfs")
	return f.mkfsErr
}

func (f *fakePerm) mountVolatile(string) error {
	f.calls = append(f.calls, "tmpfs")
	return f.tmpfs
}

func TestPermRecoverySequence(t *testing.T) {
	bad := errors.New("bad superblock")
	tests := []struct {
		name    string
		disk    fakePerm
		want    PermOutcome
		calls   string
		warning string
		sev     health.Severity
		err     bool
	}{
		{"intact", fakePerm{}, PermMounted, "resolve blank mount", "", 0, false},
		{"repaired", fakePerm{mountErrs: []error{bad}}, PermRepaired, "resolve blank mount fsck mount", WarnPermRepaired, health.Warn, false},
		{"fsck fails: reformatted", fakePerm{mountErrs: []error{bad}, fsckErr: bad}, PermReformatted, "resolve blank mount fsck mkfs mount", WarnPermReformatted, health.Critical, false},
		{"fsck passes, still no mount: reformatted", fakePerm{mountErrs: []error{bad, bad}}, PermReformatted, "resolve blank mount fsck mount mkfs mount", WarnPermReformatted, health.Critical, false},
		{"nothing works: tmpfs", fakePerm{mountErrs: []error{bad, bad}, fsckErr: bad, mkfsErr: bad}, PermVolatile, "resolve blank mount fsck mkfs tmpfs", WarnPermVolatile, health.Critical, true},
		{"blank disk: first boot, formatted, only an info", fakePerm{isBlank: true}, PermInitialised, "resolve blank mkfs mount", WarnPermInitialised, health.Info, false},
		{"blank disk that cannot be formatted: tmpfs", fakePerm{isBlank: true, mkfsErr: bad}, PermVolatile, "resolve blank mkfs tmpfs", WarnPermVolatile, health.Critical, true},
		{"no partition: tmpfs", fakePerm{resolveErr: bad}, PermVolatile, "resolve tmpfs", WarnPermVolatile, health.Critical, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			w := health.New(nil)
			got, err := recoverPerm(context.Background(), slog.New(slog.DiscardHandler), w, &tt.disk, "/perm")
			if got != tt.want || (err != nil) != tt.err {
				t.Errorf("outcome %v, err %v; want %v, err %v", got, err, tt.want, tt.err)
			}
			if c := strings.Join(tt.disk.calls, " "); c != tt.calls {
				t.Errorf("calls %q, want %q", c, tt.calls)
			}
			if tt.warning == "" && len(w.List()) != 0 {
				t.Errorf("warnings %v, want none", w.List())
			}
			if got, ok := w.Get(tt.warning); tt.warning != "" && (!ok || got.Severity != tt.sev) {
				t.Errorf("warnings %v, want %s (%v)", w.List(), tt.warning, tt.sev)
			}
			if tt.disk.resolveErr == nil && !tt.disk.released {
				t.Error("device not released")
			}
		})
	}
}

const modulesDep = `kernel/net/netfilter/nf_tables.ko.xz: kernel/net/netfilter/nfnetlink.ko.xz kernel/lib/libcrc32c.ko.xz
kernel/net/netfilter/nfnetlink.ko.xz:
kernel/lib/libcrc32c.ko.xz:
kernel/net/netfilter/nft_ct.ko.xz: kernel/net/netfilter/nf_conntrack.ko.xz kernel/net/netfilter/nf_tables.ko.xz kernel/net/ipv6/nf_defrag_ipv6.ko.xz kernel/net/ipv4/nf_defrag_ipv4.ko.xz kernel/net/netfilter/nfnetlink.ko.xz kernel/lib/libcrc32c.ko.xz
kernel/net/netfilter/nf_conntrack.ko.xz: kernel/net/ipv6/nf_defrag_ipv6.ko.xz kernel/net/ipv4/nf_defrag_ipv4.ko.xz kernel/lib/libcrc32c.ko.xz
kernel/net/ipv6/nf_defrag_ipv6.ko.xz:
kernel/net/ipv4/nf_defrag_ipv4.ko.xz:
kernel/drivers/net/tun.ko.xz:
kernel/net/netfilter/nft-fib-inet.ko.xz: kernel/net/netfilter/nf_tables.ko.xz kernel/net/netfilter/nfnetlink.ko.xz kernel/lib/libcrc32c.ko.xz
`

func TestModuleLoadOrderFollowsModulesDep(t *testing.T) {
	ix, err := ParseModules(strings.NewReader(modulesDep), strings.NewReader("kernel/net/ipv4/ip_tables.ko\n"))
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		names []string
		want  string
		err   string
	}{
		{[]string{"nf_tables"}, "libcrc32c nfnetlink nf_tables", ""},
		{[]string{"nft_ct", "nf_tables", "tun"}, "libcrc32c nfnetlink nf_defrag_ipv4 nf_defrag_ipv6 nf_tables nf_conntrack nft_ct tun", ""},
		{[]string{"nft_fib_inet"}, "libcrc32c nfnetlink nf_tables nft_fib_inet", ""}, // '-' in the file name
		{[]string{"ip_tables"}, "", ""}, // built in
		{[]string{"wireguard", "tun"}, "tun", "wireguard"},
	}
	for _, tt := range tests {
		order, err := ix.LoadOrder(tt.names)
		var names []string
		for _, p := range order {
			names = append(names, ModuleName(p))
		}
		if got := strings.Join(names, " "); got != tt.want {
			t.Errorf("LoadOrder(%v) = %s, want %s", tt.names, got, tt.want)
		}
		if (err == nil) != (tt.err == "") || (err != nil && !strings.Contains(err.Error(), tt.err)) {
			t.Errorf("LoadOrder(%v) error %v, want one naming %q", tt.names, err, tt.err)
		}
	}
	if _, err := ParseModules(strings.NewReader("no colon here\n"), nil); err == nil || !strings.Contains(err.Error(), "modules.dep:1") {
		t.Errorf("malformed modules.dep: %v", err)
	}
}

func TestConntrackMaxScalesWithMemory(t *testing.T) {
	for _, tt := range []struct {
		mem  uint64
		want int
	}{
		{0, 65536}, {128 << 20, 16384}, {1 << 30, 65536}, {2 << 30, 131072}, {16 << 30, 262144},
	} {
		if got := ConntrackMax(tt.mem); got != tt.want {
			t.Errorf("ConntrackMax(%d MiB) = %d, want %d", tt.mem>>20, got, tt.want)
		}
	}
}

func TestSysctlsAreNetworkNamespaced(t *testing.T) {
	for _, s := range Sysctls(1 << 30) {
		if !strings.HasPrefix(s.Key, "net.") {
			t.Errorf("%s is not a network setting: a PID 1 test would change the host", s.Key)
		}
	}
}

func TestReaperTakesOnlyUntrackedZombiesAfterGrace(t *testing.T) {
	t0 := time.Date(2026, 11, 28, 8, 0, 0, 0, time.UTC)
	r := newReapState(2 * time.Second)
	r.tracked[10] = true
	procs := []procEntry{
		{pid: 10, ppid: 1, state: 'Z'}, // the supervisor's child: its own Wait reaps it
		{pid: 11, ppid: 1, state: 'Z'}, // an orphan
		{pid: 12, ppid: 1, state: 'S'}, // alive
		{pid: 13, ppid: 7, state: 'Z'}, // someone else's child
	}
	if reap, pending := r.due(1, procs, t0); len(reap) != 0 || !pending {
		t.Fatalf("first sight: reap %v pending %v, want nothing yet, pending", reap, pending)
	}
	if reap, _ := r.due(1, procs, t0.Add(time.Second)); len(reap) != 0 {
		t.Fatalf("within grace: reap %v", reap)
	}
	if reap, pending := r.due(1, procs, t0.Add(2*time.Second)); fmt.Sprint(reap) != "[11]" || pending {
		t.Fatalf("after grace: reap %v pending %v, want [11]", reap, pending)
	}
	// A zombie waited for by its owner meanwhile is forgotten; a new one
	// with a recycled pid gets a fresh grace period.
	r.due(1, nil, t0.Add(3*time.Second))
	if reap, _ := r.due(1, procs[1:2], t0.Add(4*time.Second)); len(reap) != 0 {
		t.Fatalf("recycled pid reaped without grace: %v", reap)
	}
}

func TestParseStat(t *testing.T) {
	e, ok := parseStat(42, "42 (a (weird) name) Z 1 42 42 0 -1")
	if !ok || e.ppid != 1 || e.state != 'Z' {
		t.Errorf("parseStat = %+v %v", e, ok)
	}
	if _, ok := parseStat(1, "garbage"); ok {
		t.Error("garbage parsed")
	}
}
