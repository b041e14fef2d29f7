package uplink

import (
	"github.com/prometheus/client_golang/prometheus"
)

// collector exposes the uplinks' state at scrape time: the set of uplinks
// changes with the config, and byte counters are read from the kernel
// then, so nothing is kept twice.
type collector struct {
	m *Manager
}

var (
	descState = prometheus.NewDesc("passerelle_uplink_state",
		"1 for the uplink's current health state (unknown, online, degraded, offline), 0 for the others.", []string{"uplink", "state"}, nil)
	descActive = prometheus.NewDesc("passerelle_uplink_active",
		"1 if the uplink carries new connections (weight share when balanced: its weight).", []string{"uplink"}, nil)
	descCarrier = prometheus.NewDesc("passerelle_uplink_carrier",
		"1 if the uplink's interface has carrier.", []string{"uplink"}, nil)
	descRTT = prometheus.NewDesc("passerelle_uplink_rtt_seconds",
		"Median round-trip time of the recent probe rounds.", []string{"uplink"}, nil)
	descLoss = prometheus.NewDesc("passerelle_uplink_probe_loss_ratio",
		"Share of probes lost over the recent rounds (while the link is up).", []string{"uplink"}, nil)
	descTransitions = prometheus.NewDesc("passerelle_uplink_transitions_total",
		"Health state changes of the uplink.", []string{"uplink"}, nil)
	descProbes = prometheus.NewDesc("passerelle_uplink_probes_total",
		"Probes sent through the uplink, by result (answered, lost).", []string{"uplink", "result"}, nil)
	descBytes = prometheus.NewDesc("passerelle_uplink_bytes_total",
		"Bytes through the uplink's interface, by direction (rx, tx).", []string{"uplink", "direction"}, nil)
	descLeaseExpiry = prometheus.NewDesc("passerelle_uplink_dhcp_lease_expiry_timestamp_seconds",
		"When the DHCP lease of the uplink ends unless renewed (Unix time).", []string{"uplink"}, nil)
	descLease = prometheus.NewDesc("passerelle_uplink_dhcp_lease_info",
		"The DHCP lease in effect on the uplink (value 1).", []string{"uplink", "address", "gateway", "server"}, nil)
	descHold = prometheus.NewDesc("passerelle_uplink_flap_holddown_seconds",
		"How long the uplink must stay good before it carries new connections again, because it flapped; 0 when not damped.", []string{"uplink"}, nil)
	descSilent = prometheus.NewDesc("passerelle_uplink_probe_targets_silent",
		"Probe targets of the uplink that have not answered for 10 s while others answer (left out of the loss figure).", []string{"uplink"}, nil)
	descStandby = prometheus.NewDesc("passerelle_uplink_standby",
		"1 while the uplink is a standby backup probed every standby_interval.", []string{"uplink"}, nil)
	descSwitches = prometheus.NewDesc("passerelle_uplink_switches_total",
		"Changes of the uplinks carrying new connections (failovers, returns, config changes).", nil, nil)
)

func (c *collector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{descState, descActive, descCarrier, descRTT, descLoss, descTransitions, descProbes, descBytes, descLeaseExpiry, descLease, descHold, descSilent, descStandby, descSwitches} {
		ch <- d
	}
}

func (c *collector) Collect(ch chan<- prometheus.Metric) {
	type snap struct {
		name, ifname     string
		state            State
		active           float64
		carrier          bool
		rtt, loss        float64
		transitions      int
		sent, answered   uint64
		lease            bool
		addr, gw, server string
		expiry           float64
		hold             float64
		silent           int
		standby          bool
	}
	m := c.m
	m.mu.Lock()
	var snaps []snap
	if m.plan != nil {
		for _, l := range m.plan.Links {
			lk := m.links[l.Name]
			s := snap{
				name: l.Name, ifname: l.Interface, state: lk.tr.state, carrier: lk.tr.carrier,
				rtt: lk.tr.medianRTT().Seconds(), transitions: lk.tr.transitions,
				sent: lk.sent, answered: lk.answered,
				hold: lk.tr.hold.Seconds(), silent: len(lk.tr.silentTargets()), standby: m.standby(lk),
			}
			s.loss, _ = lk.tr.loss()
			for _, mb := range m.sel.Members {
				if mb.Index == l.Index {
					s.active = 1
					if len(m.sel.Members) > 1 {
						s.active = float64(mb.Weight)
					}
				}
			}
			if lk.lease != nil {
				s.lease = true
				s.addr, s.server = lk.lease.Address.String(), lk.lease.Server.String()
				if lk.lease.Gateway.IsValid() {
					s.gw = lk.lease.Gateway.String()
				}
				s.expiry = float64(lk.lease.Expiry().Unix())
			}
			snaps = append(snaps, s)
		}
	}
	switches := m.switches
	m.mu.Unlock()

	gauge := func(d *prometheus.Desc, v float64, labels ...string) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.GaugeValue, v, labels...)
	}
	counter := func(d *prometheus.Desc, v float64, labels ...string) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.CounterValue, v, labels...)
	}
	b2f := func(b bool) float64 {
		if b {
			return 1
		}
		return 0
	}
	for _, s := range snaps {
		for st := StateUnknown; st <= StateOffline; st++ {
			gauge(descState, b2f(s.state == st), s.name, st.String())
		}
		gauge(descActive, s.active, s.name)
		gauge(descCarrier, b2f(s.carrier), s.name)
		gauge(descRTT, s.rtt, s.name)
		gauge(descLoss, s.loss, s.name)
		counter(descTransitions, float64(s.transitions), s.name)
		gauge(descHold, s.hold, s.name)
		gauge(descSilent, float64(s.silent), s.name)
		gauge(descStandby, b2f(s.standby), s.name)
		counter(descProbes, float64(s.answered), s.name, "answered")
		counter(descProbes, float64(s.sent-s.answered), s.name, "lost")
		if rx, tx, ok := m.sys.linkStats(s.ifname); ok {
			counter(descBytes, float64(rx), s.name, "rx")
			counter(descBytes, float64(tx), s.name, "tx")
		}
		if s.lease {
			gauge(descLeaseExpiry, s.expiry, s.name)
			gauge(descLease, 1, s.name, s.addr, s.gw, s.server)
		}
	}
	counter(descSwitches, float64(switches))
}
