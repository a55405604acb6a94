#!/usr/bin/env bash
# Builds the libFuzzer targets of tests/fuzz in build-fuzz (clang, ASan + UBSan) and runs
# each for SECONDS (default 30), starting from its checked-in seed corpus. Any crash, leak,
# sanitizer report or failed invariant fails the script; the input that caused it is kept in
# build-fuzz/crashes/<target>/. See tests/fuzz/README.md.
#
#   scripts/fuzz.sh                  # every target, 30 s each
#   scripts/fuzz.sh 600 channel hub  # two targets, 10 minutes each
#   HERD_FUZZ_JOBS=2 scripts/fuzz.sh 3600 manifest   # two fuzzing processes (libFuzzer -fork)
set -euo pipefail
cd "$(dirname "$0")/.."
SECONDS_EACH="${1:-30}"
shift || true
ALL=(manifest ecosystem module_config channel config_value cron_schedule timestamp_format
     json_gateway hub metrics_view archive_scan etcd_records pm2_amp
     page_token deploy_value)
TARGETS=("$@")
if [ ${#TARGETS[@]} -eq 0 ]; then TARGETS=("${ALL[@]}"); fi
JOBS="${HERD_JOBS:-$(nproc)}"
FUZZ_JOBS="${HERD_FUZZ_JOBS:-1}"
BUILD=build-fuzz
CC_BIN="${HERD_FUZZ_CC:-clang-14}"
CXX_BIN="${HERD_FUZZ_CXX:-clang++-14}"

echo "== fuzz: build (${CXX_BIN}, libFuzzer + ASan + UBSan) in ${BUILD}"
# -O1 and line tables only: the fuzzers need speed more than the build needs optimising, and
# a report needs no more than lines. No tests, benchmarks or dashboard in this build.
cmake -S . -B "$BUILD" -G Ninja -DCMAKE_BUILD_TYPE=Debug "-DCMAKE_CXX_FLAGS_DEBUG=-O1 -g1" \
  "-DCMAKE_C_FLAGS_DEBUG=-O1 -g1" -DCMAKE_C_COMPILER="$CC_BIN" -DCMAKE_CXX_COMPILER="$CXX_BIN" \
  -DHERD_FUZZ=ON -DHERD_WERROR=ON -DHERD_BUILD_TESTS=OFF -DHERD_BUILD_BENCH=OFF -DHERD_WEB=OFF >/dev/null
ninja -C "$BUILD" -j "$JOBS" $(printf '%s_fuzz ' "${TARGETS[@]}")

failed=()
for t in "${TARGETS[@]}"; do
  seeds="tests/fuzz/corpus/$t"
  # New inputs found go to a scratch corpus (not the checked-in one); crashes are kept.
  work="$BUILD/corpus/$t"
  crashes="$BUILD/crashes/$t"
  mkdir -p "$work" "$crashes"
  echo "== fuzz: $t for ${SECONDS_EACH}s"
  # -rss_limit_mb: a parser that balloons is a finding too. -timeout: one input taking more
  # than 10 s is a hang. Output goes to a log: libFuzzer is chatty.
  log="$BUILD/$t.log"
  extra=()
  if [ "$FUZZ_JOBS" -gt 1 ]; then extra+=(-fork="$FUZZ_JOBS"); fi
  if "$BUILD/fuzz/${t}_fuzz" -max_total_time="$SECONDS_EACH" -timeout=10 -rss_limit_mb=2048 \
      -max_len=65536 -print_final_stats=1 "${extra[@]}" \
      -artifact_prefix="$crashes/" "$work" "$seeds" >"$log" 2>&1; then
    grep -aE '^stat::(number_of_executed_units|average_exec_per_sec|new_units_added|peak_rss_mb)' "$log" | tr -s ' \n' ' ' || true
    echo
  else
    echo "!! fuzz: $t FAILED; input kept in $crashes/, output in $log:"
    grep -aE 'ERROR|invariant failed|runtime error|SUMMARY|Test unit written' -A3 "$log" | head -40 || tail -40 "$log"
    failed+=("$t")
  fi
done
if [ ${#failed[@]} -gt 0 ]; then
  echo "== fuzz: FAILED: ${failed[*]} (reproduce: $BUILD/fuzz/<target>_fuzz $BUILD/crashes/<target>/<file>)"
  exit 1
fi
echo "== fuzz: all ${#TARGETS[@]} targets ran ${SECONDS_EACH}s without a crash"
