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
	raw, err := json.Marshal(p)
	if err != nil {
		return nil, err
	}
	b := nocsig.Seal(nocsig.ContextBundle, raw, keys...)
	out, err := json.Marshal(b)
	if err != nil {
		return nil, err
	}
	if len(out) > MaxBundleSize {
		return nil, fmt.Errorf("bundle is %d bytes, more than the %d a box accepts", len(out), MaxBundleSize)
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
	if len(data) > MaxBundleSize {
		return nil, "", reject(ReasonTooLarge, "%d bytes, more than the %d a bundle may have", len(data), MaxBundleSize)
	}
	b, err := nocsig.Decode(data)
	if err != nil {
		_, detail := nocsig.Why(err)
		return nil, "", reject(ReasonMalformed, "not a bundle envelope: %s", detail)
	}
	raw, signer, err := b.Open(nocsig.ContextBundle, t.Keys)
	if err != nil {
		reason, detail := nocsig.Why(err)
		return nil, "", reject(Reason(reason), "the bundle: %s", detail)
	}
	var p Payload
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&p); err != nil {
		return nil, "", reject(ReasonMalformed, "payload: %v", err)
	}
	if p.Format != Format {
		return nil, "", reject(ReasonMalformed, "payload format %d; this firmware reads format %d", p.Format, Format)
	}
	if p.UAI != t.UAI {
		return nil, "", reject(ReasonWrongUAI, "the bundle is for %s; this box is %s", p.UAI, t.UAI)
	}
	if p.Expires.IsZero() || !t.Now.Before(p.Expires) {
		return nil, "", reject(ReasonExpired, "the bundle expired at %s", p.Expires.UTC().Format(time.RFC3339))
	}
	if p.Version <= t.Highest {
		return nil, "", reject(ReasonReplay, "version %d is not newer than %d, the last this box accepted", p.Version, t.Highest)
	}
	if p.Name == "" {
		p.Name = fmt.Sprintf("%s-v%d.yaml", p.UAI, p.Version)
	}
	return &p, signer, nil
}

// errRejection extracts a Rejection.
func asRejection(err error) (*Rejection, bool) {
	var r *Rejection
	ok := errors.As(err, &r)
	return r, ok
}
