package tunnel

import (
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"tailscale.com/health"
	"tailscale.com/ipn"
	"tailscale.com/tsconst"
)

// labKey has the shape of the lab academy's keys (tskey-lab- and 32 hex
// digits) and of Headscale's.
const labKey = "tskey-lab-0123456789abcdef0123456789abcdef"

func TestCheckAuthKeySaysWhyAFileHoldsNoUsableKey(t *testing.T) {
	for _, tc := range []struct {
		name    string
		content *string // nil: no file
		dir     bool
		state   KeyState
		reason  string // in the error, after the file's path
	}{
		{name: "key with its line break", content: ptr(labKey + "\n"), state: KeyPresent},
		{name: "key with CRLF and spaces around", content: ptr("  " + labKey + " \r\n"), state: KeyPresent},
		{name: "Headscale hex key", content: ptr(strings.Repeat("ab", 24)), state: KeyPresent},
		{name: "no file", state: KeyMissing, reason: "(no such file)"},
		{name: "empty file", content: ptr(""), state: KeyMissing, reason: "(the file is empty)"},
		{name: "blank lines only", content: ptr("\n \n"), state: KeyMissing, reason: "(the file is empty)"},
		{name: "a directory", dir: true, state: KeyInvalid, reason: "is not a regular file"},
		{name: "two lines", content: ptr(labKey + "\n" + labKey + "\n"), state: KeyInvalid, reason: "holds 2 lines"},
		{name: "space inside", content: ptr("tskey-lab-0123 456789abcdef0123456789abcdef"), state: KeyInvalid, reason: "white space inside it (character 15)"},
		{name: "control character", content: ptr("tskey-lab-0123\x00456789abcdef0123456789abcdef"), state: KeyInvalid, reason: "not printable ASCII (character 15)"},
		{name: "non-ASCII", content: ptr("tskey-lab-clé-0123456789abcdef01234567"), state: KeyInvalid, reason: "not printable ASCII (character 13)"},
		{name: "too short", content: ptr("tskey-abc"), state: KeyInvalid, reason: "is 9 characters long"},
		{name: "too long", content: ptr(strings.Repeat("a", 600)), state: KeyInvalid, reason: "is 600 characters long"},
		{name: "far too large", content: ptr(strings.Repeat("a", 4096)), state: KeyInvalid, reason: "larger than 1024 bytes"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "authkey")
			switch {
			case tc.dir:
				if err := os.Mkdir(path, 0o700); err != nil {
					t.Fatal(err)
				}
			case tc.content != nil:
				if err := os.WriteFile(path, []byte(*tc.content), 0o600); err != nil {
					t.Fatal(err)
				}
			}
			k := CheckAuthKey(path)
			if k.State != tc.state || k.File != path {
				t.Fatalf("state %q file %q, want %q (%v)", k.State, k.File, tc.state, k.Err)
			}
			if tc.state == KeyPresent {
				if k.Err != nil || !k.Usable() {
					t.Errorf("usable key refused: %v", k.Err)
				}
				return
			}
			if k.Usable() || k.Err == nil {
				t.Fatal("a file without a usable key is usable")
			}
			if !strings.Contains(k.Reason(), path) || !strings.Contains(k.Reason(), tc.reason) {
				t.Errorf("reason %q: want the file %s and %q", k.Reason(), path, tc.reason)
			}
			if tc.content != nil && len(*tc.content) > 8 && strings.Contains(k.Reason(), strings.TrimSpace(*tc.content)[:8]) {
				t.Errorf("the reason quotes the file's content: %q", k.Reason())
			}
		})
	}
}

func ptr(s string) *string { return &s }

func TestAKeyChangeIsNoticedWithoutKeepingTheKey(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "authkey")
	write := func(s string) KeyCheck {
		t.Helper()
		if err := os.WriteFile(path, []byte(s), 0o600); err != nil {
			t.Fatal(err)
		}
		return CheckAuthKey(path)
	}
	a := write(labKey + "\n")
	if a.changed(write(labKey)) {
		t.Error("the same key without its line break is a change")
	}
	if !a.changed(write(strings.Replace(labKey, "0", "1", 1))) {
		t.Error("another key is not a change")
	}
	if !a.changed(CheckAuthKey(filepath.Join(dir, "other"))) {
		t.Error("a key gone is not a change")
	}
	if s, _ := json.Marshal(a); strings.Contains(string(s), "0123456789abcdef") {
		t.Errorf("the check holds the key: %s", s)
	}
}

// TestConfigNamesTheKeyFileOnlyWhenItHoldsAKey: tailscaled reads a named
// key file at every start and exits when it is missing (a crash loop);
// without one it starts and logs in from its state, or waits.
func TestConfigNamesTheKeyFileOnlyWhenItHoldsAKey(t *testing.T) {
	p := compileText(t, testConfig)
	for _, tc := range []struct {
		name    string
		key     KeyCheck
		withKey bool
	}{
		{"present", KeyCheck{File: p.AuthKeyFile, State: KeyPresent}, true},
		{"missing", KeyCheck{File: p.AuthKeyFile, State: KeyMissing, Err: errors.New("no auth key")}, false},
		{"invalid", KeyCheck{File: p.AuthKeyFile, State: KeyInvalid, Err: errors.New("two lines")}, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			data, err := p.ConfigFile(tc.key)
			if err != nil {
				t.Fatal(err)
			}
			var c ipn.ConfigVAlpha
			if err := json.Unmarshal(data, &c); err != nil {
				t.Fatal(err)
			}
			switch {
			case tc.withKey && (c.AuthKey == nil || *c.AuthKey != "file:/perm/tunnel/authkey"):
				t.Errorf("AuthKey %v, want file:/perm/tunnel/authkey", c.AuthKey)
			case !tc.withKey && (c.AuthKey != nil || strings.Contains(string(data), "AuthKey")):
				t.Errorf("AuthKey in the config without a usable key:\n%s", data)
			}
			if c.ServerURL == nil || *c.ServerURL != p.ControlURL || !c.Enabled.EqualBool(true) {
				t.Errorf("the rest of the config must not depend on the key:\n%s", data)
			}
		})
	}
	if _, err := p.ConfigFile(KeyCheck{File: "/elsewhere/authkey", State: KeyPresent}); err == nil || !strings.Contains(err.Error(), "/elsewhere/authkey") {
		t.Errorf("a key checked at another path: %v", err)
	}
}

