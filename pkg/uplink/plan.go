package uplink

import (
	"fmt"
	"net/netip"
	"slices"
	"strings"
	"time"

	"passerelle/pkg/box"
	"passerelle/pkg/config"
	"passerelle/pkg/netmark"
)

// Plan is the desired uplink setup of one config: the policy rules, one
// routing table and mark per uplink, and how each uplink is probed.
// Which uplink carries new flows (TableActive) is not in the plan: it
// follows health at run time.
type Plan struct {
	Links []Link
	// DNSServers are the DNS upstreams that follow the active uplink
	// (not pinned to one): each uplink is checked to reach one of them.
	DNSServers []netip.AddrPort
}

// Link is one uplink as the manager runs it.
type Link struct {
	Index     int    // position in the config: names the mark, table and rule
	Name      string // config name, e.g. renater
	Interface string
	DHCP      bool
	LeaseFile string       // dhcp only
	Address   netip.Prefix // static only
	Gateway   netip.Addr   // static only; a dhcp uplink's comes with its lease
	Priority  int
	Weight    int
	Mark      uint32
	Table     int
	RulePrio  int
	Probe     Probe
}

// Probe is how a link's health is measured; see config.Probe.
type Probe struct {
	Kind         config.ProbeKind
	Targets      []netip.Addr
	Interval     time.Duration
	Timeout      time.Duration
	Quorum       int
	DownAfter    int
	UpAfter      int
	DegradedRTT  time.Duration
	DegradedLoss int // percent
	// StandbyInterval: time between rounds while the link is a standby
	// backup (see Manager.standby); 0 or not above Interval: always
	// Interval.
	StandbyInterval time.Duration
}

var _ box.Plan = (*Plan)(nil)

// Compile plans the uplinks of a valid config.
func Compile(cfg *config.Config) (*Plan, error) {
	if len(cfg.Uplinks) > netmark.MaxUplinks {
		return nil, fmt.Errorf("%d uplinks: at most %d have a mark", len(cfg.Uplinks), netmark.MaxUplinks)
	}
	p := &Plan{}
	for i, u := range cfg.Uplinks {
		l := Link{
			Index:     i,
			Name:      u.Name,
			Interface: u.Interface,
			DHCP:      u.Addressing == config.AddressingDHCP,
			Priority:  u.Priority,
			Weight:    u.Weight,
			Mark:      netmark.Uplink(i),
			Table:     netmark.UplinkTable(i),
			RulePrio:  netmark.UplinkPriority(i),
			Probe: Probe{
				Kind:            u.Probe.Kind,
				Targets:         append([]netip.Addr(nil), u.Probe.Targets...),
				Interval:        u.Probe.Interval.D(),
				Timeout:         u.Probe.Timeout.D(),
				Quorum:          u.Probe.Quorum,
				DownAfter:       u.Probe.DownAfter,
				UpAfter:         u.Probe.UpAfter,
				DegradedRTT:     u.Probe.DegradedRTT.D(),
				DegradedLoss:    u.Probe.DegradedLoss,
				StandbyInterval: u.Probe.StandbyInterval.D(),
			},
		}
		if l.DHCP {
			l.LeaseFile = u.LeaseFile
			if l.LeaseFile == "" {
				return nil, fmt.Errorf("uplink %s: dhcp uplink without a lease file", u.Name)
			}
		} else {
			l.Address, l.Gateway = u.Address, u.Gateway
		}
		if l.Probe.Kind == "" {
			l.Probe.Kind = config.ProbeICMP
		}
		if l.Probe.Quorum < 1 || l.Probe.Quorum > len(l.Probe.Targets) || l.Probe.Interval <= 0 || l.Probe.Timeout <= 0 {
			return nil, fmt.Errorf("uplink %s: probe settings out of range (config not validated?)", u.Name)
		}
		p.Links = append(p.Links, l)
	}
	for _, u := range cfg.DNS.Upstreams {
		if u.Uplink == "" && u.Address.IsValid() {
			p.DNSServers = append(p.DNSServers, u.Address)
		}
	}
	return p, nil
}

// Link returns the planned link of that name.
func (p *Plan) Link(name string) (Link, bool) {
	for _, l := range p.Links {
		if l.Name == name {
			return l, true
		}
	}
	return Link{}, false
}

// rule is a policy routing rule the manager owns.
type rule struct {
	Priority int
	Mark     uint32 // 0: any packet
	Table    int
	Suppress int // suppress_prefixlength, -1 for none
}

