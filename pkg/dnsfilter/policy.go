package dnsfilter

import (
	"fmt"
	"net/netip"
	"strings"

	"passerelle/pkg/domainset"
	"passerelle/pkg/ut1"
)

// action is what the filter does with a query.
type action uint8

const (
	pass       action = iota // forward (resolve) the name
	block                    // block response (NXDOMAIN or block page)
	nodata                   // NOERROR, no answer (DDR discovery)
	safesearch               // CNAME to the engine's safe endpoint
)

// verdict is the decision for one name.
type verdict struct {
	action action
	// reason names what decided, for the EDE text, metrics and the log:
	// a category, "deny", "bypass", "lists-not-loaded".
	reason string
	// explicit is set when an allow list or a white category passed the
	// name: CNAME targets of the answer are then not checked.
	explicit bool
	rw       rewrite
}

// Bypass defence: names browsers and phones look up to decide whether to
// bypass the network's resolver. NXDOMAIN tells Firefox not to enable DoH
// (use-application-dns.net) and Apple devices not to use iCloud Private
// Relay (mask*.icloud.com).
var canaries = []string{"use-application-dns.net", "mask.icloud.com", "mask-h2.icloud.com"}

// ddrName is the Discovery of Designated Resolvers name (RFC 9462): we
// designate no encrypted resolver, so it gets an empty answer.
const ddrName = "_dns.resolver.arpa"

// policy is the compiled combination of a plan and a lists version. It is
// immutable; the filter swaps it atomically when either changes.
type policy struct {
	plan     *Plan
	lists    *ut1.Lists // nil until loaded
	zones    map[string]*zonePolicy
	profiles map[string]*profile
}

type zonePolicy struct {
	name    string
	addr    netip.Addr
	profile *profile // nil: unfiltered
}

type profile struct {
	*ProfilePlan
	allow, deny  *domainset.Set
	white, black domainset.Tags
	catNames     []string // by tag: canonical category name
	safe         map[string]rewrite
	// missing are configured categories the lists do not have, and empty
	// those with no domain (UT1 ships adult's urls but, in some mirrors,
	// not its domains): both are reported.
	missing, empty []string
	// ede holds the EDE text of every reason this profile can block for,
	// built once rather than per query.
	ede map[string]string
}

func newPolicy(p *Plan, lists *ut1.Lists) (*policy, error) {
	pol := &policy{plan: p, lists: lists, zones: map[string]*zonePolicy{}, profiles: map[string]*profile{}}
	for _, pp := range p.Profiles {
		pr, err := newProfile(pp, lists)
		if err != nil {
			return nil, err
		}
		pol.profiles[pp.Name] = pr
	}
	for _, l := range p.Listeners {
		pol.zones[l.Zone] = &zonePolicy{name: l.Zone, addr: l.Addr, profile: pol.profiles[l.Profile]}
	}
	return pol, nil
}

func exactSet(domains []string) (*domainset.Set, error) {
	b := domainset.NewBuilder(len(domains))
	for _, d := range domains {
		b.Add(d, 0)
	}
	return b.Build()
}

func newProfile(pp *ProfilePlan, lists *ut1.Lists) (*profile, error) {
	pr := &profile{ProfilePlan: pp, safe: safeSearchTable(pp.SafeSearch), ede: map[string]string{}}
	for _, r := range []string{"deny", "bypass", "lists-not-loaded"} {
		pr.ede[r] = edeText(verdict{reason: r}, pp.Name)
	}
	var err error
	if pr.allow, err = exactSet(pp.Allow); err != nil {
		return nil, err
	}
	if pr.deny, err = exactSet(pp.Deny); err != nil {
		return nil, err
	}
	if lists == nil {
		return pr, nil
	}
	pr.catNames = make([]string, len(lists.Categories))
	for i, c := range lists.Categories {
		pr.catNames[i] = c.Name
	}
	for _, name := range pp.Categories {
		tag, c, ok := lists.Category(name)
		switch {
		case !ok:
			pr.missing = append(pr.missing, name)
			continue
		case c.Domains == 0:
			pr.empty = append(pr.empty, name)
		}
		pr.ede[c.Name] = edeText(verdict{reason: c.Name}, pp.Name)
		if c.White {
			pr.white = pr.white.Add(tag)
		} else {
			pr.black = pr.black.Add(tag)
		}
	}
	return pr, nil
}

// queryName returns the form of a query name lists are compared with:
// lower case, no trailing dot.
func queryName(qname string) string {
	n := strings.TrimSuffix(qname, ".")
	for i := 0; i < len(n); i++ {
		if 'A' <= n[i] && n[i] <= 'Z' {
			return strings.ToLower(n)
		}
	}
	return n
}

// decide applies the profile to a normalised name. Order: bypass defence,
// then the profile's allow list (allow wins), its deny list, the
// categories (the most specific listed domain decides; white wins a tie),
// then safe search. With no lists loaded a fail-closed profile blocks
// everything its allow list does not allow.
func (pr *profile) decide(name string, lists *ut1.Lists) verdict {
	if name == ddrName {
		return verdict{action: nodata, reason: "ddr"}
	}
	if pr == nil {
		return verdict{action: pass}
	}
	if pr.Minors {
		for _, c := range canaries {
			if name == c || strings.HasSuffix(name, "."+c) {
				return verdict{action: block, reason: "bypass"}
			}
		}
	}
	explicit := false
	if _, _, ok := pr.allow.Match(name); ok {
		explicit = true
	} else if _, _, ok := pr.deny.Match(name); ok {
		return verdict{action: block, reason: DenyCategory}
	} else if lists == nil {
		if pr.FailClosed {
			return verdict{action: block, reason: "lists-not-loaded"}
		}
	} else if !pr.white.Empty() || !pr.black.Empty() {
		for suffix := range domainset.Suffixes(name) {
			tags, ok := lists.Set.Lookup(suffix)
			if !ok {
				continue
			}
			if !tags.And(pr.white).Empty() {
				explicit = true
				break
			}
			if b := tags.And(pr.black); !b.Empty() {
				return verdict{action: block, reason: pr.catNames[b.First()]}
			}
		}
	}
	if rw, ok := pr.safe[name]; ok {
		return verdict{action: safesearch, rw: rw, reason: rw.engine, explicit: explicit}
	}
	return verdict{action: pass, explicit: explicit}
}

// edeText is the Extended DNS Error text (RFC 8914) for a block: what a
// technician or a curious pupil sees with dig.
func edeText(v verdict, profile string) string {
	switch v.reason {
	case "deny":
		return fmt.Sprintf("blocked by the deny list of profile %s", profile)
	case "bypass":
		return "blocked: resolver bypass (encrypted DNS or relay canary)"
	case "lists-not-loaded":
		return "blocked: filtering lists not loaded yet (fail closed)"
	case "ddr":
		return ""
	}
	return fmt.Sprintf("blocked by category %s (UT1) of profile %s", v.reason, profile)
}
