package netif

import (
	"fmt"
	"maps"
	"net/netip"
	"slices"
	"strings"
)

// This file is the pure half of Apply: what the kernel looks like
// (sysState), what the manager has done to it (touchedLink), and the
// operations (op) that take the observed state to the plan. The Linux
// executor (apply_linux.go) only observes and runs ops; tests run the same
// ops on an in-memory state (fake_test.go). The split exists because Apply
// must converge from any state, including the half-applied one a failed
// apply leaves before the box rolls back (pkg/box): that is a property of
// diff, and a pure diff can be tested from every such state.

// sysState is the kernel state the interfaces manager reads and writes.
type sysState struct {
	Forwarding   bool                 // net.ipv4.ip_forward
	LegacyRoutes int                  // main-table routes of protocol RouteProtocol
	Links        map[string]linkState // every link, by name; absent: does not exist
}

// linkState is one link as observed.
type linkState struct {
	Bridge bool
	Master string // name of the link's master, "" if none
	Up     bool   // administratively up (IFF_UP)
	MTU    int
	Addrs  []netip.Prefix // global-scope IPv4 addresses, sorted
}

func (s sysState) clone() sysState {
	c := s
	c.Links = make(map[string]linkState, len(s.Links))
	for n, l := range s.Links {
		l.Addrs = slices.Clone(l.Addrs)
		c.Links[n] = l
	}
	return c
}

// String renders the state as stable text, one link a line, so tests can
// compare states as golden text.
func (s sysState) String() string {
	var b strings.Builder
	fmt.Fprintf(&b, "sysctl net.ipv4.ip_forward = %d\n", boolInt(s.Forwarding))
	if s.LegacyRoutes > 0 {
		fmt.Fprintf(&b, "legacy default routes: %d\n", s.LegacyRoutes)
	}
	for _, n := range slices.Sorted(maps.Keys(s.Links)) {
		l := s.Links[n]
		fmt.Fprintf(&b, "link %s", n)
		if l.Bridge {
			b.WriteString(" bridge")
		}
		if l.Master != "" {
			fmt.Fprintf(&b, " master %s", l.Master)
		}
		if l.Up {
			b.WriteString(" up")
		} else {
			b.WriteString(" down")
		}
		fmt.Fprintf(&b, " mtu %d", l.MTU)
		for _, a := range l.Addrs {
			fmt.Fprintf(&b, " addr %s", a)
		}
		b.WriteString("\n")
	}
	return b.String()
}

// opKind is what an op does.
type opKind int

const (
	opForwarding         opKind = iota // write net.ipv4.ip_forward = on
	opCreateBridge                     // create bridge link
	opDeleteBridge                     // delete bridge link (its ports leave it)
	opSetMTU                           // set link's MTU to mtu
	opSetMaster                        // make link a port of master
	opSetNoMaster                      // take link out of its bridge
	opSetUp                            // set link up
	opSetDown                          // set link down
	opAddAddr                          // add addr to link
	opDelAddr                          // remove addr from link
	opRemoveLegacyRoutes               // delete main-table routes of protocol RouteProtocol
)

// op is one kernel operation. Ops are plain values so that a plan's
// effect can be rendered, compared and replayed on a fake.
type op struct {
	kind   opKind
	link   string
	master string
	mtu    int
	addr   netip.Prefix
	on     bool
	// prevMTU is the MTU an opSetMTU replaces, recorded in touchedLink so
	// that releasing the link restores it. Not rendered: it describes the
	// state, not the operation.
	prevMTU int
}

// String renders the op in a stable, ip(8)-like form.
func (o op) String() string {
	switch o.kind {
	case opForwarding:
		return fmt.Sprintf("sysctl net.ipv4.ip_forward=%d", boolInt(o.on))
	case opCreateBridge:
		return "bridge add " + o.link
	case opDeleteBridge:
		return "bridge del " + o.link
	case opSetMTU:
		return fmt.Sprintf("link %s mtu %d", o.link, o.mtu)
	case opSetMaster:
		return fmt.Sprintf("link %s master %s", o.link, o.master)
	case opSetNoMaster:
		return fmt.Sprintf("link %s nomaster", o.link)
	case opSetUp:
		return fmt.Sprintf("link %s up", o.link)
	case opSetDown:
		return fmt.Sprintf("link %s down", o.link)
	case opAddAddr:
		return fmt.Sprintf("addr add %s dev %s", o.addr, o.link)
	case opDelAddr:
		return fmt.Sprintf("addr del %s dev %s", o.addr, o.link)
	case opRemoveLegacyRoutes:
		return fmt.Sprintf("route flush table main proto %d", RouteProtocol)
	}
	return fmt.Sprintf("op(%d)", int(o.kind))
}

