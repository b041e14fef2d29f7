package config

import (
	"errors"
	"net/netip"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"
)

// minimal is the smallest useful document: everything else is a default.
const minimal = `version: 1
identity:
  uai: 0751234J
  name: École Jules Ferry
  academy: paris
uplinks:
  - name: renater
    interface: wan0
    address: 193.50.10.6/30
    gateway: 193.50.10.5
zones:
  - name: peda
    kind: pedagogical
    interfaces: [lan0]
    subnet: 10.75.12.0/24
    address: 10.75.12.1
    dns_profile: eleves
dns:
  profiles:
    - name: eleves
`

func mustParse(t *testing.T, doc string) *Config {
	t.Helper()
	c, err := Parse("test.yaml", []byte(doc))
	if err != nil {
		t.Fatalf("Parse: %v", err)
	}
	return c
}

// parseErrors parses a document that must fail and returns its problems.
func parseErrors(t *testing.T, doc string) ErrorList {
	t.Helper()
	_, err := Parse("test.yaml", []byte(doc))
	var list ErrorList
	if !errors.As(err, &list) {
		t.Fatalf("Parse: got %v, want an ErrorList", err)
	}
	return list
}

func examples(t *testing.T) []string {
	t.Helper()
	files, err := filepath.Glob("../../configs/examples/*.yaml")
	if err != nil {
		t.Fatal(err)
	}
	files = append(files, "../../configs/demo.yaml")
	if len(files) < 2 {
		t.Fatalf("no example configs found: %v", files)
	}
	return files
}

func TestNewHoldsStaticDefaults(t *testing.T) {
	c := New()
	for _, tc := range []struct {
		name      string
		got, want any
	}{
		{"dns.rate_limit", c.DNS.RateLimit, 200},
		{"dns.lists.directory", c.DNS.Lists.Directory, "/perm/lists/ut1"},
		{"dns.lists.refresh", c.DNS.Lists.Refresh, Window{Start: 2 * 60, End: 5 * 60}},
		{"dns.lists.max_shrink", c.DNS.Lists.MaxShrink, 50},
		{"dns.cache.size", c.DNS.Cache.Size, 20000},
		{"dns.cache.min_ttl", c.DNS.Cache.MinTTL, Duration(0)},
		{"dns.cache.max_ttl", c.DNS.Cache.MaxTTL, Duration(24 * time.Hour)},
		{"dns.cache.serve_stale", c.DNS.Cache.ServeStale, true},
		{"dns.privacy.query_log", c.DNS.Privacy.QueryLog, QueryLogOff},
		{"dns.privacy.retention", c.DNS.Privacy.Retention, Duration(7 * 24 * time.Hour)},
		{"time.servers", c.Time.Servers, []string{"ntp.renater.fr"}},
		{"time.serve", c.Time.Serve, true},
		{"tunnel.enabled", c.Tunnel.Enabled, false},
		{"tunnel.auth_key_file", c.Tunnel.AuthKeyFile, "/perm/tunnel/authkey"},
		{"telemetry.enabled", c.Telemetry.Enabled, false},
		{"telemetry.interval", c.Telemetry.Interval, Duration(time.Minute)},
		{"management.confirm_timeout", c.Management.ConfirmTimeout, Duration(5 * time.Minute)},
		{"status_page.enabled", c.StatusPage.Enabled, true},
		{"status_page.port", c.StatusPage.Port, 80},
		// Derived defaults need the document: New leaves them unset.
		{"status_page.zones", c.StatusPage.Zones, []string(nil)},
		{"dns.upstreams", c.DNS.Upstreams, []Upstream(nil)},
		{"uplinks", c.Uplinks, []Uplink(nil)},
	} {
		if !reflect.DeepEqual(tc.got, tc.want) {
			t.Errorf("New().%s = %#v, want %#v", tc.name, tc.got, tc.want)
		}
	}
}

