package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"passerelle/pkg/boxcert"
	"passerelle/pkg/inventory"
	"passerelle/pkg/manage"
)

const pushUsage = `usage: passerellectl push --key FILE [--version N] [--expires 72h] [--json]
         (--box URL [--fingerprint FP] CONFIG | --inventory CSV --configs DIR --url TEMPLATE)
         [--waves 1%,10%,50%,100%] [--max-failure 5%] [--parallel 64] [--known-boxes FILE]

Signs each box's configuration and pushes it to the box's management API
(on its tunnel address), waiting for the box's verdict: committed (the
health gate passed), rolled back and why, or rejected and why. With an
inventory the fleet is pushed in waves: the first is the canary; after
each wave the push stops if the share of failed boxes so far is above
--max-failure. TEMPLATE is the API's base URL with {column} replaced by
the inventory row's values, e.g. https://{tunnel_ip}:8443. Progress goes
to stderr; --json prints the whole report. Exit status 1 if any box
failed or the push stopped.
` + trustUsage

// trustUsage is how every command that talks to boxes checks them.
const trustUsage = `
The API is HTTPS with the box's own certificate. A box is accepted if its
certificate has the SHA-256 fingerprint pinned by --fingerprint (one box)
or the inventory's fingerprint column; else the fingerprint seen the
first time is trusted and kept in the known-boxes file, and a box that
later shows another certificate is refused.
`

const statusUsage = `usage: passerellectl status [--json] [--parallel 64] [--known-boxes FILE]
         (--box URL [--fingerprint FP] | --inventory CSV --url TEMPLATE)

Prints one line per box: the version and generation it runs, a generation
inside its confirm window, its warnings, and the last bundle's outcome
and why.
` + trustUsage

const generationsUsage = `usage: passerellectl generations list --box URL [--json]
       passerellectl generations diff --box URL A B
       passerellectl generations rollback --box URL --to N --key FILE [--version V]
       (each with [--fingerprint FP] [--known-boxes FILE])

list: the generations a box keeps (the last 10), who signed them, when,
and what became of them. diff: the configuration change from A to B.
rollback: signs generation N's configuration again as a new version and
pushes it, so going back passes the same checks and health gate as going
forward.
` + trustUsage

// targetFlags say which boxes a command talks to.
type targetFlags struct {
	box, inv, url string
}

func (t *targetFlags) register(fs *flag.FlagSet) {
	fs.StringVar(&t.box, "box", "", "one box's management API `URL`, e.g. https://100.64.0.7:8443")
	fs.StringVar(&t.inv, "inventory", "", "NOC inventory `CSV` (a uai column, those TEMPLATE uses, and optionally fingerprint)")
	fs.StringVar(&t.url, "url", "", "API URL `TEMPLATE` with {column} placeholders, e.g. https://{tunnel_ip}:8443")
}

// targets returns the boxes, UAI and URL (the UAI is empty with --box),
// and each one's pinned fingerprint (the inventory's fingerprint column;
// empty: none).
func (t *targetFlags) targets() ([]manage.Target, []string, error) {
	if (t.box == "") == (t.inv == "") {
		return nil, nil, fmt.Errorf("give --box URL or --inventory CSV --url TEMPLATE")
	}
	if t.box != "" {
		u := strings.TrimSuffix(t.box, "/")
		if _, err := apiAddr(u); err != nil {
			return nil, nil, err
		}
		return []manage.Target{{URL: u}}, nil, nil
	}
	if t.url == "" {
		return nil, nil, fmt.Errorf("--inventory needs --url TEMPLATE")
	}
	data, err := os.ReadFile(t.inv)
	if err != nil {
		return nil, nil, err
	}
	inv, err := inventory.ParseInventory(filepath.Base(t.inv), data)
	if err != nil {
		return nil, nil, err
	}
	var (
		out    []manage.Target
		pinned []string
	)
	for _, r := range inv.Rows {
		if len(r.Errs) > 0 || r.UAI == "" {
			return nil, nil, fmt.Errorf("%s:%d: unusable row", t.inv, r.Line)
		}
		u := t.url
		for k, v := range r.Values {
			u = strings.ReplaceAll(u, "{"+k+"}", v)
		}
		if strings.Contains(u, "{") {
			return nil, nil, fmt.Errorf("%s:%d: %s has a placeholder with no column", t.inv, r.Line, u)
		}
		u = strings.TrimSuffix(u, "/")
		if _, err := apiAddr(u); err != nil {
			return nil, nil, fmt.Errorf("%s:%d: %w", t.inv, r.Line, err)
		}
		if fp := r.Values[fingerprintColumn]; fp != "" {
			if _, err := boxcert.ParseFingerprint(fp); err != nil {
				return nil, nil, fmt.Errorf("%s:%d: column %s: %w", t.inv, r.Line, fingerprintColumn, err)
			}
		}
		out = append(out, manage.Target{UAI: r.UAI, URL: u})
		pinned = append(pinned, r.Values[fingerprintColumn])
	}
	return out, pinned, nil
}

