package lab

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"maps"
	"os"
	"slices"
	"time"
)

// teardownNamespaces kills the processes living in the named namespaces and
// deletes the namespaces. Missing namespaces are fine (idempotence, partial
// builds, concurrent cleanups). It returns the names actually removed.
func teardownNamespaces(logger *slog.Logger, names []string) ([]string, error) {
	var errs []error
	idents := map[nsIdent]bool{}
	for _, name := range names {
		id, err := statNS(nsPath(name))
		if err == nil {
			idents[id] = true
		} else if !errors.Is(err, fs.ErrNotExist) {
			// Typically an unmounted placeholder: nothing can live in it.
			logger.Debug("lab: namespace not mounted", "namespace", name, "err", err)
		}
	}

	// Processes first: deleting the mount does not destroy a namespace that
	// processes still live in, it only makes it invisible.
	ctx, cancel := context.WithTimeout(context.Background(), killTimeout)
	killed, err := killProcessesIn(ctx, idents)
	cancel()
	if len(killed) > 0 {
		logger.Info("lab: killed processes left in lab namespaces", "pids", killed)
	}
	if err != nil {
		errs = append(errs, err)
	}

	var removed []string
	for _, name := range names {
		ok, err := deleteNamedNS(name)
		if err != nil {
			errs = append(errs, fmt.Errorf("delete namespace %s: %w", name, err))
		}
		if ok {
			removed = append(removed, name)
		}
	}
	return removed, errors.Join(errs...)
}

// Cleanup removes the leftovers of every lab run whose creating process is
// gone: processes in its namespaces, the namespaces (and so their links),
// their mounts and the run's state file. Namespaces named like a lab's but
// with no live owner are removed too. Runs of live processes, including the
// caller's own, are left alone.
//
// removed lists what was deleted: namespace names and state file paths.
func Cleanup(logger *slog.Logger) (removed []string, err error) {
	return cleanup(logger, DefaultStateDir, false)
}

// CleanupAll is Cleanup extended to runs whose creator is still alive:
// everything lab-shaped on the machine goes. The creators' in-process
// servers keep running on sockets of deleted namespaces until they exit.
func CleanupAll(logger *slog.Logger) (removed []string, err error) {
	return cleanup(logger, DefaultStateDir, true)
}

// CleanupRun removes one run, whether or not its creator is alive (for
// `lab down <ID>`). As with CleanupAll, a live creator's servers keep running
// on sockets of the deleted namespaces until it exits. An unknown ID is not
// an error: there is nothing to remove.
func CleanupRun(logger *slog.Logger, id string) (removed []string, err error) {
	if !idRE.MatchString(id) {
		return nil, fmt.Errorf("lab cleanup: invalid run ID %q", id)
	}
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	runs, err := gatherRuns(DefaultStateDir)
	if err != nil {
		return nil, fmt.Errorf("lab cleanup: %w", err)
	}
	r := runs[id]
	if r == nil {
		return nil, nil
	}
	removed, err = cleanupRun(logger.With("lab", id), DefaultStateDir, r, true)
	if err != nil {
		return removed, fmt.Errorf("lab %s: cleanup: %w", id, err)
	}
	return removed, nil
}

// runEvidence gathers what exists on the machine for one run ID.
type runEvidence struct {
	id         string
	namespaces []string // found in NetnsDir or in the mount table
	hasState   bool
	state      runState
	stateErr   error
	tmpPIDs    []int // writers of temporary state files
}

func (r *runEvidence) alive() bool {
	return r.hasState && r.stateErr == nil && processAlive(r.state.PID, r.state.PIDStart)
}

// gatherRuns collects every run's evidence. Namespaces are listed before
// state files: a run writes its state file before creating namespaces, so
// any namespace seen here belongs to a state file the second listing sees,
// unless that run was torn down in between. Listing the other way round
// could mistake a run starting concurrently for an orphan.
func gatherRuns(stateDir string) (map[string]*runEvidence, error) {
	runs := map[string]*runEvidence{}
	get := func(id string) *runEvidence {
		if runs[id] == nil {
			runs[id] = &runEvidence{id: id}
		}
		return runs[id]
	}

	names, err := labNamespaces()
	if err != nil {
		return nil, err
	}
	mounted, err := labMounts()
	if err != nil {
		return nil, err
	}
	for _, name := range append(names, mounted...) {
		id, _ := parseNSName(name)
		r := get(id)
		if !slices.Contains(r.namespaces, name) {
			r.namespaces = append(r.namespaces, name)
		}
	}

	entries, err := listStateDir(stateDir)
	if err != nil {
		return nil, err
	}
	for _, e := range entries {
		r := get(e.id)
		if e.tmp {
			r.tmpPIDs = append(r.tmpPIDs, e.pid)
			continue
		}
		r.hasState = true
		r.state, r.stateErr = readState(statePath(stateDir, e.id))
	}
	return runs, nil
}

