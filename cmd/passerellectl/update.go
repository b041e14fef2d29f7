package main

import (
	"bufio"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"strings"
	"time"

	"passerelle/pkg/update"
)

const updateUsage = `usage: passerellectl update sign --key FILE --board BOARD --version V [--expires 168h]
           [--uai UAI...] [--file PATH...] [--json] --out BUNDLE SLOT_IMAGE
       passerellectl update push [--reboot [--wait 15m]] [--json] (--box URL [--fingerprint FP] | --inventory CSV --url TEMPLATE)
           [--waves 1%,10%,50%,100%] [--max-failure 5%] [--parallel 8] [--known-boxes FILE] BUNDLE
       passerellectl update show BUNDLE

sign: writes a firmware update bundle (docs/updates.md): a manifest (board,
semantic version, the image's size and SHA-256, an expiry, optionally the
only boxes it is for, and the size and SHA-256 of each --file the image
holds, for the records) signed by NOC keys, then SLOT_IMAGE (make image's
slot.img). The boxes trust the keys of their configuration's
management.trusted_keys, as for configuration bundles.

push: streams BUNDLE to each box's management API (POST /v1/update); each
box checks the manifest before writing anything, writes its inactive slot,
reads it back, and marks it to be tried at the next boot. With --reboot
the box restarts into it (when it runs as init); with --wait as well, the
outcome is what the box became: committed (the new slot runs and passed
its health gate) or reverted (back on its previous slot, and why), so a
canary that does not boot stops the push. With an inventory the
fleet is pushed in waves, as configuration push: the first is the canary,
and the push stops after a wave when the share of failed boxes so far is
above --max-failure. A box already running the version counts as done.
Exit status 1 if any box failed or the push stopped.

show: prints a bundle's manifest (its signature is not checked here).
` + trustUsage

func cmdUpdate(args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 {
		fmt.Fprint(stderr, updateUsage)
		return 2
	}
	switch args[0] {
	case "sign":
		return cmdUpdateSign(args[1:], stdout, stderr)
	case "push":
		return cmdUpdatePush(args[1:], stdout, stderr)
	case "show":
		return cmdUpdateShow(args[1:], stdout, stderr)
	}
	fmt.Fprint(stderr, updateUsage)
	return 2
}

// listFlags is a repeatable flag that also takes comma lists.
type listFlags []string

func (l *listFlags) String() string { return strings.Join(*l, ",") }
func (l *listFlags) Set(s string) error {
	for _, x := range strings.Split(s, ",") {
		if x = strings.TrimSpace(x); x != "" {
			*l = append(*l, x)
		}
	}
	return nil
}

func cmdUpdateSign(args []string, stdout, stderr io.Writer) int {
	fs := newFlagSet("update sign", updateUsage, stderr)
	var keys keyFlags
	keys.register(fs)
	board := fs.String("board", "", "the board the image is built for, e.g. qemu-arm64")
	ver := fs.String("version", "", "the firmware version in the image (semantic: 0.2.0)")
	expires := fs.Duration("expires", 7*24*time.Hour, "how long the boxes may install it")
	var uais, files listFlags
	fs.Var(&uais, "uai", "only this box (repeat, or a comma list); default every box of the board")
	fs.Var(&files, "file", "a `file` the image holds (kernel, initramfs), recorded with its size and SHA-256")
	out := fs.String("out", "", "bundle `file` to write")
	asJSON := fs.Bool("json", false, "print the manifest as JSON")
	if err := fs.Parse(args); err != nil || fs.NArg() != 1 || *out == "" || *board == "" || *ver == "" {
		fs.Usage()
		return 2
	}
	fail := func(err error) int {
		fmt.Fprintf(stderr, "passerellectl update sign: %v\n", err)
		return 1
	}
	if _, err := update.CompareVersions(*ver, *ver); err != nil {
		return fail(err)
	}
	ks, err := keys.load()
	if err != nil {
		return fail(err)
	}
	now := time.Now().UTC().Truncate(time.Second)
	m := update.Manifest{Board: *board, Version: *ver, UAIs: uais, SignedAt: now, Expires: now.Add(*expires)}
	for _, f := range files {
		fi, err := update.FileOf(f)
		if err != nil {
			return fail(err)
		}
		m.Files = append(m.Files, fi)
	}
	m, err = update.WriteBundle(*out, fs.Arg(0), m, ks...)
	if err != nil {
		return fail(err)
	}
	if *asJSON {
		json.NewEncoder(stdout).Encode(m)
		return 0
	}
	fmt.Fprintf(stdout, "%s: version %s for %s, image %d bytes (sha256 %s), signed by %s, expires %s\n",
		*out, m.Version, m.Board, m.Image.Size, m.Image.SHA256, m.KeyID, m.Expires.Format(time.RFC3339))
	return 0
}

func readManifest(path string) (*update.Manifest, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	m, err := update.Peek(bufio.NewReader(f))
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return m, nil
}

func cmdUpdateShow(args []string, stdout, stderr io.Writer) int {
	if len(args) != 1 {
		fmt.Fprint(stderr, updateUsage)
		return 2
	}
	m, err := readManifest(args[0])
	if err != nil {
		fmt.Fprintf(stderr, "passerellectl update show: %v\n", err)
		return 1
	}
	enc := json.NewEncoder(stdout)
	enc.SetIndent("", "  ")
	enc.Encode(m)
	return 0
}

func cmdUpdatePush(args []string, stdout, stderr io.Writer) int {
	fs := newFlagSet("update push", updateUsage, stderr)
	var rf rolloutFlags
	// Images are large: fewer at once than configurations.
	rf.register(fs, 8)
	reboot := fs.Bool("reboot", false, "have each box restart into the new slot once it is written")
	wait := fs.Duration("wait", 0, "with --reboot, follow each box through its restart this long: committed (its health gate passed) or reverted (back on its previous slot) is then its outcome")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	if fs.NArg() != 1 || (*wait > 0 && !*reboot) {
		fs.Usage()
		return 2
	}
	fail := func(code int, err error) int {
		fmt.Fprintf(stderr, "passerellectl update push: %v\n", err)
		return code
	}
	m, err := readManifest(fs.Arg(0))
	if err != nil {
		return fail(1, err)
	}
	targets, pinned, err := rf.targets()
	if err != nil {
		return fail(2, err)
	}
	pins, err := rf.pins(targets, pinned)
	if err != nil {
		return fail(2, err)
	}
	defer saveKnown(pins, stderr)
	o, err := rf.options(len(targets), stderr)
	if err != nil {
		return fail(2, err)
	}
	p := update.Pusher{Path: fs.Arg(0), Reboot: *reboot, Wait: *wait}
	o.Push, o.Failed = p.Push, p.Failed
	return rf.rollout(targets, pins, o, stdout, fmt.Sprintf("firmware %s for %s", m.Version, m.Board))
}
