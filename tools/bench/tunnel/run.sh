#!/usr/bin/env bash
# The academy tunnel (issue 14), in one lab running the real firmware and
# its tailscaled against the lab academy: iperf3 throughput and ping round
# trip from the admin client to the datacenter through the tunnel, and over
# the same lab path without it (the plain routed path to the academy's
# public address); then the tunnel's gap after a Renater carrier loss,
# RUNS runs (default 5), min/median/max. Figures in docs/benchmarks.md.
#
#   tools/bench/tunnel/run.sh [RUNS]    (root: network namespaces; iperf3)
set -euo pipefail

runs=${1:-5}
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/../../.." && pwd)
cd "$root"
if [ "$(id -u)" != 0 ]; then
	echo "tunnel: needs root (network namespaces); skipped" >&2
	exit 0
fi
if ! command -v iperf3 >/dev/null; then
	echo "tunnel: iperf3 missing (apt-get install iperf3); skipped" >&2
	exit 0
fi
# The lab test harness builds the firmware and tailscaled (tools/tailscaled).
PASSERELLE_TUNNEL_BENCH=1 PASSERELLE_TUNNEL_BENCH_RUNS=$runs \
	go test -v -count=1 -timeout 15m -run '^TestTunnelBench$' ./integration/ | grep -E '^(bench:|ok|FAIL|--- FAIL)|Error|timed out'
