#!/usr/bin/env bash
# Times replacing the firewall's nftables table through pkg/firewall
# (google/nftables) and with `nft -f` loading the same ruleset text, in the
# same run: 1k, 10k, 50k and 100k CIDRs in a set, and 500 config rules.
# Each case: one untimed load, then 5 timed atomic replacements per tool;
# min and median printed, and the set's element count checked in the
# kernel after each tool. Runs in a fresh network namespace (unshare), so
# nothing of the host is touched and nothing is left behind.
#
#   sudo bash tools/bench/firewall/run.sh [flags of tools/bench/firewall]
set -euo pipefail

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/../../.." && pwd)
cd "$root"
if [ "$(id -u)" != 0 ]; then
	echo "firewall bench: needs root (network namespace, nftables)" >&2
	exit 1
fi
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
go build -o "$work/firewall-bench" ./tools/bench/firewall
echo "command: unshare --net firewall-bench $*"
unshare --net "$work/firewall-bench" "$@"
