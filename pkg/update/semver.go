package update

import (
	"fmt"
	"strconv"
	"strings"
)

// Versions are compared as Semantic Versioning 2.0.0 says (semver.org,
// §11), with a leading "v" allowed: MAJOR.MINOR.PATCH compared as
// numbers; a pre-release (1.2.0-rc.1) comes before its release (1.2.0),
// pre-releases compare identifier by identifier (numbers as numbers,
// below words; more identifiers win a tie); build metadata after "+"
// (1.2.0+20127dd) is ignored, so two builds of one version are the same
// version. A running firmware whose version is not semantic (a
// development build, "dev") is older than every release.

// semver is a parsed version.
type semver struct {
	num [3]uint64
	pre []string
}

func parseSemver(s string) (semver, error) {
	var v semver
	t := strings.TrimPrefix(s, "v")
	if i := strings.IndexByte(t, '+'); i >= 0 {
		if i == len(t)-1 || !validIdents(t[i+1:], false) {
			return v, fmt.Errorf("version %q: bad build metadata", s)
		}
		t = t[:i]
	}
	if i := strings.IndexByte(t, '-'); i >= 0 {
		if i == len(t)-1 || !validIdents(t[i+1:], true) {
			return v, fmt.Errorf("version %q: bad pre-release", s)
		}
		v.pre = strings.Split(t[i+1:], ".")
		t = t[:i]
	}
	parts := strings.Split(t, ".")
	if len(parts) != 3 {
		return v, fmt.Errorf("version %q is not MAJOR.MINOR.PATCH (semantic versioning)", s)
	}
	for i, p := range parts {
		n, err := strconv.ParseUint(p, 10, 64)
		if err != nil || (len(p) > 1 && p[0] == '0') {
			return v, fmt.Errorf("version %q: %q is not a number without leading zeros", s, p)
		}
		v.num[i] = n
	}
	return v, nil
}

// validIdents checks dot-separated identifiers of [0-9A-Za-z-]; in a
// pre-release, numeric ones have no leading zero.
func validIdents(s string, pre bool) bool {
	for _, id := range strings.Split(s, ".") {
		if id == "" {
			return false
		}
		numeric := true
		for _, c := range id {
			switch {
			case c >= '0' && c <= '9':
			case c >= 'a' && c <= 'z', c >= 'A' && c <= 'Z', c == '-':
				numeric = false
			default:
				return false
			}
		}
		if pre && numeric && len(id) > 1 && id[0] == '0' {
			return false
		}
	}
	return true
}

// CompareVersions returns -1, 0 or 1 as a is older than, the same as or
// newer than b, by the rule above; an error if either is not a semantic
// version.
func CompareVersions(a, b string) (int, error) {
	va, err := parseSemver(a)
	if err != nil {
		return 0, err
	}
	vb, err := parseSemver(b)
	if err != nil {
		return 0, err
	}
	return va.compare(vb), nil
}

func (a semver) compare(b semver) int {
	for i := range a.num {
		if c := cmpUint(a.num[i], b.num[i]); c != 0 {
			return c
		}
	}
	switch {
	case len(a.pre) == 0 && len(b.pre) == 0:
		return 0
	case len(a.pre) == 0:
		return 1 // a release is newer than its pre-releases
	case len(b.pre) == 0:
		return -1
	}
	for i := 0; i < len(a.pre) && i < len(b.pre); i++ {
		x, y := a.pre[i], b.pre[i]
		nx, ex := strconv.ParseUint(x, 10, 64)
		ny, ey := strconv.ParseUint(y, 10, 64)
		var c int
		switch {
		case ex == nil && ey == nil:
			c = cmpUint(nx, ny)
		case ex == nil:
			c = -1 // numbers before words
		case ey == nil:
			c = 1
		default:
			c = strings.Compare(x, y)
		}
		if c != 0 {
			return c
		}
	}
	return cmpUint(uint64(len(a.pre)), uint64(len(b.pre)))
}

func cmpUint(a, b uint64) int {
	switch {
	case a < b:
		return -1
	case a > b:
		return 1
	}
	return 0
}
