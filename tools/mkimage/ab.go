package main

import (
	_ "embed"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"

	"passerelle/pkg/slots"
)

// The A/B layout of a board that counts boot tries in the GRUB
// environment (boot_count: grub-env, qemu-arm64): a GPT disk with the EFI
// system partition (GRUB, grub.cfg, grubenv), two system slots and /perm.
// A slot is a FAT filesystem with the kernel, the initramfs and the
// command line; the same slot image goes to either slot (an update bundle
// carries it: slot.img). FAT images come from mtools (mformat, mmd,
// mcopy: no root, no loop device) with a fixed serial and every date set
// to fixedTime, so two builds are the same bytes.

//go:embed grub.cfg
var grubCfg []byte

// grubModules are built into BOOTAA64.EFI: there is no module directory
// on the ESP, so the image is whole and cannot load a stray module.
var grubModules = []string{
	"normal", "part_gpt", "fat", "linux", "boot", "loadenv", "test", "regexp",
	"echo", "configfile", "sleep", "reboot",
}

// fixedTime dates every file and directory of the FAT images (FAT cannot
// say 1970: its epoch is 1980).
var fixedTime = time.Date(2000, 1, 1, 0, 0, 0, 0, time.UTC)

// Partition sizes of the A/B disk.
const (
	espMiB = 16
)

// abLayout builds slot.img and esp.img in out and returns the disk's
// partitions.
func abLayout(o options, tmp string) ([]partSpec, error) {
	if o.grubDeb == "" {
		return nil, fmt.Errorf("board %s counts boot tries in the GRUB environment: -grub-deb (grub-efi-arm64-bin) is required", o.board)
	}
	for _, tool := range []string{"grub-mkimage", "mformat", "mcopy", "mmd"} {
		if _, err := exec.LookPath(tool); err != nil {
			return nil, fmt.Errorf("%s not found (apt-get install grub-common mtools)", tool)
		}
	}
	// The slot: what grub.cfg loads from it.
	cmdline, err := os.ReadFile(filepath.Join(o.out, "cmdline"))
	if err != nil {
		return nil, err
	}
	stage := filepath.Join(tmp, "slot")
	if err := os.MkdirAll(stage, 0o755); err != nil {
		return nil, err
	}
	cfg := fmt.Sprintf("# Read by the ESP's grub.cfg: the kernel command line after passerelle.slot and passerelle.trying.\nset cmdline=%q\n",
		strings.TrimSpace(string(cmdline)))
	if err := os.WriteFile(filepath.Join(stage, "cmdline.cfg"), []byte(cfg), 0o644); err != nil {
		return nil, err
	}
	slotFiles := []string{filepath.Join(o.out, "vmlinuz"), filepath.Join(o.out, "initramfs.cpio.gz"),
		filepath.Join(o.out, "cmdline"), filepath.Join(stage, "cmdline.cfg")}
	slotImg := filepath.Join(o.out, "slot.img")
	if err := makeFAT(slotImg, o.slotMiB, "PASSERELLE", 0x50415353, nil, map[string][]string{"": slotFiles}); err != nil {
		return nil, fmt.Errorf("slot image: %w", err)
	}

	// The ESP: GRUB for arm64 EFI from the pinned package's modules.
	grub := filepath.Join(tmp, "grub")
	if err := dpkgExtract(o.grubDeb, grub); err != nil {
		return nil, err
	}
	efi := filepath.Join(tmp, "esp", "BOOTAA64.EFI")
	if err := os.MkdirAll(filepath.Dir(efi), 0o755); err != nil {
		return nil, err
	}
	args := append([]string{"-O", "arm64-efi", "-d", filepath.Join(grub, "usr/lib/grub/arm64-efi"), "-p", "/EFI/BOOT", "-o", efi}, grubModules...)
	if out, err := exec.Command("grub-mkimage", args...).CombinedOutput(); err != nil {
		return nil, fmt.Errorf("grub-mkimage: %v: %s", err, out)
	}
	for name, data := range map[string][]byte{"grub.cfg": grubCfg, "grubenv": slots.InitialEnv()} {
		if err := os.WriteFile(filepath.Join(tmp, "esp", name), data, 0o644); err != nil {
			return nil, err
		}
	}
	espImg := filepath.Join(tmp, "esp.img")
	espFiles := []string{efi, filepath.Join(tmp, "esp", "grub.cfg"), filepath.Join(tmp, "esp", "grubenv")}
	if err := makeFAT(espImg, espMiB, "ESP", 0x45535020, []string{"EFI", "EFI/BOOT"}, map[string][]string{"EFI/BOOT": espFiles}); err != nil {
		return nil, fmt.Errorf("ESP image: %w", err)
	}
	return []partSpec{
		{name: slots.PartESP, typ: efiSys, size: espMiB << 20, content: espImg},
		{name: slots.PartName(slots.A), typ: linuxFS, size: int64(o.slotMiB) << 20, content: slotImg},
		{name: slots.PartName(slots.B), typ: linuxFS, size: int64(o.slotMiB) << 20},
		{name: "perm", typ: linuxFS},
	}, nil
}

// makeFAT creates a FAT filesystem image of sizeMiB with dirs and files
// (directory on the image → files to copy there), every date fixedTime.
func makeFAT(img string, sizeMiB int, label string, serial uint32, dirs []string, files map[string][]string) error {
	if err := os.Remove(img); err != nil && !os.IsNotExist(err) {
		return err
	}
	f, err := os.Create(img)
	if err != nil {
		return err
	}
	if err := f.Truncate(int64(sizeMiB) << 20); err != nil {
		f.Close()
		return err
	}
	if err := f.Close(); err != nil {
		return err
	}
	env := append(os.Environ(), fmt.Sprintf("SOURCE_DATE_EPOCH=%d", fixedTime.Unix()), "MTOOLS_SKIP_CHECK=1")
	run := func(args ...string) error {
		cmd := exec.Command(args[0], args[1:]...)
		cmd.Env = env
		if out, err := cmd.CombinedOutput(); err != nil {
			return fmt.Errorf("%s: %v: %s", strings.Join(args, " "), err, out)
		}
		return nil
	}
	if err := run("mformat", "-i", img, "-N", fmt.Sprintf("%08X", serial), "-v", label, "::"); err != nil {
		return err
	}
	for _, d := range dirs {
		if err := run("mmd", "-i", img, "::/"+d); err != nil {
			return err
		}
	}
	for dir, srcs := range files {
		for _, src := range srcs {
			// mcopy -m keeps the source's date: make it fixedTime.
			if err := os.Chtimes(src, fixedTime, fixedTime); err != nil {
				return err
			}
		}
		if err := run(append(append([]string{"mcopy", "-m", "-i", img}, srcs...), strings.TrimSuffix("::/"+dir, "/"))...); err != nil {
			return err
		}
	}
	return nil
}
