package status

import (
	"fmt"
	"sort"
	"strings"
	"time"

	"passerelle/pkg/config"
	"passerelle/pkg/health"
)

// Level is a line's colour.
type Level string

const (
	OK      Level = "ok"      // green
	Warn    Level = "warn"    // orange
	Bad     Level = "bad"     // red
	Neutral Level = "neutral" // grey: not configured, not applicable
)

// Line is one concern of the first screen.
type Line struct {
	Key    string `json:"key"` // internet, backup, tunnel, filtering, dhcp, time, config, firmware
	Level  Level  `json:"level"`
	Title  string `json:"title"`
	Text   string `json:"text"`
	Advice string `json:"advice,omitempty"` // what to do, when something is wrong
}

// WarningLine is one active health warning with what to do.
type WarningLine struct {
	Code      string    `json:"code"`
	Component string    `json:"component"`
	Level     Level     `json:"level"`
	Message   string    `json:"message"`        // the component's, English
	Text      string    `json:"text,omitempty"` // what it means, in the screen's language
	Advice    string    `json:"advice"`
	Since     time.Time `json:"since"`
}

// Screen is the first screen: the same on the page and in the terminal.
type Screen struct {
	School      string        `json:"school"`
	UAI         string        `json:"uai"`
	Host        string        `json:"host"`
	Time        time.Time     `json:"time"`
	Overall     Level         `json:"overall"`
	Lines       []Line        `json:"lines"`
	Warnings    []WarningLine `json:"warnings"`
	Fingerprint string        `json:"fingerprint,omitempty"`          // SHA-256 of the page's certificate
	CertFromNOC bool          `json:"certificate_from_noc,omitempty"` // the NOC pushed it (else made at first boot)
	Lang        string        `json:"lang"`
}

// BuildScreen computes the first screen in lang (fr or en).
func BuildScreen(src Source, lang string, now time.Time) Screen {
	t := tr(lang)
	cfg := src.Config()
	s := Screen{Time: now, Lang: t.lang}
	if cfg != nil {
		s.School, s.UAI, s.Host = cfg.Identity.Name, cfg.Identity.UAI, cfg.Identity.Hostname
	}
	ups := src.Uplinks()
	s.Lines = append(s.Lines, internetLine(t, ups), backupLine(t, ups))
	s.Lines = append(s.Lines, tunnelLine(t, src, cfg), filteringLine(t, src, cfg, now), dhcpLine(t, src, cfg), timeLine(t, src.Time(), now), configLine(t, src.Applied(), now))
	s.Lines = append(s.Lines, Line{Key: "firmware", Level: OK, Title: t.s("firmware"), Text: t.f("firmware-text", src.Version())})
	if us, ok := src.(UpdateSource); ok {
		if u, ok := us.LastUpdate(); ok {
			s.Lines = append(s.Lines, updateLine(t, u))
		}
	}
	ws := src.Warnings()
	sort.SliceStable(ws, func(i, j int) bool { return ws[i].Severity > ws[j].Severity })
	for _, w := range ws {
		l := Warn
		switch w.Severity {
		case health.Critical:
			l = Bad
		case health.Info:
			l = Neutral
		}
		s.Warnings = append(s.Warnings, WarningLine{Code: w.Code, Component: w.Component, Level: l, Message: w.Message, Text: t.warningText(w.Code), Advice: t.advice(w.Code), Since: w.Since})
	}
	s.Overall = OK
	for _, l := range s.Lines {
		s.Overall = worse(s.Overall, l.Level)
	}
	for _, w := range s.Warnings {
		s.Overall = worse(s.Overall, w.Level)
	}
	return s
}

// updateLine is the last firmware update: installed (to be tried at the
// next boot), rejected (the NOC's concern: nothing changed) or failed
// (the slot was being written; the firmware that runs is unchanged).
func updateLine(t lang, u LastUpdate) Line {
	l := Line{Key: "update", Title: t.s("update")}
	at := u.At.Local().Format("02/01/2006 15:04")
	switch u.Outcome {
	case "installed":
		l.Level, l.Text = OK, t.f("update-installed", at, u.Version, u.Slot)
	case "rejected":
		l.Level, l.Text = Neutral, t.f("update-rejected", at, u.Version, u.Reason, u.Detail)
	default:
		l.Level, l.Text, l.Advice = Warn, t.f("update-failed", at, u.Version, u.Reason, u.Detail), t.s("update-failed-advice")
	}
	return l
}

