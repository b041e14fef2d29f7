package update

import (
	"os"

	"golang.org/x/sys/unix"
)

// dropCache asks the kernel to forget f's cached pages (clean after a
// sync), so that reading f back reads the device. Advice only: an error
// leaves the read-back reading the cache, which is still a check.
func dropCache(f *os.File, size int64) {
	_ = unix.Fadvise(int(f.Fd()), 0, size, unix.FADV_DONTNEED)
}
