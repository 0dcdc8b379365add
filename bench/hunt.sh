#!/usr/bin/env bash
# Hunt benchmarks: wall time, CPU time and peak RSS of `nigehban hunt` over the shared EVTX
# corpus with all SigmaHQ rules; events/s over the corpus copied 20 times; and the
# parse-only floor (one rule that no event meets). Results go to standard output as a
# Markdown table for BENCHMARKS.md.
#
#   bash bench/hunt.sh [runs]        (default 5 runs per case; the median is reported)
set -euo pipefail
cd "$(dirname "$0")/.."
runs="${1:-5}"
corpus="${NIGEHBAN_CORPUS:-$(cd .. && pwd)/shared/corpus}"
target="${CARGO_TARGET_DIR:-target}"
cargo build --release --quiet --bin nigehban
bin="$target/release/nigehban"
work="$(mktemp -d "${TMPDIR:-/tmp}/nigehban-bench.XXXXXX")"
trap 'rm -rf "$work"' EXIT

# The corpus copied 20 times (hard links where the file system allows, else copies).
mkdir -p "$work/x20"
for i in $(seq -w 1 20); do
    cp -rl "$corpus/evtx" "$work/x20/copy$i" 2>/dev/null || cp -r "$corpus/evtx" "$work/x20/copy$i"
done

# One case: median wall, CPU (user+sys), peak RSS and events over `runs` runs.
measure() {
    local name="$1" input="$2" rules="$3"
    local rows=()
    for _ in $(seq "$runs"); do
        # Each run writes a new file, as a hunt usually does: overwriting the last run's
        # timeline (64 MB at ×20) would charge the all-rules runs with the file system's work
        # of truncating it (ext4 frees its blocks and pages within the open), which the
        # parse-only runs, whose timeline is empty, do not pay.
        rm -f "$work/out.jsonl"
        # --no-builtin: SigmaHQ rules alone, as other tools run them (the comparison in BENCHMARKS.md).
        /usr/bin/time -f "%e %U %S %M" -o "$work/time" "$bin" hunt "$input" --no-builtin --rules "$rules" --format jsonl \
            --output "$work/out.jsonl" 2> "$work/summary"
        read -r wall user sys rss < "$work/time"
        events=$(grep -oE '[0-9]+ events \(' "$work/summary" | grep -oE '^[0-9]+')
        detections=$(wc -l < "$work/out.jsonl")
        rows+=("$wall $(echo "$user + $sys" | bc) $rss $events $detections")
    done
    printf '%s\n' "${rows[@]}" | sort -n | awk -v name="$name" -v n="$runs" '
        { w[NR]=$1; c[NR]=$2; r[NR]=$3; e=$4; d=$5 }
        END {
            m = int((n + 1) / 2); maxr = 0
            for (i = 1; i <= n; i++) if (r[i] > maxr) maxr = r[i]
            printf "| %s | %.2f s | %.2f s | %.0f MiB | %d | %d | %.0f |\n", name, w[m], c[m], maxr / 1024, e, d, e / w[m]
        }'
}

echo "| case | wall (median) | CPU (median) | peak RSS (max) | events | detections | events/s |"
echo "|---|---|---|---|---|---|---|"
measure "shared EVTX corpus, all SigmaHQ rules" "$corpus/evtx" "$corpus/sigma/rules"
measure "shared EVTX corpus, parse only" "$corpus/evtx" bench/no-match.yml
measure "corpus ×20, all SigmaHQ rules" "$work/x20" "$corpus/sigma/rules"
measure "corpus ×20, parse only" "$work/x20" bench/no-match.yml