func cleanup(logger *slog.Logger, stateDir string, all bool) ([]string, error) {
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	runs, err := gatherRuns(stateDir)
	if err != nil {
		return nil, fmt.Errorf("lab cleanup: %w", err)
	}
	var removed []string
	var errs []error
	for _, id := range slices.Sorted(maps.Keys(runs)) {
		r := runs[id]
		rm, err := cleanupRun(logger.With("lab", id), stateDir, r, all)
		removed = append(removed, rm...)
		if err != nil {
			errs = append(errs, fmt.Errorf("lab %s: cleanup: %w", id, err))
		}
	}
	return removed, errors.Join(errs...)
}

func cleanupRun(logger *slog.Logger, stateDir string, r *runEvidence, all bool) ([]string, error) {
	var removed []string
	var errs []error
	// Temporary state files only matter while their writer lives.
	for _, pid := range r.tmpPIDs {
		if processAlive(pid, 0) && !all {
			continue
		}
		path := tmpStatePath(stateDir, r.id, pid)
		if err := os.Remove(path); err != nil && !errors.Is(err, fs.ErrNotExist) {
			errs = append(errs, err)
		} else if err == nil {
			removed = append(removed, path)
		}
	}
	if !r.hasState && len(r.namespaces) == 0 {
		return removed, errors.Join(errs...) // only a (live) writer's temporary file
	}
	if r.alive() && !all {
		return removed, errors.Join(errs...)
	}
	if r.stateErr != nil {
		logger.Warn("lab: unreadable state file, removing the run anyway", "err", r.stateErr)
	}

	// Recorded namespaces may have been deleted already, and found ones may
	// be missing from the record (unreadable state): take both.
	names := slices.Clone(r.namespaces)
	for _, name := range r.state.Namespaces {
		if id, ok := parseNSName(name); ok && id == r.id && !slices.Contains(names, name) {
			names = append(names, name)
		}
	}
	slices.Sort(names)
	logger.Info("lab: cleaning up run", "pid", r.state.PID, "namespaces", names)
	rm, err := teardownNamespaces(logger, names)
	removed = append(removed, rm...)
	if err != nil {
		return removed, errors.Join(append(errs, err)...)
	}
	// Only a state file that was seen is removed: an ID known only from
	// namespaces could otherwise have its fresh state file deleted by a
	// run that reused the ID meanwhile.
	if r.hasState {
		ok, err := removeState(stateDir, r.id)
		if err != nil {
			errs = append(errs, err)
		} else if ok {
			removed = append(removed, statePath(stateDir, r.id))
		}
	}
	return removed, errors.Join(errs...)
}

// RunInfo describes a lab run present on this machine.
type RunInfo struct {
	ID         string
	PID        int               // creating process; 0 if unknown (no state file)
	Started    time.Time         // zero if unknown
	Alive      bool              // the creating process is still running
	Namespaces map[string]string // role -> namespace name, as recorded; nil if unknown
	Present    []string          // lab namespaces of this run currently on the machine
	Problem    string            // why the state file could not be read, if so
}

// List returns the lab runs present on this machine, oldest first: runs with
// a state file and namespaces left over by runs without one.
func List() ([]RunInfo, error) {
	return list(DefaultStateDir)
}

func list(stateDir string) ([]RunInfo, error) {
	runs, err := gatherRuns(stateDir)
	if err != nil {
		return nil, fmt.Errorf("lab list: %w", err)
	}
	var out []RunInfo
	for _, r := range runs {
		if !r.hasState && len(r.namespaces) == 0 {
			continue
		}
		info := RunInfo{ID: r.id, Alive: r.alive(), Present: slices.Sorted(slices.Values(r.namespaces))}
		if r.hasState && r.stateErr == nil {
			info.PID, info.Started, info.Namespaces = r.state.PID, r.state.Started, r.state.Namespaces
		}
		if r.stateErr != nil {
			info.Problem = r.stateErr.Error()
		} else if !r.hasState {
			info.Problem = "no state file"
		}
		out = append(out, info)
	}
	slices.SortFunc(out, func(a, b RunInfo) int {
		if c := a.Started.Compare(b.Started); c != 0 {
			return c
		}
		return cmp.Compare(a.ID, b.ID)
	})
	return out, nil
}

// labNamespaces lists the entries of NetnsDir named like lab namespaces.
func labNamespaces() ([]string, error) {
	ents, err := os.ReadDir(NetnsDir)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("list %s: %w", NetnsDir, err)
	}
	var names []string
	for _, e := range ents {
		if _, ok := parseNSName(e.Name()); ok {
			names = append(names, e.Name())
		}
	}
	return names, nil
}
