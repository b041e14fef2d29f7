package ut1

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"time"

	"passerelle/pkg/atomicfile"
)

// A Store keeps list versions in one directory of the box's persistent
// storage (/perm/lists/ut1): the archives of the current and previous
// versions, and manifest.json naming them with their SHA-256. At boot the
// current version is checked against its checksum and loaded; if it is
// damaged, the previous one. A directory without a manifest that holds an
// unpacked tree is loaded as it is (a technician's copy, the lab).
type Store struct {
	Dir    string
	Client *http.Client // nil: http.DefaultClient
	Log    *slog.Logger
	Now    func() time.Time
	// MaxShrink refuses an update that shrinks a category by more than
	// this percentage.
	MaxShrink int
	// MaxSize bounds a download; 0 means 2 GiB.
	MaxSize int64
}

// Manifest is the store's record of its versions.
type Manifest struct {
	Current  *Version `json:"current,omitempty"`
	Previous *Version `json:"previous,omitempty"`
}

// Version is one stored archive.
type Version struct {
	File       string         `json:"file"`
	SHA256     string         `json:"sha256"`
	Source     string         `json:"source,omitempty"`
	Installed  time.Time      `json:"installed"`
	Categories map[string]int `json:"categories"` // domains per category
}

const manifestName = "manifest.json"

// ErrNoLists means the store holds no usable lists.
var ErrNoLists = errors.New("no lists stored")

// ErrUnchanged means the source publishes the version already loaded.
var ErrUnchanged = errors.New("lists unchanged")

// ChecksumError is an update whose archive does not match its checksum.
type ChecksumError struct{ Want, Got string }

func (e *ChecksumError) Error() string {
	return fmt.Sprintf("checksum mismatch: published %s, downloaded archive has %s", e.Want, e.Got)
}

// ShrinkError is an update refused because categories lost too many
// domains, which is more likely a broken mirror than a real change.
type ShrinkError struct {
	MaxShrink int
	Shrunk    []Shrink
}

// Shrink is one category's loss.
type Shrink struct {
	Category string
	Old, New int
}

func (e *ShrinkError) Error() string {
	parts := make([]string, len(e.Shrunk))
	for i, s := range e.Shrunk {
		parts[i] = fmt.Sprintf("%s %d -> %d", s.Category, s.Old, s.New)
	}
	return fmt.Sprintf("update refused: categories shrink by more than %d%%: %s", e.MaxShrink, strings.Join(parts, ", "))
}

// CheckShrink compares a candidate with the lists in use.
func CheckShrink(old, cand *Lists, maxShrink int) error {
	if old == nil {
		return nil
	}
	e := &ShrinkError{MaxShrink: maxShrink}
	for _, c := range old.Categories {
		if c.Domains == 0 {
			continue
		}
		n := 0
		if _, nc, ok := cand.Category(c.Name); ok {
			n = nc.Domains
		}
		if (c.Domains-n)*100 > c.Domains*maxShrink {
			e.Shrunk = append(e.Shrunk, Shrink{Category: c.Name, Old: c.Domains, New: n})
		}
	}
	if len(e.Shrunk) > 0 {
		return e
	}
	return nil
}

func (s *Store) log() *slog.Logger {
	if s.Log == nil {
		return slog.New(slog.DiscardHandler)
	}
	return s.Log
}

func (s *Store) now() time.Time {
	if s.Now == nil {
		return time.Now()
	}
	return s.Now()
}

// ReadManifest returns the store's manifest (empty if there is none).
func (s *Store) ReadManifest() (Manifest, error) {
	var m Manifest
	b, err := os.ReadFile(filepath.Join(s.Dir, manifestName))
	if errors.Is(err, fs.ErrNotExist) {
		return m, nil
	}
	if err != nil {
		return m, err
	}
	if err := json.Unmarshal(b, &m); err != nil {
		return m, fmt.Errorf("%s: %w", manifestName, err)
	}
	return m, nil
}

