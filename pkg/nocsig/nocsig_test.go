package nocsig

import (
	"crypto/ed25519"
	"testing"
)

func key(t *testing.T, id string) Key {
	t.Helper()
	_, priv, err := ed25519.GenerateKey(nil)
	if err != nil {
		t.Fatal(err)
	}
	return Key{ID: id, Private: priv}
}

// TestOpen: one valid signature by a trusted key is enough (others
// skipped); every refusal has its reason; a signature made under one
// context never verifies under another.
func TestOpen(t *testing.T) {
	noc, stranger := key(t, "noc-1"), key(t, "intruder")
	impostor := Key{ID: "noc-1", Private: key(t, "x").Private}
	keys := Keys{"noc-1": noc.Private.Public().(ed25519.PublicKey)}
	payload := []byte(`{"hello":1}`)
	for _, c := range []struct {
		name   string
		env    Envelope
		ctx    string
		reason string // "" opens
	}{
		{"signed by a trusted key", Seal(ContextUpdate, payload, noc), ContextUpdate, ""},
		{"an unknown key's signature first", Seal(ContextUpdate, payload, stranger, noc), ContextUpdate, ""},
		{"not signed", Seal(ContextUpdate, payload), ContextUpdate, NotSigned},
		{"unknown key", Seal(ContextUpdate, payload, stranger), ContextUpdate, UnknownKey},
		{"another key under the trusted name", Seal(ContextUpdate, payload, impostor), ContextUpdate, BadSignature},
		{"a bundle signature read as an update's", Seal(ContextBundle, payload, noc), ContextUpdate, BadSignature},
		{"an update signature read as a bundle's", Seal(ContextUpdate, payload, noc), ContextBundle, BadSignature},
		{"payload not base64", Envelope{Payload: "%%%"}, ContextUpdate, Malformed},
	} {
		t.Run(c.name, func(t *testing.T) {
			got, signer, err := c.env.Open(c.ctx, keys)
			reason := ""
			if err != nil {
				reason, _ = Why(err)
			}
			if reason != c.reason {
				t.Fatalf("reason %q (%v), want %q", reason, err, c.reason)
			}
			if c.reason == "" && (string(got) != string(payload) || signer != "noc-1") {
				t.Errorf("opened %q by %q", got, signer)
			}
		})
	}
	if _, err := Decode([]byte(`{"payload":"e30=","signatures":[],"extra":1}`)); err == nil {
		t.Error("an envelope with an unknown field was decoded")
	}
}