func worse(a, b Level) Level {
	rank := map[Level]int{Neutral: 0, OK: 0, Warn: 1, Bad: 2}
	if rank[b] > rank[a] {
		return b
	}
	return a
}

func ms(d time.Duration) string {
	return fmt.Sprintf("%d ms", d.Round(time.Millisecond).Milliseconds())
}

func internetLine(t lang, ups []Uplink) Line {
	l := Line{Key: "internet", Title: t.s("internet")}
	var active []string
	var rtt time.Duration
	for _, u := range ups {
		if u.Active && (u.State == "online" || u.State == "degraded") {
			active = append(active, u.Name)
			if rtt == 0 {
				rtt = u.RTT
			}
		}
	}
	switch {
	case len(ups) == 0:
		l.Level, l.Text, l.Advice = Bad, t.s("internet-none"), t.s("internet-none-advice")
	case len(active) > 0:
		l.Level, l.Text = OK, t.f("internet-ok", strings.Join(active, ", "), ms(rtt))
		for _, u := range ups {
			if u.Active && u.State == "degraded" {
				l.Level, l.Advice = Warn, t.f("internet-degraded", u.Name, int(u.Loss*100))
			}
		}
	default:
		l.Level, l.Text, l.Advice = Bad, t.s("internet-down"), t.s("internet-down-advice")
	}
	return l
}

func backupLine(t lang, ups []Uplink) Line {
	l := Line{Key: "backup", Title: t.s("backup")}
	if len(ups) < 2 {
		l.Level, l.Text = Neutral, t.s("backup-none")
		return l
	}
	var parts []string
	l.Level = OK
	for _, u := range ups[1:] {
		switch {
		case u.Active:
			parts = append(parts, t.f("backup-in-use", u.Name))
			l.Level, l.Advice = Warn, t.f("backup-in-use-advice", ups[0].Name)
		case u.State == "online":
			parts = append(parts, t.f("backup-ready", u.Name))
		case u.State == "unknown":
			parts = append(parts, t.f("backup-unknown", u.Name))
		default:
			parts = append(parts, t.f("backup-down", u.Name, u.Reason))
			l.Level, l.Advice = worse(l.Level, Warn), t.s("backup-down-advice")
		}
	}
	l.Text = strings.Join(parts, "; ")
	return l
}

func tunnelLine(t lang, src Source, cfg *config.Config) Line {
	l := Line{Key: "tunnel", Title: t.s("tunnel")}
	tu, ok := src.Tunnel()
	if !ok || cfg == nil || !cfg.Tunnel.Enabled {
		l.Level, l.Text = Neutral, t.s("tunnel-off")
		return l
	}
	if tu.Up {
		l.Level, l.Text = OK, t.f("tunnel-up", tu.Via, ms(tu.RTT))
		return l
	}
	switch tu.Enrolment {
	case "no-key", "key-invalid":
		l.Level, l.Text, l.Advice = Bad, t.f("tunnel-"+tu.Enrolment, tu.KeyFile), t.s("tunnel-key-advice")
		return l
	case "key-refused":
		l.Level, l.Text, l.Advice = Bad, t.f("tunnel-key-refused", tu.KeyFile), t.s("tunnel-key-refused-advice")
		return l
	}
	l.Level, l.Text, l.Advice = Bad, t.f("tunnel-down", tu.Reason), t.s("tunnel-down-advice")
	return l
}

func filteringLine(t lang, src Source, cfg *config.Config, now time.Time) Line {
	l := Line{Key: "filtering", Title: t.s("filtering")}
	if cfg == nil || len(cfg.DNS.Profiles) == 0 {
		l.Level, l.Text = Neutral, t.s("filtering-off")
		return l
	}
	// The lists are the same for every zone: ask about any name.
	li := src.Why("", "example.invalid").Lists
	if !li.Loaded {
		l.Level, l.Text, l.Advice = Bad, t.s("filtering-no-lists"), t.s("filtering-no-lists-advice")
		return l
	}
	l.Level, l.Text = OK, t.f("filtering-ok", li.Since.Local().Format("02/01/2006 15:04"), li.Categories, li.Domains)
	if !li.Published.IsZero() {
		l.Text = t.f("filtering-ok-published", t.date(li.Published), li.Since.Local().Format("02/01/2006"), li.Categories, li.Domains)
	}
	if !li.Since.IsZero() && now.Sub(li.Since) > 8*24*time.Hour {
		l.Level, l.Advice = Warn, t.f("filtering-old", int(now.Sub(li.Since).Hours()/24))
	}
	return l
}

