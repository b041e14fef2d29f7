package lab

import (
	"encoding/binary"
	"time"
)

// The internet server answers NTP as a stratum-1 reference, so a box in
// the lab can synchronise its clock measurement like it would against
// Renater's servers. Only the fields a client checks are filled in.

const (
	ntpPacketLen   = 48
	ntpModeClient  = 3
	ntpModeServer  = 4
	ntpEpochOffset = 2208988800 // seconds from 1900-01-01 to 1970-01-01
)

// ntpAnswer builds the server reply to a client query, or reports that the
// packet is not one.
func ntpAnswer(q []byte, now time.Time) ([]byte, bool) {
	if len(q) < ntpPacketLen || q[0]&0x7 != ntpModeClient {
		return nil, false
	}
	version := (q[0] >> 3) & 0x7
	if version < 3 || version > 4 {
		version = 4
	}
	r := make([]byte, ntpPacketLen)
	r[0] = version<<3 | ntpModeServer       // leap indicator 0: synchronised
	r[1] = 1                                // stratum 1: a reference clock
	r[2] = q[2]                             // poll, as asked
	r[3] = 0xec                             // precision 2^-20 s
	binary.BigEndian.PutUint32(r[8:], 0x10) // root dispersion: 1/4096 s
	copy(r[12:16], "LAB\x00")
	putNTPTime(r[16:], now.Add(-time.Second)) // reference time
	copy(r[24:32], q[40:48])                  // origin: the client's transmit time
	putNTPTime(r[32:], now)                   // receive
	putNTPTime(r[40:], time.Now())            // transmit
	return r, true
}

func putNTPTime(b []byte, t time.Time) {
	binary.BigEndian.PutUint32(b, uint32(t.Unix()+ntpEpochOffset))
	binary.BigEndian.PutUint32(b[4:], uint32((uint64(t.Nanosecond())<<32)/1e9))
}
