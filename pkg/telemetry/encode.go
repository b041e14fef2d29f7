package telemetry

import (
	"math"
	"net"
	"net/netip"
	"slices"
	"strconv"
	"strings"

	dto "github.com/prometheus/client_model/go"
	"google.golang.org/protobuf/encoding/protowire"
)

// A remote-write payload is a prometheus.WriteRequest (remote.proto of
// Prometheus 2.x, "remote write 1.0"), encoded by hand here rather than
// through prompb, which brings half of Prometheus with it:
//
//	WriteRequest { repeated TimeSeries timeseries = 1; }
//	TimeSeries   { repeated Label labels = 1; repeated Sample samples = 2; }
//	Label        { string name = 1; string value = 2; }
//	Sample       { double value = 1; int64 timestamp = 2; } // ms since the epoch
//
// then compressed with snappy's block format.

// label is one name and value.
type label struct{ name, value string }

// encoder turns gathered families into one WriteRequest, one sample per
// series, every series carrying the box's labels. It keeps its buffers
// between batches.
type encoder struct {
	external []label        // uai, academy, hostname: sorted by name
	private  []netip.Prefix // LAN subnets: a label value inside one is withheld
	drop     func(name string) bool

	labels []label
	ts     []byte
	lb     []byte
	out    []byte
}

// result counts what one encode did.
type result struct {
	series   int
	withheld int // series dropped because a label looked like a client's address
}

// encode returns the WriteRequest of mfs at tms (ms). The returned slice
// is reused by the next call.
func (e *encoder) encode(mfs []*dto.MetricFamily, tms int64) ([]byte, result) {
	var r result
	e.out = e.out[:0]
	for _, mf := range mfs {
		name := mf.GetName()
		if e.drop != nil && e.drop(name) {
			continue
		}
		for _, m := range mf.GetMetric() {
			switch mf.GetType() {
			case dto.MetricType_COUNTER:
				e.series(&r, name, m, "", "", m.GetCounter().GetValue(), tms)
			case dto.MetricType_GAUGE:
				e.series(&r, name, m, "", "", m.GetGauge().GetValue(), tms)
			case dto.MetricType_UNTYPED:
				e.series(&r, name, m, "", "", m.GetUntyped().GetValue(), tms)
			case dto.MetricType_SUMMARY:
				s := m.GetSummary()
				for _, q := range s.GetQuantile() {
					e.series(&r, name, m, "quantile", formatFloat(q.GetQuantile()), q.GetValue(), tms)
				}
				e.series(&r, name+"_sum", m, "", "", s.GetSampleSum(), tms)
				e.series(&r, name+"_count", m, "", "", float64(s.GetSampleCount()), tms)
			case dto.MetricType_HISTOGRAM, dto.MetricType_GAUGE_HISTOGRAM:
				h := m.GetHistogram()
				inf := false
				for _, b := range h.GetBucket() {
					if math.IsInf(b.GetUpperBound(), +1) {
						inf = true
					}
					e.series(&r, name+"_bucket", m, "le", formatFloat(b.GetUpperBound()), float64(b.GetCumulativeCount()), tms)
				}
				if !inf {
					e.series(&r, name+"_bucket", m, "le", "+Inf", float64(h.GetSampleCount()), tms)
				}
				e.series(&r, name+"_sum", m, "", "", h.GetSampleSum(), tms)
				e.series(&r, name+"_count", m, "", "", float64(h.GetSampleCount()), tms)
			}
		}
	}
	return e.out, r
}

func formatFloat(f float64) string {
	switch {
	case math.IsInf(f, +1):
		return "+Inf"
	case math.IsInf(f, -1):
		return "-Inf"
	}
	return strconv.FormatFloat(f, 'g', -1, 64)
}

