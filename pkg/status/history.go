package status

import (
	"bytes"
	"fmt"
	"html"
	"sync"
	"time"
)

// history keeps the uplinks' latency and loss every minute for the chart
// of the uplinks page (24 hours), in memory: 1,440 samples per uplink.
type history struct {
	mu      sync.Mutex
	size    int
	samples map[string][]sample
	order   []string
}

type sample struct {
	at   time.Time
	rtt  time.Duration
	loss float64
	up   bool
}

func newHistory(size int) *history { return &history{size: size, samples: map[string][]sample{}} }

func (h *history) add(now time.Time, ups []Uplink) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.order = h.order[:0]
	for _, u := range ups {
		h.order = append(h.order, u.Name)
		s := append(h.samples[u.Name], sample{now, u.RTT, u.Loss, u.State == "online" || u.State == "degraded"})
		if len(s) > h.size {
			s = s[len(s)-h.size:]
		}
		h.samples[u.Name] = s
	}
}

var chartColours = []string{"#005a9c", "#b34700", "#2e7d32", "#6a1b9a"}

// svg draws latency (lines) and loss (dotted lines) of every uplink over
// the kept period: no script, no external asset.
func (h *history) svg() []byte {
	h.mu.Lock()
	defer h.mu.Unlock()
	const W, H, pad = 600.0, 220.0, 30.0
	maxRTT := 50 * time.Millisecond
	for _, name := range h.order {
		for _, s := range h.samples[name] {
			maxRTT = max(maxRTT, s.rtt)
		}
	}
	var b bytes.Buffer
	fmt.Fprintf(&b, `<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 %g %g" role="img" aria-label="latence et pertes des liens"><rect width="100%%" height="100%%" fill="#fff"/>`, W, H)
	fmt.Fprintf(&b, `<line x1="%g" y1="%g" x2="%g" y2="%g" stroke="#333"/><text x="2" y="%g" font-size="10">%d ms</text><text x="2" y="%g" font-size="10">0</text>`, pad, H-pad, W-5, H-pad, pad, maxRTT.Milliseconds(), H-pad)
	for i, name := range h.order {
		ss := h.samples[name]
		col := chartColours[i%len(chartColours)]
		var lat, loss bytes.Buffer
		for j, s := range ss {
			x := pad + (W-pad-5)*float64(j+h.size-len(ss))/float64(max(h.size-1, 1))
			y := H - pad - (H-2*pad)*float64(s.rtt)/float64(maxRTT)
			fmt.Fprintf(&lat, "%.1f,%.1f ", x, y)
			fmt.Fprintf(&loss, "%.1f,%.1f ", x, H-pad-(H-2*pad)*s.loss)
		}
		fmt.Fprintf(&b, `<polyline fill="none" stroke="%s" stroke-width="2" points="%s"/>`, col, lat.String())
		fmt.Fprintf(&b, `<polyline fill="none" stroke="%s" stroke-dasharray="3 3" points="%s"/>`, col, loss.String())
		fmt.Fprintf(&b, `<text x="%g" y="%g" font-size="12" fill="%s">%s (— latence, ··· pertes)</text>`, pad+10, 14+14*float64(i), col, html.EscapeString(name))
	}
	b.WriteString(`</svg>`)
	return b.Bytes()
}
