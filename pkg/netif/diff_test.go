package netif

import (
	"context"
	"errors"
	"net/netip"
	"reflect"
	"strings"
	"testing"
)

// Plans of a small school, as Compile makes them: two uplinks (one static,
// one dhcp), a peda zone on lan0, an admin zone on lan1 (planA) or on a
// bridge of lan1 and lan2 (planBridge).
var (
	wan0    = Link{Name: "wan0", Role: "uplink renater", Addrs: []netip.Prefix{pfx("192.0.2.2/24")}}
	wan1    = Link{Name: "wan1", Role: "uplink backup", DHCP: true}
	lan0    = Link{Name: "lan0", Role: "zone peda", Addrs: []netip.Prefix{pfx("10.10.0.1/24")}}
	lan1    = Link{Name: "lan1", Role: "zone admin", Addrs: []netip.Prefix{pfx("10.20.0.1/24")}}
	brAdmin = []Link{
		{Name: "br-admin", Role: "zone admin", Bridge: true, Addrs: []netip.Prefix{pfx("10.20.0.1/24")}},
		{Name: "lan1", Role: "zone admin port", Master: "br-admin"},
		{Name: "lan2", Role: "zone admin port", Master: "br-admin"},
	}

	planA      = &Plan{Forwarding: true, Links: []Link{wan0, wan1, lan0, lan1}}
	planBridge = &Plan{Forwarding: true, Links: append([]Link{wan0, wan1, lan0}, brAdmin...)}
	// planB changes everything at once: wan0's MTU, peda's address, admin
	// becomes a bridge.
	planB = &Plan{Forwarding: true, Links: append([]Link{
		{Name: "wan0", Role: "uplink renater", MTU: 1400, Addrs: wan0.Addrs},
		wan1,
		{Name: "lan0", Role: "zone peda", Addrs: []netip.Prefix{pfx("10.11.0.1/23")}},
	}, brAdmin...)}
	planNoAdmin = &Plan{Forwarding: true, Links: []Link{wan0, wan1, lan0}}
)

// school is the box before the first apply: its links down, but wan1 has
// the address of its DHCP lease, a main-table default route of an old
// version is left, and the box also has links it does not manage (eth9 in
// a bridge someone made, a docker0 bridge).
func school() sysState {
	st := physical("lo", "wan0", "wan1", "lan0", "lan1", "lan2", "eth9")
	st.LegacyRoutes = 1
	st.Links["wan1"] = linkState{Up: true, MTU: 1500, Addrs: []netip.Prefix{pfx("198.51.100.7/24")}}
	st.Links["lo"] = linkState{Up: true, MTU: 65536}
	st.Links["br-lab"] = linkState{Bridge: true, Up: true, MTU: 1500, Addrs: []netip.Prefix{pfx("172.16.0.1/16")}}
	st.Links["eth9"] = linkState{Master: "br-lab", Up: true, MTU: 1500}
	st.Links["docker0"] = linkState{Bridge: true, MTU: 1500, Addrs: []netip.Prefix{pfx("172.17.0.1/16")}}
	return st
}

// stateA is school() once planA is applied.
const stateA = `sysctl net.ipv4.ip_forward = 1
link br-lab bridge up mtu 1500 addr 172.16.0.1/16
link docker0 bridge down mtu 1500 addr 172.17.0.1/16
link eth9 master br-lab up mtu 1500
link lan0 up mtu 1500 addr 10.10.0.1/24
link lan1 up mtu 1500 addr 10.20.0.1/24
link lan2 down mtu 1500
link lo up mtu 65536
link wan0 up mtu 1500 addr 192.0.2.2/24
link wan1 up mtu 1500 addr 198.51.100.7/24
`

// step is one apply in a sequence, and what it must do.
type step struct {
	plan      *Plan
	failAt    int    // inject a failure at this op and the later ones (0: none)
	wantErr   bool   // the apply must fail
	ops       string // ops run, one a line ("": not checked)
	noOps     bool   // the apply must run no op
	state     string // state after the apply (golden text)
	sameAsA   bool   // state after the apply is stateA
	untouched bool   // no op names a link the manager never configured
}

