// Package update is the box's firmware update (issue 18, docs/updates.md):
// signed update bundles, checked before a byte is written, streamed into
// the inactive A/B slot (never the running one), read back and hashed
// again, and only then marked to be tried once at the next boot. The
// slots themselves (which is inactive, how a board tries one once) are a
// Target, implemented by the A/B slots package for each board.
//
// An update bundle is a bounded header, then the slot image:
//
//	passerelle-update v1 <N>\n     the first line; N ≤ MaxManifestSize
//	<N bytes: the signed manifest, a pkg/nocsig envelope>
//	<the slot image: exactly manifest.image.size bytes>
//
// so the box verifies the signature, the board, the version and the size
// from the first few kilobytes, and refuses a bundle before it has
// written anything.
package update

import (
	"bufio"
	"bytes"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"slices"
	"strconv"
	"strings"
	"time"

	"passerelle/pkg/nocsig"
)

// Format is the manifest format this firmware reads.
const Format = 1

// MaxManifestSize bounds the signed manifest (a few hundred bytes, more
// with a file list and a target list of a whole academy).
const MaxManifestSize = 256 << 10

// magic starts the first line of every update bundle.
const magic = "passerelle-update v1 "

// maxFirstLine bounds the first line: the magic and a decimal length.
const maxFirstLine = len(magic) + 12

// Manifest is what the NOC signs (under nocsig.ContextUpdate, so it can
// never pass for a configuration bundle, nor one for it).
type Manifest struct {
	Format  int    `json:"format"`
	Board   string `json:"board"`   // the board the image is built for, e.g. qemu-arm64
	Version string `json:"version"` // firmware version, semantic (CompareVersions)
	Image   Image  `json:"image"`
	// Files lists what the image holds (kernel, initramfs...), for the
	// records; the box checks the whole image's hash, which covers them.
	Files    []File    `json:"files,omitempty"`
	UAIs     []string  `json:"uais,omitempty"` // only these boxes; none: every box of the board
	SignedAt time.Time `json:"signed_at"`
	Expires  time.Time `json:"expires"`
	KeyID    string    `json:"key_id"` // who signed, for the records
}

// Image is the slot image that follows the manifest.
type Image struct {
	Size   int64  `json:"size"`
	SHA256 string `json:"sha256"` // hex
}

// File is one file of the image, for the records.
type File struct {
	Path   string `json:"path"`
	Size   int64  `json:"size"`
	SHA256 string `json:"sha256"`
}

// Header returns the bundle's header for m signed by every key: the first
// line and the manifest. The image bytes follow it.
func Header(m Manifest, keys ...nocsig.Key) ([]byte, error) {
	if m.Format == 0 {
		m.Format = Format
	}
	if m.KeyID == "" && len(keys) > 0 {
		m.KeyID = keys[0].ID
	}
	if err := m.check(); err != nil {
		return nil, err
	}
	raw, err := json.Marshal(m)
	if err != nil {
		return nil, err
	}
	env, err := json.Marshal(nocsig.Seal(nocsig.ContextUpdate, raw, keys...))
	if err != nil {
		return nil, err
	}
	if len(env) > MaxManifestSize {
		return nil, fmt.Errorf("signed manifest is %d bytes, more than the %d a box reads", len(env), MaxManifestSize)
	}
	return append([]byte(magic+strconv.Itoa(len(env))+"\n"), env...), nil
}

// check is what every manifest must say, signed or not.
func (m Manifest) check() error {
	switch {
	case m.Format != Format:
		return fmt.Errorf("manifest format %d; this firmware reads format %d", m.Format, Format)
	case m.Board == "":
		return errors.New("manifest names no board")
	case m.Image.Size <= 0:
		return fmt.Errorf("image size %d", m.Image.Size)
	case !isSHA256(m.Image.SHA256):
		return fmt.Errorf("image sha256 %q is not 64 hex digits", m.Image.SHA256)
	case m.Expires.IsZero():
		return errors.New("manifest has no expiry")
	}
	if _, err := parseSemver(m.Version); err != nil {
		return err
	}
	return nil
}

