package dnsfilter

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"runtime/debug"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/miekg/dns"

	"passerelle/pkg/health"
	"passerelle/pkg/ut1"
)

const (
	// retryLists is how often loading is retried while no lists are in
	// use (fail-closed profiles block everything meanwhile).
	retryLists = time.Minute
	// staleLists: lists older than this are refreshed at once rather than
	// in the next night's window (the box was off at night).
	staleLists = 48 * time.Hour
	// dohRefresh is how often DoH endpoints are re-resolved for the
	// firewall.
	dohRefresh  = 6 * time.Hour
	maxDoHAddrs = 20000
)

func (f *Filter) kickLists() {
	select {
	case f.listsKick <- struct{}{}:
	default:
	}
}

func (f *Filter) currentPlan() *Plan {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.plan
}

func (f *Filter) store(p *Plan) *ut1.Store {
	return &ut1.Store{Dir: p.Lists.Dir, Client: f.opt.HTTPClient, Log: f.log, Now: f.now, MaxShrink: p.Lists.MaxShrink}
}

var loadOptions = ut1.Options{Keep: []string{"doh"}}

// manageLists loads the stored lists, then refreshes them from the source
// once a day in the configured window, until ctx is done.
func (f *Filter) manageLists(ctx context.Context) {
	var loadedFrom string // directory of the lists in use
	var nextUpdate, nextDoH time.Time
	for {
		p := f.currentPlan()
		now := f.now()
		if p != nil {
			if f.lists.Load() == nil || loadedFrom != p.Lists.Dir {
				if err := f.loadStored(p); err == nil {
					loadedFrom = p.Lists.Dir
					nextDoH = now
				}
			}
			if p.Lists.Source != "" {
				if nextUpdate.IsZero() {
					nextUpdate = nextRefresh(now, p.Lists.RefreshAt)
					if f.lists.Load() == nil || now.Sub(time.Unix(0, f.listsSince.Load())) > staleLists {
						nextUpdate = now
					}
				}
				if !now.Before(nextUpdate) {
					if f.update(ctx, p) {
						loadedFrom = p.Lists.Dir
						nextDoH = now
					}
					nextUpdate = nextRefresh(f.now(), p.Lists.RefreshAt)
					if f.lists.Load() == nil {
						nextUpdate = f.now().Add(retryLists)
					}
				}
			}
			if !nextDoH.IsZero() && !now.Before(nextDoH) {
				f.blockDoH(ctx, p)
				nextDoH = f.now().Add(dohRefresh)
			}
		}
		wait := retryLists
		if f.lists.Load() != nil {
			wait = time.Hour
		}
		for _, t := range []time.Time{nextUpdate, nextDoH} {
			if !t.IsZero() {
				wait = min(wait, max(t.Sub(f.now()), time.Second))
			}
		}
		timer := time.NewTimer(wait)
		select {
		case <-ctx.Done():
			timer.Stop()
			return
		case <-f.listsKick:
			nextUpdate = time.Time{}
		case <-timer.C:
		}
		timer.Stop()
	}
}

// loadStored loads the last good lists kept on the box.
func (f *Filter) loadStored(p *Plan) error {
	start := f.now()
	s := f.store(p)
	l, err := s.Load(loadOptions)
	if err != nil {
		f.m.listsLoaded.Set(0)
		msg := fmt.Sprintf("no filtering lists in %s: %v", p.Lists.Dir, err)
		sev := health.Warn // profiles resolve unfiltered meanwhile
		if hasFailClosed(p) {
			msg += "; fail-closed zones answer every name as blocked until lists are installed"
			sev = health.Critical
		}
		f.warn("dns-lists", sev, msg)
		f.log.Error("filtering lists not loaded", "event", "dns-lists-missing", "dir", p.Lists.Dir, "err", err)
		return err
	}
	since := f.now()
	if m, err := s.ReadManifest(); err == nil && m.Current != nil && m.Current.SHA256 == l.Version {
		since = m.Current.Installed
	}
	f.swapLists(l, since, f.now().Sub(start))
	return nil
}

