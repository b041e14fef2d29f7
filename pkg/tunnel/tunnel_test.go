package tunnel

import (
	"encoding/json"
	"net/netip"
	"strings"
	"testing"
	"time"

	"tailscale.com/ipn"
	"tailscale.com/ipn/ipnstate"
	"tailscale.com/types/key"
	"tailscale.com/types/views"

	"passerelle/pkg/config"
)

const testConfig = `version: 1
board: lab
identity: {uai: 0599999Y, name: Test, academy: lille}
uplinks:
  - {name: renater, interface: wan0, address: 192.0.2.2/30, gateway: 192.0.2.1}
  - {name: backup, interface: wan1, priority: 2, address: 192.0.2.6/30, gateway: 192.0.2.5}
zones:
  - {name: admin, kind: administrative, interfaces: [lan1], subnet: 10.20.0.0/24, address: 10.20.0.1}
tunnel:
  enabled: true
  control_url: https://headscale.ac-lille.fr
  auth_key_file: /perm/tunnel/authkey
  advertise_routes: [10.20.0.0/24]
  academy_prefixes: [10.200.0.0/16]
`

func compileText(t *testing.T, text string) *Plan {
	t.Helper()
	cfg, err := config.Parse("test.yaml", []byte(text))
	if err != nil {
		t.Fatal(err)
	}
	p, err := Compile(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return p
}

func TestConfigFileIsWhatASubnetRouterNeeds(t *testing.T) {
	p := compileText(t, testConfig)
	data, err := p.ConfigFile(KeyCheck{File: "/perm/tunnel/authkey", State: KeyPresent})
	if err != nil {
		t.Fatal(err)
	}
	var c ipn.ConfigVAlpha
	if err := json.Unmarshal(data, &c); err != nil {
		t.Fatalf("tailscaled cannot read its config: %v\n%s", err, data)
	}
	mp, err := c.ToPrefs()
	if err != nil {
		t.Fatal(err)
	}
	if *c.ServerURL != "https://headscale.ac-lille.fr" || *c.AuthKey != "file:/perm/tunnel/authkey" {
		t.Errorf("server %q key %q", *c.ServerURL, *c.AuthKey)
	}
	if mp.CorpDNS || !mp.CorpDNSSet {
		t.Error("the tailnet's DNS must be refused explicitly")
	}
	if !mp.RouteAll || !mp.NoSNAT || !mp.NoSNATSet {
		t.Errorf("accept routes %v, SNAT off %v", mp.RouteAll, mp.NoSNAT)
	}
	if c.NetfilterMode == nil || *c.NetfilterMode != "off" {
		t.Error("netfilter mode must be off: the box's firewall owns nftables")
	}
	if got := mp.AdvertiseRoutes; len(got) != 1 || got[0] != netip.MustParsePrefix("10.20.0.0/24") {
		t.Errorf("advertised %v", got)
	}
	if c.Locked.EqualBool(true) || c.Locked == "" {
		t.Error("the config must be unlocked, or EditPrefs is refused")
	}
	if p.StateDir != "/perm/tunnel/state" || p.Hostname != "passerelle-0599999y" || p.PreferUplink != "renater" {
		t.Errorf("state %q host %q prefer %q", p.StateDir, p.Hostname, p.PreferUplink)
	}
}

func TestPrefsChangeInPlaceButServerNeedsRestart(t *testing.T) {
	a := compileText(t, testConfig)
	b := compileText(t, strings.Replace(testConfig, "advertise_routes: [10.20.0.0/24]", "advertise_routes: []", 1))
	if b.NeedsRestart(a) {
		t.Error("new routes must not restart tailscaled")
	}
	mp, err := b.Prefs()
	if err != nil {
		t.Fatal(err)
	}
	if !mp.AdvertiseRoutesSet || mp.AdvertiseRoutes == nil || len(mp.AdvertiseRoutes) != 0 {
		t.Errorf("no routes must be sent as an empty list: %+v", mp.AdvertiseRoutes)
	}
	if mp.ControlURLSet {
		t.Error("EditPrefs must not change the control server")
	}
	c := compileText(t, strings.Replace(testConfig, "headscale.ac-lille.fr", "hs2.ac-lille.fr", 1))
	if !c.NeedsRestart(a) {
		t.Error("a new control server must restart tailscaled")
	}
	if !a.NeedsRestart(nil) || !a.NeedsRestart(&Plan{}) {
		t.Error("first start")
	}
}

func TestDisabledPlan(t *testing.T) {
	p := compileText(t, strings.Replace(testConfig, "enabled: true", "enabled: false", 1))
	if p.Enabled || p.String() != "tunnel: disabled\n" {
		t.Errorf("%+v", p)
	}
	if _, err := p.ConfigFile(KeyCheck{}); err == nil {
		t.Error("a disabled tunnel has no tailscaled config")
	}
}

func TestPlanText(t *testing.T) {
	got := compileText(t, testConfig).String()
	want := `tunnel: tailscaled on tailscale0, udp/41641
  control https://headscale.ac-lille.fr
  auth key file:/perm/tunnel/authkey, state /perm/tunnel/state
  hostname passerelle-0599999y
  advertise 10.20.0.0/24
  academy 10.200.0.0/16
  accept routes, no DNS from the tailnet, netfilter off, SNAT off
  tailscaled's own traffic: renater while usable, else the uplink of new flows
`
	if got != want {
		t.Errorf("got\n%s\nwant\n%s", got, want)
	}
}

func peer(host string, ip string, routes ...string) *ipnstate.PeerStatus {
	var rs []netip.Prefix
	for _, r := range routes {
		rs = append(rs, netip.MustParsePrefix(r))
	}
	v := views.SliceOf(rs)
	return &ipnstate.PeerStatus{HostName: host, TailscaleIPs: []netip.Addr{netip.MustParseAddr(ip)}, PrimaryRoutes: &v, Online: true}
}

func TestSummariseFindsTheAcademyRouterAndPath(t *testing.T) {
	dc := peer("academy-dc", "100.64.0.1", "10.200.0.0/24")
	dc.Relay, dc.CurAddr = "lab", "198.51.100.254:41641"
	dc.LastHandshake = time.Unix(1000, 0)
	other := peer("passerelle-0591111a", "100.64.0.3", "10.21.0.0/24")
	st := &ipnstate.Status{
		BackendState: "Running",
		TailscaleIPs: []netip.Addr{netip.MustParseAddr("100.64.0.2")},
		Peer:         map[key.NodePublic]*ipnstate.PeerStatus{key.NewNode().Public(): dc, key.NewNode().Public(): other},
	}
	academy := []netip.Prefix{netip.MustParsePrefix("10.200.0.0/16")}
	s := Summarise(st, academy)
	if s.Academy != "academy-dc" || s.AcademyIP != netip.MustParseAddr("100.64.0.1") || s.Peers != 2 {
		t.Fatalf("%+v", s)
	}
	if s.Path != PathDirect || s.Endpoint != "198.51.100.254:41641" {
		t.Errorf("path %q endpoint %q", s.Path, s.Endpoint)
	}
	dc.CurAddr = ""
	if s := Summarise(st, academy); s.Path != PathRelayed || s.Relay != "lab" {
		t.Errorf("relayed: %+v", s)
	}
	delete(st.Peer, func() key.NodePublic {
		for k, p := range st.Peer {
			if p == dc {
				return k
			}
		}
		return key.NodePublic{}
	}())
	if s := Summarise(st, academy); s.AcademyIP.IsValid() {
		t.Errorf("another school's box is not the academy: %+v", s)
	}
}

// TestPreferredUplinkIsRenaterElseTheOnlyMostPreferred: the tunnel rides
// Renater by name, else the one uplink of the lowest priority; links that
// share new flows give it no preference.
func TestPreferredUplinkIsRenaterElseTheOnlyMostPreferred(t *testing.T) {
	up := func(name string, prio int) config.Uplink { return config.Uplink{Name: name, Priority: prio} }
	for _, tc := range []struct {
		name string
		ups  []config.Uplink
		want string
	}{
		{"renater first", []config.Uplink{up("renater", 1), up("backup", 2)}, "renater"},
		{"renater named, even listed second", []config.Uplink{up("fibre", 1), up("renater", 1)}, "renater"},
		{"no renater: the lowest priority", []config.Uplink{up("backup4g", 2), up("fibre", 1)}, "fibre"},
		{"a single uplink", []config.Uplink{up("fibre", 1)}, "fibre"},
		{"two share new flows: no preference", []config.Uplink{up("fibre", 1), up("cable", 1), up("backup4g", 2)}, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := preferredUplink(tc.ups); got != tc.want {
				t.Errorf("preferred %q, want %q", got, tc.want)
			}
		})
	}
}