// parseShare reads 5% or 0.05.
func parseShare(s string) (float64, error) {
	s = strings.TrimSpace(s)
	if p, ok := strings.CutSuffix(s, "%"); ok {
		v, err := strconv.ParseFloat(p, 64)
		return v / 100, err
	}
	return strconv.ParseFloat(s, 64)
}

// waveFlags shape a rollout (push, update push).
type waveFlags struct {
	waves, maxFail string
	parallel       int
	asJSON         bool
}

func (w *waveFlags) register(fs *flag.FlagSet, parallel int) {
	fs.StringVar(&w.waves, "waves", "1%,10%,50%,100%", "cumulative shares of the fleet per wave; the first is the canary")
	fs.StringVar(&w.maxFail, "max-failure", "5%", "stop after a wave when more boxes than this have failed")
	fs.IntVar(&w.parallel, "parallel", parallel, "boxes pushed to at once")
	fs.BoolVar(&w.asJSON, "json", false, "print the report as JSON")
}

// options are the rollout's; with several boxes and no --json, progress
// goes to stderr every 2 s.
func (w *waveFlags) options(n int, stderr io.Writer) (manage.RolloutOptions, error) {
	o := manage.RolloutOptions{Parallel: w.parallel}
	for _, s := range strings.Split(w.waves, ",") {
		v, err := parseShare(s)
		if err != nil || v <= 0 || v > 1 {
			return o, fmt.Errorf("--waves: %q is not a share", s)
		}
		o.Waves = append(o.Waves, v)
	}
	var err error
	if o.MaxFailure, err = parseShare(w.maxFail); err != nil {
		return o, fmt.Errorf("--max-failure: %v", err)
	}
	if !w.asJSON && n > 1 {
		last := time.Now()
		o.Progress = func(done, total, failed int) {
			if done == total || time.Since(last) > 2*time.Second {
				last = time.Now()
				fmt.Fprintf(stderr, "%d/%d boxes, %d failed\n", done, total, failed)
			}
		}
	}
	return o, nil
}

// report prints a rollout's report (what names the pushed version) and
// returns the exit status: 1 if a box failed or the rollout stopped.
func (w *waveFlags) report(stdout io.Writer, rep manage.Report, what string) int {
	if w.asJSON {
		json.NewEncoder(stdout).Encode(rep)
	} else {
		for _, x := range rep.Outcomes {
			if x.Outcome == manage.OutcomeSkipped {
				continue
			}
			why := strings.Trim(x.Reason+": "+x.Detail, ": ")
			if x.Gen > 0 {
				why = fmt.Sprintf("gen %-3d %s", x.Gen, why)
			}
			fmt.Fprintf(stdout, "%-9s wave %d  %-12s %s\n", x.UAI, x.Wave, x.Outcome, why)
		}
		fmt.Fprintf(stdout, "%s: %d pushed, %d failed (%s) in %s", what, rep.Pushed, rep.Failed,
			strings.Join(rep.Summary(), ", "), rep.Took.Round(time.Millisecond))
		if rep.Stopped {
			fmt.Fprintf(stdout, "; STOPPED after wave %d: failure rate above %s", rep.StoppedWave, w.maxFail)
		}
		fmt.Fprintln(stdout)
	}
	if rep.Failed > 0 || rep.Stopped {
		return 1
	}
	return 0
}

// rolloutFlags are the flags of the commands that push to a fleet in
// waves (push, update push), so that both take them the same way: which
// boxes, how their certificates are trusted, and the waves.
type rolloutFlags struct {
	targetFlags
	trustFlags
	waveFlags
}

// register adds them to fs; parallel is --parallel's default.
func (f *rolloutFlags) register(fs *flag.FlagSet, parallel int) {
	f.targetFlags.register(fs)
	f.trustFlags.register(fs)
	f.waveFlags.register(fs, parallel)
}

