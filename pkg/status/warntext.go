package status

import "strings"

// What each health warning means and what to do, per kind (the part of
// the code before ':'; the part after, a link, zone, service or profile
// name, fills the %s). The warnings' own messages are English and
// technical: the page shows them as details under these sentences.
// TestEveryHealthWarningHasAFrenchText finds every kind the code base
// raises and fails when one has no text here.

var warnFR = map[string][2]string{
	"config-not-applied":         {"Aucune configuration ne fonctionne : la box ne route pas.", "Envoyez une configuration valide à la box (support de l'académie)."},
	"config-rollback-failed":     {"La box n'a pas pu revenir à sa configuration précédente.", "Redémarrez la box ; si l'alerte revient, appelez le support de l'académie."},
	"config-rolled-back":         {"La dernière configuration envoyée par le support a été abandonnée : la box est revenue à la précédente.", "Rien à faire sur place ; prévenez le support de l'académie pour qu'il corrige la configuration."},
	"dhcp-leases-unreadable":     {"Les adresses déjà attribuées dans la zone %s n'ont pas pu être relues.", "Rien à faire : les appareils redemandent une adresse. Si cela revient à chaque démarrage, la carte mémoire est peut-être usée."},
	"dhcp-leases-unsaved":        {"Les adresses attribuées dans la zone %s ne peuvent plus être enregistrées.", "La mémoire /perm a un problème : redémarrez la box ; si cela revient, remplacez la carte mémoire."},
	"dhcp-pool-full":             {"La zone %s manque presque d'adresses à distribuer.", "Agrandissez la plage d'adresses de la zone ou raccourcissez les baux (support de l'académie)."},
	"dhcp-starvation":            {"Un appareil de la zone %s réclame des adresses en masse.", "Cherchez l'appareil en cause (un poste infecté, un routeur branché à l'envers) et débranchez-le."},
	"dns-categories":             {"Des catégories de filtrage du profil %s manquent dans les listes chargées.", "Prévenez le support de l'académie : la configuration nomme une catégorie que les listes n'ont pas."},
	"dns-listen":                 {"Le serveur DNS de la box ne répond pas dans la zone %s.", "Les postes de cette zone n'ont plus de noms de sites : redémarrez le service dns, puis la box si cela dure."},
	"dns-lists":                  {"Les listes de filtrage ne sont pas chargées : les zones élèves sont bloquées par sécurité.", "Les listes se téléchargent la nuit ; si cela dure, appelez le support de l'académie."},
	"dns-lists-update":           {"La mise à jour des listes de filtrage a été refusée ; les listes précédentes restent en service.", "Rien à faire sur place si cela ne dure pas ; sinon prévenez le support."},
	"interface-missing":          {"La carte réseau %s est absente.", "Vérifiez le câble et le branchement (ou la clé 4G) ; elle sera configurée dès qu'elle apparaîtra."},
	"interface-naming":           {"Des ports réseau n'ont pas reçu leur nom.", "Notez le code et appelez le support : un port ne correspond peut-être pas au modèle de box."},
	"kernel-modules":             {"Des pilotes du système n'ont pas pu être chargés.", "Notez le code et appelez le support de l'académie."},
	"nftables-unavailable":       {"Le pare-feu ne peut pas fonctionner sur ce système.", "Appelez le support de l'académie : le micrologiciel doit être réinstallé."},
	"perm-initialised":           {"La mémoire de la box a été préparée (premier démarrage).", "Rien à faire : c'est normal au premier démarrage."},
	"perm-reformatted":           {"La mémoire de la box était illisible et a été effacée : journaux et réglages locaux perdus.", "Si cela se reproduit, remplacez la carte mémoire."},
	"perm-repaired":              {"La mémoire de la box a été réparée au démarrage (coupure de courant ?).", "Rien à faire si cela reste rare ; sinon vérifiez l'alimentation ou la carte mémoire."},
	"perm-unavailable":           {"La mémoire de la box est inutilisable : rien n'est gardé après un redémarrage.", "Remplacez la carte mémoire ou appelez le support de l'académie."},
	"slot-commit-failed":         {"Le nouveau système a passé sa vérification mais n'a pas pu être gardé : la box reviendra à l'ancien au prochain démarrage.", "Notez le code et appelez le support de l'académie."},
	"update-abandoned":           {"La dernière mise à jour du micrologiciel a été abandonnée : la box est revenue à la version précédente.", "Rien à faire sur place ; prévenez le support de l'académie."},
	"service-failed":             {"Le service %s s'arrête sans cesse.", "Redémarrez-le depuis la page Services ; si cela revient, notez le code et appelez le support."},
	"telemetry-failing":          {"La box n'arrive plus à envoyer ses mesures à l'académie.", "Rien ne s'arrête dans l'école ; vérifiez internet et prévenez le support si cela dure."},
	"time-unsynchronised":        {"L'heure de la box n'est pas synchronisée.", "Sans heure juste, les certificats échouent : vérifiez l'accès aux serveurs de temps (pare-feu de l'académie)."},
	"tunnel-down":                {"Le tunnel vers l'académie est coupé : les applications administratives sont injoignables.", "Vérifiez internet, puis appelez le support de l'académie."},
	"tunnel-unavailable":         {"Le tunnel vers l'académie ne peut pas démarrer.", "Appelez le support de l'académie."},
	"tunnel-not-enrolled":        {"La box n'est pas inscrite auprès de l'académie : sa clé d'inscription n'est pas installée.", "Demandez au support de l'académie la clé pré-autorisée de cette box et copiez-la dans le fichier indiqué ; le tunnel s'établit sans redémarrer."},
	"tunnel-key-invalid":         {"La clé d'inscription de la box est inutilisable ou a été refusée par l'académie.", "Recopiez la clé, seule sur une ligne, ou demandez-en une nouvelle au support de l'académie."},
	"update-failed":              {"La mise à jour du micrologiciel a échoué ; la version en service est gardée.", "Rien à faire sur place ; prévenez le support de l'académie."},
	"uplink-backup-in-use":       {"Le lien principal est en panne : le lien de secours transporte le trafic.", "Vérifiez le lien principal (câble, routeur de l'opérateur)."},
	"uplink-degraded":            {"Le lien %s perd des paquets ou ralentit.", "Prévenez l'opérateur ou le support si cela dure."},
	"uplink-flapping":            {"Le lien %s se coupe et revient sans cesse.", "Vérifiez le câble et le routeur de l'opérateur."},
	"uplink-offline":             {"Le lien %s ne répond plus.", "Vérifiez le câble et le routeur de l'opérateur."},
	"uplink-probe-target-silent": {"Une des adresses de test du lien %s ne répond plus (le lien fonctionne).", "Rien à faire sur place ; prévenez le support si cela dure."},
	"uplinks-all-offline":        {"Aucun lien internet ne répond : l'école n'a plus internet.", "Vérifiez les câbles et les voyants des routeurs des opérateurs, puis appelez le support de l'académie."},
	"watchdog-unavailable":       {"La surveillance matérielle de la box est inactive : un blocage ne serait pas corrigé seul.", "Notez le code et appelez le support de l'académie."},
}

