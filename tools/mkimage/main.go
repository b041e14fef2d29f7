// Command mkimage builds a passerelle firmware image for a board from a
// pinned Debian kernel package: the kernel, an initramfs whose /init is
// the static passerelle binary (with the board's kernel modules and their
// dependencies, the ext4 tools, the board name and a configuration), and
// a blank GPT disk whose one partition, "perm", the box formats at its
// first boot. Same inputs, same bytes: everything is sorted and dated 0.
//
//	mkimage -board qemu-arm64 -kernel-deb linux-image-....deb \
//	    -debs DIR -passerelle bin/arm64/passerelle -config FILE -out DIR
//
// It needs no root: dpkg-deb extracts the packages and depmod -b indexes
// the modules (the amd64 depmod reads arm64 modules).
package main

import (
	"bytes"
	"compress/gzip"
	"crypto/sha256"
	"debug/elf"
	"encoding/hex"
	"errors"
	"flag"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path"
	"path/filepath"
	"sort"
	"strings"

	"passerelle/board"
	"passerelle/pkg/boot"
)

func main() {
	var o options
	flag.StringVar(&o.board, "board", "qemu-arm64", "board to build for")
	flag.StringVar(&o.kernelDeb, "kernel-deb", "", "Debian linux-image package (.deb) of the board's kernel")
	flag.StringVar(&o.debs, "debs", "", "directory of the arm64 packages of the ext4 tools (e2fsprogs and the libraries it needs); empty: no mkfs/fsck in the image")
	flag.StringVar(&o.passerelle, "passerelle", "", "static passerelle binary for the board's architecture")
	flag.StringVar(&o.config, "config", "", "configuration baked into the image (/etc/passerelle/config.yaml)")
	flag.StringVar(&o.out, "out", "", "output directory")
	flag.Int64Var(&o.diskMiB, "disk-mib", 0, "size of the disk image in MiB; default 64, or 288 with A/B slots")
	flag.StringVar(&o.grubDeb, "grub-deb", "", "Debian grub-efi-arm64-bin package (.deb): GRUB of the A/B boards (boot_count: grub-env)")
	flag.IntVar(&o.slotMiB, "slot-mib", 96, "size of each system slot in MiB (A/B boards)")
	flag.StringVar(&o.runArgs, "run-args", "", "more arguments of passerelle run on the kernel command line (the qemu test: --update-listen ADDR)")
	flag.StringVar(&o.fault, "fault", "", "TEST HOOK: exit, hang or unhealthy; adds /etc/passerelle/fault to the initramfs, which makes PID 1 exit or hang after its trial record, or drop what the box sends through its uplinks before its trial's health gate (integration/qemu_test.go builds its bad updates so)")
	flag.Parse()
	if err := build(o); err != nil {
		fmt.Fprintln(os.Stderr, "mkimage:", err)
		os.Exit(1)
	}
}

type options struct {
	board, kernelDeb, debs, passerelle, config, out string
	diskMiB                                         int64
	grubDeb, fault, runArgs                         string
	slotMiB                                         int
}

// FaultPath is the test hook's file (-fault): read by PID 1 only when it
// exists (cmd/passerelle), absent from every image built without -fault.
const FaultPath = "/etc/passerelle/fault"

// ConfigPath is where the image keeps its configuration.
const ConfigPath = "/etc/passerelle/config.yaml"

