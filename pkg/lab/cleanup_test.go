package lab

import (
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"testing"
	"time"
)

// freeID draws a run ID nothing on the machine uses.
func freeID(t *testing.T) string {
	t.Helper()
	for {
		id, err := newID()
		if err != nil {
			t.Fatal(err)
		}
		inUse, err := idInUse(id)
		if err != nil {
			t.Fatal(err)
		}
		if _, serr := os.Stat(statePath(DefaultStateDir, id)); !inUse && os.IsNotExist(serr) {
			return id
		}
	}
}

// TestCleanupOrphans fabricates the debris of crashed runs by hand and
// checks Cleanup removes all of it:
//   - run A: state file of a dead creator, a namespace made by iproute2
//     with a process living in it, an unmounted placeholder (creator killed
//     between creating the mount point and mounting), a recorded namespace
//     that was never created;
//   - run B: a namespace with no state file at all;
//   - a dead writer's temporary state file.
//
// Not parallel: it must not race Cleanup against itself.
func TestCleanupOrphans(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("lab tests need root (network namespaces)")
	}
	logger := slog.New(slog.NewTextHandler(t.Output(), nil))
	idA, idB, idC := freeID(t), freeID(t), freeID(t)
	nsBox, nsPlaceholder, nsMissing, nsB := nsName(idA, "box"), nsName(idA, "c-0"), nsName(idA, "inet"), nsName(idB, "box")
	t.Cleanup(func() {
		for _, n := range []string{nsBox, nsPlaceholder, nsB} {
			_, _ = deleteNamedNS(n)
		}
		_, _ = removeState(DefaultStateDir, idA)
	})

	dead := exec.Command("true")
	if err := dead.Run(); err != nil {
		t.Fatal(err)
	}
	deadPID := dead.Process.Pid

	for _, n := range []string{nsBox, nsB} {
		if out, err := exec.Command("ip", "netns", "add", n).CombinedOutput(); err != nil {
			t.Fatalf("ip netns add %s: %v\n%s", n, err, out)
		}
	}
	if err := os.WriteFile(nsPath(nsPlaceholder), nil, 0o444); err != nil {
		t.Fatal(err)
	}
	err := createState(DefaultStateDir, runState{
		Version: stateVersion, ID: idA, PID: deadPID, PIDStart: 1, Started: time.Now().UTC(),
		Namespaces: map[string]string{RoleBox: nsBox, RoleClient("x"): nsPlaceholder, RoleInternet: nsMissing},
	})
	if err != nil {
		t.Fatal(err)
	}
	tmp := tmpStatePath(DefaultStateDir, idC, deadPID)
	if err := os.WriteFile(tmp, []byte("{"), 0o644); err != nil {
		t.Fatal(err)
	}
	sleeper := exec.Command("ip", "netns", "exec", nsBox, "sleep", "300")
	if err := sleeper.Start(); err != nil {
		t.Fatal(err)
	}
	waited := make(chan error, 1)
	go func() { waited <- sleeper.Wait() }()
	t.Cleanup(func() { _ = sleeper.Process.Kill() })
	// Wait for ip to exec sleep inside the namespace.
	boxIdent, err := statNS(nsPath(nsBox))
	if err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(5 * time.Second)
	for {
		pids, err := processesIn(map[nsIdent]bool{boxIdent: true})
		if err != nil {
			t.Fatal(err)
		}
		if slices.Contains(pids, sleeper.Process.Pid) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("sleep never showed up in the orphan namespace")
		}
		time.Sleep(10 * time.Millisecond)
	}

	runs, err := list(DefaultStateDir)
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range runs {
		switch r.ID {
		case idA:
			if r.Alive || r.PID != deadPID || len(r.Present) != 2 {
				t.Errorf("List entry for dead run: %+v", r)
			}
		case idB:
			if r.PID != 0 || r.Problem == "" || len(r.Present) != 1 {
				t.Errorf("List entry for stateless run: %+v", r)
			}
		}
	}

	removed, err := Cleanup(logger)
	if err != nil {
		t.Errorf("Cleanup: %v", err)
	}
	for _, want := range []string{nsBox, nsPlaceholder, nsB, statePath(DefaultStateDir, idA), tmp} {
		if !slices.Contains(removed, want) {
			t.Errorf("Cleanup did not remove %s (removed %v)", want, removed)
		}
	}
	if slices.Contains(removed, nsMissing) {
		t.Errorf("Cleanup claims to have removed %s, which never existed", nsMissing)
	}
	select {
	case <-waited: // killed, as it should
	case <-time.After(5 * time.Second):
		t.Error("process in the orphan namespace survived Cleanup")
	}
	for _, id := range []string{idA, idB, idC} {
		if left, _ := filepath.Glob(filepath.Join(NetnsDir, nsPrefix+id+"-*")); len(left) > 0 {
			t.Errorf("left behind: %v", left)
		}
		if left, _ := filepath.Glob(filepath.Join(DefaultStateDir, "*"+id+"*")); len(left) > 0 {
			t.Errorf("left behind: %v", left)
		}
	}
	mounts, err := labMounts()
	if err != nil {
		t.Fatal(err)
	}
	for _, m := range mounts {
		if id, _ := parseNSName(m); id == idA || id == idB {
			t.Errorf("mount of %s left behind", m)
		}
	}
}
