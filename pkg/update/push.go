package update

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"time"

	"passerelle/pkg/manage"
)

// The NOC's side: an update bundle file pushed to boxes, one at a time or
// in the configuration push's waves (manage.Rollout).

// Pusher pushes one bundle file; its Push and Failed are a rollout's.
type Pusher struct {
	Path   string // the bundle file (passerellectl update sign)
	Reboot bool   // ask each box to restart into the new slot
	// Wait, with Reboot, follows each box through its restart for at
	// most this long: the outcome is then committed (it runs the new
	// version and its health gate passed) or reverted (it is back on its
	// previous slot, and why), so a canary that does not boot stops the
	// rollout. 0: the install's answer is the outcome.
	Wait time.Duration
	// Every is the time between polls while waiting; default 5 s.
	Every time.Duration
}

// Outcomes of a Pusher that waited through the restart.
const (
	OutcomeCommitted = "committed" // the new slot runs and its gate passed
	OutcomeReverted  = "reverted"  // the box is back on its previous slot
)

// Push streams the bundle to t's POST /v1/update and says what the box
// did: installed, rejected or failed and why, or unreachable.
func (p Pusher) Push(ctx context.Context, c *http.Client, t manage.Target) manage.Outcome {
	start := time.Now()
	out := manage.Outcome{UAI: t.UAI}
	fail := func(err error) manage.Outcome {
		out.Outcome, out.Detail, out.Took = manage.OutcomeUnreachable, err.Error(), time.Since(start)
		return out
	}
	var before Status
	if p.Reboot && p.Wait > 0 {
		// Which boot answers now, to know when another one does.
		var err error
		before, err = getStatus(ctx, c, t.URL)
		if err == nil && before.Boot == "" {
			err = fmt.Errorf("the box does not say which boot it runs; it cannot be followed through its restart")
		}
		if err != nil {
			return fail(err)
		}
	}
	f, err := os.Open(p.Path)
	if err != nil {
		return fail(err)
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return fail(err)
	}
	url := t.URL + "/v1/update"
	if p.Reboot {
		url += "?reboot=1"
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, url, f)
	if err != nil {
		return fail(err)
	}
	req.ContentLength = st.Size()
	req.Header.Set("Content-Type", "application/octet-stream")
	resp, err := c.Do(req)
	if err != nil {
		return fail(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	var r Result
	if err := json.Unmarshal(body, &r); err != nil || r.Outcome == "" {
		return fail(fmt.Errorf("%s: %s", resp.Status, bytes.TrimSpace(body)))
	}
	out.Outcome, out.Reason, out.Detail, out.Took = r.Outcome, r.Reason, r.Detail, time.Since(start)
	if r.Outcome == OutcomeInstalled {
		out.Detail = fmt.Sprintf("version %s in slot %s", r.Version, r.Slot)
		if r.Reboot != "" {
			out.Detail += "; " + r.Reboot
		}
		if p.Wait > 0 && r.Rebooting {
			out = p.follow(ctx, c, t, before, r)
			out.Took = time.Since(start)
		}
	}
	return out
}

// getStatus reads a box's GET /v1/update.
func getStatus(ctx context.Context, c *http.Client, url string) (Status, error) {
	var st Status
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url+"/v1/update", nil)
	if err != nil {
		return st, err
	}
	resp, err := c.Do(req)
	if err != nil {
		return st, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return st, fmt.Errorf("GET /v1/update: %s", resp.Status)
	}
	return st, json.NewDecoder(io.LimitReader(resp.Body, 1<<20)).Decode(&st)
}

// follow polls a box that restarts into r's slot until it answers from
// another boot with its trial decided, or p.Wait ends.
func (p Pusher) follow(ctx context.Context, c *http.Client, t manage.Target, before Status, r Result) manage.Outcome {
	out := manage.Outcome{UAI: t.UAI}
	every := p.Every
	if every <= 0 {
		every = 5 * time.Second
	}
	ctx, cancel := context.WithTimeout(ctx, p.Wait)
	defer cancel()
	last := "it did not answer"
	for {
		select {
		case <-ctx.Done():
			out.Outcome = manage.OutcomeUnreachable
			out.Detail = fmt.Sprintf("version %s installed in slot %s; no verdict %s after the restart: %s", r.Version, r.Slot, p.Wait, last)
			return out
		case <-time.After(every):
		}
		pc, pcancel := context.WithTimeout(ctx, max(every, 5*time.Second))
		st, err := getStatus(pc, c, t.URL)
		pcancel()
		switch {
		case err != nil:
			last = "it did not answer: " + err.Error()
			continue
		case st.Boot == "" || st.Boot == before.Boot:
			last = "it has not restarted yet"
			continue
		case st.Slots != nil && st.Slots.Trying:
			last = "its health gate has not decided yet"
			continue
		}
		if st.Running == r.Version && (st.Slots == nil || st.Slots.Booted == r.Slot) {
			out.Outcome, out.Detail = OutcomeCommitted, fmt.Sprintf("version %s runs from slot %s, its health gate passed", r.Version, r.Slot)
			return out
		}
		out.Outcome = OutcomeReverted
		out.Detail = fmt.Sprintf("the box runs version %s again", st.Running)
		if s := st.Slots; s != nil && s.LastOutcome != "" && s.LastSlot == r.Slot {
			out.Reason = s.LastOutcome
			out.Detail += fmt.Sprintf(": slot %s (version %s) %s: %s", s.LastSlot, s.LastVersion, s.LastOutcome, s.LastDetail)
		}
		return out
	}
}

// Failed says whether an outcome counts against an update rollout: every
// one but installed, skipped, and a box that already runs the version
// (so a stopped rollout can simply be run again).
func (Pusher) Failed(o manage.Outcome) bool {
	switch {
	case o.Outcome == OutcomeInstalled, o.Outcome == OutcomeCommitted, o.Outcome == manage.OutcomeSkipped:
		return false
	case o.Outcome == OutcomeRejected && o.Reason == string(ReasonSameVersion):
		return false
	}
	return true
}
