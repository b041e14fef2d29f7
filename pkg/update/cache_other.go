//go:build !linux

package update

import "os"

// dropCache does nothing where there is no page-cache advice: passerellectl
// builds this package on the NOC's machines, which never install a slot.
func dropCache(*os.File, int64) {}