func TestNewReturnsIndependentConfigs(t *testing.T) {
	a, b := New(), New()
	a.Time.Servers[0] = "changed"
	if b.Time.Servers[0] != "ntp.renater.fr" {
		t.Errorf("New() shares the default slice between configs: got %q", b.Time.Servers[0])
	}
}

func TestParseAppliesDefaults(t *testing.T) {
	c := mustParse(t, `version: 1
identity:
  uai: 0751234J
  name: École Jules Ferry
  academy: paris
uplinks:
  - name: renater
    interface: wan0
    address: 193.50.10.6/30
    gateway: 193.50.10.5
  - name: backup
    interface: wwan0
    addressing: dhcp
    priority: 2
    probe:
      targets: [193.51.24.1, 9.9.9.9, 1.1.1.1, 8.8.8.8]
  - name: third
    interface: wan1
    addressing: dhcp
    priority: 3
    probe:
      targets: [193.51.24.1, 9.9.9.9]
      quorum: 1
zones:
  - name: peda
    kind: pedagogical
    interfaces: [lan0]
    subnet: 10.75.12.0/24
    address: 10.75.12.1
    dns_profile: eleves
    dhcp:
      reservations:
        - {mac: "00:1b:a9:3c:22:10", address: 10.75.12.5}
  - name: admin
    kind: administrative
    interfaces: [lan1]
    subnet: 10.75.16.0/22
    address: 10.75.16.1
  - name: invites
    kind: guest
    interfaces: [lan2]
    subnet: 10.75.13.0/24
    address: 10.75.13.1
    dns_profile: eleves
    dhcp:
      range_start: 10.75.13.100
  - name: dmz
    kind: dmz
    interfaces: [lan3]
    subnet: 10.75.14.0/29
    address: 10.75.14.1
    dhcp:
      enabled: false
firewall:
  rules:
    - {name: r, from: peda, to: box, action: accept}
  port_forwards:
    - {name: web, port: 443, to_address: 10.75.14.2}
dns:
  profiles:
    - name: eleves
`)
	u0, u1, u2 := c.Uplinks[0], c.Uplinks[1], c.Uplinks[2]
	peda, admin, guest, dmz := c.Zones[0], c.Zones[1], c.Zones[2], c.Zones[3]
	for _, tc := range []struct {
		name      string
		got, want any
	}{
		{"hostname from the UAI", c.Identity.Hostname, "passerelle-0751234j"},
		{"uplink addressing", u0.Addressing, AddressingStatic},
		{"uplink priority", u0.Priority, 1},
		{"uplink weight", u0.Weight, 1},
		{"probe targets", u0.Probe.Targets, []netip.Addr{netip.MustParseAddr("193.51.24.1"), netip.MustParseAddr("9.9.9.9"), netip.MustParseAddr("1.1.1.1")}},
		{"probe interval", u0.Probe.Interval, Duration(200 * time.Millisecond)},
		{"probe timeout", u0.Probe.Timeout, Duration(300 * time.Millisecond)},
		{"quorum: majority of 3", u0.Probe.Quorum, 2},
		{"quorum: majority of 4", u1.Probe.Quorum, 3},
		{"quorum: explicit value kept", u2.Probe.Quorum, 1},
		{"probe down_after", u0.Probe.DownAfter, 3},
		{"probe up_after", u0.Probe.UpAfter, 5},
		{"dhcp enabled", peda.DHCP.Enabled, true},
		{"dhcp range_start: 10th host", peda.DHCP.RangeStart, netip.MustParseAddr("10.75.12.10")},
		{"dhcp range_end: last host but one", peda.DHCP.RangeEnd, netip.MustParseAddr("10.75.12.253")},
		{"dhcp range_end in a /22", admin.DHCP.RangeEnd, netip.MustParseAddr("10.75.19.253")},
		{"dhcp explicit range_start kept", guest.DHCP.RangeStart, netip.MustParseAddr("10.75.13.100")},
		{"dhcp range_end completed", guest.DHCP.RangeEnd, netip.MustParseAddr("10.75.13.253")},
		{"no range in a /29", dmz.DHCP.RangeStart, netip.Addr{}},
		{"lease 12h", peda.DHCP.LeaseTime, Duration(12 * time.Hour)},
		{"lease 2h in guest zones", guest.DHCP.LeaseTime, Duration(2 * time.Hour)},
		{"dhcp domain", peda.DHCP.Domain, "peda.passerelle-0751234j.home.arpa"},
		{"reservation without name", peda.DHCP.Reservations[0].Name, ""},
		{"rule protocol", c.Firewall.Rules[0].Protocol, ProtoAny},
		{"port forward protocol", c.Firewall.PortForwards[0].Protocol, ProtoTCP},
		{"default upstreams: Renater, then Quad9", c.DNS.Upstreams, []Upstream{
			{Address: netip.MustParseAddrPort("193.51.24.1:53")},
			{Address: netip.MustParseAddrPort("193.51.25.1:53")},
			{Address: netip.MustParseAddrPort("9.9.9.9:53")},
		}},
		{"profile safe_search", c.DNS.Profiles[0].SafeSearch, SafeSearchStrict},
		{"profile block_response", c.DNS.Profiles[0].BlockResponse, BlockNXDomain},
		{"profile minors", c.DNS.Profiles[0].Minors, true},
		{"profile fail_closed", c.DNS.Profiles[0].FailClosed, true},
		{"status page zones: the administrative ones", c.StatusPage.Zones, []string{"admin"}},
	} {
		if !reflect.DeepEqual(tc.got, tc.want) {
			t.Errorf("%s: got %#v, want %#v", tc.name, tc.got, tc.want)
		}
	}
}

