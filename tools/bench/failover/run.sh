#!/usr/bin/env bash
# Outage seen by a client sending 100 packets/s when Renater fails, with
# the demo config's default probe settings: carrier loss and a silent
# blackhole, printed beside mwan3's default detection time; then the
# faults of issue 13 (one silent probe target, carrier flapping, both
# down then the backup back, DNS-only failure, +300 ms) and what a
# standby backup's probes cost a month. RUNS runs each (default 5), each
# in a fresh lab running the real firmware; FAULTS limits the faults
# (comma-separated, see tools/bench/failover/main.go); flags after RUNS go
# to that tool (-silent-for, -flaps, -standby-for shorten the long faults).
#
#   tools/bench/failover/run.sh [RUNS [flags]]    (root: network namespaces)
set -euo pipefail

runs=${1:-5}
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/../../.." && pwd)
cd "$root"
if [ "$(id -u)" != 0 ]; then
	echo "failover: needs root (network namespaces); skipped" >&2
	exit 0
fi

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
go build -o "$work/passerelle" ./cmd/passerelle
go run ./tools/bench/failover -firmware "$work/passerelle" -config configs/demo.yaml -runs "$runs" ${FAULTS:+-faults "$FAULTS"} "${@:2}"
