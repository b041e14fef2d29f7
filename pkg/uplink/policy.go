package uplink

import (
	"fmt"
	"slices"
	"strings"
)

// candidate is what the policy knows of one uplink.
type candidate struct {
	Index    int
	Name     string
	Priority int
	Weight   int
	State    State
	Carrier  bool
	Ready    bool // has a gateway (a dhcp uplink without lease has none)
	// Answering: passed its last probe round (an offline link on its way
	// back); preferred as a fallback when no link is usable.
	Answering bool
}

// member is an uplink chosen to carry new flows, with its share.
type member struct {
	Index  int
	Weight int
}

// selection is the content of TableActive: one member (active/backup) or
// several (weighted balancing). Empty means no uplink can carry anything.
type selection struct {
	Members []member
	// Fallback: no uplink is healthy; these are used in case the probes
	// are wrong (their targets filtered, say), until one comes back.
	Fallback bool
}

func (s selection) equal(o selection) bool {
	return s.Fallback == o.Fallback && slices.Equal(s.Members, o.Members)
}

func (s selection) has(index int) bool {
	return slices.ContainsFunc(s.Members, func(m member) bool { return m.Index == index })
}

// rank orders states for selection: online (and not yet probed) links
// before degraded ones; offline links are not candidates.
func rank(s State) int {
	if s == StateDegraded {
		return 1
	}
	return 0
}

// choose picks the uplinks for new flows: among links with carrier and a
// gateway that are not offline, the best-ranked state, then the lowest
// priority number; equal ones share new flows by weight. When none is
// usable, the lowest-priority links that answer their probes again, or
// that have carrier (or, failing that, a gateway) are kept as a fallback: probing goes on on every link, and
// whichever comes back first is then chosen.
func choose(cands []candidate) selection {
	best := func(ok func(c candidate) bool, key func(c candidate) [2]int) []member {
		var out []member
		var bestKey [2]int
		for _, c := range cands {
			if !ok(c) {
				continue
			}
			k := key(c)
			switch {
			case out == nil || k[0] < bestKey[0] || (k[0] == bestKey[0] && k[1] < bestKey[1]):
				out, bestKey = []member{{c.Index, c.Weight}}, k
			case k == bestKey:
				out = append(out, member{c.Index, c.Weight})
			}
		}
		return out
	}
	healthy := best(func(c candidate) bool { return c.Ready && c.Carrier && c.State.usable() },
		func(c candidate) [2]int { return [2]int{rank(c.State), c.Priority} })
	if healthy != nil {
		return selection{Members: healthy}
	}
	byPrio := func(c candidate) [2]int { return [2]int{0, c.Priority} }
	// A link that answers again carries traffic before the others while
	// it waits for up_after rounds (issue 13: after a total outage, the
	// first link back is used at its first good round).
	if m := best(func(c candidate) bool { return c.Ready && c.Carrier && c.Answering }, byPrio); m != nil {
		return selection{Members: m, Fallback: true}
	}
	if m := best(func(c candidate) bool { return c.Ready && c.Carrier }, byPrio); m != nil {
		return selection{Members: m, Fallback: true}
	}
	if m := best(func(c candidate) bool { return c.Ready }, byPrio); m != nil {
		return selection{Members: m, Fallback: true}
	}
	return selection{Fallback: true}
}

// describe names a selection for events and logs: "renater",
// "renater (weight 3) and fibre2 (weight 1)".
func (s selection) describe(names map[int]string) string {
	if len(s.Members) == 0 {
		return "no uplink"
	}
	if len(s.Members) == 1 {
		return names[s.Members[0].Index]
	}
	parts := make([]string, len(s.Members))
	for i, m := range s.Members {
		parts[i] = fmt.Sprintf("%s (weight %d)", names[m.Index], m.Weight)
	}
	return strings.Join(parts[:len(parts)-1], ", ") + " and " + parts[len(parts)-1]
}