func isSHA256(s string) bool {
	b, err := hex.DecodeString(s)
	return err == nil && len(b) == sha256.Size && strings.ToLower(s) == s
}

// Trust is what a box checks a manifest against.
type Trust struct {
	Keys    nocsig.Keys // the running configuration's management.trusted_keys
	Board   string      // the board this firmware runs on
	UAI     string      // this box's
	Running string      // the firmware version running (pkg/version)
	Now     time.Time
}

// ReadManifest reads a bundle's header from r (not a byte of the image)
// and checks it: framing, signature by a trusted key, manifest, board,
// target boxes, expiry and version. It returns the manifest and the name
// of the key that signed it; the error is an *Error (nothing written).
func ReadManifest(r *bufio.Reader, t Trust) (*Manifest, string, error) {
	line, err := readLine(r)
	if err != nil {
		return nil, "", err
	}
	n, err := strconv.Atoi(strings.TrimPrefix(line, magic))
	if !strings.HasPrefix(line, magic) || err != nil || n <= 0 {
		return nil, "", reject(ReasonMalformed, "not an update bundle: it starts with %q, not %q<length>", truncate(line, 40), magic)
	}
	if n > MaxManifestSize {
		return nil, "", reject(ReasonMalformed, "manifest of %d bytes, more than the %d a box reads", n, MaxManifestSize)
	}
	env := make([]byte, n)
	if _, err := io.ReadFull(r, env); err != nil {
		return nil, "", reject(ReasonMalformed, "manifest cut short: %v", err)
	}
	e, err := nocsig.Decode(env)
	if err != nil {
		_, detail := nocsig.Why(err)
		return nil, "", reject(ReasonMalformed, "manifest is not a signed envelope: %s", detail)
	}
	raw, signer, err := e.Open(nocsig.ContextUpdate, t.Keys)
	if err != nil {
		reason, detail := nocsig.Why(err)
		return nil, "", reject(Reason(reason), "the update: %s", detail)
	}
	var m Manifest
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&m); err != nil {
		return nil, "", reject(ReasonMalformed, "manifest: %v", err)
	}
	if err := m.check(); err != nil {
		return nil, "", reject(ReasonMalformed, "manifest: %v", err)
	}
	if m.Board != t.Board {
		return nil, "", reject(ReasonWrongBoard, "the image is for board %s; this box is %s", m.Board, orNone(t.Board))
	}
	if len(m.UAIs) > 0 && !slices.Contains(m.UAIs, t.UAI) {
		return nil, "", reject(ReasonWrongUAI, "the update is for %d other boxes, not %s", len(m.UAIs), orNone(t.UAI))
	}
	if !t.Now.Before(m.Expires) {
		return nil, "", reject(ReasonExpired, "the update expired at %s", m.Expires.UTC().Format(time.RFC3339))
	}
	if _, err := parseSemver(t.Running); err == nil {
		c, _ := CompareVersions(m.Version, t.Running)
		switch {
		case c == 0:
			return nil, "", reject(ReasonSameVersion, "version %s is the one running", m.Version)
		case c < 0:
			return nil, "", reject(ReasonNotNewer, "version %s is older than %s, the one running", m.Version, t.Running)
		}
	}
	return &m, signer, nil
}

// readLine reads the first line, at most maxFirstLine bytes.
func readLine(r *bufio.Reader) (string, error) {
	var sb strings.Builder
	for sb.Len() <= maxFirstLine {
		c, err := r.ReadByte()
		if err != nil {
			if sb.Len() == 0 {
				return "", reject(ReasonMalformed, "empty bundle")
			}
			return "", reject(ReasonMalformed, "not an update bundle: %q and no line end", truncate(sb.String(), 40))
		}
		if c == '\n' {
			return sb.String(), nil
		}
		sb.WriteByte(c)
	}
	return "", reject(ReasonMalformed, "not an update bundle: it starts with %q", truncate(sb.String(), 40))
}

func truncate(s string, n int) string {
	if len(s) > n {
		return s[:n] + "..."
	}
	return s
}

func orNone(s string) string {
	if s == "" {
		return "(none)"
	}
	return s
}

// Reason is why an update was refused or failed: a metric label and an
// API field, stable across versions.
type Reason string

