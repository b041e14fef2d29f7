package manage

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"strconv"
	"time"
)

// Authorize says who is calling the management API, or refuses the call.
// cmd/passerelle asks tailscaled (LocalAPI WhoIs) and checks the caller's
// tailnet tags; the bundle's signature is checked in any case.
type Authorize func(r *http.Request) (who string, err error)

// API is the management API (push), served on the tunnel address only:
//
//	POST /v1/bundles[?wait=1]  a bundle; the Result (final one with wait)
//	GET  /v1/status            Status
//	GET  /v1/generations       the kept generations, without their config
//	GET  /v1/generations/N     one generation with its config
//	GET  /v1/results           the kept results
//	POST /v1/update            a firmware update, when Update is set (pkg/update)
//	POST /v1/cert              a NOC-signed TLS certificate, when Cert is set
type API struct {
	M    *Manager
	Auth Authorize // nil: every caller (tests, the fleet simulator)
	// Update, if set, serves /v1/update (firmware updates, pkg/update)
	// behind the same authorisation.
	Update http.Handler
	// Cert, if set, serves POST /v1/cert: a certificate and key the NOC
	// signed for this box, installed for the status page and this API.
	Cert CertInstaller
	// Pace is how fast a bundle or a certificate must arrive; zero
	// fields are the defaults.
	Pace Pace
}

func (a *API) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if a.Auth != nil {
		who, err := a.Auth(r)
		if err != nil {
			http.Error(w, err.Error(), http.StatusForbidden)
			return
		}
		a.M.log.Info("management API call", "who", who, "method", r.Method, "path", r.URL.Path)
	}
	switch {
	case r.URL.Path == "/v1/update" && a.Update != nil:
		a.Update.ServeHTTP(w, r)
	case r.Method == http.MethodPost && r.URL.Path == "/v1/cert" && a.Cert != nil:
		a.pushCert(w, r)
	case r.Method == http.MethodPost && r.URL.Path == "/v1/bundles":
		a.push(w, r)
	case r.Method == http.MethodGet && r.URL.Path == "/v1/status":
		writeJSON(w, http.StatusOK, a.M.Status())
	case r.Method == http.MethodGet && r.URL.Path == "/v1/generations":
		gs, err := a.M.store.List()
		if err != nil {
			http.Error(w, err.Error(), http.StatusInternalServerError)
			return
		}
		for i := range gs {
			gs[i].Config = ""
		}
		writeJSON(w, http.StatusOK, gs)
	case r.Method == http.MethodGet && len(r.URL.Path) > len("/v1/generations/") && r.URL.Path[:len("/v1/generations/")] == "/v1/generations/":
		n, err := strconv.Atoi(r.URL.Path[len("/v1/generations/"):])
		if err != nil {
			http.NotFound(w, r)
			return
		}
		g, err := a.M.store.Get(n)
		if err != nil {
			http.NotFound(w, r)
			return
		}
		writeJSON(w, http.StatusOK, g)
	case r.Method == http.MethodGet && r.URL.Path == "/v1/results":
		rs, err := a.M.store.Results()
		if err != nil {
			http.Error(w, err.Error(), http.StatusInternalServerError)
			return
		}
		writeJSON(w, http.StatusOK, rs)
	default:
		http.NotFound(w, r)
	}
}

func (a *API) push(w http.ResponseWriter, r *http.Request) {
	body, err := a.readBody(w, r, MaxBundleSize)
	if limit, ok := tooLarge(err); ok {
		// Refused before it is read whole: nothing of it is kept.
		res := a.M.Reject("push", reject(ReasonTooLarge, "%s", tooLargeDetail(limit, "bundle")))
		w.Header().Set("Connection", "close")
		writeJSON(w, http.StatusRequestEntityTooLarge, res)
		return
	}
	if err != nil {
		http.Error(w, "reading the bundle: "+err.Error(), http.StatusBadRequest)
		return
	}
	res := a.M.Handle(r.Context(), body, "push")
	if res.Outcome == OutcomePending && r.URL.Query().Get("wait") != "" {
		ctx, cancel := context.WithTimeout(r.Context(), time.Hour+time.Minute)
		defer cancel()
		if fin, err := a.M.Wait(ctx, res.Gen); err == nil {
			res = fin
		}
	}
	code := http.StatusOK
	switch res.Outcome {
	case OutcomeRejected:
		code = http.StatusUnprocessableEntity
		if res.Reason == string(ReasonBusy) {
			code = http.StatusConflict
		}
	case OutcomePending:
		code = http.StatusAccepted
	}
	writeJSON(w, code, res)
}

// readBody reads a request's whole body, at a.Pace and at most max
// bytes (an error tooLarge recognises above).
func (a *API) readBody(w http.ResponseWriter, r *http.Request, max int64) ([]byte, error) {
	body, err := a.Pace.Body(w, r, max)
	if err != nil {
		return nil, err
	}
	return io.ReadAll(body)
}

func writeJSON(w http.ResponseWriter, code int, v any) {
	Answer(w)
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	_ = json.NewEncoder(w).Encode(v)
}
