#!/usr/bin/env bash
# DNS benchmark (issue 6): Passerelle's DNS filter against dnsmasq and
# unbound, in the same run, with the same lists: the UT1 snapshot's black
# categories plus a synthetic 4.6-million-domain list standing in for the
# adult category. Measures, per server: load time (start until a listed
# name is blocked), resident memory after load (VmRSS), and dnsperf's
# queries per second on a blocked mix and on a cached mix (names answered
# by a local authoritative upstream). Everything runs on 127.0.0.1.
#
#   bash tools/bench/dns/run.sh            (root: installs what it lacks)
#   N=1000000 DURATION=10 bash tools/bench/dns/run.sh
#
# Knobs (environment): N synthetic domains, DURATION seconds per dnsperf
# run, ROUNDS of the rate measurements, WARM seconds of cache warming per
# server and SETTLE seconds between load and the memory reading (both 3),
# TIMEOUT seconds dnsperf waits for an answer (its default, 5: each
# dnsperf run ends with that wait when a query was dropped).
set -euo pipefail
cd "$(dirname "$0")/../../.."

N=${N:-4600000}
DURATION=${DURATION:-10}
SNAPSHOT=${SNAPSHOT:-../shared/data/ut1}
OUT=${OUT:-$(mktemp -d /tmp/passerelle-bench-dns.XXXXXX)}
PORT_PASSERELLE=5301 PORT_DNSMASQ=5302 PORT_UNBOUND=5303 PORT_AUTH=5310

