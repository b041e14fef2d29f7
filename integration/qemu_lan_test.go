package integration

import "os"

// lanPort is how startVM wires the box's lan0: the -netdev options and the
// files they name (fd=3 is files[0]). The zero value is a user network
// with no way out, a LAN nobody is plugged into.
type lanPort struct {
	netdev string
	files  []*os.File
}

func (p lanPort) netdevArg() string {
	if p.netdev == "" {
		return "user,id=lan,restrict=on"
	}
	return p.netdev
}