// series appends one TimeSeries, unless a label value is a LAN client's
// address or a hardware address (no component should ever label a metric
// with one; this is the last line of defence, counted in withheld).
func (e *encoder) series(r *result, name string, m *dto.Metric, extraName, extraValue string, v float64, tms int64) {
	e.labels = append(e.labels[:0], label{"__name__", name})
	for _, lp := range m.GetLabel() {
		if e.private_(lp.GetValue()) {
			r.withheld++
			return
		}
		if e.isExternal(lp.GetName()) {
			continue // the box's own labels win
		}
		e.labels = append(e.labels, label{lp.GetName(), lp.GetValue()})
	}
	if extraName != "" {
		e.labels = append(e.labels, label{extraName, extraValue})
	}
	e.labels = append(e.labels, e.external...)
	slices.SortFunc(e.labels, func(a, b label) int { return strings.Compare(a.name, b.name) })

	e.ts = e.ts[:0]
	for _, l := range e.labels {
		e.lb = e.lb[:0]
		e.lb = protowire.AppendTag(e.lb, 1, protowire.BytesType)
		e.lb = protowire.AppendString(e.lb, l.name)
		e.lb = protowire.AppendTag(e.lb, 2, protowire.BytesType)
		e.lb = protowire.AppendString(e.lb, l.value)
		e.ts = protowire.AppendTag(e.ts, 1, protowire.BytesType)
		e.ts = protowire.AppendBytes(e.ts, e.lb)
	}
	e.lb = e.lb[:0]
	e.lb = protowire.AppendTag(e.lb, 1, protowire.Fixed64Type)
	e.lb = protowire.AppendFixed64(e.lb, math.Float64bits(v))
	e.lb = protowire.AppendTag(e.lb, 2, protowire.VarintType)
	e.lb = protowire.AppendVarint(e.lb, uint64(tms))
	e.ts = protowire.AppendTag(e.ts, 2, protowire.BytesType)
	e.ts = protowire.AppendBytes(e.ts, e.lb)

	e.out = protowire.AppendTag(e.out, 1, protowire.BytesType)
	e.out = protowire.AppendBytes(e.out, e.ts)
	r.series++
}

func (e *encoder) isExternal(name string) bool {
	for _, l := range e.external {
		if l.name == name {
			return true
		}
	}
	return false
}

// private_ reports whether a label value is an address inside a LAN
// subnet or a hardware address.
func (e *encoder) private_(v string) bool {
	if len(v) < 7 || len(v) > 45 {
		return false
	}
	if a, err := netip.ParseAddr(v); err == nil {
		a = a.Unmap()
		for _, p := range e.private {
			if p.Contains(a) {
				return true
			}
		}
		return false
	}
	if strings.Count(v, ":") == 5 || strings.Count(v, "-") == 5 {
		if hw, err := net.ParseMAC(v); err == nil && len(hw) == 6 {
			return true
		}
	}
	return false
}

// decodeWriteRequest is encode's inverse, for tests and the budget
// measurement: every series as its sorted labels and one sample.
func decodeWriteRequest(b []byte) ([]decodedSeries, error) {
	var out []decodedSeries
	for len(b) > 0 {
		num, typ, n := protowire.ConsumeTag(b)
		if n < 0 {
			return nil, protowire.ParseError(n)
		}
		b = b[n:]
		if num != 1 || typ != protowire.BytesType {
			n = protowire.ConsumeFieldValue(num, typ, b)
			if n < 0 {
				return nil, protowire.ParseError(n)
			}
			b = b[n:]
			continue
		}
		ts, n := protowire.ConsumeBytes(b)
		if n < 0 {
			return nil, protowire.ParseError(n)
		}
		b = b[n:]
		s, err := decodeSeries(ts)
		if err != nil {
			return nil, err
		}
		out = append(out, s)
	}
	return out, nil
}

type decodedSeries struct {
	labels map[string]string
	value  float64
	tms    int64
}

func decodeSeries(b []byte) (decodedSeries, error) {
	s := decodedSeries{labels: map[string]string{}}
	for len(b) > 0 {
		num, _, n := protowire.ConsumeTag(b)
		if n < 0 {
			return s, protowire.ParseError(n)
		}
		b = b[n:]
		v, n := protowire.ConsumeBytes(b)
		if n < 0 {
			return s, protowire.ParseError(n)
		}
		b = b[n:]
		fields := map[protowire.Number][]byte{}
		var f64 uint64
		var varint uint64
		for len(v) > 0 {
			fn, ft, m := protowire.ConsumeTag(v)
			if m < 0 {
				return s, protowire.ParseError(m)
			}
			v = v[m:]
			switch ft {
			case protowire.BytesType:
				x, m := protowire.ConsumeBytes(v)
				if m < 0 {
					return s, protowire.ParseError(m)
				}
				fields[fn] = x
				v = v[m:]
			case protowire.Fixed64Type:
				x, m := protowire.ConsumeFixed64(v)
				if m < 0 {
					return s, protowire.ParseError(m)
				}
				f64 = x
				v = v[m:]
			case protowire.VarintType:
				x, m := protowire.ConsumeVarint(v)
				if m < 0 {
					return s, protowire.ParseError(m)
				}
				varint = x
				v = v[m:]
			default:
				m := protowire.ConsumeFieldValue(fn, ft, v)
				if m < 0 {
					return s, protowire.ParseError(m)
				}
				v = v[m:]
			}
		}
		switch num {
		case 1:
			s.labels[string(fields[1])] = string(fields[2])
		case 2:
			s.value = math.Float64frombits(f64)
			s.tms = int64(varint)
		}
	}
	return s, nil
}
