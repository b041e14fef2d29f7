//go:build !linux

package tunnel

import "errors"

func setBypass(table int) error {
	if table == 0 {
		return nil
	}
	return errors.New("the tunnel needs Linux policy routing")
}
