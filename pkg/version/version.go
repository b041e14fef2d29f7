// Package version reports what firmware this is. The values are set at
// build time with -ldflags "-X passerelle/pkg/version.Version=...".
package version

import "runtime"

// Set by the linker; the defaults mark a development build.
var (
	Version = "dev"
	Commit  = "unknown"
)

// String is the one-line version shown by `passerelle version`.
func String() string {
	return "passerelle " + Version + " (" + Commit + ", " + runtime.Version() + " " + runtime.GOOS + "/" + runtime.GOARCH + ")"
}
