//go:build !linux

package slots

import "errors"

func linuxSystem() System { return noSystem{} }

// noSystem: the box runs Linux; elsewhere (passerellectl's platforms
// build the status types) there are no slots.
type noSystem struct{}

var errNoSystem = errors.New("system slots exist on Linux only")

func (noSystem) Cmdline() (string, error)                { return "", errNoSystem }
func (noSystem) Partition(string) (string, int64, error) { return "", 0, errNoSystem }
func (noSystem) ReadEnv() ([]byte, error)                { return nil, errNoSystem }
func (noSystem) WriteEnv([]byte) error                   { return errNoSystem }
