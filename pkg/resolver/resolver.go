// Package resolver forwards DNS queries for the box: to the configured
// upstreams with health tracking and failover (or a race between the two
// best), to specific servers for conditional domains, through a cache with
// TTL bounds, negative caching (RFC 2308), prefetch of popular names and
// serve-stale when every upstream fails (RFC 8767). DNSSEC is passed
// through: the DO and CD bits are forwarded and answers are not validated.
package resolver

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/miekg/dns"
	"github.com/prometheus/client_golang/prometheus"
	"golang.org/x/sync/singleflight"
)

// Upstream is one forwarding server.
type Upstream struct {
	Addr netip.AddrPort
	// Mark is the socket mark of the uplink the server must be reached
	// through (see pkg/netmark), 0 for the active uplink.
	Mark uint32
}

// Forward sends a domain and its subdomains to specific servers.
type Forward struct {
	Domain  string // lower case, no trailing dot
	Servers []netip.AddrPort
}

// Config is the resolver's configuration; Configure swaps it atomically.
type Config struct {
	Upstreams []Upstream
	Forwards  []Forward
	// Race sends each query to the two best upstreams at once.
	Race      bool
	CacheSize int
	// CacheBytes bounds the cache's estimated memory; 0 means
	// DefaultCacheBytes.
	CacheBytes int
	MinTTL     time.Duration
	MaxTTL     time.Duration
	ServeStale bool
}

// Timing. Variables of the Resolver so tests can shorten them.
const (
	defaultAttemptTimeout = 1500 * time.Millisecond
	// defaultStaleAfter: when a stale answer exists and upstreams have not
	// answered after this long, the stale answer is sent (RFC 8767 §5
	// suggests 1.8 s) while the refresh goes on.
	defaultStaleAfter = 1800 * time.Millisecond
	refreshTimeout    = 5 * time.Second
	// An upstream is taken out of rotation after this many consecutive
	// failures, for a back-off growing from 1 s to 30 s.
	downAfter  = 3
	maxBackoff = 30 * time.Second
	// Prefetch popular names when less than a tenth of their TTL is left.
	prefetchHits     = 3
	prefetchFraction = 10
	prefetchMinTTL   = 10
	maxPrefetches    = 16
)

// ErrNoUpstream means no upstream gave a usable answer.
var ErrNoUpstream = errors.New("no upstream answered")

// Result is an answer for one client.
type Result struct {
	// Msg is a private copy: the caller may change it (ID, question case,
	// EDNS). Its question is the one resolved.
	Msg *dns.Msg
	// Cached is set for answers from the cache, Stale for expired ones
	// served because upstreams failed (RFC 8767).
	Cached, Stale bool
}

// Resolver forwards and caches. It is safe for concurrent use.
type Resolver struct {
	log *slog.Logger
	now func() time.Time

	AttemptTimeout time.Duration
	StaleAfter     time.Duration

	cfg      atomic.Pointer[compiled]
	mu       sync.Mutex // guards health and cache replacement
	health   map[netip.AddrPort]*upstream
	cache    atomic.Pointer[cache]
	group    singleflight.Group
	prefetch chan struct{}
	m        *metrics
}

type compiled struct {
	Config
	upstreams []*upstream
	forwards  map[string][]*upstream
}

// upstream tracks one server's health; it outlives reconfigurations.
type upstream struct {
	addr      netip.AddrPort
	mark      uint32
	label     string
	fails     atomic.Int32
	downUntil atomic.Int64 // unix nanoseconds
}

// New returns a resolver with no upstream: Configure it before use.
func New(log *slog.Logger, reg prometheus.Registerer, now func() time.Time) *Resolver {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	if now == nil {
		now = time.Now
	}
	r := &Resolver{
		log: log, now: now,
		AttemptTimeout: defaultAttemptTimeout, StaleAfter: defaultStaleAfter,
		health:   map[netip.AddrPort]*upstream{},
		prefetch: make(chan struct{}, maxPrefetches),
	}
	r.m = newMetrics(reg, r)
	r.cfg.Store(&compiled{})
	return r
}

// Configure swaps in a new configuration. The cache is kept unless its
// size or TTL bounds changed; upstream health is kept per address.
func (r *Resolver) Configure(c Config) {
	r.mu.Lock()
	defer r.mu.Unlock()
	old := r.cfg.Load()
	get := func(a netip.AddrPort, mark uint32) *upstream {
		u, ok := r.health[a]
		if !ok || u.mark != mark {
			u = &upstream{addr: a, mark: mark, label: a.String()}
			r.health[a] = u
		}
		return u
	}
	nc := &compiled{Config: c, forwards: map[string][]*upstream{}}
	for _, u := range c.Upstreams {
		nc.upstreams = append(nc.upstreams, get(u.Addr, u.Mark))
	}
	for _, f := range c.Forwards {
		var us []*upstream
		for _, s := range f.Servers {
			us = append(us, get(s, 0))
		}
		nc.forwards[strings.ToLower(strings.TrimSuffix(f.Domain, "."))] = us
	}
	if r.cache.Load() == nil || old.CacheSize != c.CacheSize || old.CacheBytes != c.CacheBytes || old.MinTTL != c.MinTTL || old.MaxTTL != c.MaxTTL {
		r.cache.Store(newCache(c.CacheSize, c.CacheBytes))
	}
	r.cfg.Store(nc)
}