func TestParseKeepsExplicitValues(t *testing.T) {
	c := mustParse(t, strings.Replace(minimal, "  academy: paris\n", "  academy: paris\n  hostname: ecole-ferry\n", 1)+`  upstreams:
    - address: 10.0.0.53
status_page:
  zones: []
`)
	if c.Identity.Hostname != "ecole-ferry" {
		t.Errorf("hostname = %q, want the explicit ecole-ferry", c.Identity.Hostname)
	}
	if want := []Upstream{{Address: netip.MustParseAddrPort("10.0.0.53:53")}}; !reflect.DeepEqual(c.DNS.Upstreams, want) {
		t.Errorf("upstreams = %v, want %v (port 53 added, no default appended)", c.DNS.Upstreams, want)
	}
	if c.StatusPage.Zones == nil || len(c.StatusPage.Zones) != 0 {
		t.Errorf("status_page.zones: [] means no zone, got %#v", c.StatusPage.Zones)
	}
	if c.Zones[0].DHCP.Domain != "peda.ecole-ferry.home.arpa" {
		t.Errorf("dhcp domain = %q, want it built from the explicit hostname", c.Zones[0].DHCP.Domain)
	}
}

func TestApplyDerivedIsIdempotent(t *testing.T) {
	c := mustParse(t, minimal)
	again := c.Clone()
	applyDerived(again)
	if !reflect.DeepEqual(c, again) {
		t.Errorf("applyDerived changed an already completed config")
	}
}

func TestParseExamples(t *testing.T) {
	for _, file := range examples(t) {
		t.Run(filepath.Base(file), func(t *testing.T) {
			c, err := Load(file)
			if err != nil {
				t.Fatal(err)
			}
			if err := c.Validate(); err != nil {
				t.Errorf("Validate of a parsed config: %v", err)
			}
			// Marshal prints what Parse reads back to the same config.
			out, err := Marshal(c)
			if err != nil {
				t.Fatal(err)
			}
			back, err := Parse(file+" (marshalled)", out)
			if err != nil {
				t.Fatalf("parse of the marshalled config: %v\n%s", err, out)
			}
			if !reflect.DeepEqual(c, back) {
				t.Errorf("marshal/parse round trip changes the config\n%s", out)
			}
		})
	}
}

