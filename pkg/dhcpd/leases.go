package dhcpd

import (
	"errors"
	"fmt"
	"net/netip"
	"slices"
	"time"
)

// Timings of the lease manager.
const (
	// offerHold is how long an offered address stays set aside for the
	// client it was offered to. Clients answer an OFFER within a second
	// (their REQUEST still succeeds after the hold while nobody took the
	// address); a long hold would let DISCOVERs alone, from random
	// hardware addresses, hold the whole pool (issue 12).
	offerHold = 5 * time.Second
	// declineQuarantine keeps an address a client found in use (DECLINE)
	// out of the pool for a while, as RFC 2131 asks.
	declineQuarantine = 10 * time.Minute
	// firstLease bounds the lease of a client's first ACK for an address:
	// a device that really uses it renews at half of it and then gets the
	// zone's full lease time, while addresses taken by a flood of random
	// hardware addresses, which never renew, come back within minutes
	// instead of hours (issue 12).
	firstLease = 10 * time.Minute
	// recordRetention is how long a record outlives its lease. Its only
	// use then is to give a returning device its previous address back
	// (and to answer "which device had this address" in an incident):
	// a week covers a weekend and a few days of absence; a device away
	// longer simply gets another address. The DNS filter's query log
	// keeps the same 7 days by default (docs/privacy.md).
	recordRetention = 7 * 24 * time.Hour
)

// ARP probing of bound addresses (issue 12): a client whose first lease
// was never renewed and whose address never answered ARP is no device at
// all (a flood of random hardware addresses); its address is reclaimed
// first when the pool has no never-used address left.
const (
	// probeAfter is how long after its first ACK an address is probed: a
	// real client configures it within seconds.
	probeAfter = time.Minute
	// probeEvery separates two probes of the same address.
	probeEvery = 30 * time.Second
	// silentProbes unanswered probes make an address silent (one lost
	// ARP reply is not enough).
	silentProbes = 2
	// maxProbes bounds the addresses probed in one round.
	maxProbes = 64
)

// lease is one address record. A record outlives its lease: once expired
// (or released) it remembers who had the address, so the same client gets
// it back while nobody else needed it. Expired records are reclaimed, oldest
// first, when no never-used address is left.
type lease struct {
	Addr     netip.Addr
	MAC      [6]byte // zero for a declined address
	Hostname string
	Expiry   time.Time
	Declined bool

	// Renewed says the client asked again for an address it already had
	// a record of (a renewal, or a return after the lease ended): it gets
	// the full lease time and is never reclaimed for ARP silence. It is
	// not stored: at load, a record whose lease runs longer than
	// firstLease must have been renewed.
	Renewed bool
	// Probe state, in memory only: when the address was bound (by the
	// ACK that created the record), when it was last probed, unanswered
	// probes, and whether it ever answered.
	bound    time.Time
	probed   time.Time
	silent   int
	answered bool
}

// reclaimable reports whether l is a live lease of a client that never
// renewed and whose address never answered ARP.
func (l *lease) reclaimable(now time.Time) bool {
	return !l.Declined && !l.Renewed && !l.answered && l.silent >= silentProbes && l.live(now)
}

func (l *lease) live(now time.Time) bool { return now.Before(l.Expiry) }

type offer struct {
	addr  netip.Addr
	until time.Time
}

// table is the lease manager of one zone. It is not safe for concurrent use;
// the Handler serialises access.
type table struct {
	zone ZonePlan

	byAddr map[netip.Addr]*lease
	byMAC  map[[6]byte]*lease // records with a MAC (not declined)
	offers map[[6]byte]offer
	// offeredAddr is the inverse of offers.
	offeredAddr map[netip.Addr][6]byte

	reservedFor  map[[6]byte]netip.Addr
	reservedAddr map[netip.Addr][6]byte

	// cursor is where the search for a never-used address resumes;
	// exhausted says a full search found none, until a record or an offer
	// goes away (or the plan changes).
	cursor    uint32
	exhausted bool
	// noExpiredBefore says no record expires before it: a full pool of
	// live leases answers a flood of new clients without scanning.
	// Release, decline and reloads, which can expire records early, reset
	// it.
	noExpiredBefore time.Time
	// noSilent says a scan found no ARP-silent lease to reclaim, until a
	// probe finds one.
	noSilent bool
	// reclaimedSilent counts the leases reclaimed for ARP silence.
	reclaimedSilent int
}