// update fetches a new version from the source; it reports whether new
// lists were installed.
func (f *Filter) update(ctx context.Context, p *Plan) bool {
	start := f.now()
	l, err := f.store(p).Update(ctx, p.Lists.Source, f.lists.Load(), loadOptions)
	var ce *ut1.ChecksumError
	var se *ut1.ShrinkError
	var le *ut1.LimitError
	switch {
	case errors.Is(err, ut1.ErrUnchanged):
		f.m.listUpdates.WithLabelValues("unchanged").Inc()
		f.log.Info("lists up to date", "source", p.Lists.Source)
		f.listsSince.Store(f.now().UnixNano())
		f.clear("dns-lists-update")
		return false
	case errors.As(err, &ce):
		f.m.listUpdates.WithLabelValues("checksum").Inc()
	case errors.As(err, &se):
		f.m.listUpdates.WithLabelValues("shrink").Inc()
	case errors.As(err, &le):
		f.m.listUpdates.WithLabelValues("limit").Inc()
	case errors.Is(err, ut1.ErrInsecureSource):
		f.m.listUpdates.WithLabelValues("insecure").Inc()
	case err != nil:
		f.m.listUpdates.WithLabelValues("error").Inc()
	}
	if err != nil {
		f.log.Error("lists update refused; keeping the lists in use", "source", p.Lists.Source, "err", err)
		f.warn("dns-lists-update", health.Warn, fmt.Sprintf("list update from %s refused: %v", p.Lists.Source, err))
		return false
	}
	f.m.listUpdates.WithLabelValues("installed").Inc()
	f.clear("dns-lists-update")
	f.swapLists(l, f.now(), f.now().Sub(start))
	return true
}

// swapLists puts a lists version in use: the policy is recompiled and
// swapped in one atomic store, so no query sees a mix or a gap.
func (f *Filter) swapLists(l *ut1.Lists, since time.Time, took time.Duration) {
	f.mu.Lock()
	var pol *policy
	if f.plan != nil {
		var err error
		if pol, err = newPolicy(f.plan, l); err != nil {
			f.mu.Unlock()
			f.log.Error("lists not applied", "err", err)
			return
		}
	}
	f.lists.Store(l)
	f.listsSince.Store(since.UnixNano())
	if pol != nil {
		f.policy.Store(pol)
		f.reportProfiles(pol)
	}
	f.mu.Unlock()
	f.clear("dns-lists")
	f.m.listsLoaded.Set(1)
	f.m.listInfo.Reset()
	f.m.listInfo.WithLabelValues(l.Version).Set(1)
	f.m.listDomains.Reset()
	f.m.listUnenf.Reset()
	var unenf []string
	for _, c := range l.Categories {
		f.m.listDomains.WithLabelValues(c.Name).Set(float64(c.Domains))
		f.m.listUnenf.WithLabelValues(c.Name, "urls").Set(float64(c.URLs))
		f.m.listUnenf.WithLabelValues(c.Name, "expressions").Set(float64(c.Expressions))
		if c.URLs+c.Expressions > 0 {
			unenf = append(unenf, fmt.Sprintf("%s %d urls/%d expressions", c.Name, c.URLs, c.Expressions))
		}
	}
	f.log.Info("lists loaded", "event", "dns-lists-loaded", "version", l.Version, "categories", len(l.Categories), "domains", l.Domains(),
		"distinct", l.Set.Len(), "bytes", l.Set.Bytes(), "took", took.Round(time.Millisecond))
	if len(unenf) > 0 {
		f.log.Info("list entries DNS cannot enforce (counted, not applied)", "categories", strings.Join(unenf, ", "))
	}
	f.loadedOnce.Do(func() { close(f.listsLoaded) })
	// Building the matcher needs transient memory several times its
	// final size: give it back now rather than at the runtime's pace.
	go debug.FreeOSMemory()
}