func TestCloneIsDeep(t *testing.T) {
	orig, err := Load("../../configs/examples/college.yaml")
	if err != nil {
		t.Fatal(err)
	}
	c := orig.Clone()
	if !reflect.DeepEqual(orig, c) {
		t.Fatal("Clone differs from the original")
	}
	for _, mutate := range []struct {
		name string
		f    func(c *Config)
	}{
		{"uplinks[0].probe.targets[0]", func(c *Config) { c.Uplinks[0].Probe.Targets[0] = netip.MustParseAddr("192.0.2.99") }},
		{"uplinks[0].name", func(c *Config) { c.Uplinks[0].Name = "other" }},
		{"zones[0].interfaces[0]", func(c *Config) { c.Zones[0].Interfaces[0] = "eth9" }},
		{"zones[1].dhcp.reservations[0].mac", func(c *Config) { c.Zones[1].DHCP.Reservations[0].MAC[0] = 0xff }},
		{"firewall.rules[0].ports[0]", func(c *Config) { c.Firewall.Rules[0].Ports[0].First = 1 }},
		{"dns.conditional_forwards[0].servers", func(c *Config) {
			c.DNS.ConditionalForwards[0].Servers[0] = netip.MustParseAddrPort("192.0.2.1:53")
		}},
		{"dns.profiles[0].categories[0]", func(c *Config) { c.DNS.Profiles[0].Categories[0] = "other" }},
		{"dns.upstreams (append)", func(c *Config) { c.DNS.Upstreams = append(c.DNS.Upstreams[:1], Upstream{}) }},
		{"tunnel.advertise_routes[0]", func(c *Config) { c.Tunnel.AdvertiseRoutes[0] = netip.MustParsePrefix("192.0.2.0/24") }},
		{"management.trusted_keys[0].public_key", func(c *Config) { c.Management.TrustedKeys[0].PublicKey[0] ^= 1 }},
		{"status_page.zones[0]", func(c *Config) { c.StatusPage.Zones[0] = "other" }},
	} {
		t.Run(mutate.name, func(t *testing.T) {
			before := orig.Clone()
			mutate.f(orig.Clone()) // mutating one clone...
			if !reflect.DeepEqual(orig, before) {
				t.Errorf("mutating a clone changed the original")
			}
			c := orig.Clone()
			mutate.f(c)
			if reflect.DeepEqual(orig, c) {
				t.Errorf("the mutation did not change the clone (test bug)")
			}
		})
	}
}

// textType is a config scalar decoded from and printed to text.
type textType[T comparable] interface {
	*T
	UnmarshalText([]byte) error
	MarshalText() ([]byte, error)
}

// checkText checks that each input decodes, prints as its canonical form
// and reads back to the same value, and that each bad input is refused.
// It returns the decoded values, for type-specific checks.
func checkText[T comparable, P textType[T]](t *testing.T, good [][2]string, bad []string) []T {
	t.Helper()
	var out []T
	for _, tc := range good {
		in, want := tc[0], tc[1]
		var v T
		if err := P(&v).UnmarshalText([]byte(in)); err != nil {
			t.Errorf("UnmarshalText(%q): %v", in, err)
			out = append(out, v)
			continue
		}
		b, _ := P(&v).MarshalText()
		if string(b) != want {
			t.Errorf("%q prints as %q, want %q", in, b, want)
		}
		var back T
		if err := P(&back).UnmarshalText(b); err != nil || back != v {
			t.Errorf("%q: printed form %q reads back as %v (%v)", in, b, back, err)
		}
		out = append(out, v)
	}
	for _, in := range bad {
		var v T
		if err := P(&v).UnmarshalText([]byte(in)); err == nil {
			t.Errorf("UnmarshalText(%q) accepted: %v", in, v)
		}
	}
	return out
}

