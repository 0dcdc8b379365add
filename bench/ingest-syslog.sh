#!/usr/bin/env bash
# Live monitoring benchmark over the syslog TCP listener, end to end on one machine (embedded
# mode: SQLite, in-process): EVTX records of the shared corpus rendered as JSON, one per line,
# sent over CONNECTIONS TCP connections to a syslog TCP listener (RFC 6587 newline framing,
# `format: json`, the way NXLog's om_tcp or a JSON shipper sends them), its senders mapped to
# the seeded organisation, stored durably, detected with all SigmaHQ rules + the built-in pack
# + 1M indicators, folded into alerts. The same load and detectors as bench/ingest.sh; only the
# way in differs. Reports the events/s until the last event is through detection, the time
# until every record was stored (the listener closes a connection once everything it read from
# it is stored), and the server's CPU time and peak RSS.
#
#   bash bench/ingest-syslog.sh                        # EVENTS=1000000 over CONNECTIONS=4
#   EVENTS=20000 INDICATORS=0 bash bench/ingest-syslog.sh
#
# Needs curl, the corpus (NIGEHBAN_CORPUS, default ../shared/corpus). Output: a Markdown table.
set -euo pipefail
cd "$(dirname "$0")/.."

CORPUS=${NIGEHBAN_CORPUS:-../shared/corpus}
EVENTS=${EVENTS:-1000000}
CONNECTIONS=${CONNECTIONS:-4}
INDICATORS=${INDICATORS:-1000000}
RULES=${RULES:-$CORPUS/sigma/rules}
PORT=${PORT:-18092}
SYSLOG_PORT=${SYSLOG_PORT:-18601}
TARGET=${CARGO_TARGET_DIR:-target}

[ -d "$CORPUS/evtx" ] || { echo "no corpus at $CORPUS (set NIGEHBAN_CORPUS)" >&2; exit 1; }
cargo build --release -q -p nigehban --bin nigehban -p nigehban-server --example bench_seed --example bench_ndjson \
    --example bench_syslog -p nigehban-intel --example indicator_bench
NIGEHBAN="$TARGET/release/nigehban"
WORK=$(mktemp -d)
SERVER_PID=""
cleanup() {
    if [ -n "$SERVER_PID" ]; then kill "$SERVER_PID" 2>/dev/null || true; wait "$SERVER_PID" 2>/dev/null || true; fi
    rm -rf "$WORK"
}
trap cleanup EXIT

# The benchmark's organisation: bench_seed's first organisation of CERT P.
"$TARGET/release/examples/bench_seed" --sqlite "$WORK/data" --objects 0 --token-file "$WORK/reader.txt" 2>/dev/null
# Every EVTX record of the corpus once, one JSON rendering per line; the sender repeats them.
"$TARGET/release/examples/bench_ndjson" "$WORK/load" 1000000000 1 "$CORPUS/evtx" 2>/dev/null
INDICATOR_ARGS=()
if [ "$INDICATORS" -gt 0 ]; then
    "$TARGET/release/examples/indicator_bench" "$INDICATORS" "$WORK/indicators.txt" >/dev/null
    INDICATOR_ARGS=(--indicators "$WORK/indicators.txt")
fi
cat >"$WORK/config.yml" <<EOF
monitoring:
  ingest:
    orgs:
      networks:
        - {cidr: 127.0.0.0/8, org: org-p-0}
    syslog_tcp:
      # EVTX records' JSON can exceed the default 64 KiB message limit (PowerShell script blocks).
      - {listen: "127.0.0.1:$SYSLOG_PORT", format: json, max_message_bytes: 1048576}
EOF

"$NIGEHBAN" serve --data "$WORK/data" --listen "127.0.0.1:$PORT" --config "$WORK/config.yml" --rules "$RULES" \
    "${INDICATOR_ARGS[@]}" 2>"$WORK/server.log" &
SERVER_PID=$!
for _ in $(seq 1 600); do curl -fs "http://127.0.0.1:$PORT/healthz" >/dev/null && break; sleep 0.2; done
curl -fs "http://127.0.0.1:$PORT/healthz" >/dev/null || { echo "the server did not start:" >&2; cat "$WORK/server.log" >&2; exit 1; }
metric() { curl -fs "http://127.0.0.1:$PORT/metrics" | awk -v m="$1" '$1 == m { print $2 }'; }
cpu_ticks() { awk '{ sub(/^.*\) /, ""); print $12 + $13 }' "/proc/$1/stat"; }
rss_mib() { awk '/^VmRSS/ { printf "%.0f", $2 / 1024 }' "/proc/$1/status"; }
hwm_mib() { awk '/^VmHWM/ { printf "%.0f", $2 / 1024 }' "/proc/$1/status"; }
TICK=$(getconf CLK_TCK)

CPU0=$(cpu_ticks "$SERVER_PID")
RSS0=$(rss_mib "$SERVER_PID")
START=$(date +%s.%N)
SENT=$("$TARGET/release/examples/bench_syslog" "127.0.0.1:$SYSLOG_PORT" "$EVENTS" "$CONNECTIONS" \
    "$WORK/load/chunk-00001.ndjson")
STORED_AT=$(date +%s.%N)
STORED=$(metric nigehban_events_stored_total)
REJECTED=$(metric nigehban_records_rejected_total)
if [ "$STORED" != "$SENT" ]; then
    echo "warning: $SENT records sent, $STORED events stored, $REJECTED records rejected" >&2
fi
until [ "$(metric nigehban_detect_backlog)" = "0" ] && [ "$(metric nigehban_events_detected_total)" = "$STORED" ]; do sleep 0.2; done
DONE=$(date +%s.%N)
CPU1=$(cpu_ticks "$SERVER_PID")
ALERTS=$(metric nigehban_alerts_created_total)
DETECTIONS=$(metric nigehban_detections_total)
awk -v s="$START" -v a="$STORED_AT" -v d="$DONE" -v n="$STORED" -v c0="$CPU0" -v c1="$CPU1" -v t="$TICK" \
    -v r0="$RSS0" -v hwm="$(hwm_mib "$SERVER_PID")" -v al="$ALERTS" -v de="$DETECTIONS" -v k="$CONNECTIONS" 'BEGIN {
    printf "| events | connections | stored (s) | through detection (s) | events/s end to end | server CPU (s) | RSS idle → peak (MiB) | detections | alerts |\n"
    printf "|---|---|---|---|---|---|---|---|---|\n"
    printf "| %d | %d | %.1f | %.1f | %.0f | %.1f | %d → %d | %d | %d |\n", n, k, a - s, d - s, n / (d - s), (c1 - c0) / t, r0, hwm, de, al
}'
