package firewall

import (
	"fmt"
	"net/netip"
	"strings"
	"testing"
)

func prefixes(s string) []netip.Prefix {
	var out []netip.Prefix
	for _, f := range strings.Fields(s) {
		out = append(out, netip.MustParsePrefix(f))
	}
	return out
}

func TestMergePrefixesGivesWhatAnIntervalSetAccepts(t *testing.T) {
	tests := []struct {
		name, in, want string
	}{
		{"empty", "", ""},
		{"one", "10.0.0.0/8", "10.0.0.0/8"},
		{"host", "192.0.2.1/32", "192.0.2.1"},
		{"sorted", "10.2.0.0/16 10.0.0.0/16", "10.0.0.0/16 10.2.0.0/16"},
		{"contained", "10.0.0.0/8 10.1.0.0/16 10.1.2.0/24", "10.0.0.0/8"},
		{"duplicates", "10.1.0.0/16 10.1.0.0/16", "10.1.0.0/16"},
		{"adjacent join into a prefix", "10.0.0.0/24 10.0.1.0/24", "10.0.0.0/23"},
		{"adjacent join into a range", "10.0.1.0/24 10.0.2.0/24", "10.0.1.0-10.0.2.255"},
		{"up to the last address", "255.255.255.0/24 255.255.255.255/32", "255.255.255.0/24"},
		{"everything", "0.0.0.0/0 10.0.0.0/8", "0.0.0.0/0"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			rs, err := MergePrefixes(prefixes(tt.in))
			if err != nil {
				t.Fatal(err)
			}
			var got []string
			for _, r := range rs {
				got = append(got, r.String())
			}
			if strings.Join(got, " ") != tt.want {
				t.Errorf("MergePrefixes(%s) = %s, want %s", tt.in, strings.Join(got, " "), tt.want)
			}
		})
	}
}

func TestMergePrefixesRefusesWhatIsNotAnIPv4Prefix(t *testing.T) {
	for _, p := range []netip.Prefix{{}, netip.MustParsePrefix("2001:db8::/32"), netip.PrefixFrom(netip.MustParseAddr("10.0.0.1"), 8)} {
		if _, err := MergePrefixes([]netip.Prefix{p}); err == nil {
			t.Errorf("MergePrefixes(%v) accepted", p)
		}
	}
}

func TestMergePortsJoinsOverlapsAndNeighbours(t *testing.T) {
	got := fmt.Sprint(mergePorts([]PortRange{{9100, 9100}, {631, 631}, {9101, 9103}, {8000, 8080}, {8080, 8090}, {65535, 65535}, {65000, 65535}}))
	if want := "[631 8000-8090 9100-9103 65000-65535]"; got != want {
		t.Errorf("mergePorts = %s, want %s", got, want)
	}
}
