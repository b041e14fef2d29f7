package tunnel

import (
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"strings"
)

// KeyState is what the auth key file holds, as far as the box can tell
// without asking the control server.
type KeyState string

const (
	KeyPresent KeyState = "present" // one line that looks like a key
	KeyMissing KeyState = "missing" // no file (or an empty one)
	KeyInvalid KeyState = "invalid" // a file that cannot be a key
)

// Bounds of a pre-authorised key. Headscale's are 48 hexadecimal
// characters (hskey-auth-... in newer versions, about 60), Tailscale's
// tskey-auth-... about 60: the bounds only catch a file that holds
// something else (a truncated copy, a whole e-mail, a certificate).
const (
	minKeyLen = 16
	maxKeyLen = 512
)

// KeyCheck is the verdict on the auth key file. It never holds the key:
// tailscaled reads the file itself ("file:" in its config), and a change
// of key is noticed by a digest.
type KeyCheck struct {
	File  string
	State KeyState
	Err   error // why it is missing or invalid; names the file, never quotes the key
	sum   [sha256.Size]byte
}

// Usable reports whether the key can be handed to tailscaled.
func (k KeyCheck) Usable() bool { return k.State == KeyPresent }

// Reason is Err's text ("" for a usable key).
func (k KeyCheck) Reason() string {
	if k.Err == nil {
		return ""
	}
	return k.Err.Error()
}

// changed reports whether cur differs from k in state or in key.
func (k KeyCheck) changed(cur KeyCheck) bool {
	return k.File != cur.File || k.State != cur.State || k.sum != cur.sum || k.Reason() != cur.Reason()
}

// CheckAuthKey reads and validates the auth key file: one line (a final
// line break is allowed, as is surrounding white space, which tailscaled
// trims), a plausible length, printable ASCII with no white space inside.
// The key is only needed for the first login: its absence is a state, not
// an error of the configuration.
func CheckAuthKey(path string) KeyCheck {
	k := KeyCheck{File: path, State: KeyInvalid}
	f, err := os.Open(path)
	if errors.Is(err, fs.ErrNotExist) {
		k.State, k.Err = KeyMissing, fmt.Errorf("no auth key in %s (no such file)", path)
		return k
	}
	if err != nil {
		k.Err = fmt.Errorf("auth key file %s unreadable: %w", path, err)
		return k
	}
	defer f.Close()
	if fi, err := f.Stat(); err != nil {
		k.Err = fmt.Errorf("auth key file %s unreadable: %w", path, err)
		return k
	} else if !fi.Mode().IsRegular() {
		k.Err = fmt.Errorf("auth key file %s is not a regular file (%s)", path, fi.Mode().Type())
		return k
	}
	// A key with its line break and some white space fits in 1 KiB; read
	// one byte more to tell a file that is larger.
	data, err := io.ReadAll(io.LimitReader(f, 1024+1))
	if err != nil {
		k.Err = fmt.Errorf("auth key file %s unreadable: %w", path, err)
		return k
	}
	if len(data) > 1024 {
		k.Err = fmt.Errorf("auth key file %s is larger than 1024 bytes: a key is one line of at most %d characters", path, maxKeyLen)
		return k
	}
	key := strings.TrimSpace(string(data))
	if key == "" {
		k.State, k.Err = KeyMissing, fmt.Errorf("no auth key in %s (the file is empty)", path)
		return k
	}
	if n := strings.Count(key, "\n") + 1; n > 1 {
		k.Err = fmt.Errorf("auth key file %s holds %d lines: the key must be alone on one line", path, n)
		return k
	}
	for i, c := range []byte(key) {
		switch {
		case c == ' ' || c == '\t' || c == '\r' || c == '\v' || c == '\f':
			k.Err = fmt.Errorf("auth key in %s has white space inside it (character %d)", path, i+1)
			return k
		case c < 0x21 || c > 0x7e:
			k.Err = fmt.Errorf("auth key in %s has a character that is not printable ASCII (character %d)", path, i+1)
			return k
		}
	}
	if len(key) < minKeyLen || len(key) > maxKeyLen {
		k.Err = fmt.Errorf("auth key in %s is %d characters long: a pre-authorised key has %d to %d", path, len(key), minKeyLen, maxKeyLen)
		return k
	}
	k.State, k.sum = KeyPresent, sha256.Sum256([]byte(key))
	return k
}
