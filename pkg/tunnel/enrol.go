package tunnel

import (
	"context"
	"regexp"
	"strings"
	"time"

	"tailscale.com/health"
	"tailscale.com/ipn"
	"tailscale.com/tsconst"

	tshealth "passerelle/pkg/health"
)

// Enrolment is whether the box is a node of the academy's tailnet and, if
// not, why it cannot become one. An enrolled box (tailscaled's state holds
// a node key) needs no auth key: keys are one-shot and often removed after
// enrolment.
type Enrolment string

const (
	EnrolUnknown    Enrolment = ""            // tailscaled has not answered yet
	EnrolNoKey      Enrolment = "no-key"      // not enrolled, no key in the key file
	EnrolKeyInvalid Enrolment = "key-invalid" // not enrolled, the key file cannot hold a key
	EnrolKeyRefused Enrolment = "key-refused" // not enrolled, the control server refused the key
	EnrolEnrolling  Enrolment = "enrolling"   // a usable key, the login is under way
	EnrolEnrolled   Enrolment = "enrolled"
)

// Problem reports whether the box cannot enrol without a technician or
// the NOC.
func (e Enrolment) Problem() bool {
	return e == EnrolNoKey || e == EnrolKeyInvalid || e == EnrolKeyRefused
}

// loginState is what tailscaled said of its last login attempt (IPN bus).
type loginState struct {
	err     string // the last login error, "" when none
	refused bool   // the control server answered it: the key was refused
}

// registerRefused matches a login error that is the control server's
// answer rather than a failure to reach it: Headscale refuses a bad key
// with an HTTP 4xx to the register request (tailscaled's
// controlclient.direct: "register request: http %d: %s"); 429 is a rate
// limit, not a refusal.
var registerRefused = regexp.MustCompile(`^register request: http 4\d\d\b`)

// note records what one IPN bus message says of the login.
func (l loginState) note(n ipn.Notify) loginState {
	if n.State != nil && *n.State == ipn.Running {
		return loginState{}
	}
	// A message for the user is an error the control server sent
	// (vizerror: testcontrol's and Tailscale's "invalid authkey").
	if n.ErrMessage != nil && !strings.Contains(*n.ErrMessage, "rate limited") {
		l = loginState{err: *n.ErrMessage, refused: true}
	}
	if n.Health != nil {
		w, ok := n.Health.Warnings[health.WarnableCode(tsconst.HealthWarnableLoginState)]
		switch e := w.Args[health.ArgError]; {
		case !ok:
			// Logged in, or no attempt failed.
			l = loginState{}
		case registerRefused.MatchString(e) && !strings.HasPrefix(e, "register request: http 429"):
			l = loginState{err: e, refused: true}
		case e != "" && e != l.err:
			// The control server could not be reached: not the key's
			// fault.
			l = loginState{err: e}
		}
	}
	return l
}

// enrolment says whether the box is enrolled and, if not, why, in plain
// words: from tailscaled's status, the key file and the last login error.
func enrolment(snap Snapshot, key KeyCheck, login loginState) (Enrolment, string) {
	switch {
	case snap.HaveNodeKey || snap.Backend == "Running":
		return EnrolEnrolled, ""
	case key.State == KeyMissing:
		return EnrolNoKey, "not enrolled: " + key.Reason()
	case key.State == KeyInvalid:
		return EnrolKeyInvalid, "not enrolled: " + key.Reason()
	case login.refused:
		return EnrolKeyRefused, "not enrolled: the academy's control server refused the auth key in " + key.File + " (" + login.err + ")"
	case login.err != "":
		return EnrolEnrolling, "not enrolled yet: the academy's control server cannot be reached (" + login.err + ")"
	}
	return EnrolEnrolling, "not enrolled yet: logging in with the auth key in " + key.File
}

// enrolChanged logs a change of enrolment (event=tunnel-enrolment); t.mu
// held.
func (t *Tunnel) enrolChanged(e Enrolment, reason, file string) {
	if e == t.obs.enrol || e == EnrolUnknown {
		return
	}
	t.obs.enrol = e
	switch {
	case e == EnrolEnrolled:
		t.log.Info("the box is enrolled in the academy's tailnet", "event", "tunnel-enrolment", "state", string(e), "file", file)
	case e.Problem():
		t.log.Warn("tunnel to the academy "+reason, "event", "tunnel-enrolment", "state", string(e), "file", file, "reason", reason)
	default:
		t.log.Info("tunnel to the academy "+reason, "event", "tunnel-enrolment", "state", string(e), "file", file, "reason", reason)
	}
}

// warnEnrolment raises the warning of an enrolment problem and reports
// whether there is one (the tunnel-down warning then says nothing more);
// t.mu held.
func (t *Tunnel) warnEnrolment() bool {
	st := t.obs.st
	var code, msg string
	switch st.Enrolment {
	case EnrolNoKey:
		code = warnNotEnrolled
		msg = "The tunnel to the academy is " + st.EnrolReason +
			". Ask the academy NOC for this box's pre-authorised key and install it there: the tunnel starts within seconds, without a reboot."
	case EnrolKeyInvalid:
		code = warnKeyInvalid
		msg = "The tunnel to the academy is " + st.EnrolReason +
			". Copy this box's pre-authorised key again, alone on one line (ask the academy NOC if you do not have it)."
	case EnrolKeyRefused:
		code = warnKeyInvalid
		msg = "The tunnel to the academy is " + st.EnrolReason +
			". The key may be used already, expired or meant for another box: ask the academy NOC for a new pre-authorised key."
	}
	for _, c := range []string{warnNotEnrolled, warnKeyInvalid} {
		if c != code {
			t.health.Clear(c)
		}
	}
	if code == "" {
		return false
	}
	t.health.Raise("tunnel", code, tshealth.Critical, msg)
	return true
}

// watchLogin follows tailscaled's IPN bus until ctx is done, for what the
// status does not say: why its last login failed (the control server's
// refusal of a key, or no answer from it).
func (t *Tunnel) watchLogin(ctx context.Context) {
	for {
		t.mu.Lock()
		p, running := t.plan, t.running
		t.mu.Unlock()
		if p != nil && p.Enabled && running {
			t.watchBus(ctx)
		}
		select {
		case <-ctx.Done():
			return
		case <-time.After(t.opts.Poll):
		}
	}
}

// watchBus reads one connection to the bus, until tailscaled goes away.
func (t *Tunnel) watchBus(ctx context.Context) {
	w, err := t.Client().WatchIPNBus(ctx, ipn.NotifyInitialState|ipn.NotifyInitialHealthState)
	if err != nil {
		return
	}
	defer w.Close()
	for {
		n, err := w.Next()
		if err != nil {
			return
		}
		t.mu.Lock()
		t.obs.login = t.obs.login.note(n)
		t.mu.Unlock()
	}
}
