#!/bin/sh
# Fetch the pinned inputs of the arm64 image into the cache (default
# /var/cache/passerelle): the Debian kernel package, the arm64 packages
# of the ext4 tools and GRUB for arm64 EFI (boot/: the A/B boot loader of
# qemu-arm64; its modules, built into one EFI binary by grub-mkimage). Idempotent; needs apt with the arm64 architecture
# added (done here when root). Prints the kernel package's path.
#
#   sh tools/mkimage/fetch.sh [CACHE]
set -eu
CACHE=${1:-${PASSERELLE_CACHE:-/var/cache/passerelle}}
# The kernel: Debian 12's linux-image-6.1.0-57-arm64 (6.1.192-3). Its ABI
# name is in the package name; a newer ABI is a deliberate change here
# and in board/*/README.md.
KERNEL_PKG=linux-image-6.1.0-57-arm64
TOOLS_PKGS="e2fsprogs libext2fs2 libcom-err2 libblkid1 libuuid1 libc6 libss2"
GRUB_PKG=grub-efi-arm64-bin

mkdir -p "$CACHE/debs" "$CACHE/boot"
cd "$CACHE"
if ls ${KERNEL_PKG}_*_arm64.deb >/dev/null 2>&1 && [ -n "$(ls debs/e2fsprogs_*_arm64.deb 2>/dev/null)" ] &&
	[ -n "$(ls boot/${GRUB_PKG}_*_arm64.deb 2>/dev/null)" ]; then
	echo "$CACHE/$(ls ${KERNEL_PKG}_*_arm64.deb | tail -n 1)"
	exit 0
fi
if ! dpkg --print-foreign-architectures | grep -qx arm64; then
	dpkg --add-architecture arm64
	apt-get update -qq >&2
fi
# apt-get download as root warns that _apt cannot write here; harmless.
if ! ls ${KERNEL_PKG}_*_arm64.deb >/dev/null 2>&1; then
	apt-get download -qq "$KERNEL_PKG:arm64" 2>&1 | grep -v '^W: Download is performed unsandboxed' >&2 || true
fi
cd debs
for p in $TOOLS_PKGS; do
	ls ${p}_*_arm64.deb >/dev/null 2>&1 || apt-get download -qq "$p:arm64" 2>&1 | grep -v '^W: Download is performed unsandboxed' >&2 || true
done
cd ../boot
ls ${GRUB_PKG}_*_arm64.deb >/dev/null 2>&1 || apt-get download -qq "$GRUB_PKG:arm64" 2>&1 | grep -v '^W: Download is performed unsandboxed' >&2 || true
cd ..
echo "$CACHE/$(ls ${KERNEL_PKG}_*_arm64.deb | tail -n 1)"
