#!/bin/sh
# Boot a qemu-arm64 image (make vm): wan0 on QEMU's user network (the
# box's uplink, DHCP from QEMU). lan0, by default, on a second user
# network where QEMU plays a school computer at 10.99.0.2, with ports of
# the host forwarded to the box's LAN address. With LAN_TAP=NAME, lan0 is
# the host's TAP device NAME instead (made beforehand, as root: see
# docs/image.md), so a real DHCP client, resolver and browser on the host
# (or in a namespace holding the TAP) are the school computer. The disk is
# kept between runs (delete it for a first boot again). It boots as the
# box does: UEFI (qemu-efi-aarch64), then GRUB, which picks the A/B system
# slot; a restart of the box boots it again. Ctrl-a x quits;
# `system_powerdown` on the monitor powers the box off cleanly.
#
#   sh tools/vm/run.sh IMAGE_DIR [DISK]
#   LAN_TAP=lan-pc sh tools/vm/run.sh IMAGE_DIR [DISK]
set -eu
IMG=${1:?usage: run.sh IMAGE_DIR [DISK]}
DISK=${2:-$IMG/vm-disk.img}
# A disk kept from before the A/B layout (no ESP, no slots) would not
# reach GRUB: it is set aside and a fresh one made, which the message says
# (its /perm is lost). A kept A/B disk boots as it is, like a box's.
# GPT partition names are UTF-16: without the NULs, "system-a" reads plain.
if [ -f "$DISK" ] && ! head -c 17408 "$DISK" | tr -d '\000' | grep -aq system-a; then
	mv "$DISK" "$DISK.old"
	echo "run.sh: $DISK has no A/B slots (made by an older image); kept as $DISK.old, a fresh disk is made (first boot)" >&2
fi
[ -f "$DISK" ] || cp --sparse=always "$IMG/disk.img" "$DISK"
if [ -n "${LAN_TAP:-}" ]; then
	LAN="tap,id=lan,ifname=$LAN_TAP,script=no,downscript=no"
	cat <<MSG
passerelle VM ($IMG, disk $DISK)
  console: this terminal (JSON log); Ctrl-a x quits, Ctrl-a c then system_powerdown powers off
  the school LAN: TAP $LAN_TAP; a DHCP client on it gets a 10.99.0.x lease from the box
  status page: https://10.99.0.1/ (from the LAN side); DNS: dig @10.99.0.1 example.org
  the box's uplink: QEMU user network, address 10.0.2.15 by DHCP
MSG
else
	LAN="user,id=lan,net=10.99.0.0/24,host=10.99.0.2,dhcpstart=10.99.0.200,restrict=on,hostfwd=tcp:127.0.0.1:8443-10.99.0.1:443,hostfwd=tcp:127.0.0.1:5353-10.99.0.1:53"
	cat <<MSG
passerelle VM ($IMG, disk $DISK)
  console: this terminal (JSON log); Ctrl-a x quits, Ctrl-a c then system_powerdown powers off
  status page: https://127.0.0.1:8443/ (the box's 10.99.0.1:443, seen from the LAN)
  DNS of the school zone, over TCP: dig +tcp -p 5353 @127.0.0.1 example.org (10.99.0.1:53)
  the box's uplink: QEMU user network, address 10.0.2.15 by DHCP
MSG
fi
exec qemu-system-aarch64 -M virt -cpu max,pauth-impdef=on -m 256 -smp 2 -nographic \
	-bios /usr/share/qemu-efi-aarch64/QEMU_EFI.fd \
	-drive "file=$DISK,format=raw,if=none,id=d0" -device virtio-blk-pci,drive=d0,addr=0x4,bootindex=0 \
	-netdev user,id=wan -device virtio-net-pci,netdev=wan,addr=0x2,romfile= \
	-netdev "$LAN" -device virtio-net-pci,netdev=lan,addr=0x3,romfile= \
	-device i6300esb
