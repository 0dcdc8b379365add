#!/usr/bin/env bash
# Hunt instruction counts: what detection adds to parsing, counted rather than timed.
#
# Timings on a shared 2-core machine drift by 5–10% within minutes, more than most changes
# to the engine are worth. Valgrind's callgrind counts the instructions a run executes,
# the same from one run to the next, so a change of 1% shows. Instructions are not time
# (cache misses and system calls are not in them), so a change found here is still
# confirmed with bench/hunt.sh before it is called faster.
#
# Each case runs over the shared EVTX corpus once and copied three times, so that what
# each copy costs (the per-event work) is told apart from what a run costs once (loading
# the rules, building the buckets' plans, compiling regular expressions on first use):
#   per copy = (I(×3) − I(×1)) / 2        once = I(×1) − per copy
# and the overhead at ×20, the benchmark's large input, is worked out from both.
#
#   bash bench/instructions.sh            (needs valgrind; some three minutes)
set -euo pipefail
cd "$(dirname "$0")/.."
if ! command -v valgrind > /dev/null; then
    echo "valgrind is not installed: nothing measured (apt install valgrind)" >&2
    exit 1
fi
corpus="${NIGEHBAN_CORPUS:-$(cd .. && pwd)/shared/corpus}"
target="${CARGO_TARGET_DIR:-target}"
cargo build --release --quiet --bin nigehban
bin="$target/release/nigehban"
work="$(mktemp -d "${TMPDIR:-/tmp}/nigehban-instr.XXXXXX")"
trap 'rm -rf "$work"' EXIT

mkdir -p "$work/x3"
for i in 1 2 3; do
    cp -rl "$corpus/evtx" "$work/x3/copy$i" 2>/dev/null || cp -r "$corpus/evtx" "$work/x3/copy$i"
done

# Instructions of one hunt (all threads).
count() {
    local input="$1" rules="$2"
    valgrind --tool=callgrind --callgrind-out-file="$work/cg.out" "$bin" hunt "$input" --no-builtin \
        --rules "$rules" --format jsonl --output "$work/out.jsonl" 2> "$work/log" > /dev/null
    grep -oE 'Collected : [0-9]+' "$work/log" | grep -oE '[0-9]+$'
}

all1=$(count "$corpus/evtx" "$corpus/sigma/rules")
all3=$(count "$work/x3" "$corpus/sigma/rules")
parse1=$(count "$corpus/evtx" bench/no-match.yml)
parse3=$(count "$work/x3" bench/no-match.yml)

awk -v a1="$all1" -v a3="$all3" -v p1="$parse1" -v p3="$parse3" 'BEGIN {
    ac = (a3 - a1) / 2; af = a1 - ac; pc = (p3 - p1) / 2; pf = p1 - pc
    printf "| | all SigmaHQ rules | parse only | added by detection |\n|---|---|---|---|\n"
    printf "| ×1 | %.3f G | %.3f G | %+.0f%% |\n", a1 / 1e9, p1 / 1e9, (a1 / p1 - 1) * 100
    printf "| ×3 | %.3f G | %.3f G | %+.0f%% |\n", a3 / 1e9, p3 / 1e9, (a3 / p3 - 1) * 100
    printf "| per copy | %.3f G | %.3f G | %+.0f%% |\n", ac / 1e9, pc / 1e9, (ac / pc - 1) * 100
    printf "| once a run | %.3f G | %.3f G | %+.3f G |\n", af / 1e9, pf / 1e9, (af - pf) / 1e9
    printf "| ×20 (worked out) | %.2f G | %.2f G | %+.0f%% |\n", (af + 20 * ac) / 1e9, (pf + 20 * pc) / 1e9, ((af + 20 * ac) / (pf + 20 * pc) - 1) * 100
}'
