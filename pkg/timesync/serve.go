package timesync

import "time"

// precision is what the box advertises (about a microsecond, 2^-20 s).
const precision = -20

// respond answers one client query received at rx, or returns false for a
// packet that is not a well-formed client query. The answer reflects the
// box's own sync state: unsynchronised, it says so (leap 3, stratum 16)
// rather than hand out a time it does not vouch for.
func respond(req []byte, rx time.Time, st Status, now func() time.Time) ([]byte, bool) {
	q, err := ParsePacket(req)
	if err != nil || q.Mode != ModeClient || q.Version < 1 || q.Version > 4 || q.Transmit == 0 {
		return nil, false
	}
	r := Packet{
		Leap:      LeapUnsynchronized,
		Version:   q.Version,
		Mode:      ModeServer,
		Stratum:   StratumUnsynchronized,
		Poll:      max(min(q.Poll, 17), 4),
		Precision: precision,
		Origin:    q.Transmit,
		Receive:   NewTimestamp(rx),
	}
	if st.Synced {
		r.Leap = st.Leap
		r.Stratum = min(st.Stratum+1, 15)
		r.RootDelay = toShort(st.RootDelay + st.Delay)
		// Dispersion grows with the time since the last measurement
		// (15 ppm, RFC 5905's PHI).
		r.RootDisp = toShort(st.RootDisp + st.Delay/2 + rx.Sub(st.LastSync)*15/1_000_000)
		if st.Server.Is4() {
			r.RefID = st.Server.As4()
		}
		r.RefTime = NewTimestamp(st.LastSync)
	}
	r.Transmit = NewTimestamp(now())
	return r.Append(make([]byte, 0, PacketLen)), true
}