// apply changes s as the kernel would on o, or says why the kernel would
// refuse. diff uses it to follow the effect of the ops it emits; the test
// fake uses it as its kernel.
func (s *sysState) apply(o op) error {
	switch o.kind {
	case opForwarding:
		s.Forwarding = o.on
		return nil
	case opRemoveLegacyRoutes:
		s.LegacyRoutes = 0
		return nil
	case opCreateBridge:
		if _, ok := s.Links[o.link]; ok {
			return fmt.Errorf("%s: file exists", o)
		}
		s.Links[o.link] = linkState{Bridge: true, MTU: 1500}
		return nil
	}
	l, ok := s.Links[o.link]
	if !ok {
		return fmt.Errorf("%s: no such device", o)
	}
	switch o.kind {
	case opDeleteBridge:
		if !l.Bridge {
			return fmt.Errorf("%s: not a bridge", o)
		}
		delete(s.Links, o.link)
		for n, p := range s.Links {
			if p.Master == o.link {
				p.Master = ""
				s.Links[n] = p
			}
		}
		return nil
	case opSetMTU:
		l.MTU = o.mtu
	case opSetMaster:
		if m, ok := s.Links[o.master]; !ok || !m.Bridge {
			return fmt.Errorf("%s: no such bridge", o)
		}
		l.Master = o.master
	case opSetNoMaster:
		l.Master = ""
	case opSetUp:
		l.Up = true
	case opSetDown:
		l.Up = false
	case opAddAddr:
		if !slices.Contains(l.Addrs, o.addr) {
			l.Addrs = append(l.Addrs, o.addr)
			slices.SortFunc(l.Addrs, netip.Prefix.Compare)
		}
	case opDelAddr:
		i := slices.Index(l.Addrs, o.addr)
		if i < 0 {
			return fmt.Errorf("%s: cannot assign requested address", o)
		}
		l.Addrs = slices.Delete(slices.Clone(l.Addrs), i, i+1)
	default:
		return fmt.Errorf("unknown op %d", int(o.kind))
	}
	s.Links[o.link] = l
	return nil
}

// touchedLink is what the manager has done to one link and not undone
// yet. The last applied plan alone cannot say it: an apply that fails
// halfway has made bridges and ports no plan of record mentions, and a
// rollback must remove them. So the manager records a fact before the op
// that makes it true, and forgets it only once an op has undone it (or the
// kernel shows it no longer holds). Facts are what releasing the link
// undoes; a link with none is forgotten once no plan wants it.
type touchedLink struct {
	Bridge  bool           // made (or adopted) as a zone bridge: released by deleting it
	Master  string         // made a port of this bridge: released by leaving it
	Addrs   []netip.Prefix // addresses set: released by removing them
	WasDown bool           // set up by the manager: released by setting it down
	OrigMTU int            // MTU before the manager changed it (0: unchanged): restored
}

func (t touchedLink) empty() bool {
	return !t.Bridge && t.Master == "" && len(t.Addrs) == 0 && !t.WasDown && t.OrigMTU == 0
}

// touchedSet is the manager's record, by link name. Links not in it were
// never configured by this manager, and no op ever names them.
type touchedSet map[string]touchedLink

// reconcile drops the facts the observed state shows no longer hold (a
// recorded op that failed, a port whose bridge went, a link unplugged):
// there is nothing left to undo for them.
func (t touchedSet) reconcile(st sysState) {
	for n, tl := range t {
		l, ok := st.Links[n]
		if !ok {
			delete(t, n)
			continue
		}
		if !l.Bridge {
			tl.Bridge = false
		}
		if l.Master == "" {
			tl.Master = ""
		}
		tl.Addrs = slices.DeleteFunc(slices.Clone(tl.Addrs), func(p netip.Prefix) bool { return !slices.Contains(l.Addrs, p) })
		if !l.Up {
			tl.WasDown = false
		}
		if l.MTU == tl.OrigMTU {
			tl.OrigMTU = 0
		}
		t[n] = tl
	}
}

