package main

import (
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"passerelle/pkg/eventlog"
	"passerelle/pkg/status"
)

// The technician's commands (issue 17): they ask the running daemon over
// its control socket, or read the persistent log on /perm.

func controlFlag(fs *flag.FlagSet) *string {
	return fs.String("socket", status.DefaultControlSocket, "the running daemon's control socket")
}

// cmdStatus prints the first screen of the status page.
func cmdStatus(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("status", flag.ContinueOnError)
	fs.SetOutput(stderr)
	sock := controlFlag(fs)
	asJSON := fs.Bool("json", false, "print the screen as JSON")
	if err := fs.Parse(args); err != nil || fs.NArg() != 0 {
		fmt.Fprintf(stderr, "passerelle status: expected no argument\n%s", usage)
		return 2
	}
	var sc status.Screen
	if err := status.NewClient(*sock).Get("/status", nil, &sc); err != nil {
		fmt.Fprintf(stderr, "passerelle status: %v\n", err)
		return 1
	}
	if *asJSON {
		return printJSON(stdout, sc)
	}
	printScreen(stdout, sc, isTerminal(stdout))
	if sc.Overall == status.Bad {
		return 1
	}
	return 0
}

func printJSON(w io.Writer, v any) int {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	if err := enc.Encode(v); err != nil {
		return 1
	}
	return 0
}

func isTerminal(w io.Writer) bool {
	f, ok := w.(*os.File)
	if !ok {
		return false
	}
	st, err := f.Stat()
	return err == nil && st.Mode()&os.ModeCharDevice != 0 && os.Getenv("NO_COLOR") == ""
}

// printScreen prints the screen, one line per concern: a marker that
// reads without colour ([OK], [!!], [XX], [--]), coloured on a terminal.
func printScreen(w io.Writer, sc status.Screen, colour bool) {
	mark := func(l status.Level) string {
		m, c := "[--]", "90"
		switch l {
		case status.OK:
			m, c = "[OK]", "32"
		case status.Warn:
			m, c = "[!!]", "33"
		case status.Bad:
			m, c = "[XX]", "31"
		}
		if colour {
			return "\x1b[" + c + "m" + m + "\x1b[0m"
		}
		return m
	}
	fmt.Fprintf(w, "%s (%s) %s — %s\n\n", sc.School, sc.UAI, sc.Host, sc.Time.Local().Format("02/01/2006 15:04:05"))
	width := 0
	for _, l := range sc.Lines {
		width = max(width, len([]rune(l.Title)))
	}
	for _, l := range sc.Lines {
		pad := strings.Repeat(" ", width-len([]rune(l.Title)))
		fmt.Fprintf(w, "%s %s%s  %s\n", mark(l.Level), l.Title, pad, l.Text)
		if l.Advice != "" {
			fmt.Fprintf(w, "     %s  → %s\n", strings.Repeat(" ", width), l.Advice)
		}
	}
	if len(sc.Warnings) > 0 {
		fmt.Fprintln(w)
		for _, x := range sc.Warnings {
			text := x.Message
			if x.Text != "" {
				// The meaning in the page's language, then the
				// component's own (English, technical) message.
				text = x.Text + "\n     (" + x.Message + ")"
			}
			fmt.Fprintf(w, "%s %s: %s\n     → %s\n", mark(x.Level), x.Code, text, x.Advice)
		}
	}
	if sc.Fingerprint != "" {
		from := ""
		if sc.CertFromNOC {
			from = " (pushed by the NOC)"
		}
		fmt.Fprintf(w, "\nstatus page certificate SHA-256: %s%s\n", sc.Fingerprint, from)
	}
}

// cmdWhy says whether a name is blocked, per zone, and why.
func cmdWhy(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("why", flag.ContinueOnError)
	fs.SetOutput(stderr)
	sock := controlFlag(fs)
	zone := fs.String("zone", "", "only this zone (default: every filtered zone)")
	asJSON := fs.Bool("json", false, "print JSON")
	// NAME may come before the flags: passerelle why NAME --zone Z.
	var name string
	if len(args) > 0 && !strings.HasPrefix(args[0], "-") {
		name, args = args[0], args[1:]
	}
	if err := fs.Parse(args); err != nil {
		return 2
	}
	if name == "" && fs.NArg() == 1 {
		name = fs.Arg(0)
	} else if fs.NArg() != 0 || name == "" {
		fmt.Fprintf(stderr, "passerelle why: expected NAME [--zone ZONE]\n%s", usage)
		return 2
	}
	var out []status.WhyAnswer
	if err := status.NewClient(*sock).Get("/why", url.Values{"name": {name}, "zone": {*zone}}, &out); err != nil {
		fmt.Fprintf(stderr, "passerelle why: %v\n", err)
		return 1
	}
	if *asJSON {
		return printJSON(stdout, out)
	}
	for _, a := range out {
		fmt.Fprintln(stdout, a.Text)
		if a.Why.Lists.Loaded {
			fmt.Fprintf(stdout, "  lists: version %.12s, installed %s\n", a.Why.Lists.Version, a.Why.Lists.Since.Local().Format("02/01/2006 15:04"))
		}
	}
	if len(out) == 0 {
		fmt.Fprintln(stdout, "no filtered zone")
	}
	return 0
}