func TestDurationText(t *testing.T) {
	checkText[Duration](t, [][2]string{
		{"200ms", "200ms"},
		{"0s", "0s"},
		{"0", "0s"},
		{"12h", "12h"},
		{"720h", "720h"},
		{"5m", "5m"},
		{"300s", "5m"},
		{"90s", "90s"},
		{"1h30m", "90m"},
		{"1.5s", "1500ms"},
		{"1500us", "1.5ms"},
	}, []string{"", "300", "5 minutes", "1d", "-"})
}

func TestPortRangeText(t *testing.T) {
	got := checkText[PortRange](t, [][2]string{
		{"443", "443"},
		{"1", "1"},
		{"65535", "65535"},
		{"8000-8080", "8000-8080"},
		{"8000 - 8080", "8000-8080"},
		{"53-53", "53"},
	}, []string{"", "0", "65536", "http", "80-70", "80-", "-80", "1-2-3", "0-10"})
	want := []PortRange{{443, 443}, {1, 1}, {65535, 65535}, {8000, 8080}, {8000, 8080}, {53, 53}}
	for i := range want {
		if got[i] != want[i] {
			t.Errorf("case %d = %v, want %v", i, got[i], want[i])
		}
	}
	if !(PortRange{}).IsZero() || (PortRange{First: 1, Last: 1}).IsZero() {
		t.Error("IsZero is wrong")
	}
}

func TestMACText(t *testing.T) {
	checkText[MAC](t, [][2]string{
		{"00:1b:a9:3c:22:10", "00:1b:a9:3c:22:10"},
		{"00:1B:A9:3C:22:10", "00:1b:a9:3c:22:10"},
		{"00-1b-a9-3c-22-10", "00:1b:a9:3c:22:10"},
		{"001b.a93c.2210", "00:1b:a9:3c:22:10"},
	}, []string{"", "00:1b:a9:3c:22", "00:1b:a9:3c:22:10:01:02", "printer", "00:1b:a9:3c:22:1g"})
}

func TestWindowText(t *testing.T) {
	got := checkText[Window](t, [][2]string{
		{"02:00-05:00", "02:00-05:00"},
		{"22:00-04:30", "22:00-04:30"},
		{"2:00-5:00", "02:00-05:00"},
		{"00:00-23:59", "00:00-23:59"},
	}, []string{"", "02:00", "05:00-05:00", "24:00-05:00", "02:60-05:00", "2-5", "night"})
	want := []Window{{120, 300}, {22 * 60, 4*60 + 30}, {120, 300}, {0, 23*60 + 59}}
	for i := range want {
		if got[i] != want[i] {
			t.Errorf("case %d = %+v, want %+v", i, got[i], want[i])
		}
	}
}

func TestPublicKeyText(t *testing.T) {
	const text = "7Xnq5m8l2xqR7K1wWbb1hOXmJ2pB0D8yqfQyQ0f3yGk="
	var k PublicKey
	if err := k.UnmarshalText([]byte(text)); err != nil {
		t.Fatal(err)
	}
	if k.IsZero() {
		t.Error("decoded key is zero")
	}
	b, _ := k.MarshalText()
	if string(b) != text {
		t.Errorf("prints as %q, want %q", b, text)
	}
	if !(PublicKey{}).IsZero() {
		t.Error("zero key is not IsZero")
	}
	for _, tc := range []struct{ in, msg string }{
		{"7Xnq5m8l2xqR7K1wWbb1hOXmJ2pB0D8y", "got 24 bytes"},
		{"7Xnq5m8l2xqR7K1wWbb1hOXmJ2pB0D8yqfQyQ0f3yGk", "got invalid base64"},
		{"not a key!", "got invalid base64"},
		{"", "got 0 bytes"},
	} {
		var k PublicKey
		err := k.UnmarshalText([]byte(tc.in))
		if err == nil || !strings.Contains(err.Error(), tc.msg) {
			t.Errorf("UnmarshalText(%q) = %v, want an error saying %q", tc.in, err, tc.msg)
		}
	}
}

