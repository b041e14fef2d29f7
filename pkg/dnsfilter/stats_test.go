package dnsfilter

import (
	"testing"

	"github.com/miekg/dns"
	"github.com/prometheus/client_golang/prometheus/testutil"
)

// TestBlockedQueriesCountedByZoneAndCategory: each blocked answer counts
// once under its zone and category (the UT1 category, or the one deny
// bucket), over UDP (the wire fast path) and TCP, in the hourly stats
// and the Prometheus counter; blocks for no category (resolver bypass)
// count under their reason only; nothing holds a name or a client.
func TestBlockedQueriesCountedByZoneAndCategory(t *testing.T) {
	ts := startServer(t, testLists(t, t.TempDir(), nil), nil)
	ts.waitLists(t)
	queries := []struct {
		zone, name string
		tcp        bool
	}{
		{"peda", "example.com.", false},
		{"peda", "www.example.com.", true},
		{"peda", "casino.example.", false},
		{"peda", "x.school-deny.example.", false},
		{"peda", "use-application-dns.net.", false},
		{"admin", "casino.example.", false},
		{"admin", "example.com.", false}, // not blocked for staff
		{"guest", "example.com.", true},
	}
	for _, q := range queries {
		ts.query(t, q.zone, q.name, dns.TypeA, q.tcp, false)
	}
	want := map[[2]string]uint64{
		{"peda", "adult"}:     2,
		{"peda", "gambling"}:  1,
		{"peda", "deny"}:      1,
		{"admin", "gambling"}: 1,
		{"guest", "adult"}:    1,
	}
	got := map[[2]string]uint64{}
	bypass := uint64(0)
	for _, st := range ts.f.Stats() {
		if st.Category == "" {
			if st.Reason != "bypass" || st.Zone != "peda" {
				t.Errorf("stat with no category: %+v", st)
			}
			bypass += st.Blocked
			continue
		}
		got[[2]string{st.Zone, st.Category}] += st.Blocked
	}
	for k, n := range want {
		if got[k] != n {
			t.Errorf("stats %s/%s: %d blocked, want %d", k[0], k[1], got[k], n)
		}
		if m := testutil.ToFloat64(ts.f.m.blockedCat.WithLabelValues(k[0], k[1])); m != float64(n) {
			t.Errorf("passerelle_dns_blocked_category_total{zone=%q,category=%q} = %v, want %d", k[0], k[1], m, n)
		}
	}
	if len(got) != len(want) {
		t.Errorf("stats by zone and category: %v, want %v", got, want)
	}
	if bypass != 1 {
		t.Errorf("bypass blocks: %d, want 1", bypass)
	}
	if n := testutil.CollectAndCount(ts.f.m.blockedCat); n != len(want) {
		t.Errorf("passerelle_dns_blocked_category_total has %d series, want %d (no series for bypass)", n, len(want))
	}
}

func TestCategoryOfAReason(t *testing.T) {
	for reason, want := range map[string]string{"adult": "adult", "deny": DenyCategory, "bypass": "", "lists-not-loaded": "", "ddr": ""} {
		if got := Category(reason); got != want {
			t.Errorf("Category(%q) = %q, want %q", reason, got, want)
		}
	}
}