// rollout pushes to the targets in o's waves, accepting the boxes pins
// accepts, prints the report (what names the pushed version) and returns
// the exit status. One push may take up to 2 h: a configuration's verdict
// comes within the box's confirm window; an image takes minutes over a
// slow school link, and the box answers once it is written and read back.
func (f *rolloutFlags) rollout(targets []manage.Target, pins *boxcert.Pins, o manage.RolloutOptions, stdout io.Writer, what string) int {
	o.Client = trustClient(pins, 2*time.Hour, 2)
	return f.report(stdout, manage.Rollout(context.Background(), targets, o), what)
}

func cmdPush(args []string, stdout, stderr io.Writer) int {
	fs := newFlagSet("push", pushUsage, stderr)
	var so signOpts
	so.register(fs, 72*time.Hour)
	var rf rolloutFlags
	rf.register(fs, 64)
	configs := fs.String("configs", "", "`directory` of the configurations, <uai>.yaml (with --inventory)")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	fail := func(code int, err error) int {
		fmt.Fprintf(stderr, "passerellectl push: %v\n", err)
		return code
	}
	targets, pinned, err := rf.targets()
	if err != nil {
		return fail(2, err)
	}
	if (rf.box != "") != (fs.NArg() == 1) || (rf.inv != "") != (*configs != "") {
		fs.Usage()
		return 2
	}
	o, err := rf.options(len(targets), stderr)
	if err != nil {
		return fail(2, err)
	}
	s, err := so.signer()
	if err != nil {
		return fail(2, err)
	}
	for i := range targets {
		path := fs.Arg(0)
		if rf.inv != "" {
			path = filepath.Join(*configs, targets[i].UAI+".yaml")
		}
		uai, b, err := s.file(path)
		if err != nil {
			return fail(1, err)
		}
		targets[i].UAI, targets[i].Bundle = uai, b
	}
	pins, err := rf.pins(targets, pinned)
	if err != nil {
		return fail(2, err)
	}
	defer saveKnown(pins, stderr)
	return rf.rollout(targets, pins, o, stdout, fmt.Sprintf("version %d", s.version))
}

func cmdStatus(args []string, stdout, stderr io.Writer) int {
	fs := newFlagSet("status", statusUsage, stderr)
	var tf targetFlags
	tf.register(fs)
	var trust trustFlags
	trust.register(fs)
	parallel := fs.Int("parallel", 64, "boxes asked at once")
	asJSON := fs.Bool("json", false, "print JSON")
	if err := fs.Parse(args); err != nil || fs.NArg() != 0 {
		return 2
	}
	targets, pinned, err := tf.targets()
	if err == nil {
		var pins *boxcert.Pins
		if pins, err = trust.pins(targets, pinned); err == nil {
			defer saveKnown(pins, stderr)
			rows := manage.FleetStatus(context.Background(), trustClient(pins, 30*time.Second, 2), targets, *parallel)
			return printStatus(rows, *asJSON, stdout)
		}
	}
	fmt.Fprintf(stderr, "passerellectl status: %v\n", err)
	return 2
}

// printStatus prints the fleet table (or JSON); exit status 1 when a
// box is unreachable or inside a confirm window.
func printStatus(rows []manage.BoxStatus, asJSON bool, stdout io.Writer) int {
	bad := 0
	for i := range rows {
		if rows[i].UAI == "" {
			rows[i].UAI = rows[i].Status.UAI
		}
		if rows[i].Err != "" || rows[i].Pending != nil {
			bad++
		}
	}
	if asJSON {
		json.NewEncoder(stdout).Encode(rows)
	} else {
		fmt.Fprint(stdout, manage.StatusTable(rows))
	}
	if bad > 0 {
		return 1
	}
	return 0
}

