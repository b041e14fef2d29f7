package manage

import (
	"errors"
	"net/http"
	"time"

	"passerelle/pkg/config"
	"passerelle/pkg/nocsig"
)

// MaxCertSize bounds a certificate envelope: a chain of a few
// certificates and a key, base64-encoded once more.
const MaxCertSize = 64 << 10

// CertPayload is what the NOC signs (under nocsig.ContextCert, so no
// bundle or update signature can pass for one) to give one box the TLS
// certificate its status page and management API serve.
type CertPayload struct {
	Format      int       `json:"format"`
	UAI         string    `json:"uai"` // the one box it is for
	Expires     time.Time `json:"expires"`
	SignedAt    time.Time `json:"signed_at"`
	KeyID       string    `json:"key_id"`
	Certificate string    `json:"certificate"` // PEM: the box's certificate first, then its chain
	Key         string    `json:"key"`         // PEM: its private key
}

// SignCert returns the encoded certificate envelope of p signed by every
// key.
func SignCert(p CertPayload, keys ...Key) ([]byte, error) {
	if p.Format == 0 {
		p.Format = Format
	}
	if p.KeyID == "" && len(keys) > 0 {
		p.KeyID = keys[0].ID
	}
	return seal(p, nocsig.ContextCert, MaxCertSize, "certificate envelope", keys)
}

// OpenCert checks a certificate envelope: size, envelope, a trusted
// key's signature under the certificate context, the box's UAI and the
// expiry. The certificate itself is checked by the installer. Errors are
// *Rejection with the bundles' reasons.
func OpenCert(data []byte, t Trust) (*CertPayload, string, error) {
	var p CertPayload
	signer, err := openSigned(data, MaxCertSize, nocsig.ContextCert, "certificate envelope", t, &p)
	if err != nil {
		return nil, "", err
	}
	if err := checkFor(p.Format, p.UAI, p.Expires, "certificate envelope", t); err != nil {
		return nil, "", err
	}
	return &p, signer, nil
}

// CertInstaller installs a certificate the NOC pushed (the status page's
// holder, shared with the management API): it validates it and returns
// its fingerprint. A refusal error has a Refusal method giving its
// reason and detail.
type CertInstaller interface {
	InstallCertificate(certPEM, keyPEM []byte) (fingerprint string, err error)
}

// CertResult is the answer of POST /v1/cert.
type CertResult struct {
	Outcome     string `json:"outcome"` // installed, rejected
	Reason      string `json:"reason,omitempty"`
	Detail      string `json:"detail,omitempty"`
	Fingerprint string `json:"fingerprint,omitempty"` // the certificate served from now on
	KeyID       string `json:"key_id,omitempty"`
}

// certTrust is what a certificate envelope is checked against: the
// running configuration's keys and UAI.
func (m *Manager) certTrust(running *config.Config) Trust {
	t := Trust{Keys: nocsig.Keys{}, Now: m.now()}
	if running != nil {
		t.UAI = running.Identity.UAI
		t.Keys = nocsig.FromConfig(running.Management.TrustedKeys)
	}
	return t
}

// pushCert serves POST /v1/cert.
func (a *API) pushCert(w http.ResponseWriter, r *http.Request) {
	body, err := a.readBody(w, r, MaxCertSize)
	if limit, ok := tooLarge(err); ok {
		detail := tooLargeDetail(limit, "certificate envelope")
		a.M.log.Warn("the NOC's certificate rejected", "event", "manage-cert-rejected", "reason", ReasonTooLarge, "detail", detail)
		w.Header().Set("Connection", "close")
		writeJSON(w, http.StatusRequestEntityTooLarge, CertResult{Outcome: "rejected", Reason: string(ReasonTooLarge), Detail: detail})
		return
	}
	if err != nil {
		http.Error(w, "reading the certificate envelope: "+err.Error(), http.StatusBadRequest)
		return
	}
	p, signer, err := OpenCert(body, a.M.certTrust(a.M.Config()))
	if err != nil {
		rj, _ := asRejection(err)
		a.M.log.Warn("the NOC's certificate rejected", "event", "manage-cert-rejected", "reason", rj.Reason, "detail", rj.Detail)
		writeJSON(w, http.StatusUnprocessableEntity, CertResult{Outcome: "rejected", Reason: string(rj.Reason), Detail: rj.Detail})
		return
	}
	fp, err := a.Cert.InstallCertificate([]byte(p.Certificate), []byte(p.Key))
	if err != nil {
		var refusal interface{ Refusal() (string, string) }
		if errors.As(err, &refusal) {
			reason, detail := refusal.Refusal()
			a.M.log.Warn("the NOC's certificate rejected", "event", "manage-cert-rejected", "reason", reason, "detail", detail, "key_id", signer)
			writeJSON(w, http.StatusUnprocessableEntity, CertResult{Outcome: "rejected", Reason: reason, Detail: detail, KeyID: signer})
			return
		}
		a.M.log.Error("the NOC's certificate not installed", "event", "manage-cert-failed", "err", err, "key_id", signer)
		writeJSON(w, http.StatusInternalServerError, CertResult{Outcome: "failed", Detail: err.Error(), KeyID: signer})
		return
	}
	a.M.log.Info("the NOC's certificate installed", "event", "manage-cert-installed", "fingerprint", fp, "key_id", signer)
	writeJSON(w, http.StatusOK, CertResult{Outcome: "installed", Fingerprint: fp, KeyID: signer})
}
