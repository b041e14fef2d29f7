// Package ut1 reads the UT1 (Université Toulouse 1 Capitole) category
// lists, in the squidGuard layout the academies publish: one folder per
// category holding `domains` (a domain and all its subdomains), `urls` and
// `expressions` (which DNS cannot enforce: counted and reported), and
// `usage` (black or white). Folders that are symbolic links, or small files
// naming another category, are aliases (porn -> adult).
//
// It reads both the published tar.gz and an unpacked directory tree into
// one immutable domainset.Set whose tags are category numbers, and keeps
// versions on the box's persistent storage (store.go).
package ut1

import (
	"archive/tar"
	"bufio"
	"bytes"
	"compress/gzip"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net/netip"
	"os"
	"path"
	"path/filepath"
	"regexp"
	"slices"
	"sort"
	"strings"
	"time"

	"passerelle/pkg/domainset"
)

// Category describes one list as loaded.
type Category struct {
	Name  string
	White bool // usage says white: the list allows rather than blocks
	// Domains is the number of distinct domain entries; Addresses the
	// number of distinct IP address entries (not matched by name, see
	// Lists.Addresses). Duplicates counts the domain lines that repeat
	// one already listed: they are dropped, and a list padded with them
	// cannot hide a shrink.
	Domains, Addresses, Duplicates int
	// URLs and Expressions count the entries DNS cannot enforce.
	URLs, Expressions int
	// Invalid counts lines of `domains` that are not domain names.
	Invalid int
	Aliases []string
}

// Lists is one loaded version of the lists. It is immutable.
type Lists struct {
	// Version identifies the source: the SHA-256 of the archive, or
	// "dir:<path>" for a directory tree.
	Version string
	// Published is when UT1 published this version, as well as the
	// source says: the newest modification time of its list files (the
	// publication rebuilds the categories that changed), unless a
	// SOURCE.md beside the categories says "dated YYYY-MM-DD" (how a
	// copy that reset the files' times records its snapshot, e.g.
	// ../shared/data/ut1). Zero when unknown.
	Published  time.Time
	Set        *domainset.Set
	Categories []Category // indexed by tag
	byName     map[string]int
	kept       map[string][]string
	addrs      map[string][]netip.Addr
}

// Options tunes loading.
type Options struct {
	// Keep lists categories whose domain names are kept as strings, for
	// callers that need to enumerate them (the DoH endpoints the firewall
	// blocks by address). Everything else is kept only as hashes.
	Keep []string
	// MaxBytes bounds what an archive may unpack to (a gzip bomb expands
	// a few kilobytes into gigabytes); 0 means DefaultMaxBytes.
	MaxBytes int64
	// MaxLines bounds the lines read over every file: each domain costs
	// 9 bytes while the set is built; 0 means DefaultMaxLines.
	MaxLines int
}

// The default bounds are several times the full published lists (about
// 5 million lines, 150 MB unpacked, the adult category most of it), and
// keep the transient memory of a load under 150 MB on a 1 GB board.
const (
	DefaultMaxBytes = 512 << 20
	DefaultMaxLines = 16_000_000
)

// LimitError is a list source past one of the Options bounds.
type LimitError struct {
	What  string // "unpacked bytes" or "lines"
	Limit int64
}

func (e *LimitError) Error() string {
	return fmt.Sprintf("more than %d %s: refused (damaged or hostile source?)", e.Limit, e.What)
}

func (o Options) maxBytes() int64 {
	if o.MaxBytes > 0 {
		return o.MaxBytes
	}
	return DefaultMaxBytes
}

func (o Options) maxLines() int {
	if o.MaxLines > 0 {
		return o.MaxLines
	}
	return DefaultMaxLines
}

// boundedReader fails once more than limit bytes were read through it.
type boundedReader struct {
	r     io.Reader
	left  int64
	limit int64
}