func TestEnumsRejectOtherWords(t *testing.T) {
	var k ZoneKind
	err := k.UnmarshalText([]byte("classroom"))
	if err == nil || err.Error() != `expected one of pedagogical, administrative, guest, dmz, got "classroom"` {
		t.Errorf("ZoneKind(classroom): %v", err)
	}
	if err := k.UnmarshalText([]byte("Guest")); err == nil {
		t.Error("enums are case-sensitive: Guest accepted")
	}
	if err := k.UnmarshalText([]byte("guest")); err != nil || k != KindGuest {
		t.Errorf("ZoneKind(guest) = %q, %v", k, err)
	}
}

func TestErrorFormat(t *testing.T) {
	for _, tc := range []struct {
		e    Error
		want string
	}{
		{Error{File: "a.yaml", Pos: Pos{3, 7}, Path: "zones[0].subnet", Msg: "bad"}, "a.yaml:3:7: zones[0].subnet: bad"},
		{Error{File: "a.yaml", Pos: Pos{1, 1}, Msg: "empty"}, "a.yaml:1:1: empty"},
		{Error{Path: "zones[0].subnet", Msg: "bad"}, "zones[0].subnet: bad"},
		{Error{File: "a.yaml", Path: "x", Msg: "bad"}, "a.yaml: x: bad"},
		{Error{Msg: "bad"}, "bad"},
	} {
		if got := tc.e.Error(); got != tc.want {
			t.Errorf("Error() = %q, want %q", got, tc.want)
		}
	}
	if got := (ErrorList{}).Error(); got != "no errors" {
		t.Errorf("empty list: %q", got)
	}
	two := ErrorList{{Path: "a", Msg: "x"}, {Path: "b", Msg: "y"}}
	if got, want := two.Error(), "2 errors:\n  a: x\n  b: y"; got != want {
		t.Errorf("list: %q, want %q", got, want)
	}
}

func TestErrorsSortByPosition(t *testing.T) {
	l := ErrorList{
		{Pos: Pos{10, 5}, Path: "c"},
		{Pos: Pos{2, 9}, Path: "b"},
		{Pos: Pos{10, 5}, Path: "a"},
		{Pos: Pos{2, 3}, Path: "z"},
		{Pos: Pos{9, 80}, Path: "y"},
	}
	l.sort()
	var got []string
	for _, e := range l {
		got = append(got, e.Path)
	}
	if want := []string{"z", "b", "y", "a", "c"}; !slices.Equal(got, want) {
		t.Errorf("sorted order %v, want %v (line, then column, then path)", got, want)
	}
}

