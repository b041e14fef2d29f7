// Package slots owns the box's two system slots (A/B) and their boot
// counting: which slot booted and whether it is a trial (the kernel
// command line), the GRUB environment block on the EFI system partition
// that says which slot boots next (boot_slot, the committed one; try_slot,
// a slot to try once), the inactive slot an update is written to, and the
// record on /perm of every trial and what became of it (committed by the
// health gate, or abandoned and why).
//
// The boot loader does the counting: GRUB's grub.cfg (tools/mkimage)
// boots try_slot once after clearing it, so a slot that crashes or hangs
// falls back to boot_slot on the next boot without anything running on
// the box. This package only reads what happened afterwards.
//
// The decisions (environment block, command line, what an earlier trial
// became) are pure and tested without root; the partitions and mounts are
// in the _linux.go files.
package slots

import (
	"bytes"
	"errors"
	"fmt"
	"strings"
)

// The GRUB environment block: a header line, key=value lines, padded with
// '#' to exactly EnvSize bytes. GRUB's save_env rewrites the block in
// place and refuses a file of another size.
const (
	EnvSize   = 1024
	envHeader = "# GRUB Environment Block\n"
)

// Keys of the environment that grub.cfg reads.
const (
	KeyBootSlot = "boot_slot" // the committed slot, booted when no trial is due
	KeyTrySlot  = "try_slot"  // a slot to boot once; grub.cfg clears it before booting it
)

// Env is a GRUB environment block: its variables in file order.
type Env struct {
	keys []string
	vals map[string]string
}

// NewEnv is an empty environment.
func NewEnv() Env { return Env{vals: map[string]string{}} }

// ParseEnv reads an environment block, strictly: the exact size, the
// header, key=value lines and '#' padding. Values escaped by GRUB (a
// backslash) are refused: the box never writes one.
func ParseEnv(b []byte) (Env, error) {
	if len(b) != EnvSize {
		return Env{}, fmt.Errorf("grubenv: %d bytes, want exactly %d", len(b), EnvSize)
	}
	if !bytes.HasPrefix(b, []byte(envHeader)) {
		return Env{}, errors.New("grubenv: no \"# GRUB Environment Block\" header")
	}
	e := NewEnv()
	rest := string(b[len(envHeader):])
	for rest != "" {
		if rest[0] == '#' {
			if strings.Trim(rest, "#") != "" {
				return Env{}, errors.New("grubenv: data after the '#' padding")
			}
			break
		}
		line, after, ok := strings.Cut(rest, "\n")
		if !ok {
			return Env{}, fmt.Errorf("grubenv: line %q not ended by a newline", line)
		}
		rest = after
		k, v, ok := strings.Cut(line, "=")
		if !ok {
			return Env{}, fmt.Errorf("grubenv: line %q is not key=value", line)
		}
		if err := e.Set(k, v); err != nil {
			return Env{}, err
		}
	}
	return e, nil
}

// Get returns a variable's value ("" when unset).
func (e Env) Get(k string) string { return e.vals[k] }

// Set sets a variable, keeping its place if it exists.
func (e *Env) Set(k, v string) error {
	if k == "" || strings.IndexFunc(k, func(r rune) bool {
		return !(r == '_' || r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9')
	}) >= 0 {
		return fmt.Errorf("grubenv: variable name %q: want letters, digits and _", k)
	}
	if strings.ContainsAny(v, "\\\n") {
		return fmt.Errorf("grubenv: %s: value %q has a backslash or a newline", k, v)
	}
	if e.vals == nil {
		e.vals = map[string]string{}
	}
	if _, ok := e.vals[k]; !ok {
		e.keys = append(e.keys, k)
	}
	e.vals[k] = v
	return nil
}

// Render writes the block: exactly EnvSize bytes.
func (e Env) Render() ([]byte, error) {
	var b bytes.Buffer
	b.WriteString(envHeader)
	for _, k := range e.keys {
		b.WriteString(k + "=" + e.vals[k] + "\n")
	}
	if b.Len() > EnvSize {
		return nil, fmt.Errorf("grubenv: %d bytes of variables, more than the block's %d", b.Len(), EnvSize)
	}
	b.Write(bytes.Repeat([]byte{'#'}, EnvSize-b.Len()))
	return b.Bytes(), nil
}

// InitialEnv is the block of a new image: slot a committed, no trial.
func InitialEnv() []byte {
	e := NewEnv()
	_ = e.Set(KeyBootSlot, "a")
	_ = e.Set(KeyTrySlot, "")
	b, _ := e.Render()
	return b
}
