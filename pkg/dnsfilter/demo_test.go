package dnsfilter

import (
	"bufio"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"passerelle/pkg/config"
	"passerelle/pkg/ut1"
)

// demoLists builds what `make demo` builds in bin/demo-lists: the UT1
// snapshot beside the repository, when it is there, then the synthetic
// categories of configs/demo-lists copied over it.
func demoLists(t *testing.T) (dir string, snapshot bool) {
	t.Helper()
	dir = t.TempDir()
	snap := "../../../shared/data/ut1"
	if _, err := os.Stat(snap); err == nil {
		copyTree(t, snap, dir)
		snapshot = true
	}
	copyTree(t, "../../configs/demo-lists", dir)
	return dir, snapshot
}

// copyTree copies regular files (small alias files included) as cp -R does.
func copyTree(t *testing.T, from, to string) {
	t.Helper()
	err := filepath.WalkDir(from, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(from, p)
		dst := filepath.Join(to, rel)
		if d.IsDir() {
			return os.MkdirAll(dst, 0o755)
		}
		src, err := os.Open(p)
		if err != nil {
			return err
		}
		defer src.Close()
		out, err := os.Create(dst)
		if err != nil {
			return err
		}
		if _, err := io.Copy(out, src); err != nil {
			out.Close()
			return err
		}
		return out.Close()
	})
	if err != nil {
		t.Fatal(err)
	}
}

// TestDemoBlocksAdultNames is the acceptance test of the demo's filtering:
// the demo config with the demo's lists blocks the synthetic adult names
// in the pupils' zones, and a gambling name of the UT1 snapshot too.
func TestDemoBlocksAdultNames(t *testing.T) {
	dir, snapshot := demoLists(t)
	cfg, err := config.Load("../../configs/demo.yaml")
	if err != nil {
		t.Fatal(err)
	}
	cfg.DNS.Lists.Directory = dir // what the Makefile writes into bin/demo.yaml
	plan, err := Compile(cfg)
	if err != nil {
		t.Fatal(err)
	}
	lists, err := ut1.ReadDir(plan.Lists.Dir, ut1.Options{})
	if err != nil {
		t.Fatal(err)
	}
	pol, err := newPolicy(plan, lists)
	if err != nil {
		t.Fatal(err)
	}
	if _, c, ok := lists.Category("adult"); !ok || c.Domains == 0 {
		t.Fatalf("the demo lists have no adult domains: %+v", c)
	}
	check := func(zone, name string, want action, reason string) {
		t.Helper()
		z := pol.zones[zone]
		if z == nil {
			t.Fatalf("no zone %s in the demo", zone)
		}
		v := z.profile.decide(queryName(name), lists)
		if v.action != want || v.reason != reason {
			t.Errorf("zone %s, %s: action %d reason %q, want %d %q", zone, name, v.action, v.reason, want, reason)
		}
	}
	for _, zone := range []string{"peda", "guest"} {
		check(zone, "adult-demo.lab.test", block, "adult")
		check(zone, "www.xxx-demo.lab.test.", block, "adult")
		check(zone, "www.lab.test", pass, "")
	}
	check("admin", "adult-demo.lab.test", pass, "") // personnels: malware and phishing only

	if !snapshot {
		t.Log("no UT1 snapshot beside the repository: checked the synthetic adult list only")
		return
	}
	f, err := os.Open(filepath.Join(dir, "gambling", "domains"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if d := strings.TrimSpace(sc.Text()); d != "" && !strings.HasPrefix(d, "#") && strings.Contains(d, ".") && (d[0] < '0' || d[0] > '9') {
			check("peda", d, block, "gambling")
			break
		}
	}
}
