package status

import (
	"context"
	"net/http"
	"slices"
	"time"
)

// The technician's actions besides the reboot: restart one service,
// confirm the pending configuration, roll back to the previous one. Each
// is a page that says what it will do, and a POST that acts only with the
// session's CSRF token (checked by auth) and the confirmation box ticked.

// Restarter restarts one supervised service (pkg/supervisor).
type Restarter interface {
	Restart(name string) error
}

// Generations is the NOC's configuration management on the box
// (pkg/manage); nil when the box is not managed.
type Generations interface {
	// List returns the kept generations, newest first.
	List() ([]Generation, error)
	// Confirm commits the pending generation now; it returns its number.
	Confirm() (int, error)
	// RollBack returns to the previous generation; it returns the one
	// abandoned.
	RollBack(ctx context.Context, why string) (int, error)
}

// Generation is one configuration the NOC sent (or the base file).
type Generation struct {
	N         int       `json:"n"`
	Version   uint64    `json:"version"`
	State     string    `json:"state"` // pending, committed, rolled-back, base
	Source    string    `json:"source"`
	AppliedAt time.Time `json:"applied_at"`
	Why       string    `json:"why,omitempty"`
	Current   bool      `json:"current"`
}

// action is one confirmed action of the page.
type action struct {
	name string // restart, confirm, rollback: its path and text keys
	// param is the form field naming what it acts on ("service"), "" for
	// none; valid says whether a value is one the box has.
	param string
	valid func(v string) bool
	// available says whether the box offers it now.
	available func() bool
	// do acts and says what was done.
	do func(ctx context.Context, v string) (string, error)
}

func (s *Server) actions() []action {
	t := func() lang { return tr(s.lang()) }
	return []action{
		{name: "restart", param: "service",
			valid: func(v string) bool {
				return slices.ContainsFunc(s.o.Source.Services(), func(x Service) bool { return x.Name == v })
			},
			available: func() bool { return s.o.Restarter != nil },
			do: func(_ context.Context, v string) (string, error) {
				if err := s.o.Restarter.Restart(v); err != nil {
					return "", err
				}
				return t().f("restart-done", v), nil
			}},
		{name: "confirm",
			available: func() bool { return s.o.Generations != nil && s.o.Source.Applied().Pending },
			do: func(context.Context, string) (string, error) {
				n, err := s.o.Generations.Confirm()
				if err != nil {
					return "", err
				}
				return t().f("confirm-done", n), nil
			}},
		{name: "rollback",
			available: func() bool { return s.o.Generations != nil },
			do: func(ctx context.Context, _ string) (string, error) {
				n, err := s.o.Generations.RollBack(ctx, "asked by the technician on the status page")
				if err != nil {
					return "", err
				}
				return t().f("rollback-done", n), nil
			}},
	}
}

// actionHandlers are the GET (the question) and POST (the act) of a.
func (s *Server) actionHandlers(a action) (get, post func(http.ResponseWriter, *http.Request, *session)) {
	data := func(r *http.Request, v string) map[string]any {
		return map[string]any{"Action": a.name, "Param": a.param, "Value": v, "Available": a.available()}
	}
	check := func(w http.ResponseWriter, r *http.Request, sess *session, v string) bool {
		d := data(r, v)
		switch {
		case !a.available():
			if r.Method == http.MethodPost {
				w.WriteHeader(http.StatusConflict)
			}
			s.page(w, "action", sess, d)
			return false
		case a.param != "" && !a.valid(v):
			w.WriteHeader(http.StatusBadRequest)
			d["Error"] = tr(s.lang()).f(a.param+"-unknown", v)
			s.page(w, "action", sess, d)
			return false
		}
		return true
	}
	get = func(w http.ResponseWriter, r *http.Request, sess *session) {
		v := r.URL.Query().Get(a.param)
		if check(w, r, sess, v) {
			s.page(w, "action", sess, data(r, v))
		}
	}
	post = func(w http.ResponseWriter, r *http.Request, sess *session) {
		v := r.PostFormValue(a.param)
		if !check(w, r, sess, v) {
			return
		}
		d := data(r, v)
		if r.PostFormValue("confirm") != "yes" {
			d["Ask"] = true
			s.page(w, "action", sess, d)
			return
		}
		s.log.Warn("status page: action confirmed by the technician", "event", "status-action", "action", a.name, a.param, v, "client", clientAddr(r).String())
		ctx, cancel := context.WithTimeout(r.Context(), 25*time.Second)
		defer cancel()
		done, err := a.do(ctx, v)
		if err != nil {
			s.log.Warn("status page: action failed", "action", a.name, "err", err)
			w.WriteHeader(http.StatusInternalServerError)
			d["Error"] = err.Error()
		}
		d["Done"] = done
		s.page(w, "action", sess, d)
	}
	return get, post
}

// configPage shows the running configuration and, when the NOC manages
// the box, its generations with the confirm and roll-back actions.
func (s *Server) configPage(w http.ResponseWriter, r *http.Request, sess *session) {
	d := map[string]any{"Line": configLine(tr(s.lang()), s.o.Source.Applied(), s.now()), "Managed": s.o.Generations != nil,
		"Pending": s.o.Source.Applied().Pending}
	if s.o.Generations != nil {
		gs, err := s.o.Generations.List()
		d["Generations"], d["Err"] = gs, errText(err)
	}
	s.page(w, "config", sess, d)
}