func (b *boundedReader) Read(p []byte) (int, error) {
	if b.left <= 0 {
		// One byte more tells a source of exactly limit bytes from a
		// larger one.
		var one [1]byte
		if n, _ := b.r.Read(one[:]); n > 0 {
			return 0, &LimitError{What: "unpacked bytes", Limit: b.limit}
		}
		return b.r.Read(p)
	}
	if int64(len(p)) > b.left {
		p = p[:b.left]
	}
	n, err := b.r.Read(p)
	b.left -= int64(n)
	return n, err
}

// Category returns the tag and description of a category, by its name or
// an alias.
func (l *Lists) Category(name string) (int, *Category, bool) {
	if l == nil {
		return 0, nil, false
	}
	i, ok := l.byName[name]
	if !ok {
		return 0, nil, false
	}
	return i, &l.Categories[i], true
}

// Kept returns the domain names of a category listed in Options.Keep.
func (l *Lists) Kept(category string) []string {
	if l == nil {
		return nil
	}
	if i, ok := l.byName[category]; ok {
		return l.kept[l.Categories[i].Name]
	}
	return nil
}

// Addresses returns the IP address entries of a category's domains file
// (DoH endpoints are often listed by address).
func (l *Lists) Addresses(category string) []netip.Addr {
	if l == nil {
		return nil
	}
	if i, ok := l.byName[category]; ok {
		return l.addrs[l.Categories[i].Name]
	}
	return nil
}

// Domains returns the total of domain entries over all categories.
func (l *Lists) Domains() int {
	n := 0
	for _, c := range l.Categories {
		n += c.Domains
	}
	return n
}

// loader accumulates categories from files in any order (a tar archive
// does not promise one).
type loader struct {
	opt     Options
	b       *domainset.Builder
	cats    []Category
	tags    map[string]int
	aliases map[string]string // alias -> target
	kept    map[string][]string
	addrs   map[string][]netip.Addr
	raw     []int // domain lines per tag, duplicates included
	lines   int
	newest  time.Time // of the category files read
	dated   time.Time // from SOURCE.md
}

// dated is SOURCE.md's statement of the snapshot's date.
var datedRe = regexp.MustCompile(`\bdated (\d{4}-\d{2}-\d{2})\b`)

// source reads a SOURCE.md: the date it states, if any.
func (ld *loader) source(r io.Reader) {
	b, err := io.ReadAll(io.LimitReader(r, 64<<10))
	if err != nil {
		return
	}
	if m := datedRe.FindSubmatch(b); m != nil {
		if t, err := time.Parse("2006-01-02", string(m[1])); err == nil {
			ld.dated = t
		}
	}
}

// seen notes a list file's modification time.
func (ld *loader) seen(cat, kind string, mod time.Time) {
	switch kind {
	case "domains", "urls", "expressions", "usage":
		if validCategory(cat) && mod.After(ld.newest) {
			ld.newest = mod
		}
	}
}

func newLoader(opt Options, sizeHint int) *loader {
	return &loader{opt: opt, b: domainset.NewBuilder(sizeHint), tags: map[string]int{}, aliases: map[string]string{},
		kept: map[string][]string{}, addrs: map[string][]netip.Addr{}}
}

var validCategory = func(s string) bool {
	if s == "" || len(s) > 64 {
		return false
	}
	for _, c := range s {
		if !('a' <= c && c <= 'z' || '0' <= c && c <= '9' || c == '_' || c == '-') {
			return false
		}
	}
	return true
}

func (ld *loader) tag(cat string) (int, error) {
	if t, ok := ld.tags[cat]; ok {
		return t, nil
	}
	if len(ld.cats) == domainset.MaxTags {
		return 0, fmt.Errorf("more than %d categories", domainset.MaxTags)
	}
	t := len(ld.cats)
	ld.cats = append(ld.cats, Category{Name: cat})
	ld.tags[cat] = t
	return t, nil
}