func TestEnrolmentSaysWhyTheBoxIsNotInTheTailnet(t *testing.T) {
	file := "/perm/tunnel/authkey"
	present := KeyCheck{File: file, State: KeyPresent}
	missing := KeyCheck{File: file, State: KeyMissing, Err: errors.New("no auth key in " + file + " (no such file)")}
	invalid := KeyCheck{File: file, State: KeyInvalid, Err: errors.New("auth key file " + file + " holds 2 lines")}
	for _, tc := range []struct {
		name   string
		snap   Snapshot
		key    KeyCheck
		login  loginState
		want   Enrolment
		reason string
	}{
		{"enrolled without a key (one-shot key removed)", Snapshot{Backend: "NoState", HaveNodeKey: true}, missing, loginState{}, EnrolEnrolled, ""},
		{"running", Snapshot{Backend: "Running"}, missing, loginState{}, EnrolEnrolled, ""},
		{"no key", Snapshot{Backend: "NeedsLogin"}, missing, loginState{}, EnrolNoKey, "no auth key in " + file},
		{"no key, control says so", Snapshot{Backend: "NoState"}, missing, loginState{err: "invalid authkey", refused: true}, EnrolNoKey, "no auth key in " + file},
		{"invalid key file", Snapshot{Backend: "NeedsLogin"}, invalid, loginState{}, EnrolKeyInvalid, "holds 2 lines"},
		{"refused", Snapshot{Backend: "NoState"}, present, loginState{err: "invalid authkey", refused: true}, EnrolKeyRefused, "refused the auth key in " + file + " (invalid authkey)"},
		{"control unreachable", Snapshot{Backend: "NoState"}, present, loginState{err: "register request: dial tcp: connection refused"}, EnrolEnrolling, "cannot be reached"},
		{"logging in", Snapshot{Backend: "NoState"}, present, loginState{}, EnrolEnrolling, "logging in with the auth key in " + file},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, reason := enrolment(tc.snap, tc.key, tc.login)
			if got != tc.want || !strings.Contains(reason, tc.reason) {
				t.Errorf("got %q %q, want %q with %q", got, reason, tc.want, tc.reason)
			}
			if got.Problem() != (tc.want == EnrolNoKey || tc.want == EnrolKeyInvalid || tc.want == EnrolKeyRefused) {
				t.Errorf("%q: Problem() %v", got, got.Problem())
			}
		})
	}
}

// TestLoginErrorsFromTheBus: a refusal is what the control server answers
// (a message for the user, or Headscale's HTTP 4xx to the register
// request); failing to reach it is not the key's fault.
func TestLoginErrorsFromTheBus(t *testing.T) {
	loginErr := func(e string) ipn.Notify {
		return ipn.Notify{Health: &health.State{Warnings: map[health.WarnableCode]health.UnhealthyState{
			health.WarnableCode(tsconst.HealthWarnableLoginState): {Args: health.Args{health.ArgError: e}},
		}}}
	}
	running := ipn.Running
	for _, tc := range []struct {
		name string
		seq  []ipn.Notify
		want loginState
	}{
		{"control's message", []ipn.Notify{{ErrMessage: ptr("invalid authkey")}, loginErr("invalid authkey")},
			loginState{err: "invalid authkey", refused: true}},
		{"health first, then the message", []ipn.Notify{loginErr("invalid authkey"), {ErrMessage: ptr("invalid authkey")}},
			loginState{err: "invalid authkey", refused: true}},
		{"headscale 401", []ipn.Notify{loginErr("register request: http 401: Unauthorized")},
			loginState{err: "register request: http 401: Unauthorized", refused: true}},
		{"rate limited", []ipn.Notify{{ErrMessage: ptr("node registration rate limited; will retry after 5s")}, loginErr("register request: http 429: slow down")},
			loginState{err: "register request: http 429: slow down"}},
		{"unreachable", []ipn.Notify{loginErr("register request: Post \"https://hs/machine/register\": dial tcp: connection refused")},
			loginState{err: "register request: Post \"https://hs/machine/register\": dial tcp: connection refused"}},
		{"logged in", []ipn.Notify{{ErrMessage: ptr("invalid authkey")}, {Health: &health.State{}}}, loginState{}},
		{"running", []ipn.Notify{{ErrMessage: ptr("invalid authkey")}, {State: &running}}, loginState{}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var l loginState
			for _, n := range tc.seq {
				l = l.note(n)
			}
			if l != tc.want {
				t.Errorf("got %+v, want %+v", l, tc.want)
			}
		})
	}
}