// TestParseReportsAllErrors checks that an operator gets every problem of a
// file in one run, in file order, each at its line.
func TestParseReportsAllErrors(t *testing.T) {
	t.Run("decoding", func(t *testing.T) {
		list := parseErrors(t, `version: one
identity:
  uai: 0751234J
  name: École
  academy: paris
  colour: blue
uplinks: renater
zones:
  - name: peda
    kind: classroom
    interfaces: [lan0]
    subnet: 10.75.12.0/33
    address: 10.75.12.1
`)
		want := []string{
			"test.yaml:1:10: version: expected an integer",
			"test.yaml:6:3: identity.colour: unknown key",
			"test.yaml:7:10: uplinks: expected a list",
			"test.yaml:10:11: zones[0].kind: expected one of",
			"test.yaml:12:13: zones[0].subnet:",
		}
		checkErrors(t, list, want)
	})
	t.Run("validation", func(t *testing.T) {
		list := parseErrors(t, `version: 1
identity:
  uai: 0751234a
  name: École
  academy: paris
uplinks:
  - name: renater
    interface: wan0
    address: 193.50.10.6/30
    gateway: 193.50.11.5
zones:
  - name: peda
    kind: pedagogical
    interfaces: [lan0]
    subnet: 10.75.12.0/24
    address: 10.75.13.1
firewall:
  forwardings:
    - {from: peda, to: nowhere}
management:
  confirm_timeout: 2h
`)
		want := []string{
			"test.yaml:3:8: identity.uai:",
			"test.yaml:10:14: uplinks[0].gateway:",
			"test.yaml:12:5: zones[0].dns_profile: missing",
			"test.yaml:16:14: zones[0].address:",
			"test.yaml:19:24: firewall.forwardings[0].to:",
			"test.yaml:21:20: management.confirm_timeout:",
		}
		checkErrors(t, list, want)
	})
	t.Run("decoding and validation problems together", func(t *testing.T) {
		list := parseErrors(t, strings.Replace(minimal, "version: 1", "version: 2\ncolour: blue", 1))
		checkErrors(t, list, []string{
			`test.yaml:1:10: version: unsupported version 2`,
			`test.yaml:2:1: colour: unknown key "colour"`,
		})
	})
	t.Run("validation says nothing more of a value the decoder refused", func(t *testing.T) {
		// The subnet stays unset: "missing" or "overlaps nothing" would
		// repeat the decoding error; the bad UAI is reported all the same.
		doc := strings.Replace(minimal, "subnet: 10.75.12.0/24", "subnet: 10.75.12.0", 1)
		doc = strings.Replace(doc, "uai: 0751234J", "uai: 0751234A", 1)
		doc = strings.Replace(doc, "zones:", "zone:", 1)
		list := parseErrors(t, doc)
		checkErrors(t, list, []string{
			`test.yaml:3:8: identity.uai: "0751234A" is not a UAI: the check letter of 0751234 is J, not A`,
			`test.yaml:11:1: zone: unknown key "zone" (did you mean "zones"?)`,
		})
		list = parseErrors(t, strings.Replace(minimal, "subnet: 10.75.12.0/24", "subnet: 10.75.12.0", 1))
		checkErrors(t, list, []string{`test.yaml:15:13: zones[0].subnet: "10.75.12.0" has no prefix length`})
	})
}

func checkErrors(t *testing.T, list ErrorList, want []string) {
	t.Helper()
	var got []string
	for _, e := range list {
		got = append(got, e.Error())
	}
	if len(got) != len(want) {
		t.Fatalf("got %d errors, want %d:\n%s", len(got), len(want), strings.Join(got, "\n"))
	}
	for i := range want {
		if !strings.HasPrefix(got[i], want[i]) {
			t.Errorf("error %d = %q, want it to start with %q", i, got[i], want[i])
		}
	}
}

func TestValidateWithoutFile(t *testing.T) {
	c := mustParse(t, minimal)
	c.Zones[0].Subnet = netip.MustParsePrefix("10.75.12.1/24")
	err := c.Validate()
	var list ErrorList
	if !errors.As(err, &list) || len(list) != 1 {
		t.Fatalf("Validate: %v", err)
	}
	if got, want := list[0].Error(), "zones[0].subnet: 10.75.12.1/24 has host bits set: did you mean 10.75.12.0/24?"; got != want {
		t.Errorf("got %q, want %q (no file, no position)", got, want)
	}
}

func TestParseMissingKeyPointsAtItsMapping(t *testing.T) {
	list := parseErrors(t, strings.Replace(minimal, "    gateway: 193.50.10.5\n", "", 1))
	checkErrors(t, list, []string{"test.yaml:7:5: uplinks[0].gateway: missing"})
}

func TestParseRejectsHugeFiles(t *testing.T) {
	list := parseErrors(t, minimal+strings.Repeat("#", MaxFileSize))
	checkErrors(t, list, []string{"test.yaml:1:1: file is"})
}

func TestLoadMissingFile(t *testing.T) {
	_, err := Load(filepath.Join(t.TempDir(), "nope.yaml"))
	if err == nil || !strings.HasPrefix(err.Error(), "config: open ") {
		t.Errorf("Load of a missing file: %v", err)
	}
}
