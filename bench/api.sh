#!/usr/bin/env bash
# Platform API benchmark: requests/s and p50/p99 latency of an authenticated list
# (GET /api/v1/incidents?limit=50 with a bearer token, for a CERT analyst whose constituency owns
# most rows) over OBJECTS object rows, CONNS concurrent connections, on SQLite and PostgreSQL.
#
#   bash bench/api.sh                 # both back ends
#   BACKENDS=sqlite bash bench/api.sh # one
#   BIN_DIR=/tmp/old bash bench/api.sh # binaries copied there (nigehban, bench_seed), no build
#
# Needs wrk (apt-get install -y wrk) and, for PostgreSQL, a server at NIGEHBAN_BENCH_PG (default
# postgres://postgres@127.0.0.1:5432/postgres): a database is created for the run and dropped.
# Prints a Markdown table; wrk's full output is kept in $OUT (default /tmp/nigehban-bench-api).
set -euo pipefail
cd "$(dirname "$0")/.."

OBJECTS=${OBJECTS:-100000}
CONNS=${CONNS:-200}
THREADS=${THREADS:-2}
DURATION=${DURATION:-30s}
WARMUP=${WARMUP:-5s}
BACKENDS=${BACKENDS:-"sqlite postgres"}
PG_ADMIN=${NIGEHBAN_BENCH_PG:-postgres://postgres@127.0.0.1:5432/postgres}
PORT=${PORT:-18089}
OUT=${OUT:-/tmp/nigehban-bench-api}
TARGET=${CARGO_TARGET_DIR:-target}
PATH_Q="/api/v1/incidents?limit=50"

command -v wrk >/dev/null || { echo "wrk is not installed (apt-get install -y wrk)" >&2; exit 1; }
if [ -n "${BIN_DIR:-}" ]; then
    # Binaries built before (e.g. copies of an earlier commit's, to compare): no build.
    SEED="$BIN_DIR/bench_seed"
    NIGEHBAN="$BIN_DIR/nigehban"
else
    cargo build --release -q -p nigehban --bin nigehban -p nigehban-server --example bench_seed
    SEED="$TARGET/release/examples/bench_seed"
    NIGEHBAN="$TARGET/release/nigehban"
fi
mkdir -p "$OUT"
WORK=$(mktemp -d)
SERVER_PID=""
PG_DB=""
cleanup() {
    if [ -n "$SERVER_PID" ]; then kill "$SERVER_PID" 2>/dev/null || true; wait "$SERVER_PID" 2>/dev/null || true; fi
    if [ -n "$PG_DB" ]; then psql -q "$PG_ADMIN" -c "DROP DATABASE IF EXISTS $PG_DB WITH (FORCE)" >/dev/null || true; fi
    rm -rf "$WORK"
}
trap cleanup EXIT

# milliseconds from a wrk latency ("812.00us", "4.21ms", "1.02s")
to_ms() {
    awk -v v="$1" 'BEGIN {
        n = v + 0
        if (v ~ /us$/) n = n / 1000; else if (v ~ /ms$/) n = n; else if (v ~ /s$/) n = n * 1000
        printf "%.1f", n }'
}

# user + system CPU time of a process so far, in clock ticks
cpu_ticks() {
    awk '{ sub(/^.*\) /, ""); print $12 + $13 }' "/proc/$1/stat"
}

ROWS=()
for backend in $BACKENDS; do
    case "$backend" in
        sqlite)
            SEED_AT=(--sqlite "$WORK/sqlite"); SERVE_AT=(--data "$WORK/sqlite") ;;
        postgres)
            PG_DB="nigehban_bench_$$"
            psql -q "$PG_ADMIN" -c "CREATE DATABASE $PG_DB" >/dev/null
            SEED_AT=(--postgres "${PG_ADMIN%/*}/$PG_DB"); SERVE_AT=(--database "${PG_ADMIN%/*}/$PG_DB") ;;
        *) echo "unknown back end $backend" >&2; exit 1 ;;
    esac
    seed_start=$(date +%s.%N)
    "$SEED" "${SEED_AT[@]}" --objects "$OBJECTS" --token-file "$WORK/token" 2>"$OUT/seed-$backend.txt"
    seed_s=$(echo "$(date +%s.%N) - $seed_start" | bc)
    TOKEN=$(cat "$WORK/token")
    RUST_LOG=warn "$NIGEHBAN" serve "${SERVE_AT[@]}" --listen "127.0.0.1:$PORT" 2>"$OUT/server-$backend.txt" &
    SERVER_PID=$!
    for _ in $(seq 100); do
        curl -sf "http://127.0.0.1:$PORT/healthz" >/dev/null && break
        sleep 0.1
    done
    # The page the analyst gets, for the record.
    items=$(curl -sf -H "Authorization: Bearer $TOKEN" "http://127.0.0.1:$PORT$PATH_Q" | grep -o '"id":' | wc -l)
    wrk -t"$THREADS" -c"$CONNS" -d"$WARMUP" -H "Authorization: Bearer $TOKEN" "http://127.0.0.1:$PORT$PATH_Q" >/dev/null
    load_before=$(cut -d' ' -f1 /proc/loadavg)
    cpu_before=$(cpu_ticks "$SERVER_PID")
    wrk -t"$THREADS" -c"$CONNS" -d"$DURATION" --latency -H "Authorization: Bearer $TOKEN" \
        "http://127.0.0.1:$PORT$PATH_Q" | tee "$OUT/wrk-$backend.txt" >&2
    cpu_after=$(cpu_ticks "$SERVER_PID")
    rps=$(awk '/^Requests\/sec:/ {printf "%.0f", $2}' "$OUT/wrk-$backend.txt")
    p50=$(to_ms "$(awk '$1 == "50%" {print $2}' "$OUT/wrk-$backend.txt")")
    p99=$(to_ms "$(awk '$1 == "99%" {print $2}' "$OUT/wrk-$backend.txt")")
    total=$(awk '/requests in/ {print $1}' "$OUT/wrk-$backend.txt")
    errors=$(awk '/Non-2xx or 3xx responses:/ {print $5}' "$OUT/wrk-$backend.txt")
    socket=$(awk '/Socket errors:/ {print $0}' "$OUT/wrk-$backend.txt" | sed 's/^ *//')
    # The server's own CPU per request (nigehban only, not PostgreSQL): less sensitive to what
    # else runs on the machine than requests/s.
    cpu_ms=$(awk -v d="$((cpu_after - cpu_before))" -v hz="$(getconf CLK_TCK)" -v n="$total" \
        'BEGIN { printf "%.3f", n ? d * 1000 / hz / n : 0 }')
    ROWS+=("| $backend | $OBJECTS | $items | $CONNS | $DURATION | $total | $rps | $p50 ms | $p99 ms | ${errors:-0}${socket:+ ($socket)} | $cpu_ms ms | $(printf '%.0f' "$seed_s") s | $load_before |")
    kill "$SERVER_PID"; wait "$SERVER_PID" 2>/dev/null || true; SERVER_PID=""
    if [ "$backend" = postgres ]; then
        psql -q "$PG_ADMIN" -c "DROP DATABASE IF EXISTS $PG_DB WITH (FORCE)" >/dev/null; PG_DB=""
    fi
done

echo
echo "| back end | objects | items per page | connections | duration | requests | requests/s | p50 | p99 | non-2xx | server CPU per request | seeding | load before |"
echo "|---|---|---|---|---|---|---|---|---|---|---|---|---|"
printf '%s\n' "${ROWS[@]}"
