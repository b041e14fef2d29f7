package dnsfilter

import (
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"log/slog"
	"net/netip"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// queryLog is the optional log of blocked queries (privacy.query_log:
// blocked). It never holds a client address: each is replaced by an HMAC
// whose key is random, kept in memory only and replaced every day, so a
// pupil's queries can be linked within one day at most and never traced
// back to an address once the key is gone. One file per hour; files older
// than the retention are deleted. Nothing here leaves the box.
type queryLog struct {
	log     *slog.Logger
	dropped prometheus.Counter

	on     atomic.Bool // plan.LogBlocked, read without the lock
	wmu    sync.Mutex  // held by each write and by a change of directory
	mu     sync.Mutex
	plan   PrivacyPlan
	ch     chan logEntry
	keyDay string
	key    []byte
}

type logEntry struct {
	Time   time.Time `json:"time"`
	Zone   string    `json:"zone"`
	Client string    `json:"client"`
	Name   string    `json:"name"`
	Type   string    `json:"type"`
	Reason string    `json:"reason"`
}

func newQueryLog(log *slog.Logger, dropped prometheus.Counter) *queryLog {
	return &queryLog{log: log, dropped: dropped, ch: make(chan logEntry, 1024)}
}

func (q *queryLog) configure(p PrivacyPlan) {
	q.wmu.Lock()
	defer q.wmu.Unlock()
	q.mu.Lock()
	old := q.plan.Dir
	q.plan = p
	q.on.Store(p.LogBlocked)
	q.mu.Unlock()
	if old != "" && p.Dir != "" && filepath.Clean(old) != filepath.Clean(p.Dir) {
		q.moveFiles(old, p.Dir)
	}
}

// moveFiles brings the hour files of a directory no longer configured
// into the new one, where the retention (or the log being off) deletes
// them in time: left behind, nothing would ever delete them, and the
// promise of docs/privacy.md would be broken (issue 12). A file that
// cannot be moved (another filesystem) is deleted. Called with wmu held,
// so that no entry is being appended meanwhile.
func (q *queryLog) moveFiles(from, to string) {
	entries, err := os.ReadDir(from)
	if err != nil {
		return // nothing there
	}
	moved, deleted := 0, 0
	for _, e := range entries {
		n := e.Name()
		if !isLogFile(n) || !e.Type().IsRegular() {
			continue
		}
		src := filepath.Join(from, n)
		if err := os.MkdirAll(to, 0o700); err == nil {
			dst := filepath.Join(to, n)
			if _, err := os.Lstat(dst); os.IsNotExist(err) && os.Rename(src, dst) == nil {
				moved++
				continue
			}
		}
		if os.Remove(src) == nil {
			deleted++
		}
	}
	os.Remove(from) // only if empty: it may hold other files
	if moved+deleted > 0 {
		q.log.Info("blocked-query log moved to the new directory", "event", "querylog-moved", "from", from, "to", to, "moved", moved, "deleted", deleted)
	}
}

func isLogFile(n string) bool {
	return strings.HasPrefix(n, "blocked-") && strings.HasSuffix(n, ".jsonl")
}

// record queues a blocked query, if the log is on; it never blocks.
func (q *queryLog) record(now time.Time, zone string, client netip.Addr, name, qtype, reason string) {
	if !q.on.Load() {
		return
	}
	q.mu.Lock()
	on := q.plan.LogBlocked
	var h string
	if on {
		h = q.hashLocked(now, client)
	}
	q.mu.Unlock()
	if !on {
		return
	}
	e := logEntry{Time: now.UTC().Truncate(time.Minute), Zone: zone, Client: h, Name: name, Type: qtype, Reason: reason}
	select {
	case q.ch <- e:
	default:
		q.dropped.Inc()
	}
}

func (q *queryLog) hashLocked(now time.Time, client netip.Addr) string {
	day := now.UTC().Format("2006-01-02")
	if day != q.keyDay {
		q.key = make([]byte, 32)
		rand.Read(q.key)
		q.keyDay = day
	}
	m := hmac.New(sha256.New, q.key)
	b, _ := client.MarshalBinary()
	m.Write(b)
	return hex.EncodeToString(m.Sum(nil)[:8])
}

// run writes queued entries and enforces the retention until stop closes.
func (q *queryLog) run(stop <-chan struct{}, now func() time.Time) {
	tick := time.NewTicker(10 * time.Minute)
	defer tick.Stop()
	q.prune(now())
	for {
		select {
		case <-stop:
			return
		case e := <-q.ch:
			if err := q.write(e); err != nil {
				q.dropped.Inc()
				q.log.Warn("blocked-query log not written", "err", err)
			}
		case <-tick.C:
			q.prune(now())
		}
	}
}

func logFileName(t time.Time) string { return "blocked-" + t.UTC().Format("2006-01-02T15") + ".jsonl" }

func (q *queryLog) write(e logEntry) error {
	q.wmu.Lock()
	defer q.wmu.Unlock()
	q.mu.Lock()
	dir := q.plan.Dir
	q.mu.Unlock()
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return err
	}
	b, err := json.Marshal(e)
	if err != nil {
		return err
	}
	f, err := os.OpenFile(filepath.Join(dir, logFileName(e.Time)), os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o600)
	if err != nil {
		return err
	}
	// One write per line: appends of whole lines never interleave.
	_, err = f.Write(append(b, '\n'))
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	return err
}

