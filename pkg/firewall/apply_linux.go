package firewall

import (
	"errors"
	"fmt"
	"net/netip"

	"github.com/google/nftables"
	"github.com/mdlayher/netlink"
	"golang.org/x/sys/unix"
)

// kernel says where the firewall acts; the zero value is the current
// network namespace.
type kernel struct {
	nsFd  int // network namespace fd, when nsSet (tests, benchmarks)
	nsSet bool
	// breakBatch, set by tests, adds something the kernel refuses to the
	// replacement batch, to check that the old table survives.
	breakBatch func(c *nftables.Conn, t *nftables.Table)
}

func ourTable() *nftables.Table {
	return &nftables.Table{Family: nftables.TableFamilyINet, Name: TableName}
}

// Batches go out in one sendmsg, and the kernel echoes every new rule
// back: a batch larger than the socket buffers fails (EMSGSIZE) or loses
// replies, and SO_SNDBUF is capped by net.core.wmem_max. Root may force
// larger buffers, sized from the batch.
const (
	minSendBuf = 1 << 20
	minRecvBuf = 8 << 20
	maxBuf     = 512 << 20
)

func bufferOptions(send, recv int) nftables.SockOption {
	send, recv = min(max(send, minSendBuf), maxBuf), min(max(recv, minRecvBuf), maxBuf)
	return func(c *netlink.Conn) error {
		raw, err := c.SyscallConn()
		if err != nil {
			return err
		}
		var serr error
		err = raw.Control(func(fd uintptr) {
			if serr = unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_SNDBUFFORCE, send); serr != nil {
				serr = fmt.Errorf("SO_SNDBUFFORCE %d: %w", send, serr)
				return
			}
			if serr = unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_RCVBUFFORCE, recv); serr != nil {
				serr = fmt.Errorf("SO_RCVBUFFORCE %d: %w", recv, serr)
			}
		})
		return errors.Join(err, serr)
	}
}

// conn opens an nftables connection in the firewall's namespace, with
// buffers for a batch of about elems set elements and rules rules.
func (f *Firewall) conn(elems, rules int) (*nftables.Conn, error) {
	opts := []nftables.ConnOption{nftables.WithSockOptions(bufferOptions(64*elems+1024*rules, 2048*rules))}
	if f.k.nsSet {
		opts = append(opts, nftables.WithNetNSFd(f.k.nsFd))
	}
	c, err := nftables.New(opts...)
	if err != nil {
		return nil, fmt.Errorf("nftables: %w", err)
	}
	return c, nil
}

// readConn opens a connection for dumps only: no forced buffers, which
// need CAP_NET_ADMIN (dumps come in as many messages as they need).
func (f *Firewall) readConn() (*nftables.Conn, error) {
	var opts []nftables.ConnOption
	if f.k.nsSet {
		opts = append(opts, nftables.WithNetNSFd(f.k.nsFd))
	}
	c, err := nftables.New(opts...)
	if err != nil {
		return nil, fmt.Errorf("nftables: %w", err)
	}
	return c, nil
}

func (p *Plan) size() (elems, rules int) {
	for _, s := range p.Sets {
		elems += len(s.Ifnames) + 2*len(s.Ranges) + len(s.Addrs)
	}
	for _, c := range p.Chains {
		rules += len(c.Rules)
		for _, r := range c.Rules {
			for _, e := range r.Exprs {
				if a, ok := e.(AddrIn); ok {
					elems += 2 * len(a.Ranges)
				}
			}
		}
	}
	return elems, rules
}

