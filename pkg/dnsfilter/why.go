package dnsfilter

import (
	"time"

	"passerelle/pkg/domainset"
)

// Why explains the filter's decision for one name in one zone, for the
// technician (`passerelle why`, the status page's DNS diagnostic, the
// block page; issue 17). It is computed from the policy in use, exactly
// as a query would be decided, and records nothing.
type Why struct {
	Zone    string
	Name    string // normalised
	Profile string // "" : the zone is not filtered
	// Verdict: "allowed", "blocked", "safesearch" (rewritten to the
	// engine's safe endpoint) or "unknown-zone".
	Verdict string
	// Rule is what decided: "allow" (the profile's allow list), "deny"
	// (its deny list), "category" (a UT1 category: Category), "white"
	// (a white category passed it), "bypass" (bypass defence),
	// "lists-not-loaded" (fail closed), "safesearch", or "" (no rule:
	// allowed by default).
	Rule      string
	Category  string // the UT1 category, when Rule is category
	BlockPage bool   // the zone's profile answers blocked names with the block page
	Lists     ListsInfo
	Err       string // the name is not a valid domain name
}

// ListsInfo is the lists version in use.
type ListsInfo struct {
	Loaded     bool
	Version    string
	Since      time.Time // when this version was installed
	Published  time.Time // when UT1 published it (ut1.Lists.Published); zero if unknown
	Categories int
	Domains    int
}

// ListsInfo returns the lists version in use.
func (f *Filter) ListsInfo() ListsInfo {
	l := f.lists.Load()
	if l == nil {
		return ListsInfo{}
	}
	info := ListsInfo{Loaded: true, Version: l.Version, Published: l.Published, Categories: len(l.Categories), Domains: l.Domains()}
	if s := f.listsSince.Load(); s != 0 {
		info.Since = time.Unix(0, s)
	}
	return info
}

// Why says whether name is blocked in zone, and by what.
func (f *Filter) Why(zone, name string) Why {
	w := Why{Zone: zone, Name: name, Lists: f.ListsInfo()}
	n, err := domainset.Normalize(name)
	if err != nil {
		w.Verdict, w.Err = "invalid", err.Error()
		return w
	}
	w.Name = n
	pol := f.policy.Load()
	zp, ok := pol.zones[zone]
	if !ok {
		w.Verdict = "unknown-zone"
		return w
	}
	pr := zp.profile
	if pr == nil {
		w.Verdict = "allowed"
		return w
	}
	w.Profile, w.BlockPage = pr.Name, pr.BlockPage
	v := pr.decide(n, pol.lists)
	switch v.action {
	case block:
		w.Verdict = "blocked"
		switch v.reason {
		case "deny", "bypass", "lists-not-loaded":
			w.Rule = v.reason
		default:
			w.Rule, w.Category = "category", v.reason
		}
	case safesearch:
		w.Verdict, w.Rule = "safesearch", "safesearch"
	default:
		w.Verdict = "allowed"
		if v.explicit {
			if _, _, ok := pr.allow.Match(n); ok {
				w.Rule = "allow"
			} else {
				w.Rule = "white"
			}
		}
	}
	return w
}
