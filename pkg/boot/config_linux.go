package boot

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"

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
}

// Configure sets the host name, brings lo up, loads the kernel modules and
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
	rep = append(rep, runStep(ctx, log, "modules", opts.StepTimeout, func(context.Context) (string, error) {
		note, err := loadModules(log, sys)
		if err != nil {
			w.Raise("boot", WarnModules, health.Warn, "Some kernel modules of the board could not be loaded: "+err.Error())
		}
		return note, err
	}))
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
	dep, err := os.Open(filepath.Join(dir, "modules.dep"))
	if err != nil {
		return "", fmt.Errorf("modules: %w", err)
	}
	defer dep.Close()
	builtin, err := os.Open(filepath.Join(dir, "modules.builtin"))
	if err == nil {
		defer builtin.Close()
	}
	var ix *ModuleIndex
	if builtin != nil {
		ix, err = ParseModules(dep, builtin)
	} else {
		ix, err = ParseModules(dep, nil)
	}
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
