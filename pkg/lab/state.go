package lab

import (
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"time"

	"passerelle/pkg/atomicfile"
)

// DefaultStateDir holds one state file per lab run. It lives under /run
// (a tmpfs) because a lab never survives a reboot: neither do namespaces.
const DefaultStateDir = "/run/passerelle-lab"

const stateVersion = 1

// errIDTaken reports that a state file for the chosen run ID already exists.
var errIDTaken = errors.New("run ID already in use")

// runState is the on-disk record of a lab run. It is written before the
// first namespace is created so that a run killed at any point can be found
// and cleaned up by another process.
type runState struct {
	Version int    `json:"version"`
	ID      string `json:"id"`
	PID     int    `json:"pid"`
	// PIDStart is the creator's start time in clock ticks since boot
	// (/proc/PID/stat field 22); with PID it identifies the creator even
	// after the PID has been recycled.
	PIDStart   uint64            `json:"pid_start_ticks"`
	Started    time.Time         `json:"started"`
	Namespaces map[string]string `json:"namespaces"` // role -> namespace name
}

func statePath(dir, id string) string { return filepath.Join(dir, id+".json") }

// tmpStatePath names the temporary file a process writes before publishing
// a state file. It embeds the writer's PID so Cleanup can tell a live
// writer's file from a dead one's.
func tmpStatePath(dir, id string, pid int) string {
	return filepath.Join(dir, fmt.Sprintf(".%s.json.tmp.%d", id, pid))
}

// createState publishes st atomically and exclusively: the content is
// written and synced to a temporary file, then hard-linked to its final name.
// Unlike rename, link fails if the name exists, which is how two concurrent
// runs that drew the same random ID find out (errIDTaken). Readers never see
// a partial file.
func createState(dir string, st runState) error {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return fmt.Errorf("create state dir: %w", err)
	}
	data, err := json.MarshalIndent(st, "", "  ")
	if err != nil {
		return fmt.Errorf("encode state: %w", err)
	}
	data = append(data, '\n')

	tmp := tmpStatePath(dir, st.ID, st.PID)
	f, err := os.OpenFile(tmp, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o644)
	if errors.Is(err, fs.ErrExist) {
		return errIDTaken // same ID drawn twice in this very process
	}
	if err != nil {
		return fmt.Errorf("create temporary state file: %w", err)
	}
	defer os.Remove(tmp) // the content survives under the final name
	if _, err := f.Write(data); err != nil {
		f.Close()
		return fmt.Errorf("write %s: %w", tmp, err)
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return fmt.Errorf("sync %s: %w", tmp, err)
	}
	if err := f.Close(); err != nil {
		return fmt.Errorf("close %s: %w", tmp, err)
	}
	if err := os.Link(tmp, statePath(dir, st.ID)); err != nil {
		if errors.Is(err, fs.ErrExist) {
			return errIDTaken
		}
		return fmt.Errorf("publish state file: %w", err)
	}
	if err := os.Remove(tmp); err != nil {
		return fmt.Errorf("remove %s: %w", tmp, err)
	}
	return atomicfile.SyncDir(dir)
}

// readState reads and checks a state file.
func readState(path string) (runState, error) {
	var st runState
	data, err := os.ReadFile(path)
	if err != nil {
		return st, err
	}
	if err := json.Unmarshal(data, &st); err != nil {
		return st, fmt.Errorf("decode %s: %w", path, err)
	}
	if st.Version != stateVersion {
		return st, fmt.Errorf("%s: unsupported state version %d", path, st.Version)
	}
	if !idRE.MatchString(st.ID) || statePath(filepath.Dir(path), st.ID) != path {
		return st, fmt.Errorf("%s: state file records ID %q", path, st.ID)
	}
	return st, nil
}

// removeState deletes a run's state file; a missing file is not an error so
// that Down and Cleanup can race harmlessly.
func removeState(dir, id string) (removed bool, err error) {
	err = os.Remove(statePath(dir, id))
	if errors.Is(err, fs.ErrNotExist) {
		return false, nil
	}
	if err != nil {
		return false, fmt.Errorf("remove state file: %w", err)
	}
	return true, atomicfile.SyncDir(dir)
}

// stateEntry is a file found in the state directory.
type stateEntry struct {
	id  string
	tmp bool // temporary file of writer pid
	pid int
}

// listStateDir returns the state and temporary files of the state
// directory; a missing directory means no runs.
func listStateDir(dir string) ([]stateEntry, error) {
	ents, err := os.ReadDir(dir)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("list state dir: %w", err)
	}
	var out []stateEntry
	for _, e := range ents {
		name := e.Name()
		if id, ok := strings.CutSuffix(name, ".json"); ok && idRE.MatchString(id) {
			out = append(out, stateEntry{id: id})
			continue
		}
		var id string
		var pid int
		if n, _ := fmt.Sscanf(name, ".%6s.json.tmp.%d", &id, &pid); n == 2 && idRE.MatchString(id) &&
			name == filepath.Base(tmpStatePath(dir, id, pid)) {
			out = append(out, stateEntry{id: id, tmp: true, pid: pid})
		}
	}
	return out, nil
}
