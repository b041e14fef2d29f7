package update

import (
	"encoding/json"
	"io"
	"net/http"

	"passerelle/pkg/manage"
)

// API serves the updates on the management API (the same listener and
// the same authorisation as the configuration push):
//
//	POST /v1/update[?reboot=1]  an update bundle, streamed into the inactive slot → Result
//	GET  /v1/update             Status
type API struct {
	U *Updater
	// Trust says what the box checks a manifest against now (the running
	// configuration's keys and UAI, the board, the running version). An
	// error means there is no running configuration yet; the board and
	// the running version are set even then.
	Trust func() (Trust, error)
	// Boot identifies this boot of the box (the kernel's boot_id), so the
	// NOC can tell that it restarted; nil: unknown.
	Boot func() string
	// Slots says which slot runs and what became of the last trial (the
	// A/B slots package); nil: no slots to tell about.
	Slots func() *SlotState
	// Pace ends an update whose pusher sends nothing for Pace.Stall, or
	// sends slower than Pace.MinRate (truncated), so a connection that
	// hangs or crawls cannot keep the slot busy for ever; zero fields
	// are the defaults (manage.DefaultStall...).
	Pace manage.Pace
}

// Status is GET /v1/update.
type Status struct {
	Running   string     `json:"running"` // firmware version
	Board     string     `json:"board"`
	Boot      string     `json:"boot,omitempty"`
	CanReboot bool       `json:"can_reboot"`
	Slots     *SlotState `json:"slots,omitempty"`
	Last      *Result    `json:"last,omitempty"`
	Results   []Result   `json:"results,omitempty"` // oldest first
}

// SlotState is the A/B slots as the NOC sees them after an update's
// reboot: the slot running, whether its trial is still undecided (the
// health gate runs), and the last trial's outcome.
type SlotState struct {
	Booted string `json:"booted"`
	Trying bool   `json:"trying"`
	// The last trial: its slot, version, outcome (committed, abandoned)
	// and why.
	LastSlot    string `json:"last_slot,omitempty"`
	LastVersion string `json:"last_version,omitempty"`
	LastOutcome string `json:"last_outcome,omitempty"`
	LastDetail  string `json:"last_detail,omitempty"`
}

func (a *API) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	switch r.Method {
	case http.MethodPost:
		a.post(w, r)
	case http.MethodGet:
		t, _ := a.Trust()
		st := Status{Running: t.Running, Board: t.Board, CanReboot: a.U.CanReboot()}
		if a.Boot != nil {
			st.Boot = a.Boot()
		}
		if a.Slots != nil {
			st.Slots = a.Slots()
		}
		st.Results, _ = a.U.Results()
		if n := len(st.Results); n > 0 {
			st.Last = &st.Results[n-1]
		}
		writeJSON(w, http.StatusOK, st)
	default:
		w.Header().Set("Allow", "GET, POST")
		http.Error(w, "method not allowed", http.StatusMethodNotAllowed)
	}
}

func (a *API) post(w http.ResponseWriter, r *http.Request) {
	var res Result
	t, err := a.Trust()
	if err != nil {
		res = a.U.Reject("push", t, ReasonBusy, err.Error())
	} else {
		// With its declared length, a body that is not exactly the
		// bundle its manifest describes is refused before the slot is
		// written.
		body := declared{Reader: a.Pace.Reader(w, r.Body), size: r.ContentLength}
		res = a.U.Handle(r.Context(), body, t, "push", r.URL.Query().Get("reboot") != "")
	}
	code := http.StatusOK
	switch {
	case res.Outcome == OutcomeFailed:
		code = http.StatusInternalServerError
	case res.Reason == string(ReasonBusy):
		code = http.StatusConflict
	case res.Reason == string(ReasonTooLarge):
		code = http.StatusRequestEntityTooLarge
	case res.Outcome == OutcomeRejected:
		code = http.StatusUnprocessableEntity
	}
	// A refusal answers before the body is read whole: the pusher sees
	// the reason rather than a broken pipe.
	if code != http.StatusOK {
		w.Header().Set("Connection", "close")
	}
	writeJSON(w, code, res)
}

// declared is a request's body and its declared length (Content-Length;
// -1: unknown), which Install checks against the manifest.
type declared struct {
	io.Reader
	size int64
}

func writeJSON(w http.ResponseWriter, code int, v any) {
	manage.Answer(w)
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	_ = json.NewEncoder(w).Encode(v)
}
