package status

import (
	"strings"
	"testing"

	"passerelle/pkg/eventlog"
)

// TestChangesInPlainWords: each event of the "last changes" list reads as
// a sentence, in French and in English, with no raw attribute left.
func TestChangesInPlainWords(t *testing.T) {
	for _, tt := range []struct {
		rec    eventlog.Record
		fr, en string
	}{
		{eventlog.Record{"event": "config-applied", "source": "start"}, "Configuration appliquée (au démarrage).", "Configuration applied (at start)."},
		{eventlog.Record{"event": "config-applied", "source": "bundle-pull"}, "Configuration appliquée (envoyée par le support).", "Configuration applied (sent by the support)."},
		{eventlog.Record{"event": "config-rejected", "err": "x.yaml:3:1: bad"}, "Configuration refusée : x.yaml:3:1: bad", "Configuration refused: x.yaml:3:1: bad"},
		{eventlog.Record{"event": "uplink-switch", "to": "backup"}, "Le trafic passe maintenant par backup.", "Traffic now goes through backup."},
		{eventlog.Record{"event": "uplink-switch", "to": "no uplink"}, "Plus aucun lien ne transporte le trafic.", "No link carries the traffic any more."},
		{eventlog.Record{"event": "uplink-state", "uplink": "renater", "state": "offline", "was": "online"}, "Lien renater : hors service (avant : en ligne).", "Link renater: offline (was online)."},
		{eventlog.Record{"event": "health-raised", "code": "uplink-offline:renater"}, "Alerte : Le lien renater ne répond plus.", "Warning: Link renater does not answer."},
		{eventlog.Record{"event": "health-cleared", "code": "interface-missing:wan1"}, "Alerte terminée : La carte réseau wan1 est absente.", "Warning over: Network port wan1 is missing."},
		{eventlog.Record{"event": "dns-lists-loaded", "categories": 69.0, "domains": 569512.0}, "Listes de filtrage chargées : 69 catégories, 569512 domaines.", "Filtering lists loaded: 69 categories, 569512 domains."},
		{eventlog.Record{"event": "service-failed", "service": "dns"}, "Le service dns s'arrête sans cesse.", "Service dns keeps stopping."},
		{eventlog.Record{"event": "daemon-running"}, "La passerelle a démarré.", "The gateway started."},
		{eventlog.Record{"event": "shutdown", "action": "reboot"}, "La passerelle s'arrête (redémarrage).", "The gateway stops (reboot)."},
		{eventlog.Record{"event": "bundle-committed", "version": 3.0}, "Configuration version 3 du support confirmée.", "Configuration version 3 from the support confirmed."},
		{eventlog.Record{"event": "bundle-rolled-back", "version": 3.0, "reason": "health-gate"}, "Configuration version 3 du support abandonnée (la vérification automatique n'est pas passée).", "Configuration version 3 from the support abandoned (the automatic check did not pass)."},
		{eventlog.Record{"event": "status-action", "action": "restart", "service": "dns"}, "Action du technicien : redémarrage du service dns.", "Technician's action: restart of service dns."},
		{eventlog.Record{"event": "status-reboot"}, "Redémarrage demandé par le technicien.", "Reboot asked by the technician."},
	} {
		if got := ChangeText(tt.rec, "fr"); got != tt.fr {
			t.Errorf("fr %v: %q, want %q", tt.rec, got, tt.fr)
		}
		if got := ChangeText(tt.rec, "en"); got != tt.en {
			t.Errorf("en %v: %q, want %q", tt.rec, got, tt.en)
		}
	}
	// Every event the list shows has its sentence in both languages.
	for ev := range changeEvents {
		r := eventlog.Record{"event": ev, "msg": "RAW MESSAGE"}
		for _, l := range []string{"fr", "en"} {
			if got := ChangeText(r, l); strings.Contains(got, "RAW MESSAGE") || strings.Contains(got, "%!") {
				t.Errorf("%s in %s: %q", ev, l, got)
			}
		}
	}
}
