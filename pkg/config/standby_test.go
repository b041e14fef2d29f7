package config

import (
	"strings"
	"testing"
	"time"
)

// Issue 13: what probing a standby backup costs a month is derived and
// shown by --print-effective.
func TestStandbyBudget(t *testing.T) {
	c := mustParse(t, minimal)
	p := c.Uplinks[0].Probe
	if p.StandbyInterval.D() != 10*time.Second {
		t.Errorf("standby_interval %s, want 10s", p.StandbyInterval)
	}
	// 3 targets x 2 echo exchanges of 130 bytes every 10 s, 30 days.
	if want := 3 * 2 * 130 * 259200 / 1000000; p.StandbyBudgetMB != want+1 && p.StandbyBudgetMB != want {
		t.Errorf("standby budget %d MB, want about %d", p.StandbyBudgetMB, want)
	}
	out, err := Marshal(c)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(out), "standby_budget_mb: 202") {
		t.Errorf("print-effective does not show the budget:\n%s", out)
	}
	for _, e := range []struct {
		kind ProbeKind
		mb   int
	}{{ProbeDNS, 933}, {ProbeHTTP, 933}} {
		q := p
		q.Kind = e.kind
		if got := standbyBudgetMB(q); got != e.mb {
			t.Errorf("%s: %d MB, want %d", e.kind, got, e.mb)
		}
	}
}