// cmdLeases prints the live DHCP leases, of one zone or all.
func cmdLeases(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("leases", flag.ContinueOnError)
	fs.SetOutput(stderr)
	sock := controlFlag(fs)
	asJSON := fs.Bool("json", false, "print JSON")
	var zone string
	if len(args) > 0 && !strings.HasPrefix(args[0], "-") {
		zone, args = args[0], args[1:]
	}
	if err := fs.Parse(args); err != nil {
		return 2
	}
	if zone == "" && fs.NArg() == 1 {
		zone = fs.Arg(0)
	} else if fs.NArg() != 0 {
		fmt.Fprintf(stderr, "passerelle leases: expected [ZONE]\n%s", usage)
		return 2
	}
	var out status.LeasesAnswer
	if err := status.NewClient(*sock).Get("/leases", url.Values{"zone": {zone}}, &out); err != nil {
		fmt.Fprintf(stderr, "passerelle leases: %v\n", err)
		return 1
	}
	if *asJSON {
		return printJSON(stdout, out)
	}
	for _, u := range out.Usage {
		if zone == "" || u.Zone == zone {
			fmt.Fprintf(stdout, "zone %s: %d of %d pool addresses in use, %d live leases\n", u.Zone, u.InUse, u.Pool, u.Active)
		}
	}
	if len(out.Leases) > 0 {
		fmt.Fprintf(stdout, "\n%-10s %-15s %-17s %-20s %s\n", "ZONE", "ADDRESS", "MAC", "HOSTNAME", "EXPIRES")
	}
	for _, l := range out.Leases {
		fmt.Fprintf(stdout, "%-10s %-15s %-17s %-20s %s\n", l.Zone, l.Addr, l.MACText, l.Hostname, l.Expiry.Local().Format("02/01 15:04:05"))
	}
	return 0
}

// cmdLog prints the persistent event log, oldest first. It reads the
// files, so it works while the daemon is down; the directory is the
// running daemon's, else /perm/log.
func cmdLog(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("log", flag.ContinueOnError)
	fs.SetOutput(stderr)
	sock := controlFlag(fs)
	dir := fs.String("dir", "", "the log's directory (default: the running daemon's, else /perm/log)")
	n := fs.Int("n", 0, "only the last N records")
	event := fs.String("event", "", "only records of this event")
	asJSON := fs.Bool("json", false, "print one JSON record a line")
	if err := fs.Parse(args); err != nil || fs.NArg() != 0 {
		fmt.Fprintf(stderr, "passerelle log: expected no argument\n%s", usage)
		return 2
	}
	if *dir == "" {
		var ans map[string]string
		if err := status.NewClient(*sock).Get("/log-dir", nil, &ans); err == nil && ans["dir"] != "" {
			*dir = ans["dir"]
		} else {
			*dir = filepath.Join("/perm", "log")
		}
	}
	recs, err := eventlog.Read(*dir)
	if err != nil {
		fmt.Fprintf(stderr, "passerelle log: %v\n", err)
		return 1
	}
	if *event != "" {
		recs = slices.DeleteFunc(recs, func(r eventlog.Record) bool { return r.Str("event") != *event })
	}
	if *n > 0 && len(recs) > *n {
		recs = recs[len(recs)-*n:]
	}
	for _, r := range recs {
		if *asJSON {
			b, _ := json.Marshal(r)
			fmt.Fprintf(stdout, "%s\n", b)
			continue
		}
		fmt.Fprintf(stdout, "%s %-5s %s  %s\n", r.Time().Local().Format(time.DateTime), r.Str("level"), r.Str("msg"), r.Attrs())
	}
	return 0
}