// Every reason, in the order they are checked. Up to ReasonNoSlot the
// update is rejected and nothing is written; from ReasonTruncated on the
// slot was being written and is left unusable (never tried).
const (
	ReasonMalformed    Reason = "malformed"     // framing, manifest, or more bytes than the manifest says
	ReasonNotSigned    Reason = "not-signed"    // no signature at all
	ReasonUnknownKey   Reason = "unknown-key"   // no signature by a key of management.trusted_keys
	ReasonBadSignature Reason = "bad-signature" // a trusted key's signature does not match
	ReasonWrongBoard   Reason = "wrong-board"   // built for another board
	ReasonWrongUAI     Reason = "wrong-uai"     // the manifest lists boxes, not this one
	ReasonExpired      Reason = "expired"
	ReasonSameVersion  Reason = "same-version" // the version running
	ReasonNotNewer     Reason = "not-newer"    // older than the version running
	ReasonBusy         Reason = "busy"         // another update is being installed
	ReasonNoSlot       Reason = "no-slot"      // this box has no A/B slots, or the inactive one is unknown
	ReasonTooLarge     Reason = "too-large"    // the image is larger than the inactive slot

	ReasonTruncated        Reason = "truncated"         // the stream ended or broke before the image's size
	ReasonHashMismatch     Reason = "hash-mismatch"     // the bytes received are not the signed image
	ReasonWriteFailed      Reason = "write-failed"      // the slot's device refused a write or a sync
	ReasonReadbackMismatch Reason = "readback-mismatch" // the slot read back is not what was written
	ReasonTryFailed        Reason = "try-failed"        // the slot could not be marked to be tried at the next boot
)

// Reasons lists every Reason (metrics start at zero for each).
var Reasons = []Reason{ReasonMalformed, ReasonNotSigned, ReasonUnknownKey, ReasonBadSignature, ReasonWrongBoard,
	ReasonWrongUAI, ReasonExpired, ReasonSameVersion, ReasonNotNewer, ReasonBusy, ReasonNoSlot, ReasonTooLarge,
	ReasonTruncated, ReasonHashMismatch, ReasonWriteFailed, ReasonReadbackMismatch, ReasonTryFailed}

// Error is an update refused (Written false: nothing was written) or
// failed while the slot was written (Written true: the slot is left
// unusable and is not tried).
type Error struct {
	Reason  Reason
	Detail  string
	Written bool
}

func (e *Error) Error() string {
	if e.Written {
		return fmt.Sprintf("update failed (%s): %s", e.Reason, e.Detail)
	}
	return fmt.Sprintf("update rejected (%s): %s", e.Reason, e.Detail)
}

func reject(r Reason, format string, args ...any) *Error {
	return &Error{Reason: r, Detail: fmt.Sprintf(format, args...)}
}

func failed(r Reason, format string, args ...any) *Error {
	return &Error{Reason: r, Detail: fmt.Sprintf(format, args...), Written: true}
}

// Peek reads a bundle's manifest without checking its signature: what
// the NOC's tools show about a bundle file. A box never trusts it.
func Peek(r *bufio.Reader) (*Manifest, error) {
	line, err := readLine(r)
	if err != nil {
		return nil, err
	}
	n, err := strconv.Atoi(strings.TrimPrefix(line, magic))
	if !strings.HasPrefix(line, magic) || err != nil || n <= 0 || n > MaxManifestSize {
		return nil, fmt.Errorf("not an update bundle: it starts with %q", truncate(line, 40))
	}
	env := make([]byte, n)
	if _, err := io.ReadFull(r, env); err != nil {
		return nil, fmt.Errorf("manifest cut short: %w", err)
	}
	e, err := nocsig.Decode(env)
	if err != nil {
		return nil, err
	}
	raw, err := base64.StdEncoding.DecodeString(e.Payload)
	if err != nil {
		return nil, fmt.Errorf("manifest payload: %w", err)
	}
	var m Manifest
	if err := json.Unmarshal(raw, &m); err != nil {
		return nil, fmt.Errorf("manifest: %w", err)
	}
	return &m, nil
}