// replace swaps in the plan's table in one batch: add (so the delete
// cannot fail on a first run), delete, add, fill. The kernel applies the
// batch all or nothing. It returns how many counters kept their values.
func (f *Firewall) replace(p *Plan) (int, error) {
	elems, rules := p.size()
	c, err := f.conn(elems+len(f.blocked)+len(f.blocked6), rules)
	if err != nil {
		return 0, err
	}
	t := ourTable()
	c.AddTable(t)
	c.DelTable(t)
	t = c.AddTable(t)
	for _, s := range p.Sets {
		var runtime []netip.Addr
		if s.Runtime {
			runtime = f.blocked
			if s.Kind == SetIPv6Addrs {
				runtime = f.blocked6
			}
		}
		ns, el, err := nftSet(t, s, runtime)
		if err != nil {
			return 0, err
		}
		if err := c.AddSet(ns, el); err != nil {
			return 0, fmt.Errorf("set %s: %w", s.Name, err)
		}
	}
	chains := map[string]*nftables.Chain{}
	for _, ch := range p.Chains {
		nc := &nftables.Chain{Name: ch.Name, Table: t}
		if b := ch.Base; b != nil {
			nc.Type = nftables.ChainType(b.Type)
			nc.Hooknum = hookOf(b.Hook)
			nc.Priority = nftables.ChainPriorityRef(nftables.ChainPriority(b.Priority))
			pol := nftables.ChainPolicyAccept
			if b.Drop {
				pol = nftables.ChainPolicyDrop
			}
			nc.Policy = &pol
		}
		chains[ch.Name] = c.AddChain(nc)
	}
	// Counters are read as late as possible, after the bulk of the batch
	// (set elements) is built, to keep the window in which packets are
	// counted by the old table and not carried over short.
	old, err := f.readCounters()
	if err != nil {
		return 0, fmt.Errorf("read counters: %w", err)
	}
	carried := 0
	for _, name := range p.Counters {
		v, ok := old[name]
		if ok {
			carried++
		}
		c.AddObj(&nftables.CounterObj{Table: t, Name: name, Packets: v.Packets, Bytes: v.Bytes})
	}
	l := &lowerer{conn: c, table: t}
	for _, ch := range p.Chains {
		for i, r := range ch.Rules {
			exprs, err := l.rule(r)
			if err != nil {
				return 0, fmt.Errorf("chain %s rule %d: %w", ch.Name, i+1, err)
			}
			c.AddRule(&nftables.Rule{Table: t, Chain: chains[ch.Name], Exprs: exprs})
		}
	}
	if f.k.breakBatch != nil {
		f.k.breakBatch(c, t)
	}
	if err := c.Flush(); err != nil {
		return 0, fmt.Errorf("replace table inet %s (%d set elements, %d rules): %w", TableName, elems, rules, err)
	}
	return carried, nil
}

func hookOf(h string) *nftables.ChainHook {
	switch h {
	case "prerouting":
		return nftables.ChainHookPrerouting
	case "input":
		return nftables.ChainHookInput
	case "forward":
		return nftables.ChainHookForward
	case "output":
		return nftables.ChainHookOutput
	}
	return nftables.ChainHookPostrouting
}

// readCounters returns the named counters of the live table by name; an
// absent table has none.
func (f *Firewall) readCounters() (map[string]CounterValue, error) {
	list, err := f.counters()
	if err != nil {
		return nil, err
	}
	m := make(map[string]CounterValue, len(list))
	for _, v := range list {
		m[v.Name] = v
	}
	return m, nil
}

func (f *Firewall) counters() ([]CounterValue, error) {
	c, err := f.readConn()
	if err != nil {
		return nil, err
	}
	objs, err := c.GetObjects(ourTable())
	if errors.Is(err, unix.ENOENT) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	var out []CounterValue
	for _, o := range objs {
		if co, ok := o.(*nftables.CounterObj); ok {
			out = append(out, CounterValue{Name: co.Name, Packets: co.Packets, Bytes: co.Bytes})
		}
	}
	return out, nil
}

// Counters returns the named counters of the live table.
func (f *Firewall) Counters() ([]CounterValue, error) {
	return f.counters()
}

// replaceBlocked swaps the contents of the blocked sets in one
// transaction.
func (f *Firewall) replaceBlocked(v4, v6 []netip.Addr) error {
	c, err := f.conn(len(v4)+len(v6), 0)
	if err != nil {
		return err
	}
	t := ourTable()
	for _, s := range []struct {
		name  string
		addrs []netip.Addr
	}{{setBlocked, v4}, {setBlocked6, v6}} {
		set := &nftables.Set{Table: t, Name: s.name}
		c.FlushSet(set)
		if err := c.SetAddElements(set, addrElems(s.addrs)); err != nil {
			return fmt.Errorf("set %s: %w", s.name, err)
		}
	}
	if err := c.Flush(); err != nil {
		return fmt.Errorf("update sets %s, %s: %w", setBlocked, setBlocked6, err)
	}
	return nil
}