// prune deletes hour files whose newest possible entry is older than the
// retention; with the log off, every file goes.
func (q *queryLog) prune(now time.Time) {
	q.mu.Lock()
	p := q.plan
	q.mu.Unlock()
	if p.Dir == "" {
		return
	}
	entries, err := os.ReadDir(p.Dir)
	if err != nil {
		return
	}
	for _, e := range entries {
		n := e.Name()
		if !strings.HasPrefix(n, "blocked-") || !strings.HasSuffix(n, ".jsonl") {
			continue
		}
		hour, err := time.Parse("2006-01-02T15", strings.TrimSuffix(strings.TrimPrefix(n, "blocked-"), ".jsonl"))
		if err != nil {
			continue
		}
		if !p.LogBlocked || now.Sub(hour.Add(time.Hour)) > p.Retention {
			if err := os.Remove(filepath.Join(p.Dir, n)); err == nil {
				q.log.Debug("blocked-query log past retention deleted", "file", n)
			}
		}
	}
}

// hourlyStats are the aggregate counters kept by default: blocked queries
// per hour, zone and reason, for the last two days. No name, no client.
type hourlyStats struct {
	mu sync.RWMutex
	m  map[statKey]*atomic.Uint64
}

type statKey struct {
	Hour   time.Time
	Zone   string
	Reason string
}

// HourStat is one aggregate counter.
type HourStat struct {
	Hour   time.Time
	Zone   string
	Reason string
	// Category is Category(Reason): the UT1 category or DenyCategory,
	// "" when the block was for no category.
	Category string
	Blocked  uint64
}

const statsKept = 48 * time.Hour

func (s *hourlyStats) add(now time.Time, zone, reason string) {
	k := statKey{now.UTC().Truncate(time.Hour), zone, reason}
	s.mu.RLock()
	c := s.m[k]
	s.mu.RUnlock()
	if c == nil {
		s.mu.Lock()
		if s.m == nil {
			s.m = map[statKey]*atomic.Uint64{}
		}
		if c = s.m[k]; c == nil {
			for old := range s.m {
				if k.Hour.Sub(old.Hour) > statsKept {
					delete(s.m, old)
				}
			}
			c = new(atomic.Uint64)
			s.m[k] = c
		}
		s.mu.Unlock()
	}
	c.Add(1)
}

func (s *hourlyStats) list() []HourStat {
	s.mu.RLock()
	defer s.mu.RUnlock()
	out := make([]HourStat, 0, len(s.m))
	for k, v := range s.m {
		out = append(out, HourStat{Hour: k.Hour, Zone: k.Zone, Reason: k.Reason, Category: Category(k.Reason), Blocked: v.Load()})
	}
	sort.Slice(out, func(i, j int) bool {
		a, b := out[i], out[j]
		if !a.Hour.Equal(b.Hour) {
			return a.Hour.Before(b.Hour)
		}
		if a.Zone != b.Zone {
			return a.Zone < b.Zone
		}
		return a.Reason < b.Reason
	})
	return out
}
