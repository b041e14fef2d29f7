package manage

import (
	"crypto/sha256"
	"encoding/hex"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"
)

// FileServer serves a directory written by passerellectl publish with a
// strong ETag per bundle (its SHA-256), so a box polling an unchanged
// bundle gets 304 Not Modified and no body: the lab's and the
// benchmark's pull server. A production NOC may use any web server or
// object store with ETags instead.
func FileServer(dir string) http.Handler {
	type entry struct {
		mod  time.Time
		size int64
		etag string
		data []byte
	}
	var (
		mu    sync.Mutex
		cache = map[string]entry{}
	)
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method != http.MethodGet && r.Method != http.MethodHead {
			http.Error(w, "method not allowed", http.StatusMethodNotAllowed)
			return
		}
		name := filepath.Base(r.URL.Path)
		if !strings.HasSuffix(name, ".bundle") {
			http.NotFound(w, r)
			return
		}
		path := filepath.Join(dir, name)
		st, err := os.Stat(path)
		if err != nil {
			http.NotFound(w, r)
			return
		}
		mu.Lock()
		e, ok := cache[name]
		mu.Unlock()
		if !ok || !e.mod.Equal(st.ModTime()) || e.size != st.Size() {
			data, err := os.ReadFile(path)
			if err != nil {
				http.NotFound(w, r)
				return
			}
			sum := sha256.Sum256(data)
			e = entry{mod: st.ModTime(), size: st.Size(), etag: `"` + hex.EncodeToString(sum[:16]) + `"`, data: data}
			mu.Lock()
			cache[name] = e
			mu.Unlock()
		}
		w.Header().Set("ETag", e.etag)
		if r.Header.Get("If-None-Match") == e.etag {
			w.WriteHeader(http.StatusNotModified)
			return
		}
		w.Header().Set("Content-Type", "application/json")
		if r.Method == http.MethodHead {
			return
		}
		w.Write(e.data)
	})
}
