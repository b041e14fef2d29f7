package inventory

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"

	"passerelle/pkg/atomicfile"
)

// writers is how many files WriteResults writes at once. The time goes to
// fsync, not CPU: concurrent syncs share the file system's journal
// commits, which takes 500 schools from seconds to a fraction of one.
const writers = 16

// WriteResults writes every successful result to dir/<uai>.yaml, creating
// dir if needed, and returns how many files it wrote. Each file is replaced
// atomically, so a box or a push tool never reads half a configuration,
// even if the render is interrupted. Failed results are skipped: the file
// of that school, if any, keeps its previous content. After an error no
// new file is started, and the first error is returned.
func WriteResults(dir string, results []Result) (int, error) {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return 0, fmt.Errorf("output directory: %w", err)
	}
	var todo []*Result
	for i := range results {
		r := &results[i]
		if !r.OK() || r.Output == nil {
			continue
		}
		// The UAI was validated as part of the config, but it becomes a
		// path here, so a stray separator must never get that far.
		if r.UAI == "" || strings.ContainsAny(r.UAI, `/\`) || strings.HasPrefix(r.UAI, ".") {
			return 0, fmt.Errorf("line %d: uai %q cannot name a file", r.Line, r.UAI)
		}
		todo = append(todo, r)
	}

	var (
		mu       sync.Mutex
		written  int
		firstErr error
		wg       sync.WaitGroup
	)
	next := make(chan *Result)
	for range min(writers, len(todo)) {
		wg.Go(func() {
			for r := range next {
				err := atomicfile.Replace(filepath.Join(dir, r.UAI+".yaml"), r.Output, 0o644)
				mu.Lock()
				if err == nil {
					written++
				} else if firstErr == nil {
					firstErr = err
				}
				mu.Unlock()
			}
		})
	}
	for _, r := range todo {
		mu.Lock()
		failed := firstErr != nil
		mu.Unlock()
		if failed {
			break
		}
		next <- r
	}
	close(next)
	wg.Wait()
	if firstErr != nil {
		return written, firstErr
	}
	// One directory sync makes all the renames above durable.
	if err := atomicfile.SyncDir(dir); err != nil {
		return written, err
	}
	return written, nil
}

// StaleFiles returns the names of the configurations in dir (NAME.yaml)
// that no row of the inventory names: schools removed from it, whose old
// configuration would otherwise stay beside the new ones, and be pushed.
// A row that failed still names its file. A missing dir has none.
func StaleFiles(dir string, results []Result) ([]string, error) {
	entries, err := os.ReadDir(dir)
	if os.IsNotExist(err) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("output directory: %w", err)
	}
	known := make(map[string]bool, len(results))
	for _, r := range results {
		known[r.UAI+".yaml"] = true
	}
	var stale []string
	for _, e := range entries {
		if e.Type().IsRegular() && strings.HasSuffix(e.Name(), ".yaml") && !known[e.Name()] {
			stale = append(stale, e.Name())
		}
	}
	return stale, nil // os.ReadDir sorts by name
}

// Prune removes the named files from dir (the result of StaleFiles) and
// makes the removals durable. It stops at the first error.
func Prune(dir string, names []string) error {
	for _, n := range names {
		if n != filepath.Base(n) || !strings.HasSuffix(n, ".yaml") {
			return fmt.Errorf("prune: %q is not a configuration file name", n)
		}
		if err := os.Remove(filepath.Join(dir, n)); err != nil {
			return fmt.Errorf("prune: %w", err)
		}
	}
	if len(names) == 0 {
		return nil
	}
	return atomicfile.SyncDir(dir)
}