// Load returns the last good lists: the current version, else the
// previous one, else an unpacked tree in the directory.
func (s *Store) Load(opt Options) (*Lists, error) {
	m, err := s.ReadManifest()
	if err != nil {
		s.log().Warn("lists manifest unreadable; trying the directory as a tree", "dir", s.Dir, "err", err)
	}
	var errs []error
	for _, v := range []*Version{m.Current, m.Previous} {
		if v == nil {
			continue
		}
		l, err := s.loadVersion(v, opt)
		if err == nil {
			return l, nil
		}
		s.log().Error("stored lists version unusable", "file", v.File, "err", err)
		errs = append(errs, err)
	}
	if hasCategories(s.Dir) {
		return ReadDir(s.Dir, opt)
	}
	errs = append(errs, fmt.Errorf("%s: %w", s.Dir, ErrNoLists))
	return nil, errors.Join(errs...)
}

func hasCategories(dir string) bool {
	entries, err := os.ReadDir(dir)
	if err != nil {
		return false
	}
	for _, e := range entries {
		if e.Name() == "blacklists" && e.IsDir() {
			return true
		}
		if e.IsDir() {
			if _, err := os.Stat(filepath.Join(dir, e.Name(), "usage")); err == nil {
				return true
			}
			if _, err := os.Stat(filepath.Join(dir, e.Name(), "domains")); err == nil {
				return true
			}
		}
	}
	return false
}

func (s *Store) loadVersion(v *Version, opt Options) (*Lists, error) {
	if filepath.Base(v.File) != v.File {
		return nil, fmt.Errorf("manifest names %q, not a file of the store", v.File)
	}
	f, err := os.Open(filepath.Join(s.Dir, v.File))
	if err != nil {
		return nil, err
	}
	defer f.Close()
	h := sha256.New()
	if _, err := io.Copy(h, f); err != nil {
		return nil, err
	}
	if got := hex.EncodeToString(h.Sum(nil)); got != v.SHA256 {
		return nil, &ChecksumError{Want: v.SHA256, Got: got}
	}
	if _, err := f.Seek(0, io.SeekStart); err != nil {
		return nil, err
	}
	return ReadTarGz(f, v.SHA256, opt)
}

// ErrInsecureSource is an update source that is not an https URL: the
// checksum comes from the same server as the archive, so only TLS (the
// server's certificate) says the lists are the academy's.
var ErrInsecureSource = errors.New("list source must be an https URL")

// Update fetches source (a tar.gz, over https) and its published checksum
// (source + ".sha256", sha256sum format), and, if it is a new version that
// passes the checksum, size (opt) and shrink checks against cur, installs
// it as the current version and returns it. It returns ErrUnchanged if the
// published checksum is cur's. On any error the stored versions are left
// as they were.
func (s *Store) Update(ctx context.Context, source string, cur *Lists, opt Options) (*Lists, error) {
	if u, err := url.Parse(source); err != nil || u.Scheme != "https" || u.Host == "" {
		return nil, fmt.Errorf("%w: %q", ErrInsecureSource, source)
	}
	want, err := s.fetchChecksum(ctx, source+".sha256")
	if err != nil {
		return nil, err
	}
	if cur != nil && cur.Version == want {
		return nil, ErrUnchanged
	}
	if err := os.MkdirAll(s.Dir, 0o755); err != nil {
		return nil, err
	}
	tmp, got, err := s.download(ctx, source)
	if err != nil {
		return nil, err
	}
	defer os.Remove(tmp) // a no-op once renamed
	if got != want {
		return nil, &ChecksumError{Want: want, Got: got}
	}
	f, err := os.Open(tmp)
	if err != nil {
		return nil, err
	}
	l, err := ReadTarGz(f, got, opt)
	f.Close()
	if err != nil {
		return nil, err
	}
	if err := CheckShrink(cur, l, s.MaxShrink); err != nil {
		return nil, err
	}
	if err := s.install(tmp, source, l); err != nil {
		return nil, err
	}
	return l, nil
}

