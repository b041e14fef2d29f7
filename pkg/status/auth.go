package status

import (
	"crypto/rand"
	"crypto/subtle"
	"encoding/base64"
	"errors"
	"fmt"
	"net/netip"
	"strconv"
	"strings"
	"sync"
	"time"

	"golang.org/x/crypto/argon2"
	"golang.org/x/crypto/bcrypt"
)

// CheckPassword compares a password with a bcrypt ($2a$, $2b$, $2y$) or
// argon2id ($argon2id$v=19$m=...,t=...,p=...$salt$hash) hash. An empty
// hash matches nothing: there is no default password.
func CheckPassword(hash, password string) bool {
	switch {
	case hash == "":
		return false
	case strings.HasPrefix(hash, "$argon2id$"):
		ok, err := checkArgon2id(hash, password)
		return err == nil && ok
	case strings.HasPrefix(hash, "$2"):
		return bcrypt.CompareHashAndPassword([]byte(hash), []byte(password)) == nil
	}
	return false
}

func checkArgon2id(hash, password string) (bool, error) {
	// $argon2id$v=19$m=65536,t=3,p=4$salt$key
	parts := strings.Split(hash, "$")
	if len(parts) != 6 || parts[2] != "v=19" {
		return false, errors.New("malformed argon2id hash")
	}
	var m, t uint32
	var p uint8
	if _, err := fmt.Sscanf(parts[3], "m=%d,t=%d,p=%d", &m, &t, &p); err != nil {
		return false, err
	}
	if m > 256<<10 || t > 16 || p == 0 { // at most 256 MiB: the box has little memory
		return false, errors.New("argon2id parameters out of range")
	}
	salt, err := base64.RawStdEncoding.DecodeString(parts[4])
	if err != nil {
		return false, err
	}
	key, err := base64.RawStdEncoding.DecodeString(parts[5])
	if err != nil || len(key) == 0 {
		return false, errors.New("malformed argon2id key")
	}
	got := argon2.IDKey([]byte(password), salt, t, m, p, uint32(len(key)))
	return subtle.ConstantTimeCompare(got, key) == 1, nil
}

// HashArgon2id hashes a password for status_page.password_hash.
func HashArgon2id(password string) string {
	salt := make([]byte, 16)
	rand.Read(salt)
	const m, t, p = 19 * 1024, 2, 1 // OWASP's minimum for argon2id
	key := argon2.IDKey([]byte(password), salt, t, m, p, 32)
	return fmt.Sprintf("$argon2id$v=19$m=%d,t=%d,p=%d$%s$%s", m, t, p,
		base64.RawStdEncoding.EncodeToString(salt), base64.RawStdEncoding.EncodeToString(key))
}

func randomToken() string {
	b := make([]byte, 32)
	rand.Read(b)
	return base64.RawURLEncoding.EncodeToString(b)
}

// session is one logged-in technician, kept server-side: the cookie holds
// only its random id.
type session struct {
	id, user, csrf string
	created, seen  time.Time
}

// sessions are the live sessions: ended after idle without a request, or
// maxAge after login, whichever comes first.
type sessions struct {
	mu     sync.Mutex
	byID   map[string]*session
	now    func() time.Time
	idle   time.Duration
	maxAge time.Duration
}

const maxSessions = 32

func newSessions(now func() time.Time) *sessions {
	return &sessions{byID: map[string]*session{}, now: now, idle: 30 * time.Minute, maxAge: 12 * time.Hour}
}

func (s *sessions) setIdle(d time.Duration) {
	if d > 0 {
		s.mu.Lock()
		s.idle = d
		s.mu.Unlock()
	}
}

func (s *sessions) create(user string) *session {
	s.mu.Lock()
	defer s.mu.Unlock()
	now := s.now()
	s.pruneLocked(now)
	if len(s.byID) >= maxSessions {
		var oldest *session
		for _, x := range s.byID {
			if oldest == nil || x.seen.Before(oldest.seen) {
				oldest = x
			}
		}
		delete(s.byID, oldest.id)
	}
	x := &session{id: randomToken(), user: user, csrf: randomToken(), created: now, seen: now}
	s.byID[x.id] = x
	return x
}

// get returns the live session of id and marks it used.
func (s *sessions) get(id string) (*session, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	x, ok := s.byID[id]
	if !ok {
		return nil, false
	}
	now := s.now()
	if s.expired(x, now) {
		delete(s.byID, id)
		return nil, false
	}
	x.seen = now
	c := *x
	return &c, true
}

func (s *sessions) expired(x *session, now time.Time) bool {
	return now.Sub(x.seen) > s.idle || now.Sub(x.created) > s.maxAge
}

func (s *sessions) pruneLocked(now time.Time) {
	for id, x := range s.byID {
		if s.expired(x, now) {
			delete(s.byID, id)
		}
	}
}

func (s *sessions) end(id string) {
	s.mu.Lock()
	delete(s.byID, id)
	s.mu.Unlock()
}

// limiter is a token bucket per client address, plus one for all clients:
// login attempts (5 at once, then one a minute per address; 30 a minute
// in all) and diagnostics.
type limiter struct {
	mu          sync.Mutex
	now         func() time.Time
	burst       float64
	every       time.Duration
	allBurst    float64
	allEvery    time.Duration
	per         map[netip.Addr]*bucket
	all         bucket
	lastCleanup time.Time
}

type bucket struct {
	tokens float64
	at     time.Time
}

func newLimiter(now func() time.Time, burst int, every time.Duration, allBurst int, allEvery time.Duration) *limiter {
	return &limiter{now: now, burst: float64(burst), every: every, allBurst: float64(allBurst), allEvery: allEvery, per: map[netip.Addr]*bucket{}}
}

func (b *bucket) take(now time.Time, burst float64, every time.Duration) bool {
	if b.at.IsZero() {
		b.tokens = burst
	} else {
		b.tokens = min(burst, b.tokens+float64(now.Sub(b.at))/float64(every))
	}
	b.at = now
	if b.tokens < 1 {
		return false
	}
	b.tokens--
	return true
}

// allow takes a token for addr; it says when to retry if there is none.
func (l *limiter) allow(addr netip.Addr) (bool, time.Duration) {
	l.mu.Lock()
	defer l.mu.Unlock()
	now := l.now()
	if now.Sub(l.lastCleanup) > 10*time.Minute {
		for a, b := range l.per {
			if now.Sub(b.at) > time.Duration(l.burst)*l.every {
				delete(l.per, a)
			}
		}
		l.lastCleanup = now
	}
	b := l.per[addr]
	if b == nil {
		b = &bucket{}
		l.per[addr] = b
	}
	if !b.take(now, l.burst, l.every) {
		return false, time.Duration((1 - b.tokens) * float64(l.every))
	}
	if !l.all.take(now, l.allBurst, l.allEvery) {
		return false, l.allEvery
	}
	return true, 0
}

func retryAfter(d time.Duration) string {
	return strconv.Itoa(int(d.Round(time.Second)/time.Second) + 1)
}