func newTable(z ZonePlan) *table {
	t := &table{
		byAddr:      map[netip.Addr]*lease{},
		byMAC:       map[[6]byte]*lease{},
		offers:      map[[6]byte]offer{},
		offeredAddr: map[netip.Addr][6]byte{},
	}
	t.setZone(z)
	return t
}

// setZone installs a (new) zone plan and drops the records it makes
// invalid: addresses outside the new range, and reserved addresses held by
// another client (the reserved device must always get its address; the
// other client is refused at its next renewal). It reports whether records
// were dropped.
func (t *table) setZone(z ZonePlan) bool {
	t.zone = z
	t.reservedFor = map[[6]byte]netip.Addr{}
	t.reservedAddr = map[netip.Addr][6]byte{}
	for _, r := range z.Reserved {
		t.reservedFor[r.MAC] = r.Addr
		t.reservedAddr[r.Addr] = r.MAC
	}
	t.exhausted = false
	t.noExpiredBefore = time.Time{}
	changed := false
	for a, l := range t.byAddr {
		if !t.assignable(a, l.MAC) || (l.Declined && !t.inPool(a)) {
			t.remove(l)
			changed = true
		}
	}
	for mac, o := range t.offers {
		if !t.assignable(o.addr, mac) {
			t.dropOffer(mac)
		}
	}
	return changed
}

// inPool reports whether a is handed out dynamically.
func (t *table) inPool(a netip.Addr) bool {
	if !t.zone.inRange(a) || a == t.zone.Server {
		return false
	}
	_, reserved := t.reservedAddr[a]
	return !reserved
}

// assignable reports whether a may ever be given to mac: its reservation,
// or a pool address when mac has no reservation.
func (t *table) assignable(a netip.Addr, mac [6]byte) bool {
	if r, ok := t.reservedFor[mac]; ok {
		return a == r
	}
	return t.inPool(a)
}

// availableTo reports whether mac may take a now: assignable, not held by
// a live lease or offer of another client. An expired record of another
// client does not block (it is reclaimed).
func (t *table) availableTo(a netip.Addr, mac [6]byte, now time.Time) bool {
	if !t.assignable(a, mac) {
		return false
	}
	if m, ok := t.offeredAddr[a]; ok && m != mac && now.Before(t.offers[m].until) {
		return false
	}
	if l, ok := t.byAddr[a]; ok && l.MAC != mac && l.live(now) {
		return false
	}
	return true
}

func (t *table) remove(l *lease) {
	if t.byAddr[l.Addr] == l {
		delete(t.byAddr, l.Addr)
	}
	if l.MAC != ([6]byte{}) && t.byMAC[l.MAC] == l {
		delete(t.byMAC, l.MAC)
	}
	t.exhausted = false
}

func (t *table) dropOffer(mac [6]byte) {
	if o, ok := t.offers[mac]; ok {
		delete(t.offers, mac)
		if t.offeredAddr[o.addr] == mac {
			delete(t.offeredAddr, o.addr)
		}
		t.exhausted = false
	}
}

// expireOffers forgets offers that were not taken up.
func (t *table) expireOffers(now time.Time) {
	for mac, o := range t.offers {
		if !now.Before(o.until) {
			t.dropOffer(mac)
		}
	}
}

// choose picks the address to offer mac, in this order: its reservation;
// its current or previous address; the address it asks for (if nobody
// else has a record of it); a never-used pool address; the pool address
// whose record expired longest ago. ok is false when the pool is full.
func (t *table) choose(mac [6]byte, requested netip.Addr, now time.Time) (netip.Addr, bool) {
	if r, ok := t.reservedFor[mac]; ok {
		return r, t.availableTo(r, mac, now)
	}
	if o, ok := t.offers[mac]; ok && t.availableTo(o.addr, mac, now) {
		return o.addr, true
	}
	if l, ok := t.byMAC[mac]; ok && t.availableTo(l.Addr, mac, now) {
		return l.Addr, true
	}
	if requested.IsValid() && t.availableTo(requested, mac, now) {
		if l, ok := t.byAddr[requested]; !ok || l.MAC == mac {
			return requested, true
		}
	}
	if a, ok := t.neverUsed(now); ok {
		return a, true
	}
	if a, ok := t.reclaimSilent(now); ok {
		return a, true
	}
	return t.oldestExpired(mac, now)
}

