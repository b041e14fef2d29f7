package manage

import (
	"bytes"
	"context"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"os"
	"strings"
	"time"

	"passerelle/pkg/config"
)

// DialFunc makes the pull client's connections for the running
// configuration: cmd/passerelle pins them to the preferred uplink, or
// sends them through the tunnel when the URL is an academy address.
type DialFunc func(ctx context.Context, cfg *config.Config, network, addr string) (net.Conn, error)

// pullState is the pull client's memory between polls; guarded by m.mu.
type pullState struct {
	etag    string
	lastSum [32]byte
	lastOK  time.Time
	lastErr string
}

// PullURL is the running configuration's pull URL with {uai} replaced.
func PullURL(cfg *config.Config) string {
	return strings.ReplaceAll(cfg.Management.PullURL, "{uai}", cfg.Identity.UAI)
}

// client returns the HTTP client of the running configuration.
func (m *Manager) client(cfg *config.Config) (*http.Client, error) {
	tr := &http.Transport{
		Proxy:                 nil,
		MaxIdleConns:          1,
		IdleConnTimeout:       30 * time.Second,
		TLSHandshakeTimeout:   10 * time.Second,
		ResponseHeaderTimeout: 20 * time.Second,
	}
	if m.o.Dial != nil {
		tr.DialContext = func(ctx context.Context, network, addr string) (net.Conn, error) {
			return m.o.Dial(ctx, cfg, network, addr)
		}
	}
	if f := cfg.Management.CAFile; f != "" {
		pem, err := os.ReadFile(f)
		if err != nil {
			return nil, fmt.Errorf("management.ca_file: %w", err)
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("management.ca_file %s: no certificate", f)
		}
		tr.TLSClientConfig = &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12}
	}
	return &http.Client{Transport: tr, Timeout: time.Minute}, nil
}

// Run polls the pull URL of the running configuration until ctx ends:
// every pull_interval with 10% jitter, with backoff from 10 s after a
// failure, If-None-Match with the last ETag. A new bundle goes through
// Handle like a pushed one.
func (m *Manager) Run(ctx context.Context) error {
	failures := 0
	// The first poll soon after start, spread so a fleet rebooting at
	// once (a power cut in a city) does not poll all at once.
	wait := time.Duration(rand.Int64N(int64(10 * time.Second)))
	if m.o.PullEvery > 0 {
		wait = m.o.PullEvery
	}
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-time.After(wait):
		}
		m.mu.Lock()
		cfg := m.running
		m.mu.Unlock()
		if cfg == nil || cfg.Management.PullURL == "" {
			wait = 30 * time.Second
			continue
		}
		every := cfg.Management.PullInterval.D()
		if m.o.PullEvery > 0 {
			every = m.o.PullEvery
		}
		if err := m.PollOnce(ctx); err != nil {
			failures++
			m.log.Warn("pull failed", "url", PullURL(cfg), "err", err, "failures", failures)
			wait = min(max(every/30, time.Second)<<min(failures-1, 10), every)
		} else {
			failures = 0
			wait = every
		}
		wait += time.Duration(rand.Int64N(int64(wait/10) + 1)) // jitter
	}
}

// PollOnce fetches the pull URL once and hands a new bundle to Handle.
func (m *Manager) PollOnce(ctx context.Context) error {
	m.mu.Lock()
	cfg, etag := m.running, m.pull.etag
	m.mu.Unlock()
	if cfg == nil || cfg.Management.PullURL == "" {
		return nil
	}
	c, err := m.client(cfg)
	if err != nil {
		return err
	}
	defer c.CloseIdleConnections()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, PullURL(cfg), nil)
	if err != nil {
		return err
	}
	if etag != "" {
		req.Header.Set("If-None-Match", etag)
	}
	resp, err := c.Do(req)
	if err != nil {
		m.setPull("", err)
		return err
	}
	defer resp.Body.Close()
	switch resp.StatusCode {
	case http.StatusNotModified:
		m.setPull(etag, nil)
		return nil
	case http.StatusNotFound:
		m.setPull("", nil) // nothing published for this box yet
		return nil
	case http.StatusOK:
	default:
		err := fmt.Errorf("%s", resp.Status)
		m.setPull("", err)
		return err
	}
	body, err := io.ReadAll(io.LimitReader(resp.Body, MaxBundleSize+1))
	if err != nil {
		m.setPull("", err)
		return err
	}
	sum := sha256.Sum256(body)
	m.mu.Lock()
	same := sum == m.pull.lastSum
	m.mu.Unlock()
	m.setPull(resp.Header.Get("ETag"), nil)
	if same {
		return nil // the bundle this box already handled (no ETag support)
	}
	m.mu.Lock()
	m.pull.lastSum = sum
	m.mu.Unlock()
	m.Handle(ctx, bytes.Clone(body), "pull")
	return nil
}

func (m *Manager) setPull(etag string, err error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.pull.etag = etag
	if err != nil {
		m.pull.lastErr = err.Error()
		return
	}
	m.pull.lastOK, m.pull.lastErr = m.now(), ""
}
