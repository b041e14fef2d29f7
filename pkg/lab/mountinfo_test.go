package lab

import (
	"reflect"
	"strings"
	"testing"
)

func TestParseMountinfo(t *testing.T) {
	const mountinfo = `22 1 0:21 / / rw,relatime shared:1 - ext4 /dev/root rw
530 25 0:4 net:[4026532300] /run/netns/pl0a1b2c-box rw shared:5 - nsfs nsfs rw
531 25 0:4 net:[4026532301] /run/netns/with\040space rw shared:5 master:2 - nsfs nsfs rw
532 25 0:4 net:[4026532302] /run/netns/back\134slash rw - nsfs nsfs rw
short line
`
	got, err := parseMountinfo(strings.NewReader(mountinfo))
	if err != nil {
		t.Fatal(err)
	}
	want := []mountEntry{
		{"/", []string{"shared:1"}},
		{"/run/netns/pl0a1b2c-box", []string{"shared:5"}},
		{"/run/netns/with space", []string{"shared:5", "master:2"}},
		{`/run/netns/back\slash`, nil},
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("parseMountinfo = %q, want %q", got, want)
	}
	if !got[0].shared() || got[3].shared() {
		t.Error("shared() misreads the optional fields")
	}
}

func TestUnescapeMountinfo(t *testing.T) {
	for in, want := range map[string]string{
		`plain`:       "plain",
		`a\040b`:      "a b",
		`tab\011`:     "tab\t",
		`trailing\04`: `trailing\04`, // incomplete escape kept verbatim
		`not\xyzesc`:  `not\xyzesc`,
	} {
		if got := unescapeMountinfo(in); got != want {
			t.Errorf("unescapeMountinfo(%q) = %q, want %q", in, got, want)
		}
	}
}