// file reads one file of category cat; kind is its base name.
func (ld *loader) file(cat, kind string, r io.Reader) error {
	if !validCategory(cat) {
		return nil // not a category folder (docs, licence)
	}
	switch kind {
	case "domains", "urls", "expressions", "very_restrictive_expression", "usage":
	default:
		return nil
	}
	t, err := ld.tag(cat)
	if err != nil {
		return err
	}
	c := &ld.cats[t]
	keep := slices.Contains(ld.opt.Keep, cat)
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64*1024), 1024*1024)
	for sc.Scan() {
		if ld.lines++; ld.lines > ld.opt.maxLines() {
			return &LimitError{What: "lines", Limit: int64(ld.opt.maxLines())}
		}
		line := bytes.TrimSpace(sc.Bytes())
		if len(line) == 0 || line[0] == '#' {
			continue
		}
		switch kind {
		case "usage":
			switch string(line) {
			case "white":
				c.White = true
				kind = "usage-done" // the first of black/white is the list's type
			case "black":
				kind = "usage-done"
			}
		case "urls":
			c.URLs++
		case "expressions", "very_restrictive_expression":
			c.Expressions++
		case "domains":
			ld.domain(c, t, string(line), keep)
		}
	}
	if err := sc.Err(); err != nil {
		return fmt.Errorf("%s/%s: %w", cat, kind, err)
	}
	return nil
}

func (ld *loader) domain(c *Category, t int, s string, keep bool) {
	if s[0] >= '0' && s[0] <= '9' || strings.IndexByte(s, ':') >= 0 {
		if a, err := netip.ParseAddr(s); err == nil {
			c.Addresses++
			if keep {
				ld.addrs[c.Name] = append(ld.addrs[c.Name], a.Unmap())
			}
			return
		}
	}
	// "*.example.com" and ".example.com" (squid syntax) mean what
	// "example.com" means here: the domain and its subdomains.
	d, err := domainset.Normalize(strings.TrimPrefix(strings.TrimPrefix(s, "*"), "."))
	if err != nil {
		c.Invalid++
		return
	}
	for len(ld.raw) <= t {
		ld.raw = append(ld.raw, 0)
	}
	ld.raw[t]++
	ld.b.Add(d, t)
	if keep {
		ld.kept[c.Name] = append(ld.kept[c.Name], d)
	}
}

func (ld *loader) alias(name, target string) {
	target = path.Base(strings.TrimSuffix(strings.TrimSpace(target), "/"))
	if validCategory(name) && validCategory(target) && name != target {
		ld.aliases[name] = target
	}
}

func (ld *loader) finish(version string) (*Lists, error) {
	if len(ld.cats) == 0 {
		return nil, errors.New("no category found (expected folders holding domains, urls or usage files)")
	}
	set, err := ld.b.Build()
	if err != nil {
		return nil, err
	}
	// Duplicates are merged by the set; counts are of distinct entries.
	counts := set.TagCounts()
	for t := range ld.cats {
		c := &ld.cats[t]
		c.Domains = counts[t]
		if t < len(ld.raw) {
			c.Duplicates = ld.raw[t] - counts[t]
		}
	}
	for name, k := range ld.kept {
		slices.Sort(k)
		ld.kept[name] = slices.Compact(k)
	}
	for name, a := range ld.addrs {
		slices.SortFunc(a, func(x, y netip.Addr) int { return x.Compare(y) })
		a = slices.Compact(a)
		ld.addrs[name] = a
		if t, ok := ld.tags[name]; ok {
			ld.cats[t].Addresses = len(a)
		}
	}
	l := &Lists{Version: version, Published: ld.newest, Set: set, Categories: ld.cats, byName: map[string]int{}, kept: ld.kept, addrs: ld.addrs}
	if !ld.dated.IsZero() {
		l.Published = ld.dated
	}
	for name, t := range ld.tags {
		l.byName[name] = t
	}
	names := make([]string, 0, len(ld.aliases))
	for a := range ld.aliases {
		names = append(names, a)
	}
	sort.Strings(names)
	for _, a := range names {
		t, ok := ld.tags[ld.aliases[a]]
		if _, real := ld.tags[a]; !ok || real {
			continue // dangling alias, or a real folder of that name
		}
		l.byName[a] = t
		l.Categories[t].Aliases = append(l.Categories[t].Aliases, a)
	}
	return l, nil
}