// reclaimSilent ends the oldest live lease that was never renewed and whose
// address never answered ARP, and returns its address. Such a lease is
// reclaimed before expired records of real clients, which may come back
// for their address.
func (t *table) reclaimSilent(now time.Time) (netip.Addr, bool) {
	if t.noSilent {
		return netip.Addr{}, false
	}
	var best *lease
	for a, l := range t.byAddr {
		if !t.inPool(a) || !l.reclaimable(now) {
			continue
		}
		if _, offered := t.offeredAddr[a]; offered {
			continue
		}
		if best == nil || l.bound.Before(best.bound) || (l.bound.Equal(best.bound) && a.Less(best.Addr)) {
			best = l
		}
	}
	if best == nil {
		t.noSilent = true
		return netip.Addr{}, false
	}
	t.remove(best)
	t.reclaimedSilent++
	return best.Addr, true
}

// probeCandidates returns up to max addresses to probe now: live leases of
// clients that never renewed, bound at least probeAfter ago, neither
// answered nor silent yet, not probed in the last probeEvery.
func (t *table) probeCandidates(now time.Time, max int) []netip.Addr {
	var out []netip.Addr
	for a, l := range t.byAddr {
		if len(out) >= max {
			break
		}
		if l.Declined || l.Renewed || l.answered || l.silent >= silentProbes || !l.live(now) || !t.inPool(a) {
			continue
		}
		if now.Sub(l.bound) < probeAfter || now.Sub(l.probed) < probeEvery {
			continue
		}
		out = append(out, a)
	}
	slices.SortFunc(out, netip.Addr.Compare)
	return out
}

// probeResult records the outcome of a probe of a sent at asked. A record
// bound after asked (the address changed hands meanwhile) is left alone.
func (t *table) probeResult(a netip.Addr, answered bool, asked time.Time) {
	l, ok := t.byAddr[a]
	if !ok || l.Declined || l.bound.After(asked) {
		return
	}
	l.probed = asked
	if answered {
		l.answered = true
		return
	}
	l.silent++
	if l.silent >= silentProbes {
		t.noSilent = false
	}
}

// prune deletes the records whose lease ended more than recordRetention
// ago, and returns how many.
func (t *table) prune(now time.Time) int {
	n := 0
	for _, l := range t.byAddr {
		if now.Sub(l.Expiry) > recordRetention {
			t.remove(l)
			n++
		}
	}
	return n
}

func (t *table) neverUsed(now time.Time) (netip.Addr, bool) {
	if t.exhausted {
		t.expireOffers(now) // an offer that ended frees its address
	}
	if t.exhausted {
		return netip.Addr{}, false
	}
	start, end := u32(t.zone.RangeStart), u32(t.zone.RangeEnd)
	size := end - start + 1
	for i := uint32(0); i < size; i++ {
		off := (t.cursor + i) % size
		a := addrFrom(start + off)
		if !t.inPool(a) {
			continue
		}
		if _, ok := t.byAddr[a]; ok {
			continue
		}
		if m, ok := t.offeredAddr[a]; ok && now.Before(t.offers[m].until) {
			continue
		}
		t.cursor = (off + 1) % size
		return a, true
	}
	t.exhausted = true
	return netip.Addr{}, false
}

func (t *table) oldestExpired(mac [6]byte, now time.Time) (netip.Addr, bool) {
	if now.Before(t.noExpiredBefore) {
		return netip.Addr{}, false
	}
	var best *lease
	var next time.Time // earliest expiry still to come
	for a, l := range t.byAddr {
		if l.live(now) {
			if next.IsZero() || l.Expiry.Before(next) {
				next = l.Expiry
			}
			continue
		}
		if !t.availableTo(a, mac, now) {
			continue
		}
		if best == nil || l.Expiry.Before(best.Expiry) || (l.Expiry.Equal(best.Expiry) && a.Less(best.Addr)) {
			best = l
		}
	}
	if best == nil {
		if !next.IsZero() {
			t.noExpiredBefore = next
		}
		return netip.Addr{}, false
	}
	return best.Addr, true
}