// adopt records, before any op runs, what want makes the manager's: its
// bridges, the ports' bridges and the static addresses, including those
// already in place (from an earlier run, or an apply that failed after
// making them), so that a later plan that drops them releases them.
func (t touchedSet) adopt(want *Plan) {
	for _, l := range want.Links {
		tl := t[l.Name]
		tl.Bridge = tl.Bridge || l.Bridge
		if l.Master != "" {
			tl.Master = l.Master
		}
		if !l.DHCP {
			tl.Addrs = addPrefixes(tl.Addrs, l.Addrs...)
		}
		t[l.Name] = tl
	}
}

// before records what o is about to do. It runs before the op, so that an
// op that fails after changing something (or whose result is unknown) is
// still undone by a later apply. The record lives in memory: a restart of
// the daemon forgets it (the last plan is then all it knows).
func (t touchedSet) before(o op) {
	if o.link == "" {
		return
	}
	tl := t[o.link]
	switch o.kind {
	case opCreateBridge:
		tl.Bridge = true
	case opSetMaster:
		tl.Master = o.master
	case opAddAddr:
		tl.Addrs = addPrefixes(tl.Addrs, o.addr)
	case opSetUp:
		tl.WasDown = true
	case opSetMTU:
		if tl.OrigMTU == 0 {
			tl.OrigMTU = o.prevMTU
		}
	}
	t[o.link] = tl
}

// after forgets what a successful o undid.
func (t touchedSet) after(o op) {
	tl, ok := t[o.link]
	if !ok {
		return
	}
	switch o.kind {
	case opDeleteBridge:
		delete(t, o.link)
		for n, p := range t {
			if p.Master == o.link { // the kernel took the ports out
				p.Master = ""
				t[n] = p
			}
		}
		return
	case opSetNoMaster:
		tl.Master = ""
	case opDelAddr:
		tl.Addrs = slices.DeleteFunc(slices.Clone(tl.Addrs), func(p netip.Prefix) bool { return p == o.addr })
	case opSetDown:
		tl.WasDown = false
	case opSetMTU:
		if o.mtu == tl.OrigMTU {
			tl.OrigMTU = 0
		}
	}
	t[o.link] = tl
}

// prune forgets the links want does not name that have nothing left to
// release.
func (t touchedSet) prune(want *Plan) {
	for n, tl := range t {
		if _, wanted := want.Link(n); !wanted && tl.empty() {
			delete(t, n)
		}
	}
}

func addPrefixes(to []netip.Prefix, ps ...netip.Prefix) []netip.Prefix {
	to = slices.Clone(to)
	for _, p := range ps {
		if !slices.Contains(to, p) {
			to = append(to, p)
		}
	}
	return to
}

