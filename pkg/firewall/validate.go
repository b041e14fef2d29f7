package firewall

import (
	"errors"
	"fmt"
	"strings"
	"time"
)

var (
	hooks      = map[string]bool{"prerouting": true, "input": true, "forward": true, "output": true, "postrouting": true}
	chainTypes = map[string]bool{"filter": true, "nat": true}
)

// Validate checks a plan before it is applied: every name is usable, every
// set, counter and chain a rule refers to exists with the right type, and
// every value is in range. A plan from Compile always passes; the check
// guards against compiler bugs and hand-made plans (benchmarks, tests)
// with a clear error instead of a kernel's EINVAL.
func (p *Plan) Validate() error {
	var errs []error
	bad := func(format string, args ...any) { errs = append(errs, fmt.Errorf(format, args...)) }

	counters := map[string]bool{}
	for _, c := range p.Counters {
		if err := checkName(c); err != nil {
			bad("counter %q: %v", c, err)
		}
		if counters[c] {
			bad("counter %q declared twice", c)
		}
		counters[c] = true
	}
	sets := map[string]Set{}
	for _, s := range p.Sets {
		if err := checkName(s.Name); err != nil {
			bad("set %q: %v", s.Name, err)
		}
		if _, dup := sets[s.Name]; dup {
			bad("set %q declared twice", s.Name)
		}
		sets[s.Name] = s
		if err := s.check(); err != nil {
			bad("set %s: %v", s.Name, err)
		}
	}
	chains := map[string]*Chain{}
	for i := range p.Chains {
		c := &p.Chains[i]
		if err := checkName(c.Name); err != nil {
			bad("chain %q: %v", c.Name, err)
		}
		if chains[c.Name] != nil {
			bad("chain %q declared twice", c.Name)
		}
		chains[c.Name] = c
		if b := c.Base; b != nil {
			if !chainTypes[b.Type] || !hooks[b.Hook] {
				bad("chain %s: type %q hook %q", c.Name, b.Type, b.Hook)
			}
			if b.Type == "nat" && (b.Hook == "forward" || b.Drop) {
				bad("chain %s: a nat chain hooks prerouting, input, output or postrouting with policy accept", c.Name)
			}
		}
	}
	for _, c := range p.Chains {
		for i, r := range c.Rules {
			if err := r.check(counters, sets, chains); err != nil {
				bad("chain %s rule %d (%s): %v", c.Name, i+1, r, err)
			}
		}
	}
	return errors.Join(errs...)
}

// checkName accepts names nft prints and parses back: a letter, then
// letters, digits, -, _ and dots.
func checkName(n string) error {
	if n == "" || len(n) > maxObjName {
		return fmt.Errorf("name must have 1 to %d characters", maxObjName)
	}
	for i, r := range n {
		ok := r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r == '_' ||
			i > 0 && (r >= '0' && r <= '9' || r == '-' || r == '.')
		if !ok {
			return fmt.Errorf("character %q not allowed", r)
		}
	}
	return nil
}

func (s Set) check() error {
	switch s.Kind {
	case SetIfnames:
		if s.Runtime {
			return errors.New("only address sets are filled at run time")
		}
		for _, n := range s.Ifnames {
			if n == "" || len(n) > 15 || strings.ContainsAny(n, "\x00\"/ ") {
				return fmt.Errorf("%q is not an interface name", n)
			}
		}
	case SetIPv4Ranges:
		if s.Runtime {
			return errors.New("only address sets are filled at run time")
		}
		for i, r := range s.Ranges {
			if !r.First.Is4() || !r.Last.Is4() || r.Last.Less(r.First) {
				return fmt.Errorf("%v is not an IPv4 range", r)
			}
			if i > 0 && v4(r.First) <= v4(s.Ranges[i-1].Last)+1 {
				return fmt.Errorf("ranges %v and %v overlap or touch: merge them", s.Ranges[i-1], r)
			}
		}
	case SetIPv4Meter:
		if s.Runtime || len(s.Addrs) > 0 {
			return errors.New("a meter is filled by its rules only")
		}
		if s.Size == 0 {
			return errors.New("a meter needs a size")
		}
		if s.Timeout < time.Second || s.Timeout%time.Second != 0 {
			return fmt.Errorf("timeout %v: whole seconds, at least one", s.Timeout)
		}
	case SetIPv4Addrs, SetIPv6Addrs:
		for _, a := range s.Addrs {
			if !a.IsValid() || a.Is4() != (s.Kind == SetIPv4Addrs) || a.Is4In6() {
				return fmt.Errorf("%v does not belong in a set of %s", a, map[bool]string{true: "IPv4", false: "IPv6"}[s.Kind == SetIPv4Addrs])
			}
		}
	default:
		return fmt.Errorf("unknown kind %d", s.Kind)
	}
	return nil
}