func build(o options) error {
	if o.kernelDeb == "" || o.passerelle == "" || o.config == "" || o.out == "" {
		return errors.New("-kernel-deb, -passerelle, -config and -out are required")
	}
	b, err := board.Lookup(o.board)
	if err != nil {
		return err
	}
	tmp, err := os.MkdirTemp("", "mkimage-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(tmp)
	if err := os.MkdirAll(o.out, 0o755); err != nil {
		return err
	}

	kroot := filepath.Join(tmp, "kernel")
	if err := dpkgExtract(o.kernelDeb, kroot); err != nil {
		return err
	}
	kver, err := kernelVersion(kroot)
	if err != nil {
		return err
	}
	var files []entry
	mods, err := moduleEntries(kroot, filepath.Join(tmp, "modules"), kver, b.AllModules())
	if err != nil {
		return err
	}
	files = append(files, mods...)

	bin, err := os.ReadFile(o.passerelle)
	if err != nil {
		return err
	}
	files = append(files, entry{name: "init", mode: sIFREG | 0o755, data: bin})
	cfg, err := os.ReadFile(o.config)
	if err != nil {
		return err
	}
	files = append(files,
		entry{name: strings.TrimPrefix(ConfigPath, "/"), mode: sIFREG | 0o644, data: cfg},
		entry{name: strings.TrimPrefix(boot.ImageBoardFile, "/"), mode: sIFREG | 0o644, data: []byte(b.Name + "\n")},
		// The kernel opens /dev/console for init before devtmpfs is
		// mounted: without the node, init has no output.
		entry{name: "dev/console", mode: sIFCHR | 0o600, major: 5, minor: 1},
		entry{name: "perm", mode: sIFDIR | 0o755},
		entry{name: "tmp", mode: sIFDIR | 0o1777},
	)
	switch o.fault {
	case "":
	case "exit", "hang", "unhealthy":
		fmt.Fprintf(os.Stderr, "mkimage: TEST IMAGE: %s says %q\n", FaultPath, o.fault)
		files = append(files, entry{name: strings.TrimPrefix(FaultPath, "/"), mode: sIFREG | 0o644, data: []byte(o.fault + "\n")})
	default:
		return fmt.Errorf("-fault %q: want exit, hang or unhealthy", o.fault)
	}
	if o.debs != "" {
		tools, err := ext4Tools(o.debs, filepath.Join(tmp, "debs"))
		if err != nil {
			return err
		}
		files = append(files, tools...)
	} else {
		fmt.Fprintln(os.Stderr, "mkimage: no -debs: the image has no mkfs.ext4 nor e2fsck; /perm must be formatted beforehand")
	}

	var cpio bytes.Buffer
	zw, _ := gzip.NewWriterLevel(&cpio, gzip.BestCompression) // header: no name, mtime 0
	if err := writeCPIO(zw, files); err != nil {
		return err
	}
	if err := zw.Close(); err != nil {
		return err
	}
	if err := os.WriteFile(filepath.Join(o.out, "initramfs.cpio.gz"), cpio.Bytes(), 0o644); err != nil {
		return err
	}
	kernel, err := os.ReadFile(filepath.Join(kroot, "boot", "vmlinuz-"+kver))
	if err != nil {
		return err
	}
	if err := os.WriteFile(filepath.Join(o.out, "vmlinuz"), kernel, 0o644); err != nil {
		return err
	}
	if b.Console == "" {
		return fmt.Errorf("board %s: no console in board.yaml", b.Name)
	}
	cmdline := "console=" + b.Console + " quiet panic=-1 -- run --config " + ConfigPath + " --log-format json"
	if o.runArgs != "" {
		// GRUB reads the line from a double-quoted string (cmdline.cfg):
		// plain printable ASCII only.
		if strings.IndexFunc(o.runArgs, func(r rune) bool { return r < ' ' || r > '~' || r == '"' || r == '\\' || r == '$' }) >= 0 {
			return fmt.Errorf("-run-args %q: printable ASCII without quotes, backslashes or $ only", o.runArgs)
		}
		cmdline += " " + o.runArgs
	}
	cmdline += "\n"
	if err := os.WriteFile(filepath.Join(o.out, "cmdline"), []byte(cmdline), 0o644); err != nil {
		return err
	}
	outputs := []string{"vmlinuz", "initramfs.cpio.gz", "disk.img", "cmdline"}
	parts := []partSpec{{name: "perm", typ: linuxFS}}
	diskMiB := int64(64)
	if b.BootCount == board.BootCountGRUB {
		if parts, err = abLayout(o, tmp); err != nil {
			return err
		}
		diskMiB = 288
		outputs = append(outputs, "slot.img")
	} else {
		// No A/B here yet (board/<board>/README.md): the kernel and
		// initramfs are booted directly, the disk holds /perm only.
		_ = os.Remove(filepath.Join(o.out, "slot.img"))
	}
	if o.diskMiB != 0 {
		diskMiB = o.diskMiB
	}
	if _, err := writeGPTDisk(filepath.Join(o.out, "disk.img"), diskMiB<<20, parts, "passerelle/"+b.Name); err != nil {
		return err
	}
	return writeManifest(o.out, kver, len(mods), outputs)
}

func dpkgExtract(deb, dir string) error {
	if out, err := exec.Command("dpkg-deb", "-x", deb, dir).CombinedOutput(); err != nil {
		return fmt.Errorf("dpkg-deb -x %s: %v: %s", deb, err, out)
	}
	return nil
}

func kernelVersion(root string) (string, error) {
	entries, err := os.ReadDir(filepath.Join(root, "lib", "modules"))
	if err != nil || len(entries) != 1 {
		return "", fmt.Errorf("kernel package: want one lib/modules/<version>, got %d (%v)", len(entries), err)
	}
	return entries[0].Name(), nil
}

// moduleEntries indexes the whole package's modules (depmod -b), takes
// the board's modules with everything they need (modules.dep, softdeps,
// aliases: pkg/boot's LoadOrder, the code the box runs), copies them to
// a tree of their own and indexes that again, so the image's
// modules.dep lists exactly what it holds.
func moduleEntries(kroot, stage, kver string, want []string) ([]entry, error) {
	if err := depmod(kroot, kver); err != nil {
		return nil, err
	}
	full := filepath.Join(kroot, "lib", "modules", kver)
	ix, err := boot.ReadModuleIndex(full)
	if err != nil {
		return nil, err
	}
	order, err := ix.LoadOrder(want)
	if err != nil {
		return nil, fmt.Errorf("board modules: %w", err)
	}
	dst := filepath.Join(stage, "lib", "modules", kver)
	for _, rel := range order {
		if err := copyFile(filepath.Join(full, rel), filepath.Join(dst, rel)); err != nil {
			return nil, err
		}
	}
	for _, f := range []string{"modules.builtin", "modules.builtin.modinfo"} {
		if err := copyFile(filepath.Join(full, f), filepath.Join(dst, f)); err != nil {
			return nil, err
		}
	}
	if err := os.WriteFile(filepath.Join(dst, "modules.order"), []byte(strings.Join(order, "\n")+"\n"), 0o644); err != nil {
		return nil, err
	}
	if err := depmod(stage, kver); err != nil {
		return nil, err
	}
	var out []entry
	err = filepath.WalkDir(stage, func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		rel, _ := filepath.Rel(stage, p)
		// The binary indexes are for modprobe; the box reads the text.
		if strings.HasSuffix(rel, ".bin") {
			return nil
		}
		data, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		out = append(out, entry{name: filepath.ToSlash(rel), mode: sIFREG | 0o644, data: data})
		return nil
	})
	return out, err
}