// diff returns the ops, in order, that take observed to want. Links that
// want does not name are released only if they are the manager's (in
// touched, or in old, the last applied plan): bridges deleted, ports taken
// out, addresses removed, MTU and down state restored. Links nobody
// configured are never named. Addresses of dhcp links belong to the DHCP
// client (pkg/uplink); only those the manager set itself before the link
// became dhcp are removed.
//
// Releases and stale addresses come first, so a zone's address moving
// from a bridge to a single interface (or back) is never on two links at
// once. Bridges are made before their ports join them. Links want names that do not exist
// get no op: the hotplug loop applies again when they appear.
func diff(old *Plan, touched touchedSet, want *Plan, observed sysState) []op {
	sim := observed.clone()
	var ops []op
	emit := func(o op) {
		ops = append(ops, o)
		_ = sim.apply(o) // a refused op leaves sim as the kernel would
	}

	if observed.Forwarding != want.Forwarding {
		emit(op{kind: opForwarding, on: want.Forwarding})
	}

	// What is the manager's to release: the record, and the last plan.
	ours := touchedSet{}
	for n, tl := range touched {
		ours[n] = touchedLink{Bridge: tl.Bridge, Master: tl.Master, Addrs: slices.Clone(tl.Addrs), WasDown: tl.WasDown, OrigMTU: tl.OrigMTU}
	}
	if old != nil {
		for _, l := range old.Links {
			tl := ours[l.Name]
			tl.Bridge = tl.Bridge || l.Bridge
			if tl.Master == "" {
				tl.Master = l.Master
			}
			if !l.DHCP {
				tl.Addrs = addPrefixes(tl.Addrs, l.Addrs...)
			}
			ours[l.Name] = tl
		}
	}
	var release []string
	for _, n := range slices.Sorted(maps.Keys(ours)) {
		if _, wanted := want.Link(n); !wanted {
			release = append(release, n)
		}
	}
	// Bridges first: deleting one takes its ports out.
	for _, n := range release {
		if l, ok := sim.Links[n]; ok && l.Bridge && ours[n].Bridge {
			emit(op{kind: opDeleteBridge, link: n})
		}
	}
	for _, n := range release {
		l, ok := sim.Links[n]
		if !ok {
			continue
		}
		tl := ours[n]
		if tl.Master != "" && l.Master != "" {
			emit(op{kind: opSetNoMaster, link: n})
		}
		for _, a := range l.Addrs {
			if slices.Contains(tl.Addrs, a) {
				emit(op{kind: opDelAddr, link: n, addr: a})
			}
		}
		if tl.OrigMTU != 0 && l.MTU != tl.OrigMTU {
			emit(op{kind: opSetMTU, link: n, mtu: tl.OrigMTU, prevMTU: l.MTU})
		}
		if tl.WasDown && l.Up {
			emit(op{kind: opSetDown, link: n})
		}
	}

	// Stale addresses next, for the same reason: a zone's address moving
	// from a port to its new bridge leaves the port first.
	for _, l := range want.Links {
		s, ok := sim.Links[l.Name]
		if !ok {
			continue
		}
		for _, a := range s.Addrs {
			// A static link is the box's: any other global address on it is
			// stale. A dhcp link's are the DHCP client's but for ours.
			stale := !slices.Contains(l.Addrs, a)
			if l.DHCP {
				stale = slices.Contains(ours[l.Name].Addrs, a)
			}
			if stale {
				emit(op{kind: opDelAddr, link: l.Name, addr: a})
			}
		}
	}

	for _, l := range want.Links {
		if _, ok := sim.Links[l.Name]; !ok && l.Bridge {
			emit(op{kind: opCreateBridge, link: l.Name})
		}
	}
	for _, l := range want.Links {
		s, ok := sim.Links[l.Name]
		if !ok {
			continue // missing
		}
		tl := ours[l.Name]
		switch {
		case l.MTU > 0 && s.MTU != l.MTU:
			emit(op{kind: opSetMTU, link: l.Name, mtu: l.MTU, prevMTU: s.MTU})
		case l.MTU == 0 && tl.OrigMTU != 0 && s.MTU != tl.OrigMTU:
			// "Keep the driver's": give back the MTU an earlier plan changed.
			emit(op{kind: opSetMTU, link: l.Name, mtu: tl.OrigMTU, prevMTU: s.MTU})
		}
		switch {
		case l.Master != "" && s.Master != l.Master:
			emit(op{kind: opSetMaster, link: l.Name, master: l.Master})
		case l.Master == "" && s.Master != "" && tl.Master != "":
			emit(op{kind: opSetNoMaster, link: l.Name})
		}
		if !s.Up {
			emit(op{kind: opSetUp, link: l.Name})
		}
		if !l.DHCP {
			for _, a := range l.Addrs {
				if !slices.Contains(s.Addrs, a) {
					emit(op{kind: opAddAddr, link: l.Name, addr: a})
				}
			}
		}
	}

	if observed.LegacyRoutes > 0 {
		emit(op{kind: opRemoveLegacyRoutes})
	}
	return ops
}

// missingLinks lists the links want names that do not exist (bridges are
// made, so never missing).
func missingLinks(want *Plan, st sysState) []string {
	var missing []string
	for _, l := range want.Links {
		if _, ok := st.Links[l.Name]; !ok && !l.Bridge {
			missing = append(missing, l.Name)
		}
	}
	return missing
}
