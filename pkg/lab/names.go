package lab

import (
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"regexp"
	"strconv"
)

// Naming scheme. Namespace names are "pl<ID>-<short role>" so that a single
// glob (pl??????-*) finds every lab namespace on the machine, and so that they
// stay within IFNAMSIZ-1 (15) characters: they are not interface names, but
// tools such as `ip netns` display them next to interface names and short
// names keep logs readable.
const (
	nsPrefix  = "pl"
	idLen     = 6  // hex characters
	ifNameMax = 15 // IFNAMSIZ - 1 (the kernel's limit, trailing NUL excluded)

	rolePrefixISP    = "isp:"
	rolePrefixClient = "client:"
)

// Roles accepted by Lab.Namespace, besides RoleISP and RoleClient.
const (
	RoleBox      = "box"      // the gateway under test
	RoleInternet = "internet" // internet core, hosting the internet test server
	RoleAcademy  = "academy"  // the académie's datacenter
)

// nsNameRE matches the name of any lab namespace, capturing the run ID.
var nsNameRE = regexp.MustCompile(`^` + nsPrefix + `([0-9a-f]{6})-([a-z0-9-]+)$`)

// idRE matches a run ID.
var idRE = regexp.MustCompile(`^[0-9a-f]{6}$`)

// RoleISP returns the Lab.Namespace role of the ISP behind the named uplink.
func RoleISP(uplink string) string { return rolePrefixISP + uplink }

// RoleClient returns the Lab.Namespace role of the client in the named zone.
func RoleClient(zone string) string { return rolePrefixClient + zone }

// newID returns a fresh random run ID. Collisions with runs already on the
// machine are caught later, when the state file is created exclusively.
func newID() (string, error) {
	var b [idLen / 2]byte
	if _, err := rand.Read(b[:]); err != nil {
		return "", fmt.Errorf("lab: generate run ID: %w", err)
	}
	return hex.EncodeToString(b[:]), nil
}

// nsName returns the namespace name for a run ID and a short role suffix.
func nsName(id, short string) string {
	return nsPrefix + id + "-" + short
}

func shortISP(n int) string    { return "i-" + strconv.Itoa(n) }
func shortClient(n int) string { return "c-" + strconv.Itoa(n) }

// parseNSName reports the run ID of a lab namespace name.
func parseNSName(name string) (id string, ok bool) {
	m := nsNameRE.FindStringSubmatch(name)
	if m == nil {
		return "", false
	}
	return m[1], true
}

// validIfName reports whether name is acceptable to the kernel as an
// interface name and does not clash with the loopback.
func validIfName(name string) error {
	switch {
	case name == "":
		return fmt.Errorf("empty interface name")
	case len(name) > ifNameMax:
		return fmt.Errorf("interface name %q longer than %d bytes", name, ifNameMax)
	case name == "." || name == "..":
		return fmt.Errorf("invalid interface name %q", name)
	case name == "lo":
		return fmt.Errorf("interface name %q is the loopback", name)
	}
	for _, r := range name {
		if r == '/' || r == ':' || r <= ' ' || r > '~' {
			return fmt.Errorf("interface name %q contains %q", name, r)
		}
	}
	return nil
}
