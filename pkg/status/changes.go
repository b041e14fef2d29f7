package status

import (
	"fmt"

	"passerelle/pkg/eventlog"
)

// changeEvents are the events the first screen's "last changes" list
// shows, each said as a sentence (ChangeText).
var changeEvents = map[string]bool{
	"config-applied": true, "config-rejected": true, "uplink-switch": true, "uplink-state": true,
	"health-raised": true, "health-cleared": true, "dns-lists-loaded": true, "service-failed": true,
	"daemon-running": true, "shutdown": true, "bundle-committed": true, "bundle-rolled-back": true,
	"status-action": true, "status-reboot": true,
}

// lastChanges are the newest records that say something changed, newest
// first.
func lastChanges(recs []eventlog.Record, n int) []eventlog.Record {
	var out []eventlog.Record
	for i := len(recs) - 1; i >= 0 && len(out) < n; i-- {
		if changeEvents[recs[i].Str("event")] {
			out = append(out, recs[i])
		}
	}
	return out
}

var changeFR = map[string]string{
	"config-applied":      "Configuration appliquée (%s).",
	"config-rejected":     "Configuration refusée : %s",
	"uplink-switch":       "Le trafic passe maintenant par %s.",
	"uplink-switch-none":  "Plus aucun lien ne transporte le trafic.",
	"uplink-state":        "Lien %s : %s (avant : %s).",
	"health-raised":       "Alerte : %s",
	"health-cleared":      "Alerte terminée : %s",
	"dns-lists-loaded":    "Listes de filtrage chargées : %s catégories, %s domaines.",
	"service-failed":      "Le service %s s'arrête sans cesse.",
	"daemon-running":      "La passerelle a démarré.",
	"shutdown":            "La passerelle s'arrête (%s).",
	"bundle-committed":    "Configuration version %s du support confirmée.",
	"bundle-rolled-back":  "Configuration version %s du support abandonnée (%s).",
	"status-action":       "Action du technicien : %s %s.",
	"status-reboot":       "Redémarrage demandé par le technicien.",
	"state-online":        "en ligne",
	"state-degraded":      "dégradé",
	"state-offline":       "hors service",
	"state-unknown":       "en vérification",
	"source-bundle-pull":  "envoyée par le support",
	"source-bundle-push":  "envoyée par le support",
	"source-rollback":     "retour à la précédente",
	"action-restart":      "redémarrage du service",
	"action-confirm":      "confirmation de la configuration",
	"action-rollback":     "retour à la configuration précédente",
	"reason-health-gate":  "la vérification automatique n'est pas passée",
	"reason-apply-failed": "la box n'a pas pu l'appliquer",
	"reason-restart":      "la box a redémarré avant de la confirmer",
	"reason-technician":   "à la demande du technicien",
	"shutdown-reboot":     "redémarrage",
	"shutdown-power off":  "extinction",
	"shutdown-exit":       "arrêt du programme",
}

var changeEN = map[string]string{
	"config-applied":      "Configuration applied (%s).",
	"config-rejected":     "Configuration refused: %s",
	"uplink-switch":       "Traffic now goes through %s.",
	"uplink-switch-none":  "No link carries the traffic any more.",
	"uplink-state":        "Link %s: %s (was %s).",
	"health-raised":       "Warning: %s",
	"health-cleared":      "Warning over: %s",
	"dns-lists-loaded":    "Filtering lists loaded: %s categories, %s domains.",
	"service-failed":      "Service %s keeps stopping.",
	"daemon-running":      "The gateway started.",
	"shutdown":            "The gateway stops (%s).",
	"bundle-committed":    "Configuration version %s from the support confirmed.",
	"bundle-rolled-back":  "Configuration version %s from the support abandoned (%s).",
	"status-action":       "Technician's action: %s %s.",
	"status-reboot":       "Reboot asked by the technician.",
	"state-online":        "online",
	"state-degraded":      "degraded",
	"state-offline":       "offline",
	"state-unknown":       "being checked",
	"source-start":        "at start",
	"source-sighup":       "reloaded",
	"source-bundle-pull":  "sent by the support",
	"source-bundle-push":  "sent by the support",
	"source-rollback":     "back to the previous one",
	"action-restart":      "restart of service",
	"action-confirm":      "confirmation of the configuration",
	"action-rollback":     "back to the previous configuration",
	"reason-health-gate":  "the automatic check did not pass",
	"reason-apply-failed": "the box could not apply it",
	"reason-restart":      "the box restarted before confirming it",
	"reason-technician":   "asked by the technician",
	"shutdown-reboot":     "reboot",
	"shutdown-power off":  "power off",
	"shutdown-exit":       "program exit",
}

// ChangeText says one "last changes" record as a sentence in lang; the
// record's own message for an event it does not know.
func ChangeText(r eventlog.Record, lang string) string {
	t := tr(lang)
	m := changeFR
	if t.lang == "en" {
		m = changeEN
	}
	word := func(prefix, v string) string {
		if w, ok := m[prefix+v]; ok {
			return w
		}
		if w, ok := t.m[prefix+v]; ok { // source-start, source-sighup
			return w
		}
		return v
	}
	f := func(key string, args ...any) string { return fmt.Sprintf(m[key], args...) }
	ev := r.Str("event")
	switch ev {
	case "config-applied":
		return f(ev, word("source-", r.Str("source")))
	case "config-rejected":
		return f(ev, r.Str("err"))
	case "uplink-switch":
		if to := r.Str("to"); to != "" && to != "no uplink" {
			return f(ev, to)
		}
		return m["uplink-switch-none"]
	case "uplink-state":
		return f(ev, r.Str("uplink"), word("state-", r.Str("state")), word("state-", r.Str("was")))
	case "health-raised", "health-cleared":
		what := t.warningText(r.Str("code"))
		if what == "" {
			what = r.Str("code")
		}
		return f(ev, what)
	case "dns-lists-loaded":
		return f(ev, r.Str("categories"), r.Str("domains"))
	case "service-failed":
		return f(ev, r.Str("service"))
	case "daemon-running", "status-reboot":
		return m[ev]
	case "shutdown":
		return f(ev, word("shutdown-", r.Str("action")))
	case "bundle-committed":
		return f(ev, r.Str("version"))
	case "bundle-rolled-back":
		return f(ev, r.Str("version"), word("reason-", r.Str("reason")))
	case "status-action":
		return f(ev, word("action-", r.Str("action")), r.Str("service"))
	}
	return r.Str("msg")
}