// rules are the policy rules of the plan, by priority. Every mark rule of
// the eight possible uplinks is not installed: only those of planned
// links, so that a stray mark never reaches an empty table.
func (p *Plan) rules() []rule {
	rs := []rule{{Priority: netmark.PrioMainSuppress, Table: tableMain, Suppress: 0}}
	for _, l := range p.Links {
		rs = append(rs, rule{Priority: l.RulePrio, Mark: l.Mark, Table: l.Table, Suppress: -1})
	}
	return append(rs, rule{Priority: netmark.PrioActive, Table: netmark.TableActive, Suppress: -1})
}

// tableMain is the kernel's main routing table (RT_TABLE_MAIN).
const tableMain = 254

func (r rule) String() string {
	var b strings.Builder
	fmt.Fprintf(&b, "%d: ", r.Priority)
	if r.Mark != 0 {
		fmt.Fprintf(&b, "fwmark %#x/%#x ", r.Mark, netmark.UplinkMask)
	}
	table := fmt.Sprint(r.Table)
	if r.Table == tableMain {
		table = "main"
	}
	fmt.Fprintf(&b, "lookup %s", table)
	if r.Suppress >= 0 {
		fmt.Fprintf(&b, " suppress_prefixlength %d", r.Suppress)
	}
	return b.String()
}

// String renders the plan as stable text for golden tests and NOC review.
func (p *Plan) String() string {
	var b strings.Builder
	for _, r := range p.rules() {
		fmt.Fprintf(&b, "rule %s\n", r)
	}
	for _, l := range p.Links {
		fmt.Fprintf(&b, "uplink %s dev %s mark %#x table %d priority %d weight %d\n", l.Name, l.Interface, l.Mark, l.Table, l.Priority, l.Weight)
		if l.DHCP {
			fmt.Fprintf(&b, "\taddress dhcp, lease kept in %s\n", l.LeaseFile)
			fmt.Fprintf(&b, "\ttable %d: default via the lease's router dev %s\n", l.Table, l.Interface)
		} else {
			fmt.Fprintf(&b, "\ttable %d: default via %s dev %s\n", l.Table, l.Gateway, l.Interface)
		}
		pr := l.Probe
		targets := make([]string, len(pr.Targets))
		for i, t := range pr.Targets {
			targets[i] = t.String()
		}
		fmt.Fprintf(&b, "\tprobe %s %s every %s, timeout %s, quorum %d; offline after %d failed rounds, online after %d good ones; degraded above %s or %d%% loss\n",
			pr.Kind, strings.Join(targets, ","), config.Duration(pr.Interval), config.Duration(pr.Timeout), pr.Quorum,
			pr.DownAfter, pr.UpAfter, config.Duration(pr.DegradedRTT), pr.DegradedLoss)
		backup := slices.ContainsFunc(p.Links, func(o Link) bool { return o.Priority < l.Priority })
		if backup && pr.StandbyInterval > pr.Interval {
			fmt.Fprintf(&b, "\tas a standby backup: probed every %s\n", config.Duration(pr.StandbyInterval))
		}
	}
	if len(p.DNSServers) > 0 {
		servers := make([]string, len(p.DNSServers))
		for i, s := range p.DNSServers {
			servers[i] = s.String()
		}
		fmt.Fprintf(&b, "dns check through each uplink: %s\n", strings.Join(servers, ","))
	}
	fmt.Fprintf(&b, "table %d: default via %s\n", netmark.TableActive, p.policyText())
	return b.String()
}

// policyText says in words which uplinks carry new flows when all are
// healthy, and in which order the others take over.
func (p *Plan) policyText() string {
	var prios []int
	for _, l := range p.Links {
		if !slices.Contains(prios, l.Priority) {
			prios = append(prios, l.Priority)
		}
	}
	slices.Sort(prios)
	var groups []string
	for _, prio := range prios {
		var names, weighted []string
		for _, l := range p.Links {
			if l.Priority == prio {
				names = append(names, l.Name)
				weighted = append(weighted, fmt.Sprintf("%s:%d", l.Name, l.Weight))
			}
		}
		g := names[0]
		if len(names) > 1 {
			g = "balanced " + strings.Join(weighted, " ")
		}
		groups = append(groups, fmt.Sprintf("%s (priority %d)", g, prio))
	}
	if len(groups) == 0 {
		return "nothing (no uplink)"
	}
	return strings.Join(groups, ", else ")
}