func TestDiffSequences(t *testing.T) {
	tests := []struct {
		name  string
		steps []step
	}{
		{"fresh apply, then nothing to do", []step{
			{plan: planA, ops: `sysctl net.ipv4.ip_forward=1
link wan0 up
addr add 192.0.2.2/24 dev wan0
link lan0 up
addr add 10.10.0.1/24 dev lan0
link lan1 up
addr add 10.20.0.1/24 dev lan1
route flush table main proto 123
`, sameAsA: true},
			{plan: planA, noOps: true, sameAsA: true},
		}},
		{"addresses change", []step{
			{plan: planA, sameAsA: true},
			{plan: &Plan{Forwarding: true, Links: []Link{wan0, wan1,
				{Name: "lan0", Role: "zone peda", Addrs: []netip.Prefix{pfx("10.11.0.1/23"), pfx("10.12.0.1/24")}}, lan1}},
				ops: `addr del 10.10.0.1/24 dev lan0
addr add 10.11.0.1/23 dev lan0
addr add 10.12.0.1/24 dev lan0
`},
			{plan: planA, ops: `addr del 10.11.0.1/23 dev lan0
addr del 10.12.0.1/24 dev lan0
addr add 10.10.0.1/24 dev lan0
`, sameAsA: true},
		}},
		{"one interface to a bridge of two and back", []step{
			{plan: planA, sameAsA: true},
			{plan: planBridge, ops: `addr del 10.20.0.1/24 dev lan1
bridge add br-admin
link br-admin up
addr add 10.20.0.1/24 dev br-admin
link lan1 master br-admin
link lan2 master br-admin
link lan2 up
`, state: `sysctl net.ipv4.ip_forward = 1
link br-admin bridge up mtu 1500 addr 10.20.0.1/24
link br-lab bridge up mtu 1500 addr 172.16.0.1/16
link docker0 bridge down mtu 1500 addr 172.17.0.1/16
link eth9 master br-lab up mtu 1500
link lan0 up mtu 1500 addr 10.10.0.1/24
link lan1 master br-admin up mtu 1500
link lan2 master br-admin up mtu 1500
link lo up mtu 65536
link wan0 up mtu 1500 addr 192.0.2.2/24
link wan1 up mtu 1500 addr 198.51.100.7/24
`},
			{plan: planA, ops: `bridge del br-admin
link lan2 down
addr add 10.20.0.1/24 dev lan1
`, sameAsA: true},
		}},
		{"dropped zone releases bridge, ports and addresses", []step{
			{plan: planBridge},
			{plan: planNoAdmin, ops: `bridge del br-admin
link lan1 down
link lan2 down
`, state: `sysctl net.ipv4.ip_forward = 1
link br-lab bridge up mtu 1500 addr 172.16.0.1/16
link docker0 bridge down mtu 1500 addr 172.17.0.1/16
link eth9 master br-lab up mtu 1500
link lan0 up mtu 1500 addr 10.10.0.1/24
link lan1 down mtu 1500
link lan2 down mtu 1500
link lo up mtu 65536
link wan0 up mtu 1500 addr 192.0.2.2/24
link wan1 up mtu 1500 addr 198.51.100.7/24
`},
		}},
		{"dropped single-interface zone", []step{
			{plan: planA},
			{plan: planNoAdmin, ops: `addr del 10.20.0.1/24 dev lan1
link lan1 down
`},
		}},
		{"links never touched are left alone", []step{
			// eth9 and br-lab carry names and facts a careless release
			// would act on: a bridge with an address, a port.
			{plan: planBridge, untouched: true},
			{plan: planNoAdmin, untouched: true},
			{plan: planA, untouched: true, sameAsA: true},
		}},
		{"dhcp addresses are the DHCP client's", []step{
			{plan: planA, sameAsA: true},
			// wan1 dropped: its lease address stays (pkg/uplink releases it).
			{plan: &Plan{Forwarding: true, Links: []Link{wan0, lan0, lan1}}, noOps: true},
			// wan0 turned dhcp: only the static address the box set goes.
			{plan: &Plan{Forwarding: true, Links: []Link{{Name: "wan0", Role: "uplink renater", DHCP: true}, wan1, lan0, lan1}},
				ops: "addr del 192.0.2.2/24 dev wan0\n"},
		}},
		{"MTU given back when the plan keeps the driver's", []step{
			{plan: planA},
			{plan: planB},
			{plan: planA, sameAsA: true},
		}},
		{"failed apply after the bridge is made and a port joined, then rollback", []step{
			{plan: planA, sameAsA: true},
			// planB's ops: stale addresses, bridge add, wan0's MTU, lan0's
			// new address, the bridge up with its address, lan1 joins: the
			// 9th op fails and all after it.
			{plan: planB, failAt: 9, wantErr: true, ops: `addr del 10.10.0.1/24 dev lan0
addr del 10.20.0.1/24 dev lan1
bridge add br-admin
link wan0 mtu 1400
addr add 10.11.0.1/23 dev lan0
link br-admin up
addr add 10.20.0.1/24 dev br-admin
link lan1 master br-admin
link lan2 master br-admin (failed)
link lan2 up (failed)
`},
			{plan: planA, ops: `bridge del br-admin
addr del 10.11.0.1/23 dev lan0
link wan0 mtu 1500
addr add 10.10.0.1/24 dev lan0
addr add 10.20.0.1/24 dev lan1
`, sameAsA: true},
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := newFake(school())
			m := newTestManager(t, f)
			for i, s := range tt.steps {
				if s.failAt > 0 {
					f.failAt(s.failAt)
				}
				err := m.Apply(context.Background(), s.plan)
				f.heal()
				if s.wantErr && !errors.Is(err, errInjected) {
					t.Fatalf("step %d: Apply = %v, want the injected failure", i, err)
				}
				if !s.wantErr && err != nil {
					t.Fatalf("step %d: Apply: %v", i, err)
				}
				ops := f.take()
				if s.ops != "" || s.noOps {
					if ops != s.ops {
						t.Errorf("step %d: ops:\n%s\nwant:\n%s", i, ops, s.ops)
					}
				}
				want := s.state
				if s.sameAsA {
					want = stateA
				}
				if got := f.st.String(); want != "" && got != want {
					t.Errorf("step %d: state:\n%s\nwant:\n%s", i, got, want)
				}
				if s.untouched {
					for _, l := range strings.Split(ops, "\n") {
						for _, n := range []string{"eth9", "br-lab", "docker0", "lo"} {
							if strings.Contains(l, " "+n) {
								t.Errorf("step %d: op %q names %s, which the manager never configured", i, l, n)
							}
						}
					}
					for _, n := range []string{"eth9", "br-lab", "docker0", "lo"} {
						if !reflect.DeepEqual(f.st.Links[n], school().Links[n]) {
							t.Errorf("step %d: %s changed", i, n)
						}
					}
				}
			}
		})
	}
}