func depmod(root, kver string) error {
	if out, err := exec.Command("depmod", "-b", root, kver).CombinedOutput(); err != nil {
		return fmt.Errorf("depmod -b %s %s: %v: %s", root, kver, err, out)
	}
	return nil
}

// ext4Tools extracts the packages of debs and takes mke2fs (as
// mkfs.ext4) and e2fsck with the shared libraries they need (DT_NEEDED,
// followed) and the dynamic loader.
func ext4Tools(debs, dir string) ([]entry, error) {
	pkgs, err := filepath.Glob(filepath.Join(debs, "*.deb"))
	if err != nil || len(pkgs) == 0 {
		return nil, fmt.Errorf("no packages in %s", debs)
	}
	sort.Strings(pkgs)
	for _, p := range pkgs {
		if err := dpkgExtract(p, dir); err != nil {
			return nil, err
		}
	}
	var out []entry
	libDirs := []string{"lib/aarch64-linux-gnu", "usr/lib/aarch64-linux-gnu"}
	seen := map[string]bool{}
	var add func(rel string) error
	add = func(rel string) error {
		if seen[rel] {
			return nil
		}
		seen[rel] = true
		data, err := os.ReadFile(filepath.Join(dir, rel))
		if err != nil {
			return err
		}
		out = append(out, entry{name: rel, mode: sIFREG | 0o755, data: data})
		f, err := elf.NewFile(bytes.NewReader(data))
		if err != nil {
			return fmt.Errorf("%s: %w", rel, err)
		}
		needed, err := f.ImportedLibraries()
		if err != nil {
			return fmt.Errorf("%s: %w", rel, err)
		}
		for _, lib := range needed {
			found := false
			for _, d := range libDirs {
				if _, err := os.Stat(filepath.Join(dir, d, lib)); err == nil {
					if err := add(path.Join(d, lib)); err != nil {
						return err
					}
					found = true
					break
				}
			}
			if !found {
				return fmt.Errorf("%s needs %s, in none of the packages", rel, lib)
			}
		}
		return nil
	}
	for _, rel := range []string{"sbin/mke2fs", "sbin/e2fsck", "lib/aarch64-linux-gnu/ld-linux-aarch64.so.1"} {
		if err := add(rel); err != nil {
			return nil, err
		}
	}
	out = append(out,
		entry{name: "lib/ld-linux-aarch64.so.1", mode: sIFLNK | 0o777, data: []byte("aarch64-linux-gnu/ld-linux-aarch64.so.1")},
		entry{name: "sbin/mkfs.ext4", mode: sIFLNK | 0o777, data: []byte("mke2fs")},
	)
	if conf, err := os.ReadFile(filepath.Join(dir, "etc", "mke2fs.conf")); err == nil {
		out = append(out, entry{name: "etc/mke2fs.conf", mode: sIFREG | 0o644, data: conf})
	}
	return out, nil
}

func copyFile(src, dst string) error {
	data, err := os.ReadFile(src)
	if err != nil {
		return err
	}
	if err := os.MkdirAll(filepath.Dir(dst), 0o755); err != nil {
		return err
	}
	return os.WriteFile(dst, data, 0o644)
}

// writeManifest lists the outputs with their SHA-256 (the reproducibility
// check compares two builds' manifests).
func writeManifest(out, kver string, modules int, outputs []string) error {
	var b strings.Builder
	fmt.Fprintf(&b, "# kernel %s, %d files under lib/modules\n", kver, modules)
	for _, f := range outputs {
		data, err := os.ReadFile(filepath.Join(out, f))
		if err != nil {
			return err
		}
		sum := sha256.Sum256(data)
		fmt.Fprintf(&b, "%s  %s  %d\n", hex.EncodeToString(sum[:]), f, len(data))
	}
	return os.WriteFile(filepath.Join(out, "SHA256SUMS"), []byte(b.String()), 0o644)
}