if [ ! -d "$SNAPSHOT" ]; then echo "UT1 snapshot not found at $SNAPSHOT" >&2; exit 1; fi
missing=()
command -v dnsperf >/dev/null || missing+=(dnsperf)
command -v dnsmasq >/dev/null || missing+=(dnsmasq-base)
command -v unbound >/dev/null || missing+=(unbound)
if [ ${#missing[@]} -gt 0 ]; then
	if [ "$(id -u)" != 0 ]; then echo "needs ${missing[*]} (apt-get install as root)" >&2; exit 1; fi
	export DEBIAN_FRONTEND=noninteractive
	apt-get update -qq && apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; wait 2>/dev/null || true; }
trap cleanup EXIT

go build -o "$OUT/benchdns" ./tools/bench/dns/benchdns
echo "== generating lists in $OUT (N=$N)"
probe=$("$OUT/benchdns" gen -out "$OUT" -n "$N" -snapshot "$SNAPSHOT" | tee /dev/stderr | sed -n 's/.*probe name //p')

cats=$(cd "$OUT/ut1" && ls | paste -sd, -)
cat >"$OUT/passerelle.yaml" <<YAML
version: 1
identity: {uai: 0599999Y, name: Bench, academy: lille}
uplinks: [{name: renater, interface: wan0, address: 192.0.2.2/30, gateway: 192.0.2.1}]
zones: [{name: peda, kind: pedagogical, interfaces: [lan0], subnet: 10.10.0.0/24, address: 10.10.0.1, dns_profile: bench}]
dns:
  upstreams: [{address: "192.0.2.53:53"}] # replaced by benchdns serve -upstream
  rate_limit: 100000
  lists: {directory: $OUT/ut1}
  profiles:
    - {name: bench, categories: [$cats], safe_search: off, minors: false, fail_closed: false}
YAML
cat >"$OUT/unbound-main.conf" <<CONF
server:
  interface: 127.0.0.1@$PORT_UNBOUND
  port: $PORT_UNBOUND
  do-daemonize: no
  username: ""
  chroot: ""
  directory: "$OUT"
  pidfile: ""
  use-syslog: no
  logfile: ""
  verbosity: 0
  num-threads: 2
  so-reuseport: yes
  do-not-query-localhost: no
  access-control: 127.0.0.0/8 allow
  module-config: "iterator"
  qname-minimisation: no
  include: "$OUT/unbound.conf"
forward-zone:
  name: "."
  forward-addr: 127.0.0.1@$PORT_AUTH
CONF

"$OUT/benchdns" auth -listen 127.0.0.1:$PORT_AUTH & pids+=($!)

declare -A LOAD RSS PORT PID
start_server() { # name port command...
	local name=$1 port=$2; shift 2
	local t0; t0=$(date +%s.%N)
	"$@" >"$OUT/$name.log" 2>&1 & local pid=$!; pids+=($pid)
	"$OUT/benchdns" wait -server 127.0.0.1:$port -name "$probe" -rcode NXDOMAIN -pid $pid >/dev/null ||
		{ echo "$name did not start:"; tail -5 "$OUT/$name.log"; exit 1; }
	LOAD[$name]=$(awk -v a="$(date +%s.%N)" -v b="$t0" 'BEGIN{printf "%.2f", a-b}')
	sleep "${SETTLE:-3}" # let the runtime hand back transient memory
	RSS[$name]=$(awk '/VmRSS/{printf "%.0f", $2/1024}' /proc/$pid/status)
	PORT[$name]=$port PID[$name]=$pid
	echo "$name: loaded in ${LOAD[$name]} s, RSS ${RSS[$name]} MiB"
}
qps() { # port file
	dnsperf -s 127.0.0.1 -p "$1" -d "$2" -l "$DURATION" -t "${TIMEOUT:-5}" -c 4 -T 2 -q 500 2>&1 | tee -a "$OUT/dnsperf.log" |
		awk '/Queries per second/{printf "%.0f", $4}'
}

# Servers start one at a time (load time and memory are measured alone),
# then stay up; the rate measurements alternate between them, ROUNDS times,
# so that the load of a shared machine weighs on each alike. The median
# round is reported.
echo "== loading (dnsmasq $(dnsmasq --version | head -1 | awk '{print $3}'), unbound $(unbound -V | head -1 | awk '{print $2}'))"
start_server passerelle $PORT_PASSERELLE "$OUT/benchdns" serve -config "$OUT/passerelle.yaml" -listen 127.0.0.1 -port $PORT_PASSERELLE -upstream 127.0.0.1:$PORT_AUTH
start_server dnsmasq $PORT_DNSMASQ dnsmasq --keep-in-foreground --conf-file="$OUT/dnsmasq.conf" --port=$PORT_DNSMASQ \
	--listen-address=127.0.0.1 --bind-interfaces --no-resolv --no-hosts --server=127.0.0.1#$PORT_AUTH --cache-size=10000 --user=root
start_server unbound $PORT_UNBOUND unbound -d -c "$OUT/unbound-main.conf"
SERVERS="passerelle dnsmasq unbound"
for s in $SERVERS; do # warm the caches
	dnsperf -s 127.0.0.1 -p "${PORT[$s]}" -d "$OUT/cached.txt" -l "${WARM:-3}" -t "${TIMEOUT:-5}" -c 2 -q 100 >/dev/null 2>&1
done
ROUNDS=${ROUNDS:-3}
declare -A RUNS
for r in $(seq "$ROUNDS"); do
	for mix in blocked cached; do
		for s in $SERVERS; do
			v=$(qps "${PORT[$s]}" "$OUT/$mix.txt")
			RUNS[$s.$mix]="${RUNS[$s.$mix]:-} $v"
			echo "round $r $mix $s: $v qps"
		done
	done
done
median() { tr ' ' '\n' | grep . | sort -n | awk '{a[NR]=$1} END{print a[int((NR+1)/2)]}'; }
echo
echo "| server | load time (s) | RSS after load (MiB) | blocked mix (qps, median) | cached mix (qps, median) | blocked runs | cached runs |"
echo "| --- | --- | --- | --- | --- | --- | --- |"
for s in $SERVERS; do
	echo "| $s | ${LOAD[$s]} | ${RSS[$s]} | $(echo "${RUNS[$s.blocked]}" | median) | $(echo "${RUNS[$s.cached]}" | median) |${RUNS[$s.blocked]} |${RUNS[$s.cached]} |"
done
echo "(N=$N synthetic + UT1 snapshot black categories; dnsperf -c 4 -T 2 -q 500 -l $DURATION, $ROUNDS rounds, on $(nproc) cores; files in $OUT)"
