package lab

import (
	"encoding/binary"
	"testing"
	"time"
)

func TestNTPAnswerEchoesTheClientsTransmitTime(t *testing.T) {
	q := make([]byte, ntpPacketLen)
	q[0] = 4<<3 | ntpModeClient
	q[2] = 6
	copy(q[40:], []byte{1, 2, 3, 4, 5, 6, 7, 8})
	now := time.Date(2026, 11, 28, 12, 0, 0, 500_000_000, time.UTC)
	r, ok := ntpAnswer(q, now)
	if !ok {
		t.Fatal("a client query got no answer")
	}
	if r[0] != 4<<3|ntpModeServer || r[1] != 1 || r[2] != 6 {
		t.Errorf("header = %x, want version 4, server mode, stratum 1, poll 6", r[:4])
	}
	if string(r[24:32]) != string(q[40:48]) {
		t.Errorf("origin = %x, want the client's transmit time %x", r[24:32], q[40:48])
	}
	if sec := binary.BigEndian.Uint32(r[32:]); int64(sec) != now.Unix()+ntpEpochOffset {
		t.Errorf("receive seconds = %d, want %d", sec, now.Unix()+ntpEpochOffset)
	}
	if frac := binary.BigEndian.Uint32(r[36:]); frac != 1<<31 {
		t.Errorf("receive fraction = %#x, want half a second", frac)
	}
}

func TestNTPAnswerIgnoresWhatIsNotAClientQuery(t *testing.T) {
	server := make([]byte, ntpPacketLen)
	server[0] = 4<<3 | ntpModeServer
	for _, q := range [][]byte{nil, make([]byte, 47), server} {
		if _, ok := ntpAnswer(q, time.Now()); ok {
			t.Errorf("answered %x", q)
		}
	}
}
