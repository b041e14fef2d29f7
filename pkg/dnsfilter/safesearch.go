package dnsfilter

import "passerelle/pkg/config"

// A safe-search engine: queries for its hosts are answered with a CNAME to
// the endpoint that forces safe search, and that endpoint's records.
type engine struct {
	name     string
	hosts    []string
	strict   string
	moderate string // "" = same as strict (the engine has one level)
}

// engines are the search engines minors use, and the endpoints each
// publishes to force safe search by DNS. Google and YouTube document
// theirs (support.google.com "Lock SafeSearch", "restrict YouTube");
// Bing's and DuckDuckGo's are documented by the engines. The Qwant and
// Ecosia endpoints come from filter operators' lists and could not be
// checked from here: see docs/privacy.md and the report of issue 6.
func engines() []engine {
	var google []string
	for _, tld := range []string{"com", "fr", "be", "ch", "ca", "lu", "de", "es", "it", "nl", "pt", "co.uk", "ie", "at", "pl",
		"ma", "dz", "tn", "sn", "ci", "cm", "mg", "mu", "ht", "re", "gp", "mq", "gf", "pf", "nc", "yt", "pm"} {
		google = append(google, "google."+tld, "www.google."+tld)
	}
	return []engine{
		{name: "google", hosts: google, strict: "forcesafesearch.google.com"},
		{name: "youtube", hosts: []string{"youtube.com", "www.youtube.com", "m.youtube.com", "youtubei.googleapis.com",
			"youtube.googleapis.com", "www.youtube-nocookie.com"}, strict: "restrict.youtube.com", moderate: "restrictmoderate.youtube.com"},
		{name: "bing", hosts: []string{"bing.com", "www.bing.com"}, strict: "strict.bing.com"},
		{name: "duckduckgo", hosts: []string{"duckduckgo.com", "www.duckduckgo.com", "start.duckduckgo.com", "html.duckduckgo.com"},
			strict: "safe.duckduckgo.com"},
		{name: "qwant", hosts: []string{"qwant.com", "www.qwant.com", "api.qwant.com"}, strict: "safeapi.qwant.com"},
		{name: "ecosia", hosts: []string{"ecosia.org", "www.ecosia.org"}, strict: "strict-safe-search.ecosia.org"},
	}
}

// rewrite is where a safe-search host is sent.
type rewrite struct {
	engine, target string
}

// safeSearchTable maps host names to their safe endpoint for a level; nil
// when safe search is off.
func safeSearchTable(level config.SafeSearch) map[string]rewrite {
	if level == config.SafeSearchOff || level == "" {
		return nil
	}
	m := map[string]rewrite{}
	for _, e := range engines() {
		target := e.strict
		if level == config.SafeSearchModerate && e.moderate != "" {
			target = e.moderate
		}
		for _, h := range e.hosts {
			m[h] = rewrite{engine: e.name, target: target + "."}
		}
	}
	return m
}