// ReadDir loads an unpacked tree (the folder holding the category folders,
// or its parent when the archive was unpacked there as blacklists/).
func ReadDir(dir string, opt Options) (*Lists, error) {
	entries, err := os.ReadDir(dir)
	if err != nil {
		return nil, fmt.Errorf("ut1: %w", err)
	}
	if len(entries) == 1 && entries[0].IsDir() && entries[0].Name() == "blacklists" {
		return ReadDir(filepath.Join(dir, entries[0].Name()), opt)
	}
	ld := newLoader(opt, 0)
	for _, e := range entries {
		name := e.Name()
		p := filepath.Join(dir, name)
		switch {
		case e.Type()&fs.ModeSymlink != 0:
			target, err := os.Readlink(p)
			if err != nil {
				return nil, fmt.Errorf("ut1: %w", err)
			}
			ld.alias(name, target)
		case e.IsDir():
			for _, kind := range []string{"usage", "domains", "urls", "expressions", "very_restrictive_expression"} {
				f, err := os.Open(filepath.Join(p, kind))
				if errors.Is(err, fs.ErrNotExist) {
					continue
				}
				if err != nil {
					return nil, fmt.Errorf("ut1: %w", err)
				}
				if st, err := f.Stat(); err == nil {
					ld.seen(name, kind, st.ModTime())
				}
				err = ld.file(name, kind, f)
				f.Close()
				if err != nil {
					return nil, fmt.Errorf("ut1: %s: %w", dir, err)
				}
			}
		case e.Type().IsRegular() && name == "SOURCE.md":
			if f, err := os.Open(p); err == nil {
				ld.source(f)
				f.Close()
			}
		case e.Type().IsRegular():
			// Copies that turned symbolic links into files hold the
			// target's name: "porn" contains "adult".
			if info, err := e.Info(); err == nil && info.Size() <= 64 {
				if b, err := os.ReadFile(p); err == nil {
					ld.alias(name, string(b))
				}
			}
		}
	}
	l, err := ld.finish("dir:" + dir)
	if err != nil {
		return nil, fmt.Errorf("ut1: %s: %w", dir, err)
	}
	return l, nil
}

// ReadTarGz loads the published archive (blacklists.tar.gz).
func ReadTarGz(r io.Reader, version string, opt Options) (*Lists, error) {
	zr, err := gzip.NewReader(r)
	if err != nil {
		return nil, fmt.Errorf("ut1: archive: %w", err)
	}
	defer zr.Close()
	tr := tar.NewReader(&boundedReader{r: zr, left: opt.maxBytes(), limit: opt.maxBytes()})
	ld := newLoader(opt, 0)
	for {
		h, err := tr.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			return nil, fmt.Errorf("ut1: archive: %w", err)
		}
		name := strings.Trim(path.Clean(strings.TrimPrefix(h.Name, "./")), "/")
		parts := strings.Split(name, "/")
		switch h.Typeflag {
		case tar.TypeSymlink:
			ld.alias(parts[len(parts)-1], h.Linkname)
		case tar.TypeReg:
			if parts[len(parts)-1] == "SOURCE.md" && len(parts) <= 2 {
				ld.source(tr)
				continue
			}
			if len(parts) < 2 {
				continue
			}
			cat, kind := parts[len(parts)-2], parts[len(parts)-1]
			ld.seen(cat, kind, h.ModTime)
			if err := ld.file(cat, kind, tr); err != nil {
				return nil, fmt.Errorf("ut1: archive: %w", err)
			}
		}
	}
	l, err := ld.finish(version)
	if err != nil {
		return nil, fmt.Errorf("ut1: archive: %w", err)
	}
	return l, nil
}
