package update

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"passerelle/pkg/atomicfile"
	"passerelle/pkg/box"
	"passerelle/pkg/health"
)

// Structured events of the daemon's log ("event" attribute).
const (
	EvRejected  = "update-rejected"  // source, reason, detail, version
	EvFailed    = "update-failed"    // source, reason, detail, version, slot
	EvInstalled = "update-installed" // source, version, slot, size, key, took
	EvReboot    = "update-reboot"    // version, slot: the box restarts to try it
)

// Outcomes of an update.
const (
	OutcomeInstalled = "installed" // written, verified, to be tried once at the next boot
	OutcomeRejected  = "rejected"  // refused before anything was written
	OutcomeFailed    = "failed"    // the slot was being written; it is left unusable and not tried
)

// DefaultDir is where the update results live on the board.
const DefaultDir = "/perm/update"

// keepResults is how many results are kept on /perm.
const keepResults = 50

// Result is what became of one update bundle: kept on /perm
// (results.json), exported as metrics, returned to the pusher and shown
// by passerelle status.
type Result struct {
	At      time.Time     `json:"at"`
	Source  string        `json:"source"` // push, or what delivered it
	Outcome string        `json:"outcome"`
	Reason  string        `json:"reason,omitempty"`
	Detail  string        `json:"detail,omitempty"`
	Version string        `json:"version,omitempty"` // the update's
	Running string        `json:"running"`           // the firmware version that ran then
	Board   string        `json:"board,omitempty"`
	KeyID   string        `json:"key_id,omitempty"`
	Slot    string        `json:"slot,omitempty"`
	Size    int64         `json:"size,omitempty"`
	SHA256  string        `json:"sha256,omitempty"`
	Files   []File        `json:"files,omitempty"`
	Took    time.Duration `json:"took"`
	Reboot  string        `json:"reboot,omitempty"` // what happens next, when a reboot was asked
	// Rebooting: the box restarts RebootDelay after this answer.
	Rebooting bool `json:"rebooting,omitempty"`
}

// Summary is the result in one sentence (passerelle status).
func (r Result) Summary() string {
	switch r.Outcome {
	case OutcomeInstalled:
		return fmt.Sprintf("version %s installed in slot %s, tried at the next boot", r.Version, r.Slot)
	case OutcomeRejected:
		return fmt.Sprintf("update %s rejected (%s): %s", orNone(r.Version), r.Reason, r.Detail)
	}
	return fmt.Sprintf("update %s failed (%s), slot %s left unusable: %s", orNone(r.Version), r.Reason, orNone(r.Slot), r.Detail)
}

// Options shape an Updater.
type Options struct {
	Dir    string // results; default DefaultDir
	Target Target // nil: this box has no A/B slots (every update is refused, no-slot)
	// Reboot restarts the box the clean way (PID 1's orderly shutdown);
	// nil: it cannot (the daemon is not init).
	Reboot func() error
}

// Updater installs updates one at a time and keeps their results.
type Updater struct {
	log    *slog.Logger
	health *health.Registry
	now    func() time.Time
	o      Options
	met    *metrics

	busy sync.Mutex // one install at a time
	mu   sync.Mutex // results.json
}

// New makes an Updater; its results directory is created.
func New(d box.Deps, o Options) (*Updater, error) {
	d = d.For("update")
	if o.Dir == "" {
		o.Dir = DefaultDir
	}
	if err := os.MkdirAll(o.Dir, 0o755); err != nil {
		return nil, fmt.Errorf("update: %w", err)
	}
	met, err := newMetrics(d.Metrics)
	if err != nil {
		return nil, err
	}
	return &Updater{log: d.Log, health: d.Health, now: d.Now, o: o, met: met}, nil
}

// CanReboot says whether Handle can restart the box after an install.
func (u *Updater) CanReboot() bool { return u.o.Reboot != nil }

// RebootDelay is the time between a successful install asked with a
// reboot and the reboot: the pusher gets its answer first.
const RebootDelay = 2 * time.Second

// Handle installs one update bundle read from r, logs, counts and keeps
// the result. With reboot, a successful install restarts the box
// RebootDelay later when it can (Result.Reboot says which).
func (u *Updater) Handle(ctx context.Context, r io.Reader, t Trust, source string, reboot bool) Result {
	res := Result{At: u.now(), Source: source, Running: t.Running, Board: t.Board}
	if !u.busy.TryLock() {
		return u.finish(res, reject(ReasonBusy, "another update is being installed"), nil, false)
	}
	defer u.busy.Unlock()
	u.met.installing.Set(1)
	defer u.met.installing.Set(0)
	in, err := Install(ctx, r, t, u.o.Target)
	return u.finish(res, err, in, reboot)
}

// Reject records an update refused before it was read (the box cannot
// say what it trusts yet, say).
func (u *Updater) Reject(source string, t Trust, reason Reason, detail string) Result {
	return u.finish(Result{At: u.now(), Source: source, Running: t.Running, Board: t.Board}, reject(reason, "%s", detail), nil, false)
}

