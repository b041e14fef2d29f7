package netif

import (
	"context"
	"log/slog"
	"net/netip"
	"slices"
	"testing"

	"passerelle/pkg/health"
)

// fakeSystem plays the kernel: links in present exist, the others are
// missing.
type fakeSystem struct {
	present []string
	applies int
}

func (f *fakeSystem) apply(_ context.Context, _ *slog.Logger, _, want *Plan) ([]string, error) {
	f.applies++
	var missing []string
	for _, l := range want.Links {
		if !l.Bridge && !slices.Contains(f.present, l.Name) {
			missing = append(missing, l.Name)
		}
	}
	return missing, nil
}

func TestHotplugConfiguresMissingInterfaceWhenItAppears(t *testing.T) {
	sys := &fakeSystem{present: []string{"wan0"}}
	reg := health.New(nil)
	m := &Manager{log: slog.New(slog.DiscardHandler), sys: sys, warn: reg, warned: map[string]bool{}}
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
	if sys.applies != 1 {
		t.Fatalf("%d applies after irrelevant events, want 1", sys.applies)
	}

	sys.present = append(sys.present, "lan0")
	m.linkChanged(context.Background(), linkEvent{name: "lan0"})
	if sys.applies != 2 {
		t.Fatalf("%d applies after lan0 appeared, want 2", sys.applies)
	}
	if got := codes(); !slices.Equal(got, []string{"interface-missing:wwan0"}) {
		t.Fatalf("warnings after lan0 appeared = %v", got)
	}
	if got := m.Missing(); !slices.Equal(got, []string{"wwan0"}) {
		t.Fatalf("Missing() = %v", got)
	}

	// Unplugged: missing again, without a re-apply.
	sys.present = []string{"wan0"}
	m.linkChanged(context.Background(), linkEvent{name: "lan0", removed: true})
	if got := codes(); !slices.Equal(got, []string{"interface-missing:lan0", "interface-missing:wwan0"}) {
		t.Fatalf("warnings after lan0 went away = %v", got)
	}
	if sys.applies != 2 {
		t.Fatalf("%d applies after a removal, want 2", sys.applies)
	}

	// A new plan without wwan0 clears its warning.
	if err := m.Apply(context.Background(), &Plan{Links: plan.Links[:2]}); err != nil {
		t.Fatal(err)
	}
	if got := codes(); !slices.Equal(got, []string{"interface-missing:lan0"}) {
		t.Fatalf("warnings after wwan0 left the plan = %v", got)
	}
}
