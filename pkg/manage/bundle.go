// Package manage is the NOC's configuration push on the box (issue 16):
// signed bundles, their checks, the generations kept on /perm, the
// health gate that commits or rolls back a new configuration, the pull
// client and the push API. It never applies a configuration itself: it
// hands it to the daemon's one submit path through Submitter.
//
// A bad push must never strand a school: every bundle is checked whole
// before anything is touched, written as a pending generation before it
// is applied, and committed only when the health gate passes within the
// confirm window; a restart inside the window boots the previous
// generation.
package manage

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"passerelle/pkg/nocsig"
)

// MaxBundleSize bounds a bundle on the wire: a config is at most
// config.MaxFileSize (1 MiB), base64 adds a third, plus the envelope.
const MaxBundleSize = 1<<20*4/3 + 64<<10

// Format is the payload format this firmware reads.
const Format = 1

// Bundle is the envelope on the wire (docs/management.md):
//
//	{"payload": "<base64 of the payload JSON>",
//	 "signatures": [{"key_id": "noc-lille-2026", "sig": "<base64 ed25519>"}]}
//
// The signature covers nocsig.ContextBundle followed by the payload bytes
// exactly as they are encoded, so nothing is re-encoded before checking.
// The envelope, keys and checks are pkg/nocsig's, shared with firmware
// updates (whose context differs).
type Bundle = nocsig.Envelope

// Signature is one NOC key's signature of the payload.
type Signature = nocsig.Signature

// Payload is what the NOC signs.
type Payload struct {
	Format   int       `json:"format"`
	UAI      string    `json:"uai"`     // the one box it is for
	Version  uint64    `json:"version"` // monotonic per box
	Expires  time.Time `json:"expires"`
	SignedAt time.Time `json:"signed_at"`
	KeyID    string    `json:"key_id"` // who signed, for the records
	Name     string    `json:"name"`   // file name shown in config errors, e.g. 0599999Y-v42.yaml
	Config   string    `json:"config"` // the configuration document (YAML)
}

// Key is a NOC signing key.
type Key = nocsig.Key

// Sign returns the encoded bundle of p signed by every key. The payload
// is encoded once (encoding/json: fields in declaration order, no
// indentation) and those bytes are what is signed.
func Sign(p Payload, keys ...Key) ([]byte, error) {
	if p.Format == 0 {
		p.Format = Format
	}
	if p.KeyID == "" && len(keys) > 0 {
		p.KeyID = keys[0].ID
	}
	return seal(p, nocsig.ContextBundle, MaxBundleSize, "bundle", keys)
}

// seal encodes payload v once, signs those bytes under context with
// every key and encodes the envelope, which must fit in maxSize.
func seal(v any, context string, maxSize int, what string, keys []Key) ([]byte, error) {
	raw, err := json.Marshal(v)
	if err != nil {
		return nil, err
	}
	out, err := json.Marshal(nocsig.Seal(context, raw, keys...))
	if err != nil {
		return nil, err
	}
	if len(out) > maxSize {
		return nil, fmt.Errorf("%s is %d bytes, more than the %d a box accepts", what, len(out), maxSize)
	}
	return out, nil
}

// Reason is why a bundle was rejected: a metric label and an API field,
// stable across versions.
type Reason string

// Every reason a bundle is rejected for, in the order they are checked.
const (
	ReasonTooLarge      Reason = "too-large"
	ReasonMalformed     Reason = "malformed"
	ReasonNotSigned     Reason = "not-signed"
	ReasonUnknownKey    Reason = "unknown-key"
	ReasonBadSignature  Reason = "bad-signature"
	ReasonWrongUAI      Reason = "wrong-uai"
	ReasonExpired       Reason = "expired"
	ReasonReplay        Reason = "replay"
	ReasonConfigInvalid Reason = "config-invalid"
	ReasonBusy          Reason = "busy" // another bundle is inside its confirm window
)

// Reasons lists every Reason (metrics start at zero for each).
var Reasons = []Reason{ReasonTooLarge, ReasonMalformed, ReasonNotSigned, ReasonUnknownKey, ReasonBadSignature,
	ReasonWrongUAI, ReasonExpired, ReasonReplay, ReasonConfigInvalid, ReasonBusy}

// Rejection is a bundle refused before anything was applied.
type Rejection struct {
	Reason Reason
	Detail string
}

func (r *Rejection) Error() string {
	return fmt.Sprintf("bundle rejected (%s): %s", r.Reason, r.Detail)
}

func reject(r Reason, format string, args ...any) *Rejection {
	return &Rejection{Reason: r, Detail: fmt.Sprintf(format, args...)}
}

// Trust is what a box checks a bundle against: the keys of its running
// configuration, its UAI and the highest version it has accepted.
type Trust struct {
	Keys    nocsig.Keys // by key name
	UAI     string
	Highest uint64
	Now     time.Time
}

// Open decodes a bundle and checks everything but the configuration
// itself: size, envelope, signatures by a trusted key, target, expiry and
// version. It returns the payload and the name of the key that signed it.
func Open(data []byte, t Trust) (*Payload, string, error) {
	var p Payload
	signer, err := openSigned(data, MaxBundleSize, nocsig.ContextBundle, "bundle", t, &p)
	if err != nil {
		return nil, "", err
	}
	if err := checkFor(p.Format, p.UAI, p.Expires, "bundle", t); err != nil {
		return nil, "", err
	}
	if p.Version <= t.Highest {
		return nil, "", reject(ReasonReplay, "version %d is not newer than %d, the last this box accepted", p.Version, t.Highest)
	}
	if p.Name == "" {
		p.Name = fmt.Sprintf("%s-v%d.yaml", p.UAI, p.Version)
	}
	return &p, signer, nil
}

// openSigned checks a NOC envelope of one kind (its size, its
// signatures under context by a trusted key) and decodes its payload
// strictly into v. Errors are *Rejection.
func openSigned(data []byte, maxSize int, context, what string, t Trust, v any) (signer string, err error) {
	if len(data) > maxSize {
		return "", reject(ReasonTooLarge, "%d bytes, more than the %d a %s may have", len(data), maxSize, what)
	}
	e, err := nocsig.Decode(data)
	if err != nil {
		_, detail := nocsig.Why(err)
		return "", reject(ReasonMalformed, "not a %s envelope: %s", what, detail)
	}
	raw, signer, err := e.Open(context, t.Keys)
	if err != nil {
		reason, detail := nocsig.Why(err)
		return "", reject(Reason(reason), "the %s: %s", what, detail)
	}
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		return "", reject(ReasonMalformed, "payload: %v", err)
	}
	return signer, nil
}

// checkFor checks a payload's format, target box and expiry.
func checkFor(format int, uai string, expires time.Time, what string, t Trust) error {
	if format != Format {
		return reject(ReasonMalformed, "payload format %d; this firmware reads format %d", format, Format)
	}
	if uai != t.UAI {
		return reject(ReasonWrongUAI, "the %s is for %s; this box is %s", what, uai, t.UAI)
	}
	if expires.IsZero() || !t.Now.Before(expires) {
		return reject(ReasonExpired, "the %s expired at %s", what, expires.UTC().Format(time.RFC3339))
	}
	return nil
}

// errRejection extracts a Rejection.
func asRejection(err error) (*Rejection, bool) {
	var r *Rejection
	ok := errors.As(err, &r)
	return r, ok
}
