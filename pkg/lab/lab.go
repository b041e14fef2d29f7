package lab

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"sync"
	"time"
)

// Bounds on teardown, so that a wedged server or an unkillable process
// cannot hang a test run forever.
const (
	serverStopTimeout = 5 * time.Second
	killTimeout       = 10 * time.Second
)

// maxIDAttempts bounds the search for a free run ID. With 2^24 IDs and a
// handful of runs per machine, needing more than one draw is already rare.
const maxIDAttempts = 8

// Lab is one running lab: its namespaces, links and test servers.
type Lab struct {
	// ID is unique per run: 6 random hex characters, the middle of every
	// namespace name (pl<ID>-<role>).
	ID string

	logger   *slog.Logger
	stateDir string
	plan     *plan
	servers  *servers
	dhcp     map[string]*DHCPServer // ISP DHCP servers, by uplink name

	mu   sync.Mutex
	down bool
}

// Up builds the lab described by spec and starts its test servers. ctx
// bounds the construction only: the lab lives until Down (or, if the process
// dies, until Cleanup). On any error Up tears down whatever it built before
// returning.
func Up(ctx context.Context, spec Spec, logger *slog.Logger) (*Lab, error) {
	return up(ctx, spec, logger, DefaultStateDir)
}

func up(ctx context.Context, spec Spec, logger *slog.Logger, stateDir string) (*Lab, error) {
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	norm, err := spec.normalize()
	if err != nil {
		return nil, err
	}
	if err := ctx.Err(); err != nil {
		return nil, fmt.Errorf("lab: %w", err)
	}
	l, err := reserveRun(norm, logger, stateDir)
	if err != nil {
		return nil, err
	}
	l.logger.Info("lab: building", "namespaces", len(l.plan.namespaces), "links", len(l.plan.veths))
	start := time.Now()
	if err := l.build(ctx); err != nil {
		err = fmt.Errorf("lab %s: %w", l.ID, err)
		if derr := l.Down(); derr != nil {
			err = errors.Join(err, fmt.Errorf("lab %s: tear down after failed build: %w", l.ID, derr))
		}
		return nil, err
	}
	l.logger.Info("lab: up", "elapsed", time.Since(start).Round(time.Millisecond))
	return l, nil
}

// reserveRun draws a run ID and records the run in its state file, before
// anything else exists, so that a run killed at any later point is
// discoverable by Cleanup.
func reserveRun(spec Spec, logger *slog.Logger, stateDir string) (*Lab, error) {
	self, err := readProcStat(os.Getpid())
	if err != nil {
		return nil, fmt.Errorf("lab: read own process start time: %w", err)
	}
	for range maxIDAttempts {
		id, err := newID()
		if err != nil {
			return nil, err
		}
		if taken, err := idInUse(id); err != nil {
			return nil, fmt.Errorf("lab %s: %w", id, err)
		} else if taken {
			continue
		}
		p, err := newPlan(id, spec)
		if err != nil {
			return nil, err
		}
		st := runState{
			Version:    stateVersion,
			ID:         id,
			PID:        os.Getpid(),
			PIDStart:   self.startTime,
			Started:    time.Now().UTC(),
			Namespaces: p.roleMap(),
		}
		err = createState(stateDir, st)
		if errors.Is(err, errIDTaken) {
			continue
		}
		if err != nil {
			return nil, fmt.Errorf("lab %s: %w", id, err)
		}
		return &Lab{
			ID:       id,
			logger:   logger.With("lab", id),
			stateDir: stateDir,
			plan:     p,
			servers:  &servers{logger: logger.With("lab", id)},
		}, nil
	}
	return nil, fmt.Errorf("lab: no free run ID after %d attempts", maxIDAttempts)
}

// idInUse reports whether leftovers of another run with this ID exist in
// NetnsDir (a killed run that was not cleaned up yet, for instance).
func idInUse(id string) (bool, error) {
	names, err := labNamespaces()
	if err != nil {
		return false, err
	}
	for _, n := range names {
		if nid, _ := parseNSName(n); nid == id {
			return true, nil
		}
	}
	return false, nil
}

