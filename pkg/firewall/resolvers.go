package firewall

import (
	"net/netip"
	"slices"
)

// resolver is one public DNS service whose addresses zones protecting
// minors may not reach on any port: such services answer DNS on 53 (which
// the box redirects to itself anyway) but also DNS over HTTPS on 443, DNS
// over TLS and QUIC on 853, and often 5353 or other ports, where the box
// cannot tell their DNS from other traffic. Only addresses that serve
// nothing but DNS belong here: blocking one must not cut a pupil off any
// other service.
type resolver struct {
	provider string
	source   string // where the addresses are published
	addrs    []string
}

// publicResolvers is the curated list (checked against each provider's
// page on 2026-12; docs/firewall.md says how to add one). It is a
// function, not a variable, so no caller can change it.
func publicResolvers() []resolver {
	return []resolver{
		{"Google Public DNS", "https://developers.google.com/speed/public-dns/docs/using",
			[]string{"8.8.8.8", "8.8.4.4", "2001:4860:4860::8888", "2001:4860:4860::8844",
				"2001:4860:4860::6464", "2001:4860:4860::64"}},
		{"Cloudflare 1.1.1.1 (and for Families: malware, adult)", "https://developers.cloudflare.com/1.1.1.1/ip-addresses/",
			[]string{"1.1.1.1", "1.0.0.1", "1.1.1.2", "1.0.0.2", "1.1.1.3", "1.0.0.3",
				"2606:4700:4700::1111", "2606:4700:4700::1001", "2606:4700:4700::1112", "2606:4700:4700::1002",
				"2606:4700:4700::1113", "2606:4700:4700::1003", "2606:4700:4700::64", "2606:4700:4700::6400"}},
		{"Quad9 (secured, with ECS, unsecured)", "https://www.quad9.net/service/service-addresses-and-features",
			[]string{"9.9.9.9", "149.112.112.112", "9.9.9.11", "149.112.112.11", "9.9.9.10", "149.112.112.10",
				"2620:fe::fe", "2620:fe::9", "2620:fe::11", "2620:fe::fe:11", "2620:fe::10", "2620:fe::fe:10"}},
		{"OpenDNS (Home, FamilyShield)", "https://www.opendns.com/setupguide/",
			[]string{"208.67.222.222", "208.67.220.220", "208.67.222.220", "208.67.220.222",
				"208.67.222.123", "208.67.220.123",
				"2620:119:35::35", "2620:119:53::53", "2620:119:35::123", "2620:119:53::123"}},
		{"AdGuard DNS (default, family, unfiltered)", "https://adguard-dns.io/en/public-dns.html",
			[]string{"94.140.14.14", "94.140.15.15", "94.140.14.15", "94.140.15.16", "94.140.14.140", "94.140.14.141",
				"2a10:50c0::ad1:ff", "2a10:50c0::ad2:ff", "2a10:50c0::bad1:ff", "2a10:50c0::bad2:ff",
				"2a10:50c0::1:ff", "2a10:50c0::2:ff"}},
		{"CleanBrowsing (security, adult, family)", "https://cleanbrowsing.org/filters/",
			[]string{"185.228.168.9", "185.228.169.9", "185.228.168.10", "185.228.169.11", "185.228.168.168", "185.228.169.168",
				"2a0d:2a00:1::2", "2a0d:2a00:2::2", "2a0d:2a00:1::1", "2a0d:2a00:2::1", "2a0d:2a00:1::", "2a0d:2a00:2::"}},
		{"NextDNS (anycast; per-profile IPv6 addresses are not listed)", "https://nextdns.io",
			[]string{"45.90.28.0", "45.90.30.0", "2a07:a8c0::", "2a07:a8c1::"}},
		{"Yandex DNS (basic, safe, family)", "https://dns.yandex.com/",
			[]string{"77.88.8.8", "77.88.8.1", "77.88.8.88", "77.88.8.2", "77.88.8.7", "77.88.8.3",
				"2a02:6b8::feed:0ff", "2a02:6b8:0:1::feed:0ff", "2a02:6b8::feed:bad", "2a02:6b8:0:1::feed:bad",
				"2a02:6b8::feed:a11", "2a02:6b8:0:1::feed:a11"}},
		{"Control D (free resolvers)", "https://controld.com/free-dns",
			[]string{"76.76.2.0", "76.76.10.0", "76.76.2.1", "76.76.10.1", "76.76.2.2", "76.76.10.2",
				"76.76.2.3", "76.76.10.3", "76.76.2.4", "76.76.10.4", "76.76.2.5", "76.76.10.5",
				"2606:1a40::", "2606:1a40:1::", "2606:1a40::1", "2606:1a40:1::1", "2606:1a40::2", "2606:1a40:1::2"}},
		{"DNS.SB", "https://dns.sb/",
			[]string{"185.222.222.222", "45.11.45.11", "2a09::", "2a11::"}},
		{"Mullvad DNS", "https://mullvad.net/en/help/dns-over-https-and-dns-over-tls",
			[]string{"194.242.2.2", "194.242.2.3", "194.242.2.4", "194.242.2.5", "194.242.2.6", "194.242.2.9",
				"2a07:e340::2", "2a07:e340::3", "2a07:e340::4", "2a07:e340::5", "2a07:e340::6", "2a07:e340::9"}},
		{"DNS4EU (protective, child, ad blocking, unfiltered)", "https://www.joindns4.eu/for-public",
			[]string{"86.54.11.1", "86.54.11.201", "86.54.11.12", "86.54.11.212", "86.54.11.13", "86.54.11.213",
				"86.54.11.11", "86.54.11.211", "86.54.11.100", "86.54.11.200",
				"2a13:1001::86:54:11:1", "2a13:1001::86:54:11:201", "2a13:1001::86:54:11:12", "2a13:1001::86:54:11:212",
				"2a13:1001::86:54:11:13", "2a13:1001::86:54:11:213", "2a13:1001::86:54:11:11", "2a13:1001::86:54:11:211",
				"2a13:1001::86:54:11:100", "2a13:1001::86:54:11:200"}},
		{"FDN (French Data Network)", "https://www.fdn.fr/actions/dns/",
			[]string{"80.67.169.12", "80.67.169.40", "2001:910:800::12", "2001:910:800::40"}},
		{"Comodo Secure DNS", "https://www.comodo.com/secure-dns/",
			[]string{"8.26.56.26", "8.20.247.20"}},
		{"Quad101 (TWNIC)", "https://101.101.101.101/index_en.html",
			[]string{"101.101.101.101", "101.102.103.104", "2001:de4::101", "2001:de4::102"}},
		{"AliDNS", "https://www.alidns.com/",
			[]string{"223.5.5.5", "223.6.6.6", "2400:3200::1", "2400:3200:baba::1"}},
		{"DNSPod Public DNS (Tencent)", "https://www.dnspod.cn/Products/publicdns",
			[]string{"119.29.29.29", "1.12.12.12", "120.53.53.53", "2402:4e00::"}},
		{"114DNS", "https://www.114dns.com/",
			[]string{"114.114.114.114", "114.114.115.115"}},
	}
}

// resolverAddrs returns the addresses of publicResolvers by family,
// sorted, without duplicates.
func resolverAddrs() (v4, v6 []netip.Addr) {
	for _, r := range publicResolvers() {
		for _, s := range r.addrs {
			a := netip.MustParseAddr(s) // pinned by TestPublicResolvers
			if a.Is4() {
				v4 = append(v4, a)
			} else {
				v6 = append(v6, a)
			}
		}
	}
	for _, s := range []*[]netip.Addr{&v4, &v6} {
		slices.SortFunc(*s, netip.Addr.Compare)
		*s = slices.Compact(*s)
	}
	return v4, v6
}
