package lab

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"runtime"

	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"

	"passerelle/pkg/rtnl"
)

// NetnsDir is where named network namespaces are bind-mounted, the iproute2
// convention shared by `ip netns` and vishvananda/netns.
const NetnsDir = "/run/netns"

// nsPath resolves a namespace name (in NetnsDir) or an absolute path.
func nsPath(name string) string {
	if filepath.IsAbs(name) {
		return name
	}
	return filepath.Join(NetnsDir, name)
}

// createNamedNS creates a network namespace bind-mounted at NetnsDir/name.
//
// It does what netns.NewNamed does, with two differences: the calling thread
// is switched back to its original namespace afterwards (NewNamed leaves it
// in the new one), and a failed mount does not leave a placeholder behind.
// The thread stays locked to the goroutine while it is in the new namespace
// so that no other goroutine can run there; should switching back fail, it
// stays locked for good and the runtime destroys it when the goroutine
// exits.
func createNamedNS(name string) (err error) {
	if err := os.MkdirAll(NetnsDir, 0o755); err != nil {
		return fmt.Errorf("create %s: %w", NetnsDir, err)
	}
	path := nsPath(name)
	// The placeholder is created first (exclusively, so two runs can never
	// share a namespace); if the process dies before the mount, Cleanup
	// finds an unmounted placeholder and removes it.
	f, err := os.OpenFile(path, os.O_RDONLY|os.O_CREATE|os.O_EXCL, 0o444)
	if err != nil {
		return fmt.Errorf("create mount point: %w", err)
	}
	f.Close()
	defer func() {
		if err != nil {
			os.Remove(path)
		}
	}()

	runtime.LockOSThread()
	orig, err := netns.Get()
	if err != nil {
		runtime.UnlockOSThread()
		return fmt.Errorf("open current namespace: %w", err)
	}
	defer orig.Close()
	if err := unix.Unshare(unix.CLONE_NEWNET); err != nil {
		runtime.UnlockOSThread() // unshare failed: the thread did not move
		return fmt.Errorf("unshare network namespace: %w", err)
	}
	// From here on the thread is in the new namespace until restored.
	defer func() {
		if rerr := netns.Set(orig); rerr != nil {
			err = errors.Join(err, fmt.Errorf("return to original namespace (thread left locked): %w", rerr))
			return
		}
		runtime.UnlockOSThread()
	}()
	if err := unix.Mount("/proc/thread-self/ns/net", path, "none", unix.MS_BIND, ""); err != nil {
		return fmt.Errorf("bind-mount namespace on %s: %w", path, err)
	}
	return nil
}

// deleteNamedNS unmounts and removes NetnsDir/name. Once no process, socket
// or mount refers to the namespace any more, the kernel destroys it together
// with its interfaces (and hence the peers of its veths). A missing or
// unmounted namespace is not an error: deletion must be idempotent and must
// cope with runs killed between creating the placeholder and mounting it.
// It reports whether anything was removed.
func deleteNamedNS(name string) (removed bool, err error) {
	path := nsPath(name)
	// Loop because the same path may have been mounted over more than once
	// (e.g. by a foreign `ip netns add` racing with us); each unmount peels
	// one layer. EINVAL means "not a mount point": done.
	for range 8 {
		err := unix.Unmount(path, unix.MNT_DETACH)
		if err == nil {
			removed = true
			continue
		}
		if errors.Is(err, unix.EINVAL) || errors.Is(err, unix.ENOENT) {
			break
		}
		return removed, fmt.Errorf("unmount %s: %w", path, err)
	}
	switch err := os.Remove(path); {
	case err == nil:
		return true, nil
	case errors.Is(err, fs.ErrNotExist):
		return removed, nil
	default:
		return removed, fmt.Errorf("remove %s: %w", path, err)
	}
}

// RunInNamespace runs fn on the calling goroutine with its OS thread
// switched into the named network namespace (a name in /run/netns, or an
// absolute path to a namespace file), then switches back.
//
// Sockets opened by fn belong to the namespace for their whole life, and
// processes started by fn (exec.Cmd.Start) are born in it. Goroutines
// started by fn are not: they run on other threads. If switching back fails
// (it should not), the thread stays locked to the goroutine so that no other
// goroutine can ever run in the wrong namespace; the runtime destroys the
// thread when the goroutine exits.
func RunInNamespace(nsName string, fn func() error) error {
	target, err := netns.GetFromPath(nsPath(nsName))
	if err != nil {
		return fmt.Errorf("lab: open namespace %s: %w", nsName, err)
	}
	defer target.Close()
	if err := rtnl.Do(target, fn); err != nil {
		return fmt.Errorf("lab: in namespace %s: %w", nsName, err)
	}
	return nil
}
