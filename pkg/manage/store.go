package manage

import (
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"time"

	"passerelle/pkg/atomicfile"
)

// DefaultDir is where the generations live on the board.
const DefaultDir = "/perm/manage"

// Keep is how many generations are kept on /perm.
const Keep = 10

// keepResults is how many bundle results are kept on /perm.
const keepResults = 100

// Generation states.
const (
	StatePending    = "pending"
	StateCommitted  = "committed"
	StateRolledBack = "rolled-back"
	StateBase       = "base" // the config file the box ran before its first bundle
)

// Generation is one configuration the box ran or tried, as kept on
// /perm: gen/<N>.json.
type Generation struct {
	N         int       `json:"n"`
	Version   uint64    `json:"version"` // the bundle's; 0 for the base
	State     string    `json:"state"`
	Source    string    `json:"source"` // pull, push, base
	KeyID     string    `json:"key_id,omitempty"`
	SignedAt  time.Time `json:"signed_at,omitzero"`
	AppliedAt time.Time `json:"applied_at"`
	Why       string    `json:"why,omitempty"` // why it was rolled back
	Name      string    `json:"name"`
	Config    string    `json:"config"`
}

// Pending is the marker of a generation inside its confirm window. While
// it is on /perm, the box boots Prev, never Gen: a crash or a restart in
// the window ends in rollback.
type Pending struct {
	Gen      int       `json:"gen"`
	Prev     int       `json:"prev"`
	Deadline time.Time `json:"deadline"`
	// Stopped says how the daemon stopped in order inside the window
	// (reboot, power off, exit), written by Manager.Stop; empty at boot
	// means it did not stop in order: a crash, a kill, a power cut or the
	// watchdog.
	Stopped   string    `json:"stopped,omitempty"`
	StoppedAt time.Time `json:"stopped_at,omitzero"`
}

// State is the store's one small file, state.json, replaced atomically.
type State struct {
	Current int      `json:"current"` // committed generation the box runs; 0: none yet
	Highest uint64   `json:"highest"` // highest bundle version accepted (replays are refused)
	Pending *Pending `json:"pending,omitempty"`
}

// Result is what became of one bundle, kept on /perm (results.json),
// exported as metrics and returned to the pusher.
type Result struct {
	At      time.Time `json:"at"`
	Source  string    `json:"source"`
	UAI     string    `json:"uai,omitempty"`
	Version uint64    `json:"version,omitempty"`
	KeyID   string    `json:"key_id,omitempty"`
	Outcome string    `json:"outcome"` // rejected, pending, committed, rolled-back, unchanged
	Reason  string    `json:"reason,omitempty"`
	Detail  string    `json:"detail,omitempty"`
	Gen     int       `json:"gen,omitempty"`
}

// Outcomes of a bundle.
const (
	OutcomeRejected   = "rejected"
	OutcomePending    = "pending"
	OutcomeCommitted  = "committed"
	OutcomeRolledBack = "rolled-back"
	OutcomeUnchanged  = "unchanged" // same version as the running one (pull)
)

// Store is the generations directory. Every write is atomic and durable.
type Store struct{ dir string }

// OpenStore opens (creating) the generations directory.
func OpenStore(dir string) (*Store, error) {
	if err := os.MkdirAll(filepath.Join(dir, "gen"), 0o700); err != nil {
		return nil, err
	}
	return &Store{dir: dir}, nil
}

// Dir is the store's directory.
func (s *Store) Dir() string { return s.dir }

func (s *Store) genPath(n int) string {
	return filepath.Join(s.dir, "gen", fmt.Sprintf("%06d.json", n))
}

// State reads state.json; a missing file is the zero State.
func (s *Store) State() (State, error) {
	var st State
	b, err := os.ReadFile(filepath.Join(s.dir, "state.json"))
	if errors.Is(err, fs.ErrNotExist) {
		return st, nil
	}
	if err != nil {
		return st, err
	}
	if err := json.Unmarshal(b, &st); err != nil {
		return st, fmt.Errorf("%s: %w", filepath.Join(s.dir, "state.json"), err)
	}
	return st, nil
}

// SetState replaces state.json.
func (s *Store) SetState(st State) error {
	b, err := json.MarshalIndent(st, "", "  ")
	if err != nil {
		return err
	}
	return atomicfile.Write(filepath.Join(s.dir, "state.json"), b, 0o600)
}

// Put writes one generation.
func (s *Store) Put(g Generation) error {
	b, err := json.MarshalIndent(g, "", "  ")
	if err != nil {
		return err
	}
	return atomicfile.Write(s.genPath(g.N), b, 0o600)
}

// Get reads one generation.
func (s *Store) Get(n int) (Generation, error) {
	var g Generation
	b, err := os.ReadFile(s.genPath(n))
	if err != nil {
		return g, err
	}
	err = json.Unmarshal(b, &g)
	return g, err
}

// List returns the kept generations, newest first.
func (s *Store) List() ([]Generation, error) {
	ents, err := os.ReadDir(filepath.Join(s.dir, "gen"))
	if err != nil {
		return nil, err
	}
	var out []Generation
	for _, e := range ents {
		n, err := strconv.Atoi(strings.TrimSuffix(e.Name(), ".json"))
		if err != nil || !strings.HasSuffix(e.Name(), ".json") {
			continue
		}
		if g, err := s.Get(n); err == nil {
			out = append(out, g)
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].N > out[j].N })
	return out, nil
}

// Last returns the highest generation number kept (0: none).
func (s *Store) Last() int {
	gs, _ := s.List()
	if len(gs) == 0 {
		return 0
	}
	return gs[0].N
}

// Prune removes all but the Keep newest generations, never keep1 or keep2.
func (s *Store) Prune(keep1, keep2 int) error {
	gs, err := s.List()
	if err != nil {
		return err
	}
	for i, g := range gs {
		if i < Keep || g.N == keep1 || g.N == keep2 {
			continue
		}
		if err := os.Remove(s.genPath(g.N)); err != nil && !errors.Is(err, fs.ErrNotExist) {
			return err
		}
	}
	return atomicfile.SyncDir(filepath.Join(s.dir, "gen"))
}

// Results returns the kept results, oldest first.
func (s *Store) Results() ([]Result, error) {
	b, err := os.ReadFile(filepath.Join(s.dir, "results.json"))
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	var rs []Result
	err = json.Unmarshal(b, &rs)
	return rs, err
}

// AddResult appends one result, keeping the last keepResults.
func (s *Store) AddResult(r Result) error {
	rs, err := s.Results()
	if err != nil {
		rs = nil // a damaged file is replaced, not kept forever
	}
	rs = append(rs, r)
	if len(rs) > keepResults {
		rs = rs[len(rs)-keepResults:]
	}
	b, err := json.MarshalIndent(rs, "", "  ")
	if err != nil {
		return err
	}
	return atomicfile.Write(filepath.Join(s.dir, "results.json"), b, 0o600)
}
