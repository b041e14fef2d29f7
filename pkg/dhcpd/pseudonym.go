package dhcpd

import (
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"sync"
	"time"
)

// pseudonyms replace hardware addresses in the warnings the DHCP server
// logs (docs/privacy.md): the first 8 bytes of HMAC-SHA-256(key, address),
// with a random key drawn each day (UTC) and at every start, kept in
// memory only. Within a day a technician can tell that the same device
// keeps declining addresses; across days, or once the key is gone, nobody
// can tell which device it was. The DNS filter's query log does the same
// for client addresses; the two keys are separate (no shared state between
// components).
type pseudonyms struct {
	mu  sync.Mutex
	day string
	key []byte
}

func (p *pseudonyms) of(now time.Time, mac [6]byte) string {
	p.mu.Lock()
	defer p.mu.Unlock()
	if day := now.UTC().Format(time.DateOnly); day != p.day || p.key == nil {
		p.key = make([]byte, 32)
		rand.Read(p.key)
		p.day = day
	}
	m := hmac.New(sha256.New, p.key)
	m.Write(mac[:])
	return hex.EncodeToString(m.Sum(nil)[:8])
}
