#!/usr/bin/env bash
# make bench-smoke (the end of make test, so CI runs it): every benchmark of
# `make bench` once, small and short, so that a benchmark that no longer
# runs fails CI instead of rotting until the next full run. Each one's
# output is printed with the prefix "bench-smoke: NAME: ", then its wall
# time; a summary closes the run. It fails when a benchmark exits non-zero
# or prints none of the figures it exists for, never on a figure's value:
# these are smoke sizes on a shared machine, the recorded results and their
# targets are the full runs of docs/benchmarks.md.
#
# Without root the lab and nftables benchmarks (firewall, failover, tunnel,
# dns) are skipped, as make test skips the lab tests. As root they take
# the integration lock (BENCH_SMOKE_LOCK, default
# /tmp/passerelle-integration.lock; set it empty when the caller already
# holds that lock: flock would wait for itself).
#
#   bash tools/bench/smoke.sh [NAME...]    (default: all)
set -uo pipefail

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
cd "$root"
GO=${GO:-go}
LOCK=${BENCH_SMOKE_LOCK-/tmp/passerelle-integration.lock}
SNAPSHOT=${SNAPSHOT:-../shared/data/ut1}
work=$(mktemp -d /tmp/passerelle-bench-smoke.XXXXXX)
trap 'rm -rf "$work"' EXIT
is_root=false
[ "$(id -u)" = 0 ] && is_root=true

results=()
failed=0
waited=0 # seconds spent waiting for the integration lock
now() { date +%s.%N; }
secs() { awk -v a="$2" -v b="$1" 'BEGIN{printf "%.1f", a-b}'; }

# piece NAME lock|nolock COMMAND...: runs one benchmark, its output
# prefixed as it comes; its wall time excludes waiting for the lock.
piece() {
	local name=$1 locking=$2
	shift 2
	log=$work/$name.log
	local start=$work/$name.start t0 status=0
	t0=$(now)
	if [ "$locking" = lock ] && [ -n "$LOCK" ]; then
		echo "bench-smoke: $name: waiting for $LOCK"
		flock "$LOCK" bash -c 'date +%s.%N >"$1"; shift; exec "$@"' _ "$start" "$@" 2>&1 |
			tee "$log" | sed -u "s/^/bench-smoke: $name: /"
		status=${PIPESTATUS[0]}
	else
		now >"$start"
		"$@" 2>&1 | tee "$log" | sed -u "s/^/bench-smoke: $name: /"
		status=${PIPESTATUS[0]}
	fi
	local t1 began
	t1=$(now)
	began=$(cat "$start" 2>/dev/null || echo "$t0")
	piece_wall=$(secs "$began" "$t1")
	waited=$(awk -v w="$waited" -v a="$began" -v b="$t0" 'BEGIN{printf "%.1f", w+a-b}')
	if ((status != 0)); then
		verdict "$name" "FAILED (exit status $status)"
		return 1
	fi
	return 0
}

# expect NAME MIN REGEX: the log holds at least MIN lines matching REGEX
# (extended), the benchmark's figures.
expect() {
	local name=$1 min=$2 re=$3 n
	n=$(grep -cE -- "$re" "$log")
	if ((n < min)); then
		verdict "$name" "FAILED (no figures: $n lines match '$re', want $min)"
		return 1
	fi
}

verdict() {
	echo "bench-smoke: $1: $2 in ${piece_wall} s"
	results+=("$(printf '%-10s %-8s %6s s' "$1" "${2%% *}" "$piece_wall")")
	[[ $2 == ok* || $2 == skipped* ]] || failed=$((failed + 1))
}

skip() { # NAME REASON
	piece_wall=0.0
	verdict "$1" "skipped ($2)"
}

want() { # NAME: whether NAME was asked for
	[ -z "$selected" ] && return 0
	local n
	for n in $selected; do [ "$n" = "$1" ] && return 0; done
	return 1
}
selected="$*"
all_start=$(now)

# NOC rendering: the 500 schools of the full run, once (not five times).
if want render; then
	piece render nolock bash tools/bench/render/run.sh 500 1 &&
		expect render 1 '^render: 500 schools in [0-9.]+ s' &&
		verdict render ok
fi

# Firewall: the smallest set, fewer rules, the 64-zone case, one timed
# replacement per tool; the kernel's element count is still checked.
if want firewall; then
	if ! $is_root; then skip firewall "needs root"; else
		piece firewall lock bash tools/bench/firewall/run.sh -sizes 1000 -rules 100 -runs 1 &&
			expect firewall 3 '^[0-9a-z ]+ +[0-9.]+ ms +[0-9.]+ ms +[0-9.]+ ms +[0-9.]+ ms library ' &&
			verdict firewall ok
	fi
fi