// TestRollbackFromEveryFailurePoint applies a plan, then another that
// fails at its nth op (and, in a second run, at its nth op only), then the
// first again, for every n and every pair of plans: the state must be the
// first plan's, whatever the failed apply left.
func TestRollbackFromEveryFailurePoint(t *testing.T) {
	plans := map[string]*Plan{"A": planA, "bridge": planBridge, "B": planB, "noAdmin": planNoAdmin}
	for fromName, from := range plans {
		for toName, to := range plans {
			if from == to {
				continue
			}
			ref := newFake(school())
			if err := newTestManager(t, ref).Apply(context.Background(), from); err != nil {
				t.Fatal(err)
			}
			golden := ref.st.String()
			ref.take()
			if err := newTestManager(t, ref).Apply(context.Background(), to); err != nil {
				t.Fatal(err)
			}
			nops := strings.Count(ref.take(), "\n")
			for n := 1; n <= nops; n++ {
				for _, once := range []bool{false, true} {
					f := newFake(school())
					m := newTestManager(t, f)
					if err := m.Apply(context.Background(), from); err != nil {
						t.Fatal(err)
					}
					f.failAt(n)
					f.once = once
					if err := m.Apply(context.Background(), to); !errors.Is(err, errInjected) {
						t.Fatalf("%s to %s failing at op %d: Apply = %v", fromName, toName, n, err)
					}
					f.heal()
					if err := m.Apply(context.Background(), from); err != nil {
						t.Fatalf("%s to %s failing at op %d, back: %v", fromName, toName, n, err)
					}
					if got := f.st.String(); got != golden {
						t.Errorf("%s to %s failing at op %d (once %v), back to %s:\n%s\nwant:\n%s", fromName, toName, n, once, fromName, got, golden)
					}
					f.take()
					if err := m.Apply(context.Background(), from); err != nil || f.take() != "" {
						t.Errorf("%s to %s failing at op %d (once %v): applying %s again is not a no-op", fromName, toName, n, once, fromName)
					}
				}
			}
		}
	}
}
