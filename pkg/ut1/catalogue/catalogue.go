// Package catalogue is the list of UT1 category names, with the usage of
// each (black or white) and the aliases the publication ships. It lets
// the configuration be checked offline: a category misspelt in a DNS
// profile ("gamblig") would otherwise match nothing and filter nothing.
//
// The list is catalogue.txt, embedded; its header says where it comes
// from. The package has no dependencies, so pkg/config may import it.
package catalogue

import (
	_ "embed"
	"sort"
	"strings"
	"sync"
)

//go:embed catalogue.txt
var text string

// Category is one name of the catalogue.
type Category struct {
	Name  string
	White bool   // usage white: the list allows rather than blocks
	Alias string // for an alias, the category it names; "" otherwise
}

// Usage is "white" or "black".
func (c Category) Usage() string {
	if c.White {
		return "white"
	}
	return "black"
}

// parsed is a memo of immutable data, read once from the embedded text.
var parsed = sync.OnceValues(func() (map[string]Category, []string) {
	m := map[string]Category{}
	var names []string
	for _, line := range strings.Split(text, "\n") {
		f := strings.Fields(line)
		if len(f) < 2 || strings.HasPrefix(f[0], "#") {
			continue
		}
		c := Category{Name: f[0], White: f[1] == "white"}
		if len(f) > 2 {
			c.Alias = f[2]
		}
		m[c.Name] = c
		names = append(names, c.Name)
	}
	sort.Strings(names)
	return m, names
})

// Lookup returns the category of a name (a category or an alias).
func Lookup(name string) (Category, bool) {
	m, _ := parsed()
	c, ok := m[name]
	return c, ok
}

// Names returns every name, aliases included, sorted.
func Names() []string {
	_, names := parsed()
	return append([]string(nil), names...)
}

// All returns every category, aliases included, sorted by name.
func All() []Category {
	m, names := parsed()
	out := make([]Category, len(names))
	for i, n := range names {
		out[i] = m[n]
	}
	return out
}