# Failover: every fault once; the three long ones shortened (silent
# target 12 s instead of 30 s: it is reported after ~10 s; 3 flaps
# instead of 10; standby counted 12 s instead of 60 s).
if want failover; then
	if ! $is_root; then skip failover "needs root"; else
		piece failover lock bash tools/bench/failover/run.sh 1 -silent-for 12s -flaps 3 -standby-for 12s &&
			expect failover 8 ' -?[0-9.]+ (ms|changes|switches|MB/month)$' &&
			verdict failover ok
	fi
fi

# Tunnel: one lab, one iperf3 run per path, one carrier loss.
if want tunnel; then
	if ! $is_root; then skip tunnel "needs root"; else
		piece tunnel lock bash tools/bench/tunnel/run.sh 1 &&
			expect tunnel 1 '^bench: throughput, 1 runs, .*: tunnel [0-9.]+/[0-9.]+/[0-9.]+ Mbit/s' &&
			expect tunnel 1 '^bench: tunnel gap after Renater carrier loss, 1 runs: min [0-9]' &&
			verdict tunnel ok
	fi
fi

# DNS: 20,000 synthetic domains instead of 4.6 million, one round of 1 s
# dnsperf runs per server and mix. Without the UT1 snapshot beside the
# repository (a fresh CI machine), the demo's synthetic list stands in.
if want dns; then
	snap=$SNAPSHOT
	[ -d "$snap" ] || {
		echo "bench-smoke: dns: no UT1 snapshot at $snap: configs/demo-lists stands in"
		snap=configs/demo-lists
	}
	if ! $is_root && ! { command -v dnsperf && command -v dnsmasq && command -v unbound; } >/dev/null; then
		skip dns "needs dnsperf, dnsmasq and unbound, installed as root"
	else
		mkdir -p "$work/dns"
		piece dns lock env OUT="$work/dns" SNAPSHOT="$snap" N=20000 DURATION=1 ROUNDS=1 WARM=1 SETTLE=1 TIMEOUT=1 \
			bash tools/bench/dns/run.sh &&
			expect dns 3 '^\| [a-z]+ \| [0-9.]+ \| [0-9]+ \| [0-9]+ \| [0-9]+ \|' &&
			verdict dns ok
	fi
fi

# The Go benchmarks of make bench, each run once (-benchtime 1x).
if want gobench; then
	piece gobench nolock bash -c "$GO test -run '^\$' -bench 'Load5M|Build5M' -benchtime 1x ./pkg/ut1 ./pkg/domainset &&
		$GO test -run '^\$' -bench . -benchtime 1x ./pkg/dhcpd ./pkg/timesync &&
		$GO test -run '^\$' -bench BlockPageDuringFlood -benchtime 50x ./pkg/status" &&
		expect gobench 2 '^Benchmark(Load|Build)5M-[0-9]+[[:space:]]+1[[:space:]]+[0-9]+ ns/op' &&
		expect gobench 8 '^Benchmark[A-Za-z0-9/=_-]+[[:space:]]+1[[:space:]]+[0-9]+ ns/op' &&
		expect gobench 1 '^BenchmarkBlockPageDuringFlood[A-Za-z0-9/=_-]*[[:space:]]+50[[:space:]]+[0-9.]+ ns/op' &&
		verdict gobench ok
fi

# NOC push to 300 simulated boxes (not 10,000); pull by 100 boxes over a
# 2 s cycle (not 300 s), both rounds: new bundles, then unchanged (304).
if want manage; then
	# passerellectl built plainly, as the other pieces build theirs: the
	# cache of make test's go test ./... has it (make build's -trimpath
	# build would be a cold one, minutes on a busy machine).
	piece push nolock bash -c "$GO build -o '$work/passerellectl' ./cmd/passerellectl &&
		$GO run ./tools/bench/manage push -n 300 -ctl '$work/passerellectl'" &&
		expect push 1 '^push: 300 boxes, .*pushed 300, failed 0, exit <nil>' &&
		expect push 1 '^push: wall [0-9.]+m?s .*NOC peak RSS [0-9.]+ MiB' &&
		verdict push ok
	piece pull nolock $GO run ./tools/bench/manage pull -n 100 -cycle 2s -rounds 2 &&
		expect pull 2 '^pull round [12], .*: 100 polls in [0-9.]+m?s \(0 failed\), server CPU [0-9.]+ s' &&
		verdict pull ok
fi

piece_wall=$(secs "$all_start" "$(now)")
echo "bench-smoke: summary (smoke sizes, not the recorded results of docs/benchmarks.md):"
for r in "${results[@]}"; do echo "bench-smoke:   $r"; done
echo "bench-smoke: total ${piece_wall} s (of which ${waited} s waiting for the integration lock), $failed failed"
((failed == 0))
