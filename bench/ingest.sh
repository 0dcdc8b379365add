#!/usr/bin/env bash
# Live monitoring benchmark, end to end on one machine (embedded mode: SQLite, in-process):
# EVTX records of the shared corpus as NDJSON, POSTed to /api/v1/ingest by CLIENTS concurrent
# senders, stored durably, detected with all SigmaHQ rules + the built-in pack + 1M indicators,
# folded into alerts. Reports the events/s until the last event is through detection, the
# ingest-only rate (until the last request was answered), and the server's CPU time and peak RSS.
#
#   bash bench/ingest.sh                   # COPIES=100 (~960k events)
#   COPIES=20 INDICATORS=0 bash bench/ingest.sh
#   SOAK=600 bash bench/ingest.sh          # keep sending for 10 minutes; RSS sampled every 10 s
#
# Needs curl, the corpus (NIGEHBAN_CORPUS, default ../shared/corpus). Output: a Markdown table.
set -euo pipefail
cd "$(dirname "$0")/.."

CORPUS=${NIGEHBAN_CORPUS:-../shared/corpus}
COPIES=${COPIES:-100}
LINES=${LINES:-5000}
CLIENTS=${CLIENTS:-4}
INDICATORS=${INDICATORS:-1000000}
RULES=${RULES:-$CORPUS/sigma/rules}
SOAK=${SOAK:-0}
PORT=${PORT:-18091}
TARGET=${CARGO_TARGET_DIR:-target}

[ -d "$CORPUS/evtx" ] || { echo "no corpus at $CORPUS (set NIGEHBAN_CORPUS)" >&2; exit 1; }
cargo build --release -q -p nigehban --bin nigehban -p nigehban-server --example bench_seed --example bench_ndjson \
    -p nigehban-intel --example indicator_bench
NIGEHBAN="$TARGET/release/nigehban"
WORK=$(mktemp -d)
SERVER_PID=""
cleanup() {
    if [ -n "$SERVER_PID" ]; then kill "$SERVER_PID" 2>/dev/null || true; wait "$SERVER_PID" 2>/dev/null || true; fi
    rm -rf "$WORK"
}
trap cleanup EXIT

"$TARGET/release/examples/bench_seed" --sqlite "$WORK/data" --objects 0 --token-file "$WORK/reader.txt" \
    --shipper-token-file "$WORK/shipper.txt" 2>/dev/null
"$TARGET/release/examples/bench_ndjson" "$WORK/load" "$LINES" "$COPIES" "$CORPUS/evtx"
INDICATOR_ARGS=()
if [ "$INDICATORS" -gt 0 ]; then
    "$TARGET/release/examples/indicator_bench" "$INDICATORS" "$WORK/indicators.txt" >/dev/null
    INDICATOR_ARGS=(--indicators "$WORK/indicators.txt")
fi
TOKEN=$(cat "$WORK/shipper.txt")

"$NIGEHBAN" serve --data "$WORK/data" --listen "127.0.0.1:$PORT" --rules "$RULES" "${INDICATOR_ARGS[@]}" \
    2>"$WORK/server.log" &
SERVER_PID=$!
for _ in $(seq 1 600); do curl -fs "http://127.0.0.1:$PORT/healthz" >/dev/null && break; sleep 0.2; done
metric() { curl -fs "http://127.0.0.1:$PORT/metrics" | awk -v m="$1" '$1 == m { print $2 }'; }
cpu_ticks() { awk '{ sub(/^.*\) /, ""); print $12 + $13 }' "/proc/$1/stat"; }
rss_mib() { awk '/^VmRSS/ { printf "%.0f", $2 / 1024 }' "/proc/$1/status"; }
hwm_mib() { awk '/^VmHWM/ { printf "%.0f", $2 / 1024 }' "/proc/$1/status"; }
TICK=$(getconf CLK_TCK)

send_all() {
    ls "$WORK"/load/chunk-*.ndjson | xargs -P "$CLIENTS" -I{} sh -c '
        until [ "$(curl -s -o /dev/null -w "%{http_code}" -H "Authorization: Bearer '"$TOKEN"'" \
            -H "Content-Type: application/x-ndjson" --data-binary @"{}" \
            "http://127.0.0.1:'"$PORT"'/api/v1/ingest?source=bench")" = 200 ]; do sleep 0.5; done'
}

CPU0=$(cpu_ticks "$SERVER_PID")
RSS0=$(rss_mib "$SERVER_PID")
START=$(date +%s.%N)
if [ "$SOAK" -gt 0 ]; then
    echo "| t (s) | events stored | events detected | RSS (MiB) |"
    echo "|---|---|---|---|"
    END_AT=$(( $(date +%s) + SOAK ))
    ( while [ "$(date +%s)" -lt "$END_AT" ]; do send_all; done ) &
    SENDER=$!
    while kill -0 "$SENDER" 2>/dev/null; do
        sleep 10
        echo "| $(awk -v s="$START" -v n="$(date +%s.%N)" 'BEGIN { printf "%.0f", n - s }') | $(metric nigehban_events_stored_total) | $(metric nigehban_events_detected_total) | $(rss_mib "$SERVER_PID") |"
    done
else
    send_all
fi
ACKED=$(date +%s.%N)
STORED=$(metric nigehban_events_stored_total)
until [ "$(metric nigehban_detect_backlog)" = "0" ] && [ "$(metric nigehban_events_detected_total)" = "$STORED" ]; do sleep 0.2; done
DONE=$(date +%s.%N)
CPU1=$(cpu_ticks "$SERVER_PID")
ALERTS=$(metric nigehban_alerts_created_total)
DETECTIONS=$(metric nigehban_detections_total)
awk -v s="$START" -v a="$ACKED" -v d="$DONE" -v n="$STORED" -v c0="$CPU0" -v c1="$CPU1" -v t="$TICK" \
    -v r0="$RSS0" -v hwm="$(hwm_mib "$SERVER_PID")" -v al="$ALERTS" -v de="$DETECTIONS" 'BEGIN {
    printf "| events | ingest answered (s) | through detection (s) | events/s end to end | server CPU (s) | RSS idle → peak (MiB) | detections | alerts |\n"
    printf "|---|---|---|---|---|---|---|---|\n"
    printf "| %d | %.1f | %.1f | %.0f | %.1f | %d → %d | %d | %d |\n", n, a - s, d - s, n / (d - s), (c1 - c0) / t, r0, hwm, de, al
}'
