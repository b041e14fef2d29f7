#!/usr/bin/env bash
# Times `passerellectl render` on a synthetic inventory of N collèges
# (default 500) with the NOC template, RUNS runs (default 5) into fresh
# directories, and prints the minimum and the median. Each run must write
# all N files.
#
#   tools/bench/render/run.sh [N [RUNS]]
set -euo pipefail

n=${1:-500}
runs=${2:-5}
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/../../.." && pwd)
cd "$root"

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

go build -o "$work/passerellectl" ./cmd/passerellectl
go run ./tools/bench/render/geninventory -n "$n" >"$work/schools.csv"

cmd=("$work/passerellectl" render --template configs/noc/college.yaml.tmpl --inventory "$work/schools.csv")
echo "command: passerellectl render --template configs/noc/college.yaml.tmpl --inventory schools.csv --out DIR ($n schools)"

times=()
for i in $(seq 1 "$runs"); do
	out="$work/out-$i" # fresh each run: replacing files is not what is measured
	status=0
	if [[ -x /usr/bin/time ]]; then
		/usr/bin/time -f %e -o "$work/time" "${cmd[@]}" --out "$out" 2>"$work/stderr" || status=$?
	else
		TIMEFORMAT=%R
		{ time "${cmd[@]}" --out "$out" 2>"$work/stderr"; } 2>"$work/time" || status=$?
	fi
	if ((status != 0)); then
		cat "$work/stderr" >&2
		echo "render: run $i failed with status $status" >&2
		exit 1
	fi
	written=$(find "$out" -maxdepth 1 -name '*.yaml' | wc -l)
	if ((written != n)); then
		echo "render: run $i wrote $written files, want $n" >&2
		exit 1
	fi
	t=$(tail -n 1 "$work/time")
	echo "run $i: $t s"
	times+=("$t")
done

sorted=$(printf '%s\n' "${times[@]}" | sort -n)
min=$(sed -n 1p <<<"$sorted")
median=$(sed -n "$(((runs + 1) / 2))p" <<<"$sorted")
echo "render: $n schools in $min s (min of $runs), median $median s; $n files written each run"