var warnEN = map[string][2]string{
	"config-not-applied":         {"No configuration works: the box does not route.", "Send the box a valid configuration (academy's support)."},
	"config-rollback-failed":     {"The box could not go back to its previous configuration.", "Reboot the box; if the warning comes back, call the academy's support."},
	"config-rolled-back":         {"The last configuration the support sent was abandoned: the box is back on the previous one.", "Nothing to do on site; tell the academy's support so it fixes the configuration."},
	"dhcp-leases-unreadable":     {"The addresses already given in zone %s could not be read back.", "Nothing to do: devices ask again. If it happens at every start, the memory card may be worn."},
	"dhcp-leases-unsaved":        {"The addresses given in zone %s can no longer be saved.", "/perm has a problem: reboot the box; if it comes back, replace the memory card."},
	"dhcp-pool-full":             {"Zone %s is running out of addresses to give.", "Widen the zone's address range or shorten its leases (academy's support)."},
	"dhcp-starvation":            {"A device in zone %s asks for addresses in bulk.", "Find the device (an infected computer, a router plugged the wrong way) and unplug it."},
	"dns-categories":             {"Filtering categories of profile %s are missing from the loaded lists.", "Tell the academy's support: the configuration names a category the lists lack."},
	"dns-listen":                 {"The box's DNS server does not answer in zone %s.", "Computers there cannot resolve names: restart the dns service, then the box if it lasts."},
	"dns-lists":                  {"The filtering lists are not loaded: pupils' zones are blocked (fail closed).", "Lists download at night; if it lasts, call the academy's support."},
	"dns-lists-update":           {"The filtering lists' update was refused; the previous lists stay in use.", "Nothing to do on site unless it lasts; then tell the support."},
	"interface-missing":          {"Network port %s is missing.", "Check the cable and the plug (or the 4G key); it is configured as soon as it appears."},
	"interface-naming":           {"Some network ports did not get their names.", "Note the code and call the support: a port may not match the box model."},
	"kernel-modules":             {"Some system drivers could not be loaded.", "Note the code and call the academy's support."},
	"nftables-unavailable":       {"The firewall cannot work on this system.", "Call the academy's support: the firmware must be reinstalled."},
	"perm-initialised":           {"The box's memory was prepared (first start).", "Nothing to do: normal at the first start."},
	"perm-reformatted":           {"The box's memory was unreadable and was erased: logs and local settings lost.", "If it happens again, replace the memory card."},
	"perm-repaired":              {"The box's memory was repaired at start (power cut?).", "Nothing to do if rare; otherwise check the power supply or the memory card."},
	"perm-unavailable":           {"The box's memory is unusable: nothing is kept across a reboot.", "Replace the memory card or call the academy's support."},
	"slot-commit-failed":         {"The new system passed its check but could not be kept: the box goes back to the old one at the next start.", "Note the code and call the academy's support."},
	"update-abandoned":           {"The last firmware update was abandoned: the box is back on the previous version.", "Nothing to do on site; tell the academy's support."},
	"service-failed":             {"Service %s keeps stopping.", "Restart it from the Services page; if it comes back, note the code and call the support."},
	"telemetry-failing":          {"The box can no longer send its measurements to the academy.", "Nothing stops in the school; check internet and tell the support if it lasts."},
	"time-unsynchronised":        {"The box's clock is not synchronised.", "Without the right time certificates fail: check access to the time servers (academy firewall)."},
	"tunnel-down":                {"The tunnel to the academy is down: administrative applications are unreachable.", "Check internet, then call the academy's support."},
	"tunnel-unavailable":         {"The tunnel to the academy cannot start.", "Call the academy's support."},
	"tunnel-not-enrolled":        {"The box is not enrolled at the academy: its auth key is not installed.", "Ask the academy's support for this box's pre-authorised key and copy it into the file named; the tunnel comes up without a reboot."},
	"tunnel-key-invalid":         {"The box's auth key is unusable or was refused by the academy.", "Copy the key again, alone on one line, or ask the academy's support for a new one."},
	"update-failed":              {"The firmware update failed; the running version is kept.", "Nothing to do on site; tell the academy's support."},
	"uplink-backup-in-use":       {"The main link is down: the backup link carries the traffic.", "Check the main link (cable, ISP router)."},
	"uplink-degraded":            {"Link %s loses packets or slows down.", "Tell the ISP or the support if it lasts."},
	"uplink-flapping":            {"Link %s keeps going down and up.", "Check the cable and the ISP's router."},
	"uplink-offline":             {"Link %s does not answer.", "Check the cable and the ISP's router."},
	"uplink-probe-target-silent": {"One of link %s's test addresses is silent (the link works).", "Nothing to do on site; tell the support if it lasts."},
	"uplinks-all-offline":        {"No internet link answers: the school has no internet.", "Check the cables and the lights of the ISPs' routers, then call the academy's support."},
	"watchdog-unavailable":       {"The box's hardware watchdog is off: a hang would not be fixed by itself.", "Note the code and call the academy's support."},
}

// warningText says what a warning means, in the page's language; "" when
// the kind has no text (the English message then stands alone).
func (t lang) warningText(code string) string {
	kind, subject, _ := strings.Cut(code, ":")
	v, ok := t.w[kind]
	if !ok {
		return ""
	}
	if strings.Contains(v[0], "%s") {
		return strings.Replace(v[0], "%s", subject, 1)
	}
	return v[0]
}