func cmdGenerations(args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 {
		fmt.Fprint(stderr, generationsUsage)
		return 2
	}
	fs := newFlagSet("generations", generationsUsage, stderr)
	box := fs.String("box", "", "the box's management API `URL`")
	asJSON := fs.Bool("json", false, "print JSON")
	to := fs.Int("to", 0, "generation to roll back to")
	var so signOpts
	so.register(fs, 72*time.Hour)
	var trust trustFlags
	trust.register(fs)
	if err := fs.Parse(args[1:]); err != nil || *box == "" {
		fs.Usage()
		return 2
	}
	fail := func(err error) int {
		fmt.Fprintf(stderr, "passerellectl generations: %v\n", err)
		return 1
	}
	base := strings.TrimSuffix(*box, "/")
	pins, err := trust.pins([]manage.Target{{URL: base}}, nil)
	if err != nil {
		fmt.Fprintf(stderr, "passerellectl generations: %v\n", err)
		return 2
	}
	defer saveKnown(pins, stderr)
	c := trustClient(pins, 30*time.Second, 2)
	switch args[0] {
	case "list":
		var gs []manage.Generation
		if err := getJSON(c, base+"/v1/generations", &gs); err != nil {
			return fail(err)
		}
		if *asJSON {
			json.NewEncoder(stdout).Encode(gs)
			return 0
		}
		fmt.Fprintf(stdout, "%4s %12s %-12s %-7s %-18s %-20s %s\n", "GEN", "VERSION", "STATE", "SOURCE", "SIGNED BY", "APPLIED", "WHY")
		for _, g := range gs {
			fmt.Fprintf(stdout, "%4d %12d %-12s %-7s %-18s %-20s %s\n", g.N, g.Version, g.State, g.Source, g.KeyID,
				g.AppliedAt.UTC().Format("2006-01-02 15:04:05"), g.Why)
		}
		return 0
	case "diff":
		if fs.NArg() != 2 {
			fs.Usage()
			return 2
		}
		var a, b manage.Generation
		if err := getJSON(c, base+"/v1/generations/"+fs.Arg(0), &a); err != nil {
			return fail(err)
		}
		if err := getJSON(c, base+"/v1/generations/"+fs.Arg(1), &b); err != nil {
			return fail(err)
		}
		fmt.Fprintf(stdout, "--- generation %d (version %d)\n+++ generation %d (version %d)\n", a.N, a.Version, b.N, b.Version)
		fmt.Fprint(stdout, lineDiff(a.Config, b.Config))
		return 0
	case "rollback":
		if *to == 0 {
			fs.Usage()
			return 2
		}
		var g manage.Generation
		if err := getJSON(c, fmt.Sprintf("%s/v1/generations/%d", base, *to), &g); err != nil {
			return fail(err)
		}
		var st manage.Status
		if err := getJSON(c, base+"/v1/status", &st); err != nil {
			return fail(err)
		}
		s, err := so.signer()
		if err != nil {
			return fail(err)
		}
		if so.version == 0 {
			s.version = max(s.version, st.Highest+1)
		}
		b, err := s.text(st.UAI, fmt.Sprintf("%s-gen%d.yaml", st.UAI, g.N), g.Config)
		if err != nil {
			return fail(err)
		}
		out := manage.PushOne(context.Background(), trustClient(pins, 2*time.Hour, 2), manage.Target{UAI: st.UAI, URL: base, Bundle: b})
		if *asJSON {
			json.NewEncoder(stdout).Encode(out)
		} else {
			fmt.Fprintf(stdout, "%s: generation %d's configuration as version %d: %s %s %s\n", st.UAI, g.N, s.version, out.Outcome, out.Reason, out.Detail)
		}
		if out.Outcome != manage.OutcomeCommitted {
			return 1
		}
		return 0
	}
	fs.Usage()
	return 2
}

func getJSON(c *http.Client, url string, v any) error {
	resp, err := c.Get(url)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		b, _ := io.ReadAll(io.LimitReader(resp.Body, 4096))
		return fmt.Errorf("%s: %s %s", url, resp.Status, strings.TrimSpace(string(b)))
	}
	return json.NewDecoder(resp.Body).Decode(v)
}

// lineDiff is a plain line diff (longest common subsequence), enough for
// configurations of a few hundred lines.
func lineDiff(a, b string) string {
	x, y := strings.Split(a, "\n"), strings.Split(b, "\n")
	n, m := len(x), len(y)
	lcs := make([][]int, n+1)
	for i := range lcs {
		lcs[i] = make([]int, m+1)
	}
	for i := n - 1; i >= 0; i-- {
		for j := m - 1; j >= 0; j-- {
			if x[i] == y[j] {
				lcs[i][j] = lcs[i+1][j+1] + 1
			} else {
				lcs[i][j] = max(lcs[i+1][j], lcs[i][j+1])
			}
		}
	}
	var sb strings.Builder
	i, j := 0, 0
	for i < n || j < m {
		switch {
		case i < n && j < m && x[i] == y[j]:
			i, j = i+1, j+1
		case j < m && (i == n || lcs[i][j+1] >= lcs[i+1][j]):
			fmt.Fprintf(&sb, "+%s\n", y[j])
			j++
		default:
			fmt.Fprintf(&sb, "-%s\n", x[i])
			i++
		}
	}
	return sb.String()
}
