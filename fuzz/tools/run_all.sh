#!/usr/bin/env bash
# Runs every fuzz target one after another (never two at once), each for SECONDS seconds
# (default 600), with its committed corpus and seeds, and its dictionary when there is one.
# Logs go to LOGDIR (default fuzz/logs, not committed). Usage: fuzz/tools/run_all.sh [target...]
set -u
cd "$(dirname "$0")/.."
export RUSTC_BOOTSTRAP=1
export CARGO_BUILD_JOBS="${CARGO_BUILD_JOBS:-1}"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-/work/target-fuzz}"
SECONDS_PER_TARGET="${SECONDS_PER_TARGET:-600}"
LOGDIR="${LOGDIR:-logs}"
mkdir -p "$LOGDIR"
declare -A DICT=(
  [evtx_chunk]=dict/evtx.dict [json_reader]=dict/json.dict [syslog_reader]=dict/syslog.dict
  [zeek_reader]=dict/zeek.dict [sigma_rule]=dict/sigma.dict [sigma_condition]=dict/sigma_condition.dict
  [eml_message]=dict/eml.dict [cloud_json]=dict/cloud.dict [syslog_apps]=dict/syslog.dict
  [bus_batch]=dict/bus_batch.dict [event_codec]=dict/json.dict
)
targets=("$@")
# Every target of Cargo.toml, in its order.
[ ${#targets[@]} -eq 0 ] && mapfile -t targets < <(sed -n 's/^name = "\([a-z_0-9]*\)"$/\1/p' Cargo.toml | grep -v '^nigehban-fuzz$')
for t in "${targets[@]}"; do
  mkdir -p "corpus/$t"
  extra=()
  [ -n "${DICT[$t]:-}" ] && extra+=("-dict=${DICT[$t]}")
  echo "=== $t: start $(date -u +%FT%TZ) HEAD $(git rev-parse --short HEAD) crates diff sha1 $(git diff -- ../crates | sha1sum | cut -c1-12)"
  cargo fuzz run "$t" "corpus/$t" "seeds/$t" -- \
    -max_total_time="$SECONDS_PER_TARGET" -rss_limit_mb=2048 -jobs=1 -workers=1 -print_final_stats=1 \
    "${extra[@]}" >"$LOGDIR/$t.log" 2>&1
  rc=$?
  # With -jobs, libFuzzer also writes the job's output to fuzz-0.log here; the log has it.
  rm -f fuzz-0.log
  echo "=== $t: exit $rc end $(date -u +%FT%TZ)"
done
