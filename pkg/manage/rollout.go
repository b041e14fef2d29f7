package manage

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"math"
	"net/http"
	"sort"
	"strings"
	"sync"
	"time"
)

// The NOC's side of the push: a rollout of signed bundles to many boxes
// in waves (passerellectl push, the fleet simulator).

// Target is one box of a rollout: its management API's base URL and its
// bundle.
type Target struct {
	UAI    string
	URL    string // e.g. http://100.64.0.7:8443
	Bundle []byte
}

// Outcome is what one box did with its bundle.
type Outcome struct {
	UAI     string        `json:"uai"`
	Wave    int           `json:"wave"` // 0: canary
	Outcome string        `json:"outcome"`
	Reason  string        `json:"reason,omitempty"`
	Detail  string        `json:"detail,omitempty"`
	Gen     int           `json:"gen,omitempty"`
	Took    time.Duration `json:"took"`
}

// Outcome values besides the box's own (committed, rolled-back,
// rejected): the NOC could not talk to the box, or did not try.
const (
	OutcomeUnreachable = "unreachable"
	OutcomeSkipped     = "skipped" // the rollout stopped before its wave
)

// Failed reports whether the outcome counts against the rollout.
func (o Outcome) Failed() bool {
	return o.Outcome != OutcomeCommitted && o.Outcome != OutcomeSkipped
}

// RolloutOptions shape a rollout.
type RolloutOptions struct {
	// Waves are cumulative shares of the fleet, the first being the
	// canary: 0.01, 0.1, 0.5, 1 pushes to 1 %, then up to 10 %, ...
	Waves []float64
	// MaxFailure stops the rollout after a wave when the share of failed
	// boxes so far is above it (0.05: 5 %).
	MaxFailure float64
	Parallel   int // boxes pushed to at once; default 64
	Client     *http.Client
	// Progress, if set, is called after each box.
	Progress func(done, total, failed int)
	// Push delivers one target and says what the box did; default
	// PushOne (a configuration bundle, waiting for the gate's verdict).
	// Firmware updates (pkg/update) push their own way in the same waves.
	Push func(ctx context.Context, c *http.Client, t Target) Outcome
	// Failed says whether an outcome counts against the rollout; default
	// Outcome.Failed.
	Failed func(Outcome) bool
}

// Report is a rollout's outcome.
type Report struct {
	Outcomes    []Outcome     `json:"outcomes"` // in target order
	Waves       []int         `json:"waves"`    // boxes per wave, as planned
	Stopped     bool          `json:"stopped"`
	StoppedWave int           `json:"stopped_after_wave,omitempty"`
	Pushed      int           `json:"pushed"`
	Failed      int           `json:"failed"`
	Took        time.Duration `json:"took"`
}

// DefaultWaves: a 1 % canary, then 10 %, 50 % and everyone.
var DefaultWaves = []float64{0.01, 0.1, 0.5, 1}

// Rollout pushes each target's bundle and waits for its final result,
// wave by wave, and stops when the failure rate passes MaxFailure.
func Rollout(ctx context.Context, targets []Target, o RolloutOptions) Report {
	start := time.Now()
	if len(o.Waves) == 0 {
		o.Waves = DefaultWaves
	}
	if o.Parallel <= 0 {
		o.Parallel = 64
	}
	if o.Client == nil {
		o.Client = &http.Client{Timeout: 2 * time.Hour}
	}
	if o.Push == nil {
		o.Push = PushOne
	}
	if o.Failed == nil {
		o.Failed = Outcome.Failed
	}
	rep := Report{Outcomes: make([]Outcome, len(targets))}
	for i, t := range targets {
		rep.Outcomes[i] = Outcome{UAI: t.UAI, Outcome: OutcomeSkipped}
	}
	from := 0
	var mu sync.Mutex
	for w, share := range o.Waves {
		to := min(len(targets), max(from+1, int(math.Ceil(share*float64(len(targets))))))
		if w == len(o.Waves)-1 {
			to = len(targets)
		}
		if to <= from {
			continue
		}
		rep.Waves = append(rep.Waves, to-from)
		sem := make(chan struct{}, o.Parallel)
		var wg sync.WaitGroup
		for i := from; i < to; i++ {
			sem <- struct{}{}
			wg.Add(1)
			go func(i int) {
				defer wg.Done()
				defer func() { <-sem }()
				out := o.Push(ctx, o.Client, targets[i])
				out.Wave = w
				mu.Lock()
				rep.Outcomes[i] = out
				rep.Pushed++
				if o.Failed(out) {
					rep.Failed++
				}
				if o.Progress != nil {
					o.Progress(rep.Pushed, len(targets), rep.Failed)
				}
				mu.Unlock()
			}(i)
		}
		wg.Wait()
		from = to
		if float64(rep.Failed) > o.MaxFailure*float64(rep.Pushed) && from < len(targets) {
			rep.Stopped, rep.StoppedWave = true, w
			break
		}
		if ctx.Err() != nil {
			rep.Stopped, rep.StoppedWave = true, w
			break
		}
	}
	rep.Took = time.Since(start)
	return rep
}

