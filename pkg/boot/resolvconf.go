package boot

import (
	"bytes"
	"fmt"
	"os"

	"passerelle/pkg/atomicfile"
)

// ResolvConf is where the C library, Go's resolver and tailscaled look
// for name servers.
const ResolvConf = "/etc/resolv.conf"

// resolvConfText sends the box's own lookups (NTP servers, the NOC's pull
// and metrics URLs, tailscaled's control server) to its DNS component,
// which answers them on 127.0.0.1 unfiltered (dnsfilter.Options.Own).
// Without the file they go to [::1]:53, where nothing answers.
const resolvConfText = "# Written by passerelle at boot: the box's own lookups go to its DNS component.\nnameserver 127.0.0.1\noptions edns0\n"

// WriteResolvConf makes path send lookups to the box's DNS component; it
// leaves a file that already says so untouched.
func WriteResolvConf(path string) (string, error) {
	if have, err := os.ReadFile(path); err == nil && bytes.Equal(have, []byte(resolvConfText)) {
		return "kept", nil
	}
	if err := atomicfile.Write(path, []byte(resolvConfText), 0o644); err != nil {
		return "", fmt.Errorf("resolv.conf: %w", err)
	}
	return "nameserver 127.0.0.1", nil
}
