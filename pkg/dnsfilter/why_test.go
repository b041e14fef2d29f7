package dnsfilter

import "testing"

// Why says what a query would get, and by which rule (issue 17).
func TestWhyExplainsTheDecision(t *testing.T) {
	ts := startServer(t, testLists(t, t.TempDir(), nil), nil)
	ts.waitLists(t)
	tests := []struct {
		zone, name              string
		verdict, rule, category string
		profile                 string
		blockPage               bool
	}{
		{"peda", "www.casino.example", "blocked", "category", "gambling", "eleves", false},
		{"peda", "School-Deny.example.", "blocked", "deny", "", "eleves", false},
		{"peda", "fine.school-deny.example", "allowed", "allow", "", "eleves", false},
		{"peda", "both.example", "allowed", "white", "", "eleves", false},
		{"peda", "use-application-dns.net", "blocked", "bypass", "", "eleves", false},
		{"peda", "lab.test", "allowed", "", "", "eleves", false},
		{"guest", "example.com", "blocked", "category", "adult", "invites", true},
		{"admin", "example.com", "allowed", "", "", "personnels", false},
		{"nowhere", "example.com", "unknown-zone", "", "", "", false},
	}
	for _, tt := range tests {
		w := ts.f.Why(tt.zone, tt.name)
		if w.Verdict != tt.verdict || w.Rule != tt.rule || w.Category != tt.category || w.Profile != tt.profile || w.BlockPage != tt.blockPage {
			t.Errorf("Why(%s, %s) = %+v; want %s by %q %q of %s (block page %v)", tt.zone, tt.name, w, tt.verdict, tt.rule, tt.category, tt.profile, tt.blockPage)
		}
		if tt.verdict != "unknown-zone" && (!w.Lists.Loaded || w.Lists.Since.IsZero() || w.Lists.Categories == 0) {
			t.Errorf("Why(%s, %s): lists %+v", tt.zone, tt.name, w.Lists)
		}
	}
	if w := ts.f.Why("peda", "not a name!"); w.Verdict != "invalid" || w.Err == "" {
		t.Errorf("invalid name: %+v", w)
	}
}
