package config

import (
	"encoding/base64"
	"fmt"
	"net"
	"strconv"
	"strings"
	"time"
)

// Duration is a time.Duration written the Go way in YAML ("200ms", "12h").
type Duration time.Duration

// String prints whole units the way people write them ("12h", "5m"),
// and falls back to Go's form ("1h30m0s") otherwise.
func (d Duration) String() string {
	v := time.Duration(d)
	switch {
	case v == 0:
		return "0s"
	case v%time.Hour == 0:
		return fmt.Sprintf("%dh", v/time.Hour)
	case v%time.Minute == 0:
		return fmt.Sprintf("%dm", v/time.Minute)
	case v%time.Second == 0:
		return fmt.Sprintf("%ds", v/time.Second)
	case v%time.Millisecond == 0:
		return fmt.Sprintf("%dms", v/time.Millisecond)
	}
	return v.String()
}

// D returns the value as a time.Duration.
func (d Duration) D() time.Duration { return time.Duration(d) }

func (d *Duration) UnmarshalText(b []byte) error {
	v, err := time.ParseDuration(string(b))
	if err != nil {
		return fmt.Errorf("expected a duration such as 200ms, 30s or 12h, got %q", b)
	}
	*d = Duration(v)
	return nil
}

func (d Duration) MarshalText() ([]byte, error) { return []byte(d.String()), nil }

// enum is implemented by the closed sets of words the format accepts; the
// schema generator lists their values.
type enum interface{ enumValues() []string }

func parseEnum[T ~string](dst *T, b []byte, values []T) error {
	s := T(b)
	for _, v := range values {
		if v == s {
			*dst = s
			return nil
		}
	}
	names := make([]string, len(values))
	for i, v := range values {
		names[i] = string(v)
	}
	return fmt.Errorf("expected one of %s, got %q", strings.Join(names, ", "), b)
}

func enumStrings[T ~string](values []T) []string {
	out := make([]string, len(values))
	for i, v := range values {
		out[i] = string(v)
	}
	return out
}

// Addressing is how an uplink gets its address.
type Addressing string

const (
	AddressingStatic Addressing = "static"
	AddressingDHCP   Addressing = "dhcp"
)

var addressings = []Addressing{AddressingStatic, AddressingDHCP}

func (a *Addressing) UnmarshalText(b []byte) error { return parseEnum(a, b, addressings) }
func (Addressing) enumValues() []string            { return enumStrings(addressings) }

// ProbeKind is how an uplink's probe targets are asked for an answer.
type ProbeKind string

const (
	ProbeICMP ProbeKind = "icmp"
	ProbeDNS  ProbeKind = "dns"
	ProbeHTTP ProbeKind = "http"
)

var probeKinds = []ProbeKind{ProbeICMP, ProbeDNS, ProbeHTTP}

func (k *ProbeKind) UnmarshalText(b []byte) error { return parseEnum(k, b, probeKinds) }
func (ProbeKind) enumValues() []string            { return enumStrings(probeKinds) }

// ZoneKind sets a zone's firewall defaults.
type ZoneKind string

const (
	KindPedagogical    ZoneKind = "pedagogical"
	KindAdministrative ZoneKind = "administrative"
	KindGuest          ZoneKind = "guest"
	KindDMZ            ZoneKind = "dmz"
)

var zoneKinds = []ZoneKind{KindPedagogical, KindAdministrative, KindGuest, KindDMZ}

func (k *ZoneKind) UnmarshalText(b []byte) error { return parseEnum(k, b, zoneKinds) }
func (ZoneKind) enumValues() []string            { return enumStrings(zoneKinds) }

// Protocol is a transport protocol in firewall rules.
type Protocol string

const (
	ProtoAny  Protocol = "any"
	ProtoTCP  Protocol = "tcp"
	ProtoUDP  Protocol = "udp"
	ProtoICMP Protocol = "icmp"
)

var protocols = []Protocol{ProtoAny, ProtoTCP, ProtoUDP, ProtoICMP}

func (p *Protocol) UnmarshalText(b []byte) error { return parseEnum(p, b, protocols) }
func (Protocol) enumValues() []string            { return enumStrings(protocols) }

// Action is what a firewall rule does.
type Action string

const (
	ActionAccept Action = "accept"
	ActionDrop   Action = "drop"
	ActionReject Action = "reject"
)

var actions = []Action{ActionAccept, ActionDrop, ActionReject}

func (a *Action) UnmarshalText(b []byte) error { return parseEnum(a, b, actions) }
func (Action) enumValues() []string            { return enumStrings(actions) }

// SafeSearch is the safe-search level enforced on search engines.
type SafeSearch string

const (
	SafeSearchStrict   SafeSearch = "strict"
	SafeSearchModerate SafeSearch = "moderate"
	SafeSearchOff      SafeSearch = "off"
)

var safeSearches = []SafeSearch{SafeSearchStrict, SafeSearchModerate, SafeSearchOff}

func (s *SafeSearch) UnmarshalText(b []byte) error { return parseEnum(s, b, safeSearches) }
func (SafeSearch) enumValues() []string            { return enumStrings(safeSearches) }

// BlockResponse is how a blocked name is answered.
type BlockResponse string

