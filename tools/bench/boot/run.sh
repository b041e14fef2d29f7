#!/bin/sh
# What UEFI and GRUB add to a boot of the qemu-arm64 image under TCG
# (docs/benchmarks.md): boots IMAGE_DIR's disk N times through UEFI and
# GRUB (as the box and the qemu test boot), then N times with the slot's
# kernel and initramfs given to QEMU directly (-kernel, as before A/B),
# and prints, for each boot, the seconds from QEMU's start to passerelle's
# first line (/init started) and to `daemon-running`. Each run has a copy of the
# disk already past its first boot (no mkfs). Run it under the
# integration lock: it loads both cores.
#
#   sh tools/bench/boot/run.sh /var/cache/passerelle/image/qemu-arm64 [N]
set -eu
IMG=${1:?usage: run.sh IMAGE_DIR [N]}
N=${2:-3}
W=$(mktemp -d)
trap 'rm -rf "$W"' EXIT
boot() { # boot uefi|direct DISK
	mode=$1 disk=$2
	set -- -M virt -cpu max,pauth-impdef=on -m 256 -smp 2 -nographic -no-reboot \
		-drive "file=$disk,format=raw,if=none,id=d0" \
		-netdev user,id=wan -device virtio-net-pci,netdev=wan,addr=0x2,romfile= \
		-netdev user,id=lan,restrict=on -device virtio-net-pci,netdev=lan,addr=0x3,romfile= \
		-device i6300esb
	if [ "$mode" = uefi ]; then
		set -- "$@" -bios /usr/share/qemu-efi-aarch64/QEMU_EFI.fd -device virtio-blk-pci,drive=d0,addr=0x4,bootindex=0
	else
		set -- "$@" -device virtio-blk-pci,drive=d0,addr=0x4 -kernel "$IMG/vmlinuz" -initrd "$IMG/initramfs.cpio.gz" \
			-append "passerelle.slot=a passerelle.trying=0 $(cat "$IMG/cmdline")"
	fi
	log=$W/console.log
	start=$(date +%s.%N)
	qemu-system-aarch64 "$@" </dev/null >"$log" 2>&1 &
	pid=$!
	kernel="" running=""
	while [ -z "$running" ]; do
		now=$(date +%s.%N)
		[ -n "$kernel" ] || ! grep -q '"msg":"starting"' "$log" || kernel=$(awk "BEGIN{printf \"%.1f\", $now - $start}")
		grep -q '"event":"daemon-running"' "$log" && running=$(awk "BEGIN{printf \"%.1f\", $now - $start}")
		if [ "$(awk "BEGIN{print ($now - $start > 120)}")" = 1 ]; then running=timeout; fi
		sleep 0.2
	done
	kill "$pid" 2>/dev/null || true
	wait "$pid" 2>/dev/null || true
	echo "init started ${kernel:-?} s, running $running s"
}
cp --sparse=always "$IMG/disk.img" "$W/disk.img"
boot uefi "$W/disk.img" >/dev/null # the first boot formats /perm
for mode in uefi direct; do
	i=0
	while [ $i -lt "$N" ]; do
		printf '%s: ' "$mode"
		boot $mode "$W/disk.img"
		i=$((i + 1))
	done
done