// offer sets a aside for mac for offerHold.
func (t *table) offer(mac [6]byte, a netip.Addr, now time.Time) {
	t.dropOffer(mac)
	if m, ok := t.offeredAddr[a]; ok {
		t.dropOffer(m) // an expired offer to someone else
	}
	t.offers[mac] = offer{addr: a, until: now.Add(offerHold)}
	t.offeredAddr[a] = mac
}

var (
	errNotAssignable = errors.New("address not assignable to this client")
	errTaken         = errors.New("address held by another client")
)

// bind gives a to mac. It replaces mac's record of another address and an
// expired record of another client on a. A client asking again for an
// address it has a record of (renewing, or back after its lease ended),
// and a reserved device, get the zone's lease time; the first ACK of an
// address to a client gets at most firstLease.
func (t *table) bind(mac [6]byte, a netip.Addr, hostname string, now time.Time) (*lease, error) {
	if !t.assignable(a, mac) {
		return nil, errNotAssignable
	}
	if !t.availableTo(a, mac, now) {
		return nil, errTaken
	}
	if l, ok := t.byMAC[mac]; ok && l.Addr != a {
		t.remove(l)
	}
	if l, ok := t.byAddr[a]; ok && l.MAC != mac {
		t.remove(l)
	}
	if m, ok := t.offeredAddr[a]; ok && m != mac {
		t.dropOffer(m)
	}
	t.dropOffer(mac)
	l, ok := t.byAddr[a]
	if ok && !l.Declined {
		l.Renewed = true
	} else {
		if ok {
			t.remove(l) // a quarantine that ended
		}
		_, reserved := t.reservedFor[mac]
		l = &lease{Addr: a, MAC: mac, Renewed: reserved, bound: now}
		t.byAddr[a] = l
		t.byMAC[mac] = l
	}
	l.Expiry = now.Add(t.leaseTime(l))
	if hostname != "" {
		l.Hostname = hostname
	}
	return l, nil
}

// offerLease is the lease an OFFER of a to mac announces: what bind will
// give.
func (t *table) offerLease(mac [6]byte, a netip.Addr) time.Duration {
	if l, ok := t.byAddr[a]; ok && l.MAC == mac && !l.Declined {
		return t.zone.LeaseTime
	}
	if _, ok := t.reservedFor[mac]; ok {
		return t.zone.LeaseTime
	}
	return min(firstLease, t.zone.LeaseTime)
}

// leaseTime is the lease l gets at its next ACK.
func (t *table) leaseTime(l *lease) time.Duration {
	if l.Renewed {
		return t.zone.LeaseTime
	}
	return min(firstLease, t.zone.LeaseTime)
}

// release ends mac's lease of a now, keeping the record so the client gets
// the address back later. It reports whether anything changed.
func (t *table) release(mac [6]byte, a netip.Addr, now time.Time) bool {
	t.dropOffer(mac)
	l, ok := t.byAddr[a]
	if !ok || l.MAC != mac || !l.live(now) {
		return false
	}
	l.Expiry = now
	t.noExpiredBefore = time.Time{}
	return true
}

// decline quarantines a, which mac found in use by another host. Only the
// client the address was given or offered to may decline it, so a hostile
// client cannot take addresses out of the pool.
func (t *table) decline(mac [6]byte, a netip.Addr, now time.Time) bool {
	l, leased := t.byAddr[a]
	o, offered := t.offers[mac]
	if !(leased && l.MAC == mac) && !(offered && o.addr == a) {
		return false
	}
	t.dropOffer(mac)
	if leased {
		t.remove(l)
	}
	if _, reserved := t.reservedAddr[a]; reserved {
		return leased // the reservation stands; nothing to quarantine
	}
	d := &lease{Addr: a, Declined: true, Expiry: now.Add(declineQuarantine)}
	t.byAddr[a] = d
	t.noExpiredBefore = time.Time{}
	return true
}

// lookup returns mac's record.
func (t *table) lookup(mac [6]byte) (*lease, bool) {
	l, ok := t.byMAC[mac]
	return l, ok
}

// inUse counts the pool addresses nobody else can have now: live leases,
// live offers and quarantined addresses.
func (t *table) inUse(now time.Time) int {
	n := 0
	for a, l := range t.byAddr {
		if t.inPool(a) && l.live(now) {
			n++
		}
	}
	for a, m := range t.offeredAddr {
		if !t.inPool(a) || !now.Before(t.offers[m].until) {
			continue
		}
		if l, ok := t.byAddr[a]; ok && l.live(now) {
			continue // counted above
		}
		n++
	}
	return n
}

