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
}

// Push streams the bundle to t's POST /v1/update and says what the box
// did: installed, rejected or failed and why, or unreachable.
func (p Pusher) Push(ctx context.Context, c *http.Client, t manage.Target) manage.Outcome {
	start := time.Now()
	out := manage.Outcome{UAI: t.UAI}
	fail := func(err error) manage.Outcome {
		out.Outcome, out.Detail, out.Took = manage.OutcomeUnreachable, err.Error(), time.Since(start)
		return out
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
	}
	return out
}

// Failed says whether an outcome counts against an update rollout: every
// one but installed, skipped, and a box that already runs the version
// (so a stopped rollout can simply be run again).
func (Pusher) Failed(o manage.Outcome) bool {
	switch {
	case o.Outcome == OutcomeInstalled, o.Outcome == manage.OutcomeSkipped:
		return false
	case o.Outcome == OutcomeRejected && o.Reason == string(ReasonSameVersion):
		return false
	}
	return true
}