// reportProfiles raises a warning for profile categories the lists lack
// or that are empty. Called with f.mu held.
func (f *Filter) reportProfiles(pol *policy) {
	if pol.lists == nil {
		return
	}
	for _, pp := range pol.plan.Profiles {
		pr := pol.profiles[pp.Name]
		code := "dns-categories:" + pp.Name
		if len(pr.missing) == 0 && len(pr.empty) == 0 {
			f.clear(code)
			continue
		}
		var parts []string
		if len(pr.missing) > 0 {
			parts = append(parts, "not in the lists: "+strings.Join(pr.missing, ", "))
		}
		if len(pr.empty) > 0 {
			parts = append(parts, "without any domain: "+strings.Join(pr.empty, ", "))
		}
		msg := fmt.Sprintf("DNS profile %s: categories %s", pp.Name, strings.Join(parts, "; "))
		f.log.Warn("profile categories not enforceable", "profile", pp.Name, "missing", pr.missing, "empty", pr.empty)
		f.warn(code, health.Warn, msg)
	}
}

func hasFailClosed(p *Plan) bool {
	for _, pp := range p.Profiles {
		if pp.FailClosed {
			return true
		}
	}
	return false
}

// blockDoH resolves the doh category's endpoints and hands their
// addresses, with the category's address entries, to the firewall, so
// that browsers cannot reach a DoH server they were configured with by
// address. Upstreams are never blocked.
func (f *Filter) blockDoH(ctx context.Context, p *Plan) {
	l := f.lists.Load()
	if f.opt.Blocker == nil || l == nil || !slices.ContainsFunc(p.Profiles, func(pp *ProfilePlan) bool { return pp.Minors }) {
		return
	}
	own := map[netip.Addr]bool{}
	for _, u := range p.Resolver.Upstreams {
		own[u.Addr.Addr()] = true
	}
	seen := map[netip.Addr]bool{}
	var mu sync.Mutex
	add := func(a netip.Addr) {
		a = a.Unmap()
		mu.Lock()
		defer mu.Unlock()
		if !own[a] && !seen[a] && len(seen) < maxDoHAddrs {
			seen[a] = true
		}
	}
	for _, a := range l.Addresses("doh") {
		add(a)
	}
	names := l.Kept("doh")
	sem := make(chan struct{}, 8)
	var wg sync.WaitGroup
	for _, n := range names {
		if ctx.Err() != nil {
			break
		}
		sem <- struct{}{}
		wg.Go(func() {
			defer func() { <-sem }()
			for _, t := range []uint16{dns.TypeA, dns.TypeAAAA} {
				qctx, cancel := context.WithTimeout(ctx, 3*time.Second)
				res, err := f.res.Resolve(qctx, dns.Question{Name: dns.Fqdn(n), Qtype: t, Qclass: dns.ClassINET}, false, false)
				cancel()
				if err != nil {
					continue
				}
				for _, rr := range res.Msg.Answer {
					switch rr := rr.(type) {
					case *dns.A:
						if a, ok := netip.AddrFromSlice(rr.A); ok {
							add(a)
						}
					case *dns.AAAA:
						if a, ok := netip.AddrFromSlice(rr.AAAA); ok {
							add(a)
						}
					}
				}
			}
		})
	}
	wg.Wait()
	addrs := make([]netip.Addr, 0, len(seen))
	for a := range seen {
		addrs = append(addrs, a)
	}
	slices.SortFunc(addrs, func(a, b netip.Addr) int { return a.Compare(b) })
	if err := f.opt.Blocker.SetBlocked(ctx, addrs); err != nil {
		f.log.Error("DoH addresses not handed to the firewall", "err", err)
		return
	}
	f.m.dohAddresses.Set(float64(len(addrs)))
	f.log.Info("DoH endpoint addresses blocked", "names", len(names), "addresses", len(addrs))
}
