package uplink

import (
	"reflect"
	"testing"
)

func TestChoose(t *testing.T) {
	renater := candidate{Index: 0, Name: "renater", Priority: 1, Weight: 1, State: StateOnline, Carrier: true, Ready: true}
	backup := candidate{Index: 1, Name: "backup", Priority: 2, Weight: 1, State: StateOnline, Carrier: true, Ready: true}
	fibre := candidate{Index: 2, Name: "fibre", Priority: 1, Weight: 3, State: StateOnline, Carrier: true, Ready: true}
	with := func(c candidate, f func(*candidate)) candidate { f(&c); return c }
	offline := func(c *candidate) { c.State = StateOffline }
	tests := []struct {
		name  string
		cands []candidate
		want  selection
	}{
		{"active/backup: the preferred", []candidate{renater, backup}, selection{Members: []member{{0, 1}}}},
		{"unknown counts as up", []candidate{with(renater, func(c *candidate) { c.State = StateUnknown }), backup}, selection{Members: []member{{0, 1}}}},
		{"failover", []candidate{with(renater, offline), backup}, selection{Members: []member{{1, 1}}}},
		{"no carrier", []candidate{with(renater, func(c *candidate) { c.Carrier = false }), backup}, selection{Members: []member{{1, 1}}}},
		{"no gateway yet (dhcp)", []candidate{with(renater, func(c *candidate) { c.Ready = false }), backup}, selection{Members: []member{{1, 1}}}},
		{"degraded loses to an online backup", []candidate{with(renater, func(c *candidate) { c.State = StateDegraded }), backup}, selection{Members: []member{{1, 1}}}},
		{"degraded beats offline", []candidate{with(renater, func(c *candidate) { c.State = StateDegraded }), with(backup, offline)}, selection{Members: []member{{0, 1}}}},
		{"equal priority: weighted", []candidate{renater, backup, fibre}, selection{Members: []member{{0, 1}, {2, 3}}}},
		{"equal priority, one down", []candidate{with(renater, offline), backup, fibre}, selection{Members: []member{{2, 3}}}},
		{"all offline: fallback to the preferred with carrier", []candidate{with(with(renater, offline), func(c *candidate) { c.Carrier = false }), with(backup, offline)}, selection{Members: []member{{1, 1}}, Fallback: true}},
		{"all offline, no carrier: preferred with a gateway", []candidate{with(with(renater, offline), func(c *candidate) { c.Carrier = false }), with(with(backup, offline), func(c *candidate) { c.Carrier = false })}, selection{Members: []member{{0, 1}}, Fallback: true}},
		{"all offline: the one answering again first", []candidate{with(renater, offline), with(with(backup, offline), func(c *candidate) { c.Answering = true })}, selection{Members: []member{{1, 1}}, Fallback: true}},
		{"nothing ready", []candidate{with(renater, func(c *candidate) { c.Ready = false })}, selection{Fallback: true}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := choose(tt.cands); !reflect.DeepEqual(got, tt.want) {
				t.Errorf("choose = %+v, want %+v", got, tt.want)
			}
		})
	}
}

func TestSelectionDescribe(t *testing.T) {
	names := map[int]string{0: "renater", 1: "backup", 2: "fibre"}
	if got := (selection{Members: []member{{0, 3}, {2, 1}}}).describe(names); got != "renater (weight 3) and fibre (weight 1)" {
		t.Errorf("describe = %q", got)
	}
	if got := (selection{Members: []member{{1, 1}}}).describe(names); got != "backup" {
		t.Errorf("describe = %q", got)
	}
}

func TestEventLogIsBounded(t *testing.T) {
	l := newEventLog(3)
	for i := range 5 {
		l.add(Event{Message: string(rune('a' + i))})
	}
	got := l.list()
	if len(got) != 3 || got[0].Message != "c" || got[2].Message != "e" {
		t.Errorf("events = %+v, want c, d, e", got)
	}
}
