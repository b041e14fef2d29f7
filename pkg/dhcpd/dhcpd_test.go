package dhcpd

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"passerelle/pkg/box"
	"passerelle/pkg/config"
	"passerelle/pkg/health"
)

func TestApplyLoadsLeasesAndWarnsAboutAnUnreadableFile(t *testing.T) {
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "admin.json"), []byte("{garbage"), 0o644); err != nil {
		t.Fatal(err)
	}
	warn := health.New(nil)
	reg := prometheus.NewRegistry()
	s := New(box.Deps{Log: discardLog(), Metrics: reg, Health: warn}, Options{LeaseDir: dir})
	cfg, err := config.Load("../../configs/demo.yaml")
	if err != nil {
		t.Fatal(err)
	}
	p, err := s.Plan(cfg)
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Apply(context.Background(), p); err != nil {
		t.Fatal(err)
	}
	if w, ok := warn.Get("dhcp-leases-unreadable:admin"); !ok || !strings.Contains(w.Message, "admin") {
		t.Errorf("no warning for the unreadable lease file: %v", warn.List())
	}
	if _, ok := warn.Get("dhcp-leases-unreadable:peda"); ok {
		t.Error("warning for a zone without a lease file yet")
	}
	if n := testutil.CollectAndCount(reg, "passerelle_dhcp_pool_size"); n != 3 {
		t.Errorf("pool size exported for %d zones, want 3", n)
	}

	// A config without the guest zone's DHCP stops serving it.
	cfg.Zones[2].DHCP.Enabled = false
	p, _ = s.Plan(cfg)
	if err := s.Apply(context.Background(), p); err != nil {
		t.Fatal(err)
	}
	if s.handler("guest") != nil || s.handler("peda") == nil {
		t.Error("zones not following the new plan")
	}
}
