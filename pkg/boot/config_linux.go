package boot

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"

	"github.com/google/nftables"
	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"

	"passerelle/board"
	"passerelle/pkg/health"
)

// SystemSetup is what the boot sets up once the configuration is known.
type SystemSetup struct {
	Hostname string
	// Modules are the board's kernel modules (board.yaml), loaded with
	// their dependencies.
	Modules []string
	// ModulesDir is where modules.dep is; default /lib/modules/<release>.
	ModulesDir string
	// Interfaces are the board's ports, named after the modules load
	// (a port whose driver the early boot did not load).
	Interfaces []board.Interface
}

// Configure sets the host name, brings lo up, points /etc/resolv.conf at
// the box's own DNS listener, loads the kernel modules and
// sets the router's sysctls, in that order (conntrack sysctls exist only
// once nf_conntrack is loaded). Only PID 1 calls it.
func Configure(ctx context.Context, log *slog.Logger, w *health.Registry, sys SystemSetup, opts Options) Report {
	opts.defaults()
	var rep Report
	rep = append(rep, runStep(ctx, log, "hostname", opts.StepTimeout, func(context.Context) (string, error) {
		return sys.Hostname, SetHostname(sys.Hostname)
	}))
	rep = append(rep, runStep(ctx, log, "loopback", opts.StepTimeout, func(context.Context) (string, error) {
		return "lo up", loopbackUp()
	}))
	rep = append(rep, runStep(ctx, log, "resolv.conf", opts.StepTimeout, func(context.Context) (string, error) {
		if !ramRoot() {
			// A PID 1 on a host's disk (the lab's init tests) must not
			// rewrite the host's resolver configuration.
			return "kept: / is not the image's RAM root", nil
		}
		return WriteResolvConf(ResolvConf)
	}))
	rep = append(rep, runStep(ctx, log, "modules", opts.StepTimeout, func(context.Context) (string, error) {
		note, err := loadModules(log, sys)
		if err != nil {
			w.Raise("boot", WarnModules, health.Warn, "Some kernel modules of the board could not be loaded: "+err.Error())
		}
		return note, err
	}))
	if len(sys.Interfaces) > 0 {
		rep = append(rep, runStep(ctx, log, "ifnames", opts.StepTimeout, func(context.Context) (string, error) {
			note, err := NameInterfaces(log, sys.Interfaces)
			if err != nil {
				w.Raise("boot", WarnInterfaceNames, health.Warn, "Some network ports could not be given their names: "+err.Error())
			}
			return note, err
		}))
	}
	if slices.Contains(sys.Modules, "nf_tables") {
		rep = append(rep, runStep(ctx, log, StepNFTables, opts.StepTimeout, func(context.Context) (string, error) {
			err := checkNFTables()
			if err != nil {
				w.Raise("boot", WarnNoNFTables, health.Critical, "The kernel has no nf_tables: the firewall cannot be applied. "+err.Error())
			} else {
				w.Clear(WarnNoNFTables)
			}
			return "available", err
		}))
	}
	rep = append(rep, runStep(ctx, log, "sysctl", opts.StepTimeout, func(context.Context) (string, error) {
		return applySysctls(log, Sysctls(memTotal()))
	}))
	return rep
}

// SetHostname sets the kernel host name (UTS namespace).
func SetHostname(name string) error {
	if name == "" || len(name) > 64 {
		return fmt.Errorf("host name %q: must be 1-64 characters", name)
	}
	return unix.Sethostname([]byte(name))
}

func loopbackUp() error {
	lo, err := netlink.LinkByName("lo")
	if err != nil {
		return fmt.Errorf("lo: %w", err)
	}
	if err := netlink.LinkSetUp(lo); err != nil {
		return fmt.Errorf("lo: set up: %w", err)
	}
	return nil
}

// StepNFTables is the step that checks the kernel answers nf_tables
// requests once the modules are loaded.
const StepNFTables = "nftables"

