package update

import (
	"encoding/json"
	"net/http"
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
}

// Status is GET /v1/update.
type Status struct {
	Running   string   `json:"running"` // firmware version
	Board     string   `json:"board"`
	CanReboot bool     `json:"can_reboot"`
	Last      *Result  `json:"last,omitempty"`
	Results   []Result `json:"results,omitempty"` // oldest first
}

func (a *API) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	switch r.Method {
	case http.MethodPost:
		a.post(w, r)
	case http.MethodGet:
		t, _ := a.Trust()
		st := Status{Running: t.Running, Board: t.Board, CanReboot: a.U.CanReboot()}
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
		res = a.U.Handle(r.Context(), r.Body, t, "push", r.URL.Query().Get("reboot") != "")
	}
	code := http.StatusOK
	switch {
	case res.Outcome == OutcomeFailed:
		code = http.StatusInternalServerError
	case res.Reason == string(ReasonBusy):
		code = http.StatusConflict
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

func writeJSON(w http.ResponseWriter, code int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	_ = json.NewEncoder(w).Encode(v)
}