// CacheLen returns the number of cached answers.
func (r *Resolver) CacheLen() int { return r.cache.Load().len() }

// CacheBytes returns the estimated memory the cached answers hold.
func (r *Resolver) CacheBytes() int64 { return r.cache.Load().byteSize() }

// Cached returns a fresh answer from the cache, without waiting for
// anything: the server answers these inline and hands the rest to
// Resolve in a goroutine of their own.
func (r *Resolver) Cached(q dns.Question, do, cd bool) (Result, bool) {
	c := r.cache.Load()
	key := cacheKey(q, do, cd)
	now := r.now()
	e := c.get(key)
	if e == nil || !now.Before(e.expires) {
		return Result{}, false
	}
	r.m.hits.Inc()
	e.hits.Add(1)
	e.lastUsed.Store(now.UnixNano())
	r.maybePrefetch(r.cfg.Load(), c, key, q, do, cd, e, now)
	return Result{Msg: answerFrom(e, now, false), Cached: true}, true
}

// Resolve answers q for a client. do and cd are the client's DNSSEC OK and
// Checking Disabled bits, forwarded as they are.
func (r *Resolver) Resolve(ctx context.Context, q dns.Question, do, cd bool) (Result, error) {
	if res, ok := r.Cached(q, do, cd); ok {
		return res, nil
	}
	cfg := r.cfg.Load()
	c := r.cache.Load()
	key := cacheKey(q, do, cd)
	now := r.now()
	e := c.get(key)
	r.m.misses.Inc()
	if e != nil && (!cfg.ServeStale || now.Sub(e.expires) > staleFor) {
		e = nil
	}
	ch := r.group.DoChan(key, func() (any, error) { return r.refresh(cfg, c, key, q, do, cd) })
	var timer <-chan time.Time
	if e != nil {
		t := time.NewTimer(r.StaleAfter)
		defer t.Stop()
		timer = t.C
	}
	select {
	case res := <-ch:
		if res.Err == nil {
			return Result{Msg: res.Val.(*dns.Msg).Copy()}, nil
		}
		if e != nil {
			return r.stale(e), nil
		}
		return Result{}, res.Err
	case <-timer:
		return r.stale(e), nil
	case <-ctx.Done():
		return Result{}, ctx.Err()
	}
}

func (r *Resolver) stale(e *entry) Result {
	r.m.stale.Inc()
	e.lastUsed.Store(r.now().UnixNano())
	return Result{Msg: answerFrom(e, r.now(), true), Cached: true, Stale: true}
}

// refresh asks upstreams and caches the answer. It runs once per key at a
// time (singleflight) with its own deadline, since the client that started
// it may go away while others wait for it.
func (r *Resolver) refresh(cfg *compiled, c *cache, key string, q dns.Question, do, cd bool) (*dns.Msg, error) {
	ctx, cancel := context.WithTimeout(context.Background(), refreshTimeout)
	defer cancel()
	resp, err := r.forward(ctx, cfg, q, do, cd)
	if err != nil {
		return nil, err
	}
	clampTTLs(resp, cfg.MinTTL, cfg.MaxTTL)
	if ttl, ok := cacheTTL(resp, cfg.MinTTL, cfg.MaxTTL); ok && c != nil && resp.Len() <= maxCachedAnswer {
		now := r.now()
		e := &entry{msg: resp, wire: packWire(resp), stored: now, expires: now.Add(ttl), ttl: uint32(ttl / time.Second)}
		e.size = entrySize(key, resp, e.wire)
		e.lastUsed.Store(now.UnixNano())
		c.put(key, e, now)
	}
	return resp, nil
}

func (r *Resolver) maybePrefetch(cfg *compiled, c *cache, key string, q dns.Question, do, cd bool, e *entry, now time.Time) {
	left := e.expires.Sub(now)
	if e.ttl < prefetchMinTTL || e.hits.Load() < prefetchHits || left*prefetchFraction > time.Duration(e.ttl)*time.Second {
		return
	}
	if !e.prefetching.CompareAndSwap(false, true) {
		return
	}
	select {
	case r.prefetch <- struct{}{}:
	default:
		e.prefetching.Store(false)
		return
	}
	r.m.prefetches.Inc()
	go func() {
		defer func() { <-r.prefetch }()
		if _, err := r.refresh(cfg, c, key, q, do, cd); err != nil {
			e.prefetching.Store(false) // let a later hit try again
			r.log.Debug("prefetch failed", "name", q.Name, "err", err)
		}
	}()
}