// checkNFTables asks the kernel for its nftables tables. Without
// nf_tables (module absent or failed to load) the kernel answers a bare
// EINVAL to every request, which is all the firewall would report: say
// what it means.
func checkNFTables() error {
	c, err := nftables.New()
	if err != nil {
		return fmt.Errorf("nf_tables: %w", err)
	}
	defer c.CloseLasting()
	if _, err := c.ListTables(); err != nil {
		if errors.Is(err, unix.EINVAL) || errors.Is(err, unix.ENOENT) || errors.Is(err, unix.EPROTONOSUPPORT) {
			return fmt.Errorf("the kernel does not know nf_tables (%w): module nf_tables missing from the image or not loaded, see the modules step", err)
		}
		return fmt.Errorf("nf_tables: %w", err)
	}
	return nil
}

func loadModules(log *slog.Logger, sys SystemSetup) (string, error) {
	if len(sys.Modules) == 0 {
		return "none listed", nil
	}
	dir := sys.ModulesDir
	if dir == "" {
		var u unix.Utsname
		if err := unix.Uname(&u); err != nil {
			return "", err
		}
		dir = filepath.Join("/lib/modules", unix.ByteSliceToString(u.Release[:]))
	}
	ix, err := ReadModuleIndex(dir)
	if err != nil {
		return "", err
	}
	order, oerr := ix.LoadOrder(sys.Modules)
	var errs []error
	if oerr != nil {
		errs = append(errs, oerr)
	}
	loaded, present := 0, 0
	for _, p := range order {
		name := ModuleName(p)
		if _, err := os.Stat(filepath.Join("/sys/module", name)); err == nil {
			present++
			continue
		}
		if err := finitModule(filepath.Join(dir, p)); err != nil {
			errs = append(errs, fmt.Errorf("%s: %w", name, err))
			continue
		}
		log.Debug("module loaded", "module", name)
		loaded++
	}
	return fmt.Sprintf("%d loaded, %d already present", loaded, present), errors.Join(errs...)
}

// finitModule loads one module file; the kernel decompresses .xz, .gz and
// .zst files itself (MODULE_INIT_COMPRESSED_FILE, Linux 5.17+).
func finitModule(path string) error {
	f, err := os.Open(path)
	if err != nil {
		return err
	}
	defer f.Close()
	flags := 0
	switch filepath.Ext(path) {
	case ".xz", ".gz", ".zst":
		flags |= unix.MODULE_INIT_COMPRESSED_FILE
	}
	if err := unix.FinitModule(int(f.Fd()), "", flags); err != nil && !errors.Is(err, unix.EEXIST) {
		return err
	}
	return nil
}

func applySysctls(log *slog.Logger, list []Sysctl) (string, error) {
	var errs []error
	set, absent, readOnly := 0, 0, 0
	for _, s := range list {
		p := filepath.Join("/proc/sys", strings.ReplaceAll(s.Key, ".", "/"))
		err := os.WriteFile(p, []byte(s.Value+"\n"), 0o644)
		switch {
		case err == nil:
			set++
		case errors.Is(err, os.ErrNotExist):
			// Its module is not loaded (or not built): nothing to tune.
			absent++
			log.Debug("sysctl not present", "key", s.Key)
		case errors.Is(err, os.ErrPermission):
			// Root is refused only for host-wide settings (conntrack
			// table size) read from a network namespace other than the
			// host's: the daemon runs in a test or lab namespace.
			readOnly++
			log.Debug("sysctl read-only in this network namespace", "key", s.Key)
		default:
			errs = append(errs, fmt.Errorf("%s=%s: %w", s.Key, s.Value, err))
		}
	}
	return fmt.Sprintf("%d set, %d not present, %d read-only here", set, absent, readOnly), errors.Join(errs...)
}

// memTotal returns the machine's memory in bytes from /proc/meminfo, or 0.
func memTotal() uint64 {
	f, err := os.Open("/proc/meminfo")
	if err != nil {
		return 0
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if rest, ok := strings.CutPrefix(sc.Text(), "MemTotal:"); ok {
			kb, err := strconv.ParseUint(strings.TrimSuffix(strings.TrimSpace(rest), " kB"), 10, 64)
			if err == nil {
				return kb << 10
			}
		}
	}
	return 0
}

// ramRoot reports whether / is the image's initramfs (rootfs is a ramfs
// or tmpfs): only then is /etc the box's own to write.
func ramRoot() bool {
	var st unix.Statfs_t
	if err := unix.Statfs("/", &st); err != nil {
		return false
	}
	return st.Type == unix.RAMFS_MAGIC || st.Type == unix.TMPFS_MAGIC
}