// records returns every record, by address.
func (t *table) records() []lease {
	out := make([]lease, 0, len(t.byAddr))
	for _, l := range t.byAddr {
		out = append(out, *l)
	}
	sortLeases(out)
	return out
}

// load replaces the records with ls, skipping those the zone plan does not
// allow and duplicates (the later expiry wins). It returns how many were
// skipped. A record whose lease ends more than firstLease after now was
// renewed; the others count as bound now for ARP probing.
func (t *table) load(ls []lease, now time.Time) int {
	t.byAddr = map[netip.Addr]*lease{}
	t.byMAC = map[[6]byte]*lease{}
	t.offers = map[[6]byte]offer{}
	t.offeredAddr = map[netip.Addr][6]byte{}
	t.exhausted = false
	t.noExpiredBefore = time.Time{}
	t.noSilent = false
	skipped := 0
	for _, l := range ls {
		l := l
		if l.Declined {
			l.MAC = [6]byte{}
			if !t.inPool(l.Addr) {
				skipped++
				continue
			}
		} else if l.MAC == ([6]byte{}) || !t.assignable(l.Addr, l.MAC) {
			skipped++
			continue
		}
		if old, ok := t.byAddr[l.Addr]; ok {
			skipped++
			if !l.Expiry.After(old.Expiry) {
				continue
			}
			t.remove(old)
		}
		if old, ok := t.byMAC[l.MAC]; ok && !l.Declined {
			skipped++
			if !l.Expiry.After(old.Expiry) {
				continue
			}
			t.remove(old)
		}
		l.Renewed = l.Renewed || l.Expiry.Sub(now) > firstLease
		if _, reserved := t.reservedFor[l.MAC]; reserved {
			l.Renewed = true
		}
		l.bound = now
		t.byAddr[l.Addr] = &l
		if !l.Declined {
			t.byMAC[l.MAC] = &l
		}
	}
	return skipped
}

// check verifies the table's invariants; tests and the fuzz target call it
// after every operation.
func (t *table) check(now time.Time) error {
	withMAC := 0
	for a, l := range t.byAddr {
		if l.Addr != a {
			return fmt.Errorf("record %s filed under %s", l.Addr, a)
		}
		if a == t.zone.Server || !t.zone.Subnet.Contains(a) {
			return fmt.Errorf("record for %s, outside the zone or the box's own address", a)
		}
		if l.Declined {
			if l.MAC != ([6]byte{}) {
				return fmt.Errorf("declined %s has an owner", a)
			}
			if !t.inPool(a) {
				return fmt.Errorf("declined %s is not a pool address", a)
			}
			continue
		}
		withMAC++
		if l.MAC == ([6]byte{}) {
			return fmt.Errorf("lease %s has no hardware address", a)
		}
		if t.byMAC[l.MAC] != l {
			return fmt.Errorf("lease %s is not indexed under its hardware address", a)
		}
		if !t.assignable(a, l.MAC) {
			return fmt.Errorf("lease %s is not assignable to %x", a, l.MAC)
		}
	}
	if withMAC != len(t.byMAC) {
		return fmt.Errorf("%d leases with an owner but %d owners indexed", withMAC, len(t.byMAC))
	}
	if len(t.offers) != len(t.offeredAddr) {
		return fmt.Errorf("%d offers but %d offered addresses", len(t.offers), len(t.offeredAddr))
	}
	for mac, o := range t.offers {
		if t.offeredAddr[o.addr] != mac {
			return fmt.Errorf("offer of %s is not indexed", o.addr)
		}
		if !t.assignable(o.addr, mac) {
			return fmt.Errorf("offer of %s to %x is not assignable", o.addr, mac)
		}
		if l, ok := t.byAddr[o.addr]; ok && l.MAC != mac && l.live(now) && now.Before(o.until) {
			return fmt.Errorf("%s is both leased to %x and offered to %x", o.addr, l.MAC, mac)
		}
	}
	if n, size := t.inUse(now), t.zone.PoolSize(); n > size {
		return fmt.Errorf("%d addresses in use in a pool of %d", n, size)
	}
	return nil
}
