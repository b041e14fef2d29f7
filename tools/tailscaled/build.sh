#!/bin/sh
# Builds the box's tailscaled: the version pinned in go.mod (a `tool`
# dependency, so it lives in one place), trimmed to what a subnet router needs.
# Cached in bin/tailscaled/ under a key of version, tags and target: a cold
# build takes minutes, and `make test` must not pay it every run.
#
#   tools/tailscaled/build.sh [GOOS/GOARCH ...]     (default: the host)
#
# Prints the path and size of each binary. TAILSCALED_TAGS overrides the tags.
set -eu
cd "$(dirname "$0")/../.."
GO=${GO:-go}
# `go run tailscale.com/cmd/featuretags --min --add=...` at v1.102.5: --min
# plus what a subnet router on a box uses. Without unixsocketidentity the
# LocalAPI answers 403; ts_include_cli makes the binary the `tailscale` CLI
# too when called by that name (debugging on the box). netstack is what
# serves tailscaled's resolver, 100.100.100.100, on a kernel TUN: the box's
# DNS filter forwards tunnel.tailnet_domain to it (MagicDNS names of the
# tailnet); it costs 2.7 MiB (linux/amd64: 15.2 MB without, 18.0 MB with).
# debug gives the LocalAPI's "rebind", which the tunnel calls when it moves
# tailscaled's traffic back to Renater (pkg/tunnel, refresh): without it the
# box kept sending through the backup for seconds; +1.3 MiB (19.4 MB on
# linux/amd64).
# gro: --min omits it, but not the data path's offloads (wireguard-go reads
# and writes TSO/GSO batches on tailscale0 and magicsock uses UDP GSO/GRO
# whatever the tags); what it omits is the start-up probe that turns TUN GRO
# off on kernels whose TUN refuses coalesced writes (EINVAL, a bug that
# reached LTS kernels: tailscale#13041) and the TS_TUN_DISABLE_TCP_GRO /
# TS_TUN_DISABLE_UDP_GRO knobs. Without them such a kernel drops every
# coalesced TCP write: the tunnel would crawl instead of falling back.
# +48 KiB on linux/amd64, +128 KiB on linux/arm64 (18.6 and 17.3 MiB).
FEATURES=gro,netstack,debug,osrouter,advertiseroutes,useroutes,dns,c2n,health,portmapper,ipnbus,cli,unixsocketidentity
VERSION=$($GO list -m -f '{{.Version}}' tailscale.com)
TAGS=${TAILSCALED_TAGS:-$($GO run tailscale.com/cmd/featuretags --min --add=$FEATURES)}
KEY=$(printf '%s\n%s\n' "$VERSION" "$TAGS" | sha256sum | cut -c1-12)
[ $# -gt 0 ] || set -- "$($GO env GOOS)/$($GO env GOARCH)"
for target in "$@"; do
	os=${target%/*}; arch=${target#*/}
	dir=bin/tailscaled/$VERSION-$KEY/$os-$arch
	out=$dir/tailscaled
	if [ ! -x "$out" ]; then
		mkdir -p "$dir"
		echo "building tailscaled $VERSION for $os/$arch (cold build: minutes)" >&2
		CGO_ENABLED=0 GOOS=$os GOARCH=$arch $GO build -trimpath -ldflags '-s -w' \
			-tags "$TAGS" -o "$out.tmp" tailscale.com/cmd/tailscaled
		mv "$out.tmp" "$out"
		printf '%s\n' "$TAGS" > "$dir/tags"
	fi
	# A stable name for tests and the image builder: bin/tailscaled-OS-ARCH.
	ln -sfn "tailscaled/$VERSION-$KEY/$os-$arch/tailscaled" "bin/tailscaled-$os-$arch"
	size=$(stat -c %s "$out")
	echo "tailscaled $VERSION $os/$arch: $out $(awk "BEGIN{printf \"%.1f MiB\", $size/1048576}")"
done