func dhcpLine(t lang, src Source, cfg *config.Config) Line {
	l := Line{Key: "dhcp", Title: t.s("dhcp"), Level: OK}
	us := src.Usage()
	if len(us) == 0 {
		l.Level, l.Text = Neutral, t.s("dhcp-none")
		return l
	}
	var parts []string
	for _, u := range us {
		parts = append(parts, t.f("dhcp-zone", u.Zone, u.InUse, u.Pool))
		if u.Pool > 0 && u.InUse*10 > u.Pool*9 {
			l.Level, l.Advice = Warn, t.f("dhcp-full-advice", u.Zone)
		}
	}
	l.Text = strings.Join(parts, ", ")
	return l
}

func timeLine(t lang, ts TimeSync, now time.Time) Line {
	l := Line{Key: "time", Title: t.s("time")}
	if ts.Synced {
		l.Level, l.Text = OK, t.f("time-ok", now.Local().Format("02/01/2006 15:04"), ts.Server, ms(ts.Offset.Abs()))
		return l
	}
	l.Level, l.Text, l.Advice = Warn, t.f("time-not-synced", now.Local().Format("02/01/2006 15:04"), ts.Err), t.s("time-advice")
	return l
}

func configLine(t lang, a Applied, now time.Time) Line {
	l := Line{Key: "config", Title: t.s("config")}
	switch {
	case a.Generation == 0:
		l.Level, l.Text, l.Advice = Bad, t.s("config-none"), t.s("config-none-advice")
	case a.Pending:
		l.Level, l.Text = Warn, t.f("config-pending", a.Generation, a.At.Local().Format("02/01 15:04"), t.s("source-"+a.Source))
		if left := a.Deadline.Sub(now); !a.Deadline.IsZero() && left > 0 {
			// The time left before the box rolls back by itself.
			l.Text += t.f("config-pending-left", left.Round(time.Second).String())
		}
	default:
		l.Level, l.Text = OK, t.f("config-ok", a.Generation, a.At.Local().Format("02/01 15:04"), t.s("source-"+a.Source))
		if a.Managed {
			l.Text += t.s("config-confirmed")
		}
	}
	if a.LastError != "" {
		l.Level, l.Advice = worse(l.Level, Warn), t.f("config-rejected", a.LastError)
	}
	return l
}

// Explain says a Why in one sentence.
func Explain(w Why, lang string) string {
	t := tr(lang)
	lists := ""
	switch {
	case w.Lists.Loaded && !w.Lists.Published.IsZero():
		lists = t.f("why-lists-published", t.date(w.Lists.Published))
	case w.Lists.Loaded:
		lists = t.f("why-lists", w.Lists.Since.Local().Format("02/01/2006 15:04"))
	}
	switch w.Verdict {
	case "invalid":
		return t.f("why-invalid", w.Name, w.Err)
	case "unknown-zone":
		return t.f("why-unknown-zone", w.Zone)
	case "blocked":
		switch w.Rule {
		case "deny":
			return t.f("why-deny", w.Name, w.Zone, w.Profile)
		case "bypass":
			return t.f("why-bypass", w.Name, w.Zone)
		case "lists-not-loaded":
			return t.f("why-fail-closed", w.Name, w.Zone, w.Profile)
		}
		return t.f("why-category", w.Name, w.Zone, w.Category, w.Profile) + lists
	case "safesearch":
		return t.f("why-safesearch", w.Name, w.Zone, w.Profile)
	}
	switch {
	case w.Profile == "":
		return t.f("why-unfiltered", w.Name, w.Zone)
	case w.Rule == "allow":
		return t.f("why-allow", w.Name, w.Zone, w.Profile)
	case w.Rule == "white":
		return t.f("why-white", w.Name, w.Zone, w.Profile)
	}
	return t.f("why-allowed", w.Name, w.Zone, w.Profile) + lists
}