const (
	BlockNXDomain  BlockResponse = "nxdomain"
	BlockBlockPage BlockResponse = "blockpage"
)

var blockResponses = []BlockResponse{BlockNXDomain, BlockBlockPage}

func (r *BlockResponse) UnmarshalText(b []byte) error { return parseEnum(r, b, blockResponses) }
func (BlockResponse) enumValues() []string            { return enumStrings(blockResponses) }

// QueryLog is what the resolver records of individual queries.
type QueryLog string

const (
	QueryLogOff     QueryLog = "off"
	QueryLogBlocked QueryLog = "blocked"
)

var queryLogs = []QueryLog{QueryLogOff, QueryLogBlocked}

func (q *QueryLog) UnmarshalText(b []byte) error { return parseEnum(q, b, queryLogs) }
func (QueryLog) enumValues() []string            { return enumStrings(queryLogs) }

// TelemetryVia is the path of the metrics push.
type TelemetryVia string

const (
	TelemetryViaUplink TelemetryVia = "uplink"
	TelemetryViaTunnel TelemetryVia = "tunnel"
)

var telemetryVias = []TelemetryVia{TelemetryViaUplink, TelemetryViaTunnel}

func (t *TelemetryVia) UnmarshalText(b []byte) error { return parseEnum(t, b, telemetryVias) }
func (TelemetryVia) enumValues() []string            { return enumStrings(telemetryVias) }

// MAC is an Ethernet hardware address.
type MAC [6]byte

func (m MAC) String() string { return net.HardwareAddr(m[:]).String() }

func (m *MAC) UnmarshalText(b []byte) error {
	hw, err := net.ParseMAC(string(b))
	if err != nil || len(hw) != 6 {
		return fmt.Errorf("expected a MAC address such as 00:11:22:33:44:55, got %q", b)
	}
	copy(m[:], hw)
	return nil
}

func (m MAC) MarshalText() ([]byte, error) { return []byte(m.String()), nil }

// IsZero reports whether the address is unset.
func (m MAC) IsZero() bool { return m == MAC{} }

// PortRange is a port or an inclusive range of ports ("443", "8000-8080").
type PortRange struct {
	First, Last uint16
}

func (p PortRange) String() string {
	if p.First == p.Last {
		return strconv.Itoa(int(p.First))
	}
	return fmt.Sprintf("%d-%d", p.First, p.Last)
}

// IsZero reports whether no port is set.
func (p PortRange) IsZero() bool { return p.First == 0 && p.Last == 0 }

func (p *PortRange) UnmarshalText(b []byte) error {
	bad := fmt.Errorf("expected a port (1-65535) or a range such as 8000-8080, got %q", b)
	first, last, isRange := strings.Cut(string(b), "-")
	f, err := strconv.ParseUint(strings.TrimSpace(first), 10, 16)
	if err != nil || f == 0 {
		return bad
	}
	l := f
	if isRange {
		l, err = strconv.ParseUint(strings.TrimSpace(last), 10, 16)
		if err != nil || l < f {
			return bad
		}
	}
	*p = PortRange{First: uint16(f), Last: uint16(l)}
	return nil
}

func (p PortRange) MarshalText() ([]byte, error) { return []byte(p.String()), nil }

// Window is a daily time window "HH:MM-HH:MM" in the box's local time; it
// may wrap past midnight ("22:00-04:00").
type Window struct {
	Start, End int // minutes after midnight
}

func (w Window) String() string {
	return fmt.Sprintf("%02d:%02d-%02d:%02d", w.Start/60, w.Start%60, w.End/60, w.End%60)
}

func (w *Window) UnmarshalText(b []byte) error {
	bad := fmt.Errorf("expected a daily window such as 02:00-05:00, got %q", b)
	a, z, ok := strings.Cut(string(b), "-")
	if !ok {
		return bad
	}
	start, err1 := parseClock(a)
	end, err2 := parseClock(z)
	if err1 != nil || err2 != nil || start == end {
		return bad
	}
	*w = Window{Start: start, End: end}
	return nil
}

func (w Window) MarshalText() ([]byte, error) { return []byte(w.String()), nil }

func parseClock(s string) (int, error) {
	t, err := time.Parse("15:04", strings.TrimSpace(s))
	if err != nil {
		return 0, err
	}
	return t.Hour()*60 + t.Minute(), nil
}

// PublicKey is an Ed25519 public key, base64 in YAML.
type PublicKey [32]byte

func (k *PublicKey) UnmarshalText(b []byte) error {
	raw, err := base64.StdEncoding.DecodeString(string(b))
	switch {
	case err != nil:
		return fmt.Errorf("expected an Ed25519 public key: base64 of 32 bytes (44 characters ending in =), got invalid base64")
	case len(raw) != len(k):
		return fmt.Errorf("expected an Ed25519 public key: base64 of 32 bytes (44 characters ending in =), got %d bytes", len(raw))
	}
	copy(k[:], raw)
	return nil
}

func (k PublicKey) MarshalText() ([]byte, error) {
	return []byte(base64.StdEncoding.EncodeToString(k[:])), nil
}

// IsZero reports whether the key is unset.
func (k PublicKey) IsZero() bool { return k == PublicKey{} }