// servers returns the upstreams for a name: a conditional forward's
// servers (longest matching domain), else the general upstreams; healthy
// ones first, in configured order.
func (r *Resolver) servers(cfg *compiled, name string) []*upstream {
	list := cfg.upstreams
	if len(cfg.forwards) > 0 {
		n := strings.ToLower(strings.TrimSuffix(name, "."))
		for {
			if us, ok := cfg.forwards[n]; ok {
				list = us
				break
			}
			i := strings.IndexByte(n, '.')
			if i < 0 {
				break
			}
			n = n[i+1:]
		}
	}
	now := r.now().UnixNano()
	out := make([]*upstream, 0, len(list))
	var down []*upstream
	for _, u := range list {
		if u.downUntil.Load() > now {
			down = append(down, u)
		} else {
			out = append(out, u)
		}
	}
	// Servers in back-off are still tried, last, rather than failing
	// without asking anyone.
	return append(out, down...)
}

func (r *Resolver) forward(ctx context.Context, cfg *compiled, q dns.Question, do, cd bool) (*dns.Msg, error) {
	us := r.servers(cfg, q.Name)
	if len(us) == 0 {
		return nil, fmt.Errorf("%w: no upstream configured", ErrNoUpstream)
	}
	req := new(dns.Msg)
	req.Id = dns.Id()
	req.RecursionDesired = true
	req.CheckingDisabled = cd
	req.Question = []dns.Question{q}
	req.SetEdns0(1232, do)
	var errs []error
	start := 0
	if cfg.Race && len(us) >= 2 {
		resp, err := r.race(ctx, us[0], us[1], req)
		if err == nil {
			return resp, nil
		}
		errs = append(errs, err)
		start = 2
	}
	for _, u := range us[start:] {
		if ctx.Err() != nil {
			break
		}
		resp, err := r.ask(ctx, u, req)
		if err == nil {
			return resp, nil
		}
		errs = append(errs, err)
	}
	return nil, fmt.Errorf("%w: %w", ErrNoUpstream, errors.Join(errs...))
}

func (r *Resolver) race(ctx context.Context, a, b *upstream, req *dns.Msg) (*dns.Msg, error) {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	type res struct {
		m   *dns.Msg
		err error
	}
	ch := make(chan res, 2)
	for _, u := range []*upstream{a, b} {
		go func() {
			m, err := r.ask(ctx, u, req.Copy())
			ch <- res{m, err}
		}()
	}
	var errs []error
	for range 2 {
		x := <-ch
		if x.err == nil {
			return x.m, nil
		}
		errs = append(errs, x.err)
	}
	return nil, errors.Join(errs...)
}

// ask sends one query to one upstream over UDP, retrying over TCP if the
// answer is truncated, and records the upstream's health.
func (r *Resolver) ask(ctx context.Context, u *upstream, req *dns.Msg) (*dns.Msg, error) {
	ctx, cancel := context.WithTimeout(ctx, r.AttemptTimeout)
	defer cancel()
	start := time.Now()
	resp, err := exchange(ctx, u, req, "udp")
	if err == nil && resp.Truncated {
		resp, err = exchange(ctx, u, req, "tcp")
	}
	if err == nil {
		err = checkResponse(req, resp)
	}
	r.m.upstreamQueries.WithLabelValues(u.label).Inc()
	if err != nil {
		r.m.upstreamErrors.WithLabelValues(u.label).Inc()
		if n := u.fails.Add(1); n >= downAfter {
			backoff := min(time.Second<<min(n-downAfter, 5), maxBackoff)
			u.downUntil.Store(r.now().Add(backoff).UnixNano())
			if n == downAfter {
				r.log.Warn("upstream out of rotation", "upstream", u.label, "err", err)
			}
		}
		return nil, fmt.Errorf("%s: %w", u.label, err)
	}
	r.m.upstreamLatency.WithLabelValues(u.label).Observe(time.Since(start).Seconds())
	if u.fails.Swap(0) >= downAfter {
		r.log.Info("upstream back in rotation", "upstream", u.label)
	}
	u.downUntil.Store(0)
	return resp, nil
}

// checkResponse refuses answers that do not answer the question asked, and
// server failures, so that the next upstream is tried.
func checkResponse(req, resp *dns.Msg) error {
	if len(resp.Question) != 1 || !strings.EqualFold(resp.Question[0].Name, req.Question[0].Name) ||
		resp.Question[0].Qtype != req.Question[0].Qtype {
		return errors.New("answer does not match the question")
	}
	switch resp.Rcode {
	case dns.RcodeSuccess, dns.RcodeNameError:
		return nil
	}
	return fmt.Errorf("answered %s", dns.RcodeToString[resp.Rcode])
}

func exchange(ctx context.Context, u *upstream, req *dns.Msg, network string) (*dns.Msg, error) {
	c := &dns.Client{Net: network, UDPSize: 1232, Dialer: &net.Dialer{Control: markControl(u.mark)}}
	resp, _, err := c.ExchangeContext(ctx, req, u.addr.String())
	return resp, err
}

// Healthy reports, per upstream address, whether it is in rotation.
func (r *Resolver) Healthy() map[string]bool {
	cfg := r.cfg.Load()
	now := r.now().UnixNano()
	out := map[string]bool{}
	for _, u := range cfg.upstreams {
		out[u.label] = u.downUntil.Load() <= now
	}
	return out
}
