package boot

import (
	"bytes"
	"context"
	"crypto/rand"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"testing"

	"golang.org/x/sys/unix"

	"passerelle/pkg/health"
)

func needRootAndTools(t *testing.T) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("needs root (loop devices, mounts); run `sudo make test`")
	}
	for _, tool := range []string{"mkfs.ext4", "e2fsck"} {
		if _, err := exec.LookPath(tool); err != nil {
			t.Skipf("needs %s (Debian package e2fsprogs)", tool)
		}
	}
	if _, err := os.Stat("/dev/loop-control"); err != nil {
		t.Skip("needs loop devices (/dev/loop-control)")
	}
}

// inPrivateMountNS runs fn on a thread of its own in a new, private mount
// namespace: whatever fn mounts disappears with the thread, even if the
// test dies, and the host never sees it. Commands fn starts inherit the
// namespace.
func inPrivateMountNS(t *testing.T, fn func()) {
	t.Helper()
	done := make(chan struct{})
	go func() {
		defer close(done)
		// Never unlocked: the thread ends with the goroutine, and the
		// namespace with it.
		runtime.LockOSThread()
		if err := unix.Unshare(unix.CLONE_NEWNS); err != nil {
			t.Errorf("unshare: %v", err)
			return
		}
		if err := unix.Mount("", "/", "", unix.MS_REC|unix.MS_PRIVATE, ""); err != nil {
			t.Errorf("make / private: %v", err)
			return
		}
		fn()
	}()
	<-done
}

// makeImage builds a 16 MiB ext4 image holding files.
func makeImage(t *testing.T, files map[string]string) string {
	t.Helper()
	src := t.TempDir()
	for name, content := range files {
		if err := os.WriteFile(filepath.Join(src, name), []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	img := filepath.Join(t.TempDir(), "perm.img")
	if out, err := exec.Command("mkfs.ext4", "-q", "-F", "-d", src, img, "16M").CombinedOutput(); err != nil {
		t.Fatalf("mkfs.ext4: %v: %s", err, out)
	}
	return img
}

func overwrite(t *testing.T, img string, off int64, data []byte) {
	t.Helper()
	f, err := os.OpenFile(img, os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if _, err := f.WriteAt(data, off); err != nil {
		t.Fatal(err)
	}
}

func TestPermRecoveryWithLoopImage(t *testing.T) {
	needRootAndTools(t)
	garbage := make([]byte, 16<<20)
	rand.Read(garbage)
	tests := []struct {
		name     string
		damage   func(t *testing.T, img string)
		want     PermOutcome
		warning  string
		keepsOld bool
	}{
		{"intact image keeps its files", func(*testing.T, string) {}, PermMounted, "", true},
		{"zeroed superblock is repaired from a backup", func(t *testing.T, img string) {
			overwrite(t, img, 1024, make([]byte, 1024))
		}, PermRepaired, WarnPermRepaired, true},
		{"unrecoverable image is reformatted", func(t *testing.T, img string) {
			overwrite(t, img, 0, garbage)
		}, PermReformatted, WarnPermReformatted, false},
		{"blank image is a first boot", func(t *testing.T, img string) {
			overwrite(t, img, 0, make([]byte, 16<<20))
		}, PermInitialised, WarnPermInitialised, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			img := makeImage(t, map[string]string{"config.yaml": "version: 1\n"})
			tt.damage(t, img)
			dir := filepath.Join(t.TempDir(), "perm")
			reg := health.New(nil)
			var logs bytes.Buffer
			log := slog.New(slog.NewTextHandler(&logs, nil))
			inPrivateMountNS(t, func() {
				got, err := MountPerm(context.Background(), log, reg, Options{PermDevice: img, PermDir: dir})
				if got != tt.want || err != nil {
					t.Errorf("MountPerm = %v, %v; want %v", got, err, tt.want)
				}
				var st unix.Statfs_t
				if err := unix.Statfs(dir, &st); err != nil || st.Type != unix.EXT4_SUPER_MAGIC {
					t.Errorf("%s is not an ext4 mount (type %#x, %v)", dir, st.Type, err)
				}
				data, err := os.ReadFile(filepath.Join(dir, "config.yaml"))
				if tt.keepsOld && string(data) != "version: 1\n" {
					t.Errorf("config.yaml = %q, %v; want the file kept", data, err)
				}
				if !tt.keepsOld && err == nil {
					t.Errorf("config.yaml survived a reformat: %q", data)
				}
				// The partition is usable.
				if err := os.WriteFile(filepath.Join(dir, "new"), []byte("x"), 0o644); err != nil {
					t.Errorf("write to /perm: %v", err)
				}
				if err := UnmountPerm(dir); err != nil {
					t.Errorf("UnmountPerm: %v", err)
				}
			})
			ws := reg.List()
			switch {
			case tt.warning == "" && len(ws) != 0:
				t.Errorf("warnings %+v, want none", ws)
			case tt.warning != "" && (len(ws) != 1 || ws[0].Code != tt.warning):
				t.Errorf("warnings %+v, want %s", ws, tt.warning)
			}
			if t.Failed() {
				t.Logf("log:\n%s", logs.String())
			}
		})
	}
}
