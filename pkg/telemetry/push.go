package telemetry

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"strings"
	"sync"
	"time"

	"passerelle/pkg/netmark"
	"passerelle/pkg/version"
)

// sender posts remote-write payloads to the receiver.
type sender struct {
	plan   *Plan
	mark   func() uint32 // the uplink mark of the next connection; 0: no mark
	client *http.Client

	mu       sync.Mutex
	lastMark uint32
}

// errRefused is a receiver's answer that will never change for this
// payload (4xx other than 429): the batch is dropped, not retried.
type errRefused struct {
	status int
	body   string
}

func (e *errRefused) Error() string {
	return fmt.Sprintf("receiver refused the batch: %d %s", e.status, e.body)
}

func newSender(p *Plan, mark func() uint32) (*sender, error) {
	s := &sender{plan: p, mark: mark}
	tlsConf := &tls.Config{MinVersion: tls.VersionTLS12}
	if p.CAFile != "" {
		pem, err := os.ReadFile(p.CAFile)
		if err != nil {
			return nil, fmt.Errorf("telemetry CA: %w", err)
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("telemetry CA: no certificate in %s", p.CAFile)
		}
		tlsConf.RootCAs = pool
	}
	tr := &http.Transport{
		DialContext: func(ctx context.Context, network, addr string) (net.Conn, error) {
			d := net.Dialer{Timeout: 10 * time.Second, Control: netmark.Control(s.currentMark())}
			return d.DialContext(ctx, network, addr)
		},
		TLSClientConfig:     tlsConf,
		TLSHandshakeTimeout: 10 * time.Second,
		MaxIdleConns:        1,
		IdleConnTimeout:     2 * p.Interval,
	}
	s.client = &http.Client{Transport: tr, Timeout: 30 * time.Second}
	return s, nil
}

// currentMark is the mark for a new connection; a kept-alive connection
// of another uplink is closed first, so a failover moves the pushes too.
func (s *sender) currentMark() uint32 {
	m := uint32(0)
	if s.mark != nil {
		m = s.mark()
	}
	s.mu.Lock()
	changed := m != s.lastMark
	s.lastMark = m
	s.mu.Unlock()
	if changed {
		s.client.Transport.(*http.Transport).CloseIdleConnections()
	}
	return m
}

func (s *sender) send(ctx context.Context, payload []byte) error {
	s.currentMark() // drop a connection pinned to a link no longer preferred
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, s.plan.URL, bytes.NewReader(payload))
	if err != nil {
		return err
	}
	req.Header.Set("Content-Encoding", "snappy")
	req.Header.Set("Content-Type", "application/x-protobuf")
	req.Header.Set("X-Prometheus-Remote-Write-Version", "0.1.0")
	req.Header.Set("User-Agent", "passerelle/"+version.Version)
	if s.plan.Tenant != "" {
		req.Header.Set("X-Scope-OrgID", s.plan.Tenant)
	}
	switch {
	case s.plan.BearerTokenFile != "":
		tok, err := readSecret(s.plan.BearerTokenFile)
		if err != nil {
			return err
		}
		req.Header.Set("Authorization", "Bearer "+tok)
	case s.plan.BasicAuthUser != "":
		pw, err := readSecret(s.plan.BasicAuthPasswordFile)
		if err != nil {
			return err
		}
		req.SetBasicAuth(s.plan.BasicAuthUser, pw)
	}
	resp, err := s.client.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(io.LimitReader(resp.Body, 512))
	switch {
	case resp.StatusCode/100 == 2:
		return nil
	case resp.StatusCode/100 == 4 && resp.StatusCode != http.StatusTooManyRequests:
		return &errRefused{resp.StatusCode, strings.TrimSpace(string(body))}
	}
	return fmt.Errorf("receiver answered %d %s", resp.StatusCode, strings.TrimSpace(string(body)))
}

// readSecret reads a credential file at each push, so a rotated token is
// used without a reload.
func readSecret(path string) (string, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return "", fmt.Errorf("telemetry credential: %w", err)
	}
	s := strings.TrimSpace(string(b))
	if s == "" {
		return "", errors.New("telemetry credential: " + path + " is empty")
	}
	return s, nil
}