// PushOne posts a bundle to one box and waits for its final result.
func PushOne(ctx context.Context, c *http.Client, t Target) Outcome {
	start := time.Now()
	out := Outcome{UAI: t.UAI}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, t.URL+"/v1/bundles?wait=1", bytes.NewReader(t.Bundle))
	if err != nil {
		out.Outcome, out.Detail = OutcomeUnreachable, err.Error()
		return out
	}
	req.Header.Set("Content-Type", "application/json")
	resp, err := c.Do(req)
	if err != nil {
		out.Outcome, out.Detail, out.Took = OutcomeUnreachable, err.Error(), time.Since(start)
		return out
	}
	defer resp.Body.Close()
	var r Result
	body, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if err := json.Unmarshal(body, &r); err != nil || r.Outcome == "" {
		out.Outcome, out.Detail = OutcomeUnreachable, fmt.Sprintf("%s: %s", resp.Status, bytes.TrimSpace(body))
	} else {
		out.Outcome, out.Reason, out.Detail, out.Gen = r.Outcome, r.Reason, r.Detail, r.Gen
	}
	out.Took = time.Since(start)
	return out
}

// BoxStatus is one row of the fleet's status table.
type BoxStatus struct {
	UAI string `json:"uai"`
	Status
	Err string `json:"error,omitempty"`
}

// FleetStatus asks every box for its status, parallel at a time.
func FleetStatus(ctx context.Context, c *http.Client, targets []Target, parallel int) []BoxStatus {
	if parallel <= 0 {
		parallel = 64
	}
	if c == nil {
		c = &http.Client{Timeout: 30 * time.Second}
	}
	out := make([]BoxStatus, len(targets))
	sem := make(chan struct{}, parallel)
	var wg sync.WaitGroup
	for i, t := range targets {
		sem <- struct{}{}
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer func() { <-sem }()
			out[i] = BoxStatus{UAI: t.UAI}
			req, _ := http.NewRequestWithContext(ctx, http.MethodGet, t.URL+"/v1/status", nil)
			resp, err := c.Do(req)
			if err != nil {
				out[i].Err = err.Error()
				return
			}
			defer resp.Body.Close()
			if err := json.NewDecoder(resp.Body).Decode(&out[i].Status); err != nil {
				out[i].Err = err.Error()
			}
		}()
	}
	wg.Wait()
	return out
}

// Summary counts a report's outcomes by outcome and reason.
func (r Report) Summary() []string {
	n := map[string]int{}
	for _, o := range r.Outcomes {
		k := o.Outcome
		if o.Reason != "" {
			k += " (" + o.Reason + ")"
		}
		n[k]++
	}
	var out []string
	for k, v := range n {
		out = append(out, fmt.Sprintf("%s: %d", k, v))
	}
	sort.Strings(out)
	return out
}

// StatusTable renders a fleet status as passerellectl status prints it:
// one line per box with its version, generation, pending generation, the
// last bundle's outcome and why.
func StatusTable(rows []BoxStatus) string {
	var sb strings.Builder
	fmt.Fprintf(&sb, "%-9s %10s %4s %-8s %-12s %-8s %s\n", "UAI", "VERSION", "GEN", "PENDING", "LAST", "WARNINGS", "WHY")
	for _, r := range rows {
		pend, last, why := "-", "-", r.Err
		if r.Pending != nil {
			pend = fmt.Sprintf("gen %d", r.Pending.Gen)
		}
		if r.Last != nil {
			last = r.Last.Outcome
			if why == "" {
				why = strings.TrimSpace(r.Last.Reason + ": " + r.Last.Detail)
				why = strings.Trim(why, ": ")
			}
		}
		if r.Err != "" {
			last = OutcomeUnreachable
		}
		fmt.Fprintf(&sb, "%-9s %10d %4d %-8s %-12s %8d %s\n", r.UAI, r.Version, r.Generation, pend, last, len(r.Health), why)
	}
	return sb.String()
}
