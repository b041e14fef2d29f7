package main

import (
	"crypto/ed25519"
	"encoding/base64"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"strings"

	"passerelle/pkg/atomicfile"
	"passerelle/pkg/manage"
)

const keygenUsage = `usage: passerellectl keygen [--json] --id NAME --out FILE

Creates a NOC signing key (ed25519) in FILE (mode 0600; keep it off the
boxes and out of version control) and prints the management.trusted_keys
entry to put in the configuration of every box that must trust it. NAME
says who holds the key and when it was made, e.g. noc-lille-2026. To
rotate keys, push a configuration signed by the old key that trusts the
new one; once every box runs it, push one that drops the old key.
`

// keyFile is a NOC signing key on disk.
type keyFile struct {
	KeyID      string `json:"key_id"`
	PublicKey  string `json:"public_key"`  // base64, 32 bytes: the trusted_keys entry
	PrivateKey string `json:"private_key"` // base64, 64 bytes (seed and public key)
}

func cmdKeygen(args []string, stdout, stderr io.Writer) int {
	fs := newFlagSet("keygen", keygenUsage, stderr)
	id := fs.String("id", "", "key `name`, e.g. noc-lille-2026")
	out := fs.String("out", "", "private key `file` to create")
	asJSON := fs.Bool("json", false, "print the public key as JSON")
	if err := fs.Parse(args); err != nil || *id == "" || *out == "" || fs.NArg() != 0 {
		fs.Usage()
		return 2
	}
	if _, err := os.Stat(*out); err == nil {
		fmt.Fprintf(stderr, "passerellectl keygen: %s exists; not overwriting a key\n", *out)
		return 1
	}
	pub, priv, err := ed25519.GenerateKey(nil)
	if err != nil {
		fmt.Fprintf(stderr, "passerellectl keygen: %v\n", err)
		return 1
	}
	k := keyFile{KeyID: *id, PublicKey: base64.StdEncoding.EncodeToString(pub), PrivateKey: base64.StdEncoding.EncodeToString(priv)}
	data, _ := json.MarshalIndent(k, "", "  ")
	if err := atomicfile.Write(*out, append(data, '\n'), 0o600); err != nil {
		fmt.Fprintf(stderr, "passerellectl keygen: %v\n", err)
		return 1
	}
	if *asJSON {
		json.NewEncoder(stdout).Encode(map[string]string{"key_id": k.KeyID, "public_key": k.PublicKey, "file": *out})
		return 0
	}
	fmt.Fprintf(stdout, "# management.trusted_keys entry of the boxes that trust this key:\n- name: %s\n  public_key: %s\n", k.KeyID, k.PublicKey)
	return 0
}

// loadKey reads a key file written by keygen.
func loadKey(path string) (manage.Key, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return manage.Key{}, err
	}
	var k keyFile
	if err := json.Unmarshal(data, &k); err != nil {
		return manage.Key{}, fmt.Errorf("%s: not a key file: %w", path, err)
	}
	priv, err := base64.StdEncoding.DecodeString(k.PrivateKey)
	if err != nil || len(priv) != ed25519.PrivateKeySize || k.KeyID == "" {
		return manage.Key{}, fmt.Errorf("%s: not a key file (key_id and a 64-byte private_key expected)", path)
	}
	return manage.Key{ID: k.KeyID, Private: ed25519.PrivateKey(priv)}, nil
}

// keyFlags is --key, repeatable (a bundle may carry several signatures).
type keyFlags []string

func (k *keyFlags) String() string     { return strings.Join(*k, ",") }
func (k *keyFlags) Set(s string) error { *k = append(*k, s); return nil }

// register adds --key to fs: every command that signs takes it the same way.
func (k *keyFlags) register(fs *flag.FlagSet) {
	fs.Var(k, "key", "signing key `file` (keygen); repeat for several signatures")
}

func (k keyFlags) load() ([]manage.Key, error) {
	if len(k) == 0 {
		return nil, errors.New("--key FILE is required")
	}
	var out []manage.Key
	for _, p := range k {
		key, err := loadKey(p)
		if err != nil {
			return nil, err
		}
		out = append(out, key)
	}
	return out, nil
}
