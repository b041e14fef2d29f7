// Package version reports what firmware this is. The values are set at
// build time with -ldflags "-X passerelle/pkg/version.Version=... -X
// passerelle/pkg/version.Commit=..." (the Makefile: the VERSION file and
// git describe). Version is semantic (0.2.0): a firmware update must be
// newer than the running version (pkg/update, docs/updates.md).
package version

import "runtime"

// Set by the linker; the defaults mark a development build, which takes
// any update.
var (
	Version = "dev"
	Commit  = "unknown"
)

// String is the one-line version shown by `passerelle version`.
func String() string {
	return "passerelle " + Version + " (" + Commit + ", " + runtime.Version() + " " + runtime.GOOS + "/" + runtime.GOARCH + ")"
}
