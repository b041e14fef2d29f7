package boot

import (
	"errors"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"passerelle/pkg/atomicfile"
)

// bootCountFile counts the boots on a /perm partition: support reads it
// ("how often has this box restarted"), and it shows that /perm kept its
// content across a reboot.
const bootCountFile = "boot-count"

// countBoot adds one to the boot count on dir and returns it. A missing
// or unreadable count starts again at 1.
func countBoot(dir string) (int, error) {
	p := filepath.Join(dir, bootCountFile)
	n := 0
	data, err := os.ReadFile(p)
	if err == nil {
		n, _ = strconv.Atoi(strings.TrimSpace(string(data)))
	} else if !errors.Is(err, os.ErrNotExist) {
		return 1, err
	}
	n++
	return n, atomicfile.Replace(p, []byte(strconv.Itoa(n)+"\n"), 0o644)
}