func (u *Updater) finish(res Result, err error, in *Installed, reboot bool) Result {
	res.Took = u.now().Sub(res.At)
	if in != nil {
		m := in.Manifest
		res.Outcome, res.Version, res.KeyID, res.Slot = OutcomeInstalled, m.Version, in.KeyID, in.Slot
		res.Size, res.SHA256, res.Files = m.Image.Size, m.Image.SHA256, m.Files
		u.health.Clear("update-failed")
		u.log.Info("update installed; the slot is tried at the next boot", "event", EvInstalled, "source", res.Source,
			"version", res.Version, "slot", res.Slot, "size", res.Size, "key", res.KeyID, "took", res.Took)
		if reboot {
			if u.o.Reboot == nil {
				res.Reboot = "not possible: the daemon is not init (PID 1); restart the machine to try slot " + res.Slot
			} else {
				res.Reboot, res.Rebooting = "the box restarts now to try slot "+res.Slot, true
				u.log.Warn("restarting to try the update", "event", EvReboot, "version", res.Version, "slot", res.Slot)
				time.AfterFunc(RebootDelay, func() {
					if err := u.o.Reboot(); err != nil {
						u.log.Error("restart after the update failed", "err", err)
					}
				})
			}
		}
	} else {
		var ue *Error
		if !errors.As(err, &ue) {
			ue = failed(ReasonWriteFailed, "%v", err)
		}
		res.Reason, res.Detail = string(ue.Reason), ue.Detail
		if ue.Written {
			res.Outcome = OutcomeFailed
			u.log.Error("update failed; the slot is left unusable and will not be tried", "event", EvFailed,
				"source", res.Source, "reason", res.Reason, "detail", res.Detail)
			u.health.Raise("update", "update-failed", health.Warn,
				"A firmware update failed while it was written ("+res.Reason+"): "+res.Detail+" The box runs the firmware it ran before.")
		} else {
			res.Outcome = OutcomeRejected
			u.log.Error("update rejected", "event", EvRejected, "source", res.Source, "reason", res.Reason, "detail", res.Detail)
		}
	}
	u.record(res)
	return res
}

// record keeps a result on /perm and counts it.
func (u *Updater) record(r Result) {
	u.met.count(r)
	u.mu.Lock()
	defer u.mu.Unlock()
	rs, err := u.results()
	if err != nil {
		u.log.Warn("update results unreadable; starting a new list", "err", err)
	}
	rs = append(rs, r)
	if len(rs) > keepResults {
		rs = rs[len(rs)-keepResults:]
	}
	data, _ := json.MarshalIndent(rs, "", "  ")
	if err := atomicfile.Replace(filepath.Join(u.o.Dir, "results.json"), data, 0o644); err != nil {
		u.log.Error("could not keep the update's result", "err", err)
	}
}

// Results are the kept results, oldest first.
func (u *Updater) Results() ([]Result, error) {
	u.mu.Lock()
	defer u.mu.Unlock()
	return u.results()
}

func (u *Updater) results() ([]Result, error) {
	data, err := os.ReadFile(filepath.Join(u.o.Dir, "results.json"))
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	var rs []Result
	if err := json.Unmarshal(data, &rs); err != nil {
		return nil, fmt.Errorf("%s: %w", filepath.Join(u.o.Dir, "results.json"), err)
	}
	return rs, nil
}

// Last is the last result, if any.
func (u *Updater) Last() (Result, bool) {
	rs, _ := u.Results()
	if len(rs) == 0 {
		return Result{}, false
	}
	return rs[len(rs)-1], true
}

type metrics struct {
	updates    *prometheus.CounterVec
	installing prometheus.Gauge
	last       *prometheus.GaugeVec
}

func newMetrics(reg prometheus.Registerer) (*metrics, error) {
	m := &metrics{
		updates: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "passerelle_update_bundles_total",
			Help: "Firmware update bundles received, by outcome (installed, rejected, failed) and reason."}, []string{"outcome", "reason"}),
		installing: prometheus.NewGauge(prometheus.GaugeOpts{Name: "passerelle_update_installing",
			Help: "1 while an update is being written to the inactive slot."}),
		last: prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: "passerelle_update_last_timestamp_seconds",
			Help: "When the last update of each outcome ended (Unix time)."}, []string{"outcome"}),
	}
	for _, c := range []prometheus.Collector{m.updates, m.installing, m.last} {
		if err := reg.Register(c); err != nil {
			return nil, fmt.Errorf("update metrics: %w", err)
		}
	}
	m.updates.WithLabelValues(OutcomeInstalled, "")
	for _, r := range Reasons {
		m.updates.WithLabelValues(outcomeOf(r), string(r))
	}
	return m, nil
}

// outcomeOf is the outcome a reason comes with.
func outcomeOf(r Reason) string {
	switch r {
	case ReasonTruncated, ReasonHashMismatch, ReasonWriteFailed, ReasonReadbackMismatch, ReasonTryFailed:
		return OutcomeFailed
	}
	return OutcomeRejected
}

func (m *metrics) count(r Result) {
	m.updates.WithLabelValues(r.Outcome, r.Reason).Inc()
	m.last.WithLabelValues(r.Outcome).Set(float64(r.At.Add(r.Took).Unix()))
}
