package netif

import (
	"context"
	"net/netip"
	"slices"
	"testing"

	"passerelle/pkg/box"
	"passerelle/pkg/health"
)

func TestHotplugConfiguresMissingInterfaceWhenItAppears(t *testing.T) {
	sys := newFake(physical("wan0"))
	reg := health.New(nil)
	m := newManager(box.Deps{Health: reg}, sys)
	plan := &Plan{Links: []Link{
		{Name: "wan0", Role: "uplink renater"},
		{Name: "lan0", Role: "zone peda", Addrs: []netip.Prefix{netip.MustParsePrefix("10.10.0.1/24")}},
		{Name: "wwan0", Role: "uplink backup4g"},
	}}
	if err := m.Apply(context.Background(), plan); err != nil {
		t.Fatal(err)
	}
	codes := func() []string {
		var out []string
		for _, w := range reg.List() {
			out = append(out, w.Code)
		}
		slices.Sort(out)
		return out
	}
	if got := codes(); !slices.Equal(got, []string{"interface-missing:lan0", "interface-missing:wwan0"}) {
		t.Fatalf("warnings after apply = %v", got)
	}

	// Events for links that are not planned, or already configured, do
	// nothing.
	m.linkChanged(context.Background(), linkEvent{name: "eth7"})
	m.linkChanged(context.Background(), linkEvent{name: "wan0"})
	if ops := sys.take(); ops != "link wan0 up\n" {
		t.Fatalf("ops after apply and irrelevant events:\n%s", ops)
	}

	sys.st.Links["lan0"] = linkState{MTU: 1500}
	m.linkChanged(context.Background(), linkEvent{name: "lan0"})
	if ops, want := sys.take(), "link lan0 up\naddr add 10.10.0.1/24 dev lan0\n"; ops != want {
		t.Fatalf("ops after lan0 appeared:\n%s\nwant:\n%s", ops, want)
	}
	if got := codes(); !slices.Equal(got, []string{"interface-missing:wwan0"}) {
		t.Fatalf("warnings after lan0 appeared = %v", got)
	}
	if got := m.Missing(); !slices.Equal(got, []string{"wwan0"}) {
		t.Fatalf("Missing() = %v", got)
	}

	// Unplugged: missing again, without a re-apply.
	delete(sys.st.Links, "lan0")
	m.linkChanged(context.Background(), linkEvent{name: "lan0", removed: true})
	if got := codes(); !slices.Equal(got, []string{"interface-missing:lan0", "interface-missing:wwan0"}) {
		t.Fatalf("warnings after lan0 went away = %v", got)
	}
	if ops := sys.take(); ops != "" {
		t.Fatalf("ops after a removal:\n%s", ops)
	}

	// A new plan without wwan0 clears its warning.
	if err := m.Apply(context.Background(), &Plan{Links: plan.Links[:2]}); err != nil {
		t.Fatal(err)
	}
	if got := codes(); !slices.Equal(got, []string{"interface-missing:lan0"}) {
		t.Fatalf("warnings after wwan0 left the plan = %v", got)
	}
}
