package dnsfilter

import (
	"slices"

	"passerelle/pkg/config"
)

// A safe-search engine: queries for its hosts are answered with a CNAME to
// the endpoint that forces safe search, and that endpoint's records.
type engine struct {
	name     string
	hosts    []string
	strict   string
	moderate string // "" = same as strict (the engine has one level)
}

// engines are the search engines minors use, and the endpoints each
// publishes to force safe search by DNS, covering every host of an engine
// that serves results, HTML-only front ends included. Google and YouTube
// document theirs (support.google.com "Lock SafeSearch", "restrict YouTube");
// Bing's and DuckDuckGo's are documented by the engines. The Qwant and
// Ecosia endpoints come from filter operators' lists and could not be
// checked from here: see docs/privacy.md and the report of issue 6.
func engines() []engine {
	var google []string
	for _, tld := range slices.Concat(googleDomains, googleExtra) {
		google = append(google, "google."+tld, "www.google."+tld)
	}
	return []engine{
		{name: "google", hosts: google, strict: "forcesafesearch.google.com"},
		// Google's documented host names (testdata/youtube_restricted_hosts.txt)
		// and the apexes: youtube-nocookie.com serves embedded players.
		{name: "youtube", hosts: []string{"youtube.com", "www.youtube.com", "m.youtube.com", "youtubei.googleapis.com",
			"youtube.googleapis.com", "www.youtube-nocookie.com", "youtube-nocookie.com"},
			strict: "restrict.youtube.com", moderate: "restrictmoderate.youtube.com"},
		// cn.bing.com is Bing's other front end; m.bing.com its old mobile one.
		{name: "bing", hosts: []string{"bing.com", "www.bing.com", "cn.bing.com", "m.bing.com"}, strict: "strict.bing.com"},
		// html. and lite. are DuckDuckGo's JavaScript-free front ends.
		{name: "duckduckgo", hosts: []string{"duckduckgo.com", "www.duckduckgo.com", "start.duckduckgo.com", "html.duckduckgo.com",
			"lite.duckduckgo.com"}, strict: "safe.duckduckgo.com"},
		{name: "qwant", hosts: []string{"qwant.com", "www.qwant.com", "api.qwant.com"}, strict: "safeapi.qwant.com"},
		{name: "ecosia", hosts: []string{"ecosia.org", "www.ecosia.org"}, strict: "strict-safe-search.ecosia.org"},
	}
}

// googleDomains are Google's search domains, as it publishes them
// (https://www.google.com/supported_domains, kept in
// testdata/google_supported_domains.txt, which a test compares with this
// table), without the "google." prefix. A pupil typing another country's
// Google reaches unfiltered results unless every one is rewritten.
var googleDomains = []string{
	"com", "ad", "ae", "com.af", "com.ag", "al", "am", "co.ao", "com.ar", "as", "at", "com.au", "az", "ba",
	"com.bd", "be", "bf", "bg", "com.bh", "bi", "bj", "com.bn", "com.bo", "com.br", "bs", "bt", "co.bw", "by",
	"com.bz", "ca", "cd", "cf", "cg", "ch", "ci", "co.ck", "cl", "cm", "cn", "com.co", "co.cr", "com.cu", "cv",
	"com.cy", "cz", "de", "dj", "dk", "dm", "com.do", "dz", "com.ec", "ee", "com.eg", "es", "com.et", "fi",
	"com.fj", "fm", "fr", "ga", "ge", "gg", "com.gh", "com.gi", "gl", "gm", "gr", "com.gt", "gy", "com.hk",
	"hn", "hr", "ht", "hu", "co.id", "ie", "co.il", "im", "co.in", "iq", "is", "it", "je", "com.jm", "jo",
	"co.jp", "co.ke", "com.kh", "ki", "kg", "co.kr", "com.kw", "kz", "la", "com.lb", "li", "lk", "co.ls", "lt",
	"lu", "lv", "com.ly", "co.ma", "md", "me", "mg", "mk", "ml", "com.mm", "mn", "com.mt", "mu", "mv", "mw",
	"com.mx", "com.my", "co.mz", "com.na", "com.ng", "com.ni", "ne", "nl", "no", "com.np", "nr", "nu", "co.nz",
	"com.om", "com.pa", "com.pe", "com.pg", "com.ph", "com.pk", "pl", "pn", "com.pr", "ps", "pt", "com.py",
	"com.qa", "ro", "ru", "rw", "com.sa", "com.sb", "sc", "se", "com.sg", "sh", "si", "sk", "com.sl", "sn",
	"so", "sm", "sr", "st", "com.sv", "td", "tg", "co.th", "com.tj", "tl", "tm", "tn", "to", "com.tr", "tt",
	"com.tw", "co.tz", "com.ua", "co.ug", "co.uk", "com.uy", "co.uz", "com.vc", "co.ve", "co.vi", "com.vn",
	"vu", "ws", "rs", "co.za", "co.zm", "co.zw", "cat",
}

// googleExtra are Google domains of French overseas territories and
// neighbours that the published list leaves out but that resolve (they
// redirect to a listed domain): rewritten too, at no cost.
var googleExtra = []string{"re", "gp", "mq", "gf", "pf", "nc", "yt", "pm", "ac", "com.ai", "vg", "ms"}

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