func (s *Store) get(ctx context.Context, url string) (*http.Response, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return nil, err
	}
	c := s.Client
	if c == nil {
		c = http.DefaultClient
	}
	resp, err := c.Do(req)
	if err != nil {
		return nil, err
	}
	if resp.StatusCode != http.StatusOK {
		resp.Body.Close()
		return nil, fmt.Errorf("GET %s: %s", url, resp.Status)
	}
	return resp, nil
}

func (s *Store) fetchChecksum(ctx context.Context, url string) (string, error) {
	resp, err := s.get(ctx, url)
	if err != nil {
		return "", fmt.Errorf("checksum: %w", err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, 4096))
	if err != nil {
		return "", fmt.Errorf("checksum: %w", err)
	}
	f := strings.Fields(string(b))
	if len(f) == 0 || len(f[0]) != 64 {
		return "", fmt.Errorf("checksum: %s does not start with a SHA-256 in hex", url)
	}
	sum := strings.ToLower(f[0])
	if _, err := hex.DecodeString(sum); err != nil {
		return "", fmt.Errorf("checksum: %s: %w", url, err)
	}
	return sum, nil
}

func (s *Store) download(ctx context.Context, url string) (path, sum string, err error) {
	resp, err := s.get(ctx, url)
	if err != nil {
		return "", "", err
	}
	defer resp.Body.Close()
	f, err := os.CreateTemp(s.Dir, ".download-*")
	if err != nil {
		return "", "", err
	}
	defer func() {
		if err != nil {
			f.Close()
			os.Remove(f.Name())
		}
	}()
	max := s.MaxSize
	if max == 0 {
		max = 2 << 30
	}
	h := sha256.New()
	n, err := io.Copy(io.MultiWriter(f, h), io.LimitReader(resp.Body, max+1))
	if err != nil {
		return "", "", fmt.Errorf("GET %s: %w", url, err)
	}
	if n > max {
		return "", "", fmt.Errorf("GET %s: larger than %d bytes", url, max)
	}
	if err := f.Sync(); err != nil {
		return "", "", err
	}
	if err := f.Close(); err != nil {
		return "", "", err
	}
	return f.Name(), hex.EncodeToString(h.Sum(nil)), nil
}

// install makes a verified download the current version: the archive is
// renamed into place, then the manifest is replaced atomically, then
// versions no longer named are removed. A crash at any point leaves a
// manifest naming complete, verified archives.
func (s *Store) install(tmp, source string, l *Lists) error {
	name := "ut1-" + l.Version[:16] + ".tar.gz"
	if err := os.Rename(tmp, filepath.Join(s.Dir, name)); err != nil {
		return err
	}
	if err := atomicfile.SyncDir(s.Dir); err != nil {
		return err
	}
	m, err := s.ReadManifest()
	if err != nil {
		m = Manifest{}
	}
	v := &Version{File: name, SHA256: l.Version, Source: source, Installed: s.now().UTC(), Categories: map[string]int{}}
	for _, c := range l.Categories {
		v.Categories[c.Name] = c.Domains
	}
	if m.Current != nil && m.Current.File != name {
		m.Previous = m.Current
	}
	m.Current = v
	b, err := json.MarshalIndent(m, "", "  ")
	if err != nil {
		return err
	}
	if err := atomicfile.Write(filepath.Join(s.Dir, manifestName), b, 0o644); err != nil {
		return err
	}
	entries, _ := os.ReadDir(s.Dir)
	for _, e := range entries {
		n := e.Name()
		keep := n == manifestName || (m.Current != nil && n == m.Current.File) || (m.Previous != nil && n == m.Previous.File)
		if !keep && strings.HasPrefix(n, "ut1-") && strings.HasSuffix(n, ".tar.gz") {
			os.Remove(filepath.Join(s.Dir, n))
		}
	}
	return nil
}

// StoredVersions lists the archive files of the store, for diagnostics.
func (s *Store) StoredVersions() []string {
	entries, _ := os.ReadDir(s.Dir)
	var out []string
	for _, e := range entries {
		if strings.HasPrefix(e.Name(), "ut1-") {
			out = append(out, e.Name())
		}
	}
	sort.Strings(out)
	return out
}