func (l *Lab) build(ctx context.Context) error {
	if err := l.plan.build(ctx); err != nil {
		return err
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	inet, acad := l.Namespace(RoleInternet), l.Namespace(RoleAcademy)
	if err := l.servers.startHTTP(inet, ":80", InternetHTTPBody); err != nil {
		return fmt.Errorf("internet: %w", err)
	}
	if err := l.servers.startDNS(inet, ":53", newDNSZone(labRecords())); err != nil {
		return fmt.Errorf("internet: %w", err)
	}
	// Bound to the server's address, so replies leave from it (a wildcard
	// socket would answer from the transit address, which clients drop).
	if err := l.servers.startUDP(inet, netip.AddrPortFrom(internetServerAddr, 123).String(), "ntp",
		func(q []byte, _ net.Addr) ([]byte, bool) { return ntpAnswer(q, time.Now()) }); err != nil {
		return fmt.Errorf("internet: %w", err)
	}
	if err := l.servers.startUDP(inet, netip.AddrPortFrom(internetServerAddr, EchoPort).String(), "echo", echoAnswer); err != nil {
		return fmt.Errorf("internet: %w", err)
	}
	if err := l.servers.startHTTP(acad, ":80", AcademyHTTPBody); err != nil {
		return fmt.Errorf("academy: %w", err)
	}
	return l.startDHCPServers()
}

// Down stops the servers, kills every process living in the lab's
// namespaces, deletes the namespaces (and with them every lab link) and
// removes the state file. It keeps going after errors and reports them all;
// if some namespace could not be removed, the state file is kept so that
// Cleanup can finish the job once this process has exited (CleanupRun can
// do it at once). Calling Down again is a no-op.
func (l *Lab) Down() error {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.down {
		return nil
	}
	l.down = true

	var errs []error
	ctx, cancel := context.WithTimeout(context.Background(), serverStopTimeout)
	if err := l.servers.stop(ctx); err != nil {
		errs = append(errs, err)
	}
	cancel()
	if err := l.stopDHCPServers(); err != nil {
		errs = append(errs, err)
	}
	removed, err := teardownNamespaces(l.logger, l.plan.namespaceNames())
	if err != nil {
		errs = append(errs, err)
	}
	// The state file goes last: as long as anything of the run may remain,
	// it must stay discoverable by Cleanup.
	if err == nil {
		if _, err := removeState(l.stateDir, l.ID); err != nil {
			errs = append(errs, err)
		}
	}
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("lab %s: down: %w", l.ID, err)
	}
	l.logger.Info("lab: down", "removed", len(removed))
	return nil
}

// Namespace returns the name (in /run/netns) of the namespace playing role:
// "box", "internet", "academy", "isp:<uplink name>" or "client:<zone
// name>". It returns "" for an unknown role.
func (l *Lab) Namespace(role string) string { return l.plan.nsByRole(role) }

// Namespaces returns every role of the lab with its namespace name.
func (l *Lab) Namespaces() map[string]string { return l.plan.roleMap() }

// InternetServer returns the address of the internet HTTP and DNS server.
func (l *Lab) InternetServer() netip.Addr { return internetServerAddr }

// AcademyServer returns the address of the academy HTTP server.
func (l *Lab) AcademyServer() netip.Addr { return academyServerAddr }

// Spec returns the spec the lab was built from, with defaults filled in
// (e.g. client addresses).
func (l *Lab) Spec() Spec {
	s := l.plan.spec
	s.Uplinks = append([]UplinkSpec(nil), s.Uplinks...)
	s.Zones = append([]ZoneSpec(nil), s.Zones...)
	return s
}

func (p *plan) namespaceNames() []string {
	names := make([]string, len(p.namespaces))
	for i, ns := range p.namespaces {
		names[i] = ns.name
	}
	return names
}