func (r Rule) check(counters map[string]bool, sets map[string]Set, chains map[string]*Chain) error {
	tcp := false
	for i, e := range r.Exprs {
		if v, ok := e.(Verdict); ok && i != len(r.Exprs)-1 {
			return fmt.Errorf("verdict %s is not last", v)
		}
		switch e := e.(type) {
		case IfName:
			if e.Name == "" || len(e.Name) > 15 {
				return fmt.Errorf("%q is not an interface name", e.Name)
			}
		case IfSet:
			if s, ok := sets[e.Set]; !ok || s.Kind != SetIfnames {
				return fmt.Errorf("no interface set %q", e.Set)
			}
		case AddrIs:
			if !e.Prefix.IsValid() || !e.Prefix.Addr().Is4() {
				return fmt.Errorf("%v is not an IPv4 prefix", e.Prefix)
			}
		case AddrIn:
			if len(e.Ranges) == 0 {
				return errors.New("empty address list")
			}
			if err := (Set{Kind: SetIPv4Ranges, Ranges: e.Ranges}).check(); err != nil {
				return err
			}
		case AddrSet:
			s, ok := sets[e.Set]
			want := s.Kind == SetIPv4Ranges || s.Kind == SetIPv4Addrs
			if e.V6 {
				want = s.Kind == SetIPv6Addrs
			}
			if !ok || !want {
				return fmt.Errorf("no address set %q of that family", e.Set)
			}
		case L4:
			if _, ok := map[string]bool{"tcp": true, "udp": true, "icmp": true}[e.Proto]; !ok {
				return fmt.Errorf("unknown protocol %q", e.Proto)
			}
			tcp = tcp || e.Proto == "tcp"
		case Ports:
			if e.Proto != "tcp" && e.Proto != "udp" {
				return fmt.Errorf("ports need tcp or udp, not %q", e.Proto)
			}
			if len(e.Ranges) == 0 {
				return errors.New("no ports")
			}
			for _, pr := range e.Ranges {
				if pr.First == 0 || pr.Last < pr.First {
					return fmt.Errorf("bad port range %v", pr)
				}
			}
			tcp = tcp || e.Proto == "tcp"
		case TCPSyn:
			tcp = true
		case CtState:
			for _, s := range e.States {
				if _, ok := ctStates[s]; !ok {
					return fmt.Errorf("unknown conntrack state %q", s)
				}
			}
		case Limit:
			if e.Rate == 0 {
				return errors.New("limit rate 0")
			}
		case Meter:
			if s, ok := sets[e.Set]; !ok || s.Kind != SetIPv4Meter {
				return fmt.Errorf("no meter %q", e.Set)
			}
			if e.Limit.Rate == 0 {
				return errors.New("limit rate 0")
			}
		case Counter:
			if !counters[e.Name] {
				return fmt.Errorf("counter %q is not declared", e.Name)
			}
		case DNAT:
			if !e.Addr.Is4() {
				return fmt.Errorf("dnat to %v: not IPv4", e.Addr)
			}
		case ClampMSS:
			if !tcp {
				return errors.New("MSS clamping needs a tcp match first")
			}
		case Verdict:
			switch e.Kind {
			case Accept, Drop, Return, Reject:
			case Reset:
				if !tcp {
					return errors.New("tcp reset needs a tcp match first")
				}
			case Jump:
				c := chains[e.Chain]
				if c == nil || c.Base != nil {
					return fmt.Errorf("no regular chain %q to jump to", e.Chain)
				}
			default:
				return fmt.Errorf("unknown verdict %q", e.Kind)
			}
		}
	}
	return nil
}

// ctStates are the conntrack states rules may name.
var ctStates = map[string]bool{"invalid": true, "established": true, "related": true, "new": true, "untracked": true}
