package timesync

import (
	"encoding/binary"
	"errors"
	"fmt"
	"time"
)

// PacketLen is the length of an NTP header without extension fields.
const PacketLen = 48

// NTP modes (RFC 5905, figure 10).
const (
	ModeClient = 3
	ModeServer = 4
)

// LeapUnsynchronized is the leap indicator of a server that has no time to
// give.
const LeapUnsynchronized = 3

// StratumUnsynchronized is what a server without a source advertises.
const StratumUnsynchronized = 16

// ntpEpochOffset is the number of seconds from 1900-01-01 (NTP era 0) to
// 1970-01-01.
const ntpEpochOffset = 2208988800

// Timestamp is an NTP 64-bit timestamp: seconds since 1900 (modulo 2^32,
// the era is implied) and a binary fraction.
type Timestamp uint64

// NewTimestamp converts a time to an NTP timestamp.
func NewTimestamp(t time.Time) Timestamp {
	secs := uint64(t.Unix()+ntpEpochOffset) & 0xffffffff
	frac := (uint64(t.Nanosecond()) << 32) / 1e9
	return Timestamp(secs<<32 | frac)
}

// Time converts the timestamp back, choosing the era that puts it closest
// to near (timestamps wrap every 136 years; the next wrap is in 2036).
func (ts Timestamp) Time(near time.Time) time.Time {
	secs := int64(ts >> 32)
	nanos := int64((uint64(ts&0xffffffff)*1e9 + 1<<31) >> 32)
	const era = int64(1) << 32
	unix := secs - ntpEpochOffset // era 0
	d := near.Unix() - unix
	k := d / era
	if r := d % era; r > era/2 {
		k++
	} else if r < -era/2 {
		k--
	}
	return time.Unix(unix+k*era, nanos)
}

// Packet is an NTP header (RFC 5905 section 7.3). Extension fields and
// authenticators are ignored on input and never sent.
type Packet struct {
	Leap      uint8 // 2 bits
	Version   uint8 // 3 bits
	Mode      uint8 // 3 bits
	Stratum   uint8
	Poll      int8
	Precision int8
	RootDelay uint32 // NTP short format: 16.16 seconds
	RootDisp  uint32
	RefID     [4]byte
	RefTime   Timestamp
	Origin    Timestamp
	Receive   Timestamp
	Transmit  Timestamp
}

var errShort = errors.New("shorter than an NTP header")

// ParsePacket decodes the header of b. It checks only the length: what is
// acceptable depends on who reads it (a server or a client).
func ParsePacket(b []byte) (Packet, error) {
	if len(b) < PacketLen {
		return Packet{}, errShort
	}
	var p Packet
	p.Leap, p.Version, p.Mode = b[0]>>6, b[0]>>3&7, b[0]&7
	p.Stratum, p.Poll, p.Precision = b[1], int8(b[2]), int8(b[3])
	p.RootDelay = binary.BigEndian.Uint32(b[4:])
	p.RootDisp = binary.BigEndian.Uint32(b[8:])
	copy(p.RefID[:], b[12:16])
	p.RefTime = Timestamp(binary.BigEndian.Uint64(b[16:]))
	p.Origin = Timestamp(binary.BigEndian.Uint64(b[24:]))
	p.Receive = Timestamp(binary.BigEndian.Uint64(b[32:]))
	p.Transmit = Timestamp(binary.BigEndian.Uint64(b[40:]))
	return p, nil
}

// Append encodes p after b.
func (p Packet) Append(b []byte) []byte {
	b = append(b, p.Leap<<6|(p.Version&7)<<3|p.Mode&7, p.Stratum, byte(p.Poll), byte(p.Precision))
	b = binary.BigEndian.AppendUint32(b, p.RootDelay)
	b = binary.BigEndian.AppendUint32(b, p.RootDisp)
	b = append(b, p.RefID[:]...)
	b = binary.BigEndian.AppendUint64(b, uint64(p.RefTime))
	b = binary.BigEndian.AppendUint64(b, uint64(p.Origin))
	b = binary.BigEndian.AppendUint64(b, uint64(p.Receive))
	return binary.BigEndian.AppendUint64(b, uint64(p.Transmit))
}

func (p Packet) String() string {
	return fmt.Sprintf("leap %d version %d mode %d stratum %d refid %x", p.Leap, p.Version, p.Mode, p.Stratum, p.RefID)
}

// shortDuration converts an NTP short-format value.
func shortDuration(v uint32) time.Duration {
	return time.Duration((uint64(v)*uint64(time.Second) + 1<<15) >> 16)
}

// toShort converts a duration to the NTP short format, saturating.
func toShort(d time.Duration) uint32 {
	if d <= 0 {
		return 0
	}
	v := (uint64(d) << 16) / uint64(time.Second)
	if v > 0xffffffff {
		return 0xffffffff
	}
	return uint32(v)
}
