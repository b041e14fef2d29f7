// Package nocsig is the NOC's ed25519 signatures, shared by everything the
// box accepts from the academy: configuration bundles (pkg/manage) and
// firmware update manifests (pkg/update). One envelope, one trust (the
// keys of the running configuration's management.trusted_keys), and a
// context string per kind of document, so a signature made for one kind
// can never be taken for another.
package nocsig

import (
	"bytes"
	"crypto/ed25519"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"

	"passerelle/pkg/config"
)

// Contexts: each is prepended to the payload bytes before signing. They
// differ, so a configuration bundle's signature does not verify as an
// update manifest's, nor the reverse, even under the same key.
const (
	ContextBundle = "passerelle-bundle-v1\n"
	ContextUpdate = "passerelle-update-v1\n"
	ContextCert   = "passerelle-cert-v1\n" // a box's TLS certificate and key (pkg/manage)
)

// Key is a NOC signing key.
type Key struct {
	ID      string
	Private ed25519.PrivateKey
}

// Signature is one NOC key's signature of a payload.
type Signature struct {
	KeyID string `json:"key_id"` // the name of a management.trusted_keys entry
	Sig   string `json:"sig"`    // base64, 64 bytes
}

// Envelope is a signed payload on the wire:
//
//	{"payload": "<base64 of the payload JSON>",
//	 "signatures": [{"key_id": "noc-lille-2026", "sig": "<base64 ed25519>"}]}
//
// The signatures cover the context followed by the payload bytes exactly
// as they are encoded, so nothing is re-encoded before checking.
type Envelope struct {
	Payload    string      `json:"payload"`
	Signatures []Signature `json:"signatures"`
}

// Keys are the public keys a box trusts, by name.
type Keys map[string]ed25519.PublicKey

// FromConfig returns the keys of a configuration's
// management.trusted_keys.
func FromConfig(ks []config.TrustedKey) Keys {
	out := Keys{}
	for _, k := range ks {
		out[k.Name] = ed25519.PublicKey(k.PublicKey[:])
	}
	return out
}

// Seal signs payload under context with every key.
func Seal(context string, payload []byte, keys ...Key) Envelope {
	e := Envelope{Payload: base64.StdEncoding.EncodeToString(payload)}
	for _, k := range keys {
		sig := ed25519.Sign(k.Private, signed(context, payload))
		e.Signatures = append(e.Signatures, Signature{KeyID: k.ID, Sig: base64.StdEncoding.EncodeToString(sig)})
	}
	return e
}

func signed(context string, payload []byte) []byte {
	return append([]byte(context), payload...)
}

// Reasons an envelope is refused; the callers' rejection reasons use the
// same words.
const (
	Malformed    = "malformed"
	NotSigned    = "not-signed"
	UnknownKey   = "unknown-key"
	BadSignature = "bad-signature"
)

// Error is an envelope refused, with one of the reasons above.
type Error struct {
	Reason string
	Detail string
}

func (e *Error) Error() string { return e.Reason + ": " + e.Detail }

// Why returns the reason and detail of an *Error (Malformed and the
// error's text for any other error).
func Why(err error) (reason, detail string) {
	var e *Error
	if errors.As(err, &e) {
		return e.Reason, e.Detail
	}
	return Malformed, err.Error()
}

func fail(reason, format string, args ...any) *Error {
	return &Error{Reason: reason, Detail: fmt.Sprintf(format, args...)}
}

// Decode reads an envelope strictly (unknown fields refused).
func Decode(data []byte) (Envelope, error) {
	var e Envelope
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&e); err != nil {
		return Envelope{}, fail(Malformed, "%v", err)
	}
	return e, nil
}

// Open checks the envelope's signatures under context and returns the
// payload bytes and the name of the key that signed them. One valid
// signature by a trusted key is enough; signatures by keys the box does
// not know are skipped. The error is an *Error: malformed (payload not
// base64), not-signed, unknown-key (no signature by a trusted key) or
// bad-signature (a trusted key's signature does not match: tampered, made
// for another context, or another key under the same name).
func (e Envelope) Open(context string, keys Keys) (payload []byte, signer string, err error) {
	raw, err := base64.StdEncoding.DecodeString(e.Payload)
	if err != nil || len(raw) == 0 {
		return nil, "", fail(Malformed, "payload is not base64")
	}
	if len(e.Signatures) == 0 {
		return nil, "", fail(NotSigned, "no signature at all")
	}
	badKey := ""
	var unknown []string
	for _, s := range e.Signatures {
		pub, ok := keys[s.KeyID]
		if !ok {
			unknown = append(unknown, s.KeyID)
			continue
		}
		sig, err := base64.StdEncoding.DecodeString(s.Sig)
		if err != nil || len(sig) != ed25519.SignatureSize || !ed25519.Verify(pub, signed(context, raw), sig) {
			badKey = s.KeyID
			continue
		}
		return raw, s.KeyID, nil
	}
	if badKey != "" {
		return nil, "", fail(BadSignature, "the signature of key %q does not match the payload", badKey)
	}
	return nil, "", fail(UnknownKey, "signed by %q, which this box does not trust", unknown)
}
