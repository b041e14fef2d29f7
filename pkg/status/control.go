package status

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"time"
)

// DefaultControlSocket is where the daemon answers `passerelle status`,
// `why` and `leases`: a unix socket only root can open.
const DefaultControlSocket = "/run/passerelle/control.sock"

// ControlHandler answers the commands over the control socket, in JSON.
func (s *Server) ControlHandler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /status", func(w http.ResponseWriter, r *http.Request) {
		writeJSON(w, s.Screen())
	})
	mux.HandleFunc("GET /why", func(w http.ResponseWriter, r *http.Request) {
		q := r.URL.Query()
		zones := []string{q.Get("zone")}
		if zones[0] == "" {
			zones = nil
			if c := s.cfg(); c != nil {
				for _, z := range c.Zones {
					if z.DNSProfile != "" {
						zones = append(zones, z.Name)
					}
				}
			}
		}
		var out []WhyAnswer
		for _, z := range zones {
			w := s.o.Source.Why(z, q.Get("name"))
			out = append(out, WhyAnswer{Why: w, Text: Explain(w, s.lang())})
		}
		writeJSON(w, out)
	})
	mux.HandleFunc("GET /leases", func(w http.ResponseWriter, r *http.Request) {
		ls := s.o.Source.Leases(r.URL.Query().Get("zone"))
		for i := range ls {
			ls[i].MACText = ls[i].MAC.String()
		}
		writeJSON(w, LeasesAnswer{Leases: ls, Usage: s.o.Source.Usage()})
	})
	mux.HandleFunc("GET /log-dir", func(w http.ResponseWriter, r *http.Request) {
		writeJSON(w, map[string]string{"dir": s.o.EventLogDir})
	})
	return mux
}

// WhyAnswer is one zone's explanation.
type WhyAnswer struct {
	Why  Why    `json:"why"`
	Text string `json:"text"`
}

// LeasesAnswer is `passerelle leases`' data.
type LeasesAnswer struct {
	Leases []Lease     `json:"leases"`
	Usage  []ZoneUsage `json:"usage"`
}

func writeJSON(w http.ResponseWriter, v any) {
	w.Header().Set("Content-Type", "application/json")
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	enc.Encode(v)
}

// ServeControl answers on the unix socket at path until ctx ends. A
// socket left by a dead daemon is replaced; one a live daemon answers on
// is left alone (an error).
func (s *Server) ServeControl(ctx context.Context, path string) error {
	if c, err := net.DialTimeout("unix", path, time.Second); err == nil {
		c.Close()
		return fmt.Errorf("%s: another daemon answers there", path)
	}
	os.Remove(path)
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return err
	}
	ln, err := net.Listen("unix", path)
	if err != nil {
		return err
	}
	os.Chmod(path, 0o600)
	srv := &http.Server{Handler: s.ControlHandler(), ReadHeaderTimeout: 5 * time.Second}
	go func() {
		<-ctx.Done()
		srv.Close()
		os.Remove(path)
	}()
	if err := srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
		return err
	}
	return nil
}

// Client talks to a running daemon over its control socket.
type Client struct {
	Path string
	hc   *http.Client
}

// NewClient returns a client of the socket at path.
func NewClient(path string) *Client {
	return &Client{Path: path, hc: &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{
		DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
			var d net.Dialer
			return d.DialContext(ctx, "unix", path)
		},
	}}}
}

// Get fetches one answer into v.
func (c *Client) Get(path string, q url.Values, v any) error {
	u := "http://passerelle" + path
	if len(q) > 0 {
		u += "?" + q.Encode()
	}
	resp, err := c.hc.Get(u)
	if err != nil {
		return fmt.Errorf("the daemon does not answer on %s (is it running?): %w", c.Path, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		b, _ := io.ReadAll(io.LimitReader(resp.Body, 4096))
		return fmt.Errorf("%s: %s", resp.Status, b)
	}
	return json.NewDecoder(resp.Body).Decode(v)
}
