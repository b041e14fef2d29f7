package main

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"time"

	"passerelle/pkg/atomicfile"
	"passerelle/pkg/config"
	"passerelle/pkg/manage"
)

const signUsage = `usage: passerellectl sign --key FILE [--key FILE...] [--version N] [--expires 72h] [--out BUNDLE] CONFIG

Validates CONFIG and writes it as a signed bundle (docs/management.md) for
the box of its identity.uai: to --out, or stdout. The version must be
higher than every version the box has accepted; the default, the current
Unix time in seconds, always is.
`

const publishUsage = `usage: passerellectl publish --key FILE [--version N] [--expires 168h] [--json] --out DIR (CONFIG... | --configs DIR)

Signs every configuration (e.g. the output of passerellectl render) and
writes DIR/<uai>.bundle, plus DIR/index.json (uai, version, sha256 of each
bundle), each file replaced atomically: DIR can be served by any web
server or object store as the boxes' management.pull_url, e.g.
https://noc.example/bundles/{uai}.bundle. Configurations with problems are
reported and not published; the others are.
`

// signOpts are the flags sign, publish and push share.
type signOpts struct {
	keys    keyFlags
	version uint64
	expires time.Duration
}

func (o *signOpts) register(fs *flag.FlagSet, expires time.Duration) {
	o.keys.register(fs)
	fs.Uint64Var(&o.version, "version", 0, "bundle version (default: the current Unix time in seconds)")
	fs.DurationVar(&o.expires, "expires", expires, "how long the bundle may be applied")
}

// signer signs configuration files.
type signer struct {
	keys    []manage.Key
	version uint64
	expires time.Duration
	now     time.Time
}

func (o *signOpts) signer() (*signer, error) {
	keys, err := o.keys.load()
	if err != nil {
		return nil, err
	}
	now := time.Now()
	v := o.version
	if v == 0 {
		v = uint64(now.Unix())
	}
	return &signer{keys: keys, version: v, expires: o.expires, now: now}, nil
}

// file validates one configuration and returns its signed bundle.
func (s *signer) file(path string) (uai string, bundle []byte, err error) {
	cfg, err := config.Load(path)
	if err != nil {
		return "", nil, err
	}
	text, err := os.ReadFile(path)
	if err != nil {
		return "", nil, err
	}
	b, err := s.text(cfg.Identity.UAI, filepath.Base(path), string(text))
	return cfg.Identity.UAI, b, err
}

func (s *signer) text(uai, name, text string) ([]byte, error) {
	return manage.Sign(manage.Payload{UAI: uai, Version: s.version, Expires: s.now.Add(s.expires), SignedAt: s.now,
		Name: name, Config: text}, s.keys...)
}

func cmdSign(args []string, stdout, stderr io.Writer) int {
	fs := newFlagSet("sign", signUsage, stderr)
	var so signOpts
	so.register(fs, 72*time.Hour)
	out := fs.String("out", "", "bundle `file` (default stdout)")
	if err := fs.Parse(args); err != nil || fs.NArg() != 1 {
		fs.Usage()
		return 2
	}
	s, err := so.signer()
	if err != nil {
		fmt.Fprintf(stderr, "passerellectl sign: %v\n", err)
		return 2
	}
	_, b, err := s.file(fs.Arg(0))
	if err != nil {
		fmt.Fprintf(stderr, "passerellectl sign: %v\n", err)
		return 1
	}
	if *out == "" {
		stdout.Write(append(b, '\n'))
		return 0
	}
	if err := atomicfile.Write(*out, b, 0o644); err != nil {
		fmt.Fprintf(stderr, "passerellectl sign: %v\n", err)
		return 1
	}
	return 0
}

// publishEntry is one box's line of index.json.
type publishEntry struct {
	UAI     string `json:"uai"`
	Version uint64 `json:"version"`
	File    string `json:"file"`
	SHA256  string `json:"sha256"`
}

type publishReport struct {
	Out       string         `json:"out"`
	Version   uint64         `json:"version"`
	Published []publishEntry `json:"published"`
	Failed    []string       `json:"failed"` // "FILE: problem"
}

func cmdPublish(args []string, stdout, stderr io.Writer) int {
	fs := newFlagSet("publish", publishUsage, stderr)
	var so signOpts
	so.register(fs, 7*24*time.Hour)
	out := fs.String("out", "", "`directory` to publish into")
	configs := fs.String("configs", "", "`directory` of configurations (*.yaml)")
	asJSON := fs.Bool("json", false, "print the outcome as JSON")
	if err := fs.Parse(args); err != nil || *out == "" || (fs.NArg() == 0) == (*configs == "") {
		fs.Usage()
		return 2
	}
	files := fs.Args()
	if *configs != "" {
		m, _ := filepath.Glob(filepath.Join(*configs, "*.yaml"))
		files = m
	}
	s, err := so.signer()
	if err != nil {
		fmt.Fprintf(stderr, "passerellectl publish: %v\n", err)
		return 2
	}
	if err := os.MkdirAll(*out, 0o755); err != nil {
		fmt.Fprintf(stderr, "passerellectl publish: %v\n", err)
		return 1
	}
	rep := publishReport{Out: *out, Version: s.version, Failed: []string{}}
	for i, f := range files {
		uai, b, err := s.file(f)
		if err == nil {
			err = atomicfile.Replace(filepath.Join(*out, uai+".bundle"), b, 0o644)
		}
		if err != nil {
			rep.Failed = append(rep.Failed, strings.ReplaceAll(err.Error(), "\n", " "))
			continue
		}
		sum := sha256.Sum256(b)
		rep.Published = append(rep.Published, publishEntry{UAI: uai, Version: s.version, File: uai + ".bundle", SHA256: hex.EncodeToString(sum[:])})
		if !*asJSON && len(files) >= 500 && (i+1)%500 == 0 {
			fmt.Fprintf(stderr, "%d/%d signed\n", i+1, len(files))
		}
	}
	sort.Slice(rep.Published, func(i, j int) bool { return rep.Published[i].UAI < rep.Published[j].UAI })
	idx, _ := json.MarshalIndent(rep.Published, "", "  ")
	err = atomicfile.Replace(filepath.Join(*out, "index.json"), idx, 0o644)
	if err == nil {
		err = atomicfile.SyncDir(*out)
	}
	if err != nil {
		rep.Failed = append(rep.Failed, err.Error())
	}
	if *asJSON {
		json.NewEncoder(stdout).Encode(rep)
	} else {
		for _, f := range rep.Failed {
			fmt.Fprintln(stderr, f)
		}
		fmt.Fprintf(stdout, "%d bundles of version %d published in %s; %d failed\n", len(rep.Published), s.version, *out, len(rep.Failed))
	}
	if len(rep.Failed) > 0 {
		return 1
	}
	return 0
}
