#!/usr/bin/env bash
# Installs what Herd needs, builds it twice (optimised, and with AddressSanitizer +
# UndefinedBehaviorSanitizer) and runs every test once (see below), then the fuzzers for a
# short time each. What CI runs.
set -euo pipefail
cd "$(dirname "$0")/.."
JOBS="${HERD_JOBS:-$(nproc)}"
# Most integration tests wait on processes and sockets, not on the CPU: one more than the
# cores keeps both busy (their timeouts are generous enough for a loaded machine).
TEST_JOBS="${HERD_TEST_JOBS:-$((JOBS + 1))}"

scripts/install-deps.sh

# Size limits first (seconds): no file in agent/, controlplane/, cli/ over 800 lines, no
# function over 80 (docs/agent.md, "Seams and their fakes").
echo "== size limits"
python3 scripts/check-size.py

# Every test runs once, in the build that finds the most: under AddressSanitizer and
# UndefinedBehaviorSanitizer. Three run in the optimised build instead, being mostly compile,
# npm, browser or scrape time that the sanitizers would only slow down: the generated C++ and
# Node sample modules (the Python and shell ones cover the same agent code under the
# sanitizers), the browser test and Prometheus's own server (the JSON API and /metrics they
# reach have their own tests under the sanitizers). `ctest --test-dir build` runs them all in
# the optimised build after a plain `ninja -C build`.
OPTIMISED_ONLY='GeneratedModuleTest\..*/(cpp|node)( |$)|DashboardTest\.Browser|PrometheusTest\.PrometheusScrapes'   # param names end in ' # GetParam() = ...'

# Optimised without debug info by default (a third faster to compile than RelWithDebInfo,
# which keeps CI within its time); HERD_BUILD_TYPE=RelWithDebInfo for a debuggable build.
BUILD_TYPE="${HERD_BUILD_TYPE:-Release}"
echo "== build ($BUILD_TYPE): the binaries, the benchmarks, and the tests that run here"
cmake -S . -B build -G Ninja -DCMAKE_BUILD_TYPE="$BUILD_TYPE" >/dev/null
ninja -C build -j "$JOBS" agentd agentctl controlplane herd_test_child e2e_npm \
  sampler_bench agentd_bench restart_probe fleetsim \
  sdk_integration_test dashboard_test prometheus_integration_test
echo "== tests ($BUILD_TYPE)"
ctest --test-dir build --output-on-failure -j "$TEST_JOBS" --timeout 300 -R "$OPTIMISED_ONLY"

echo "== build (ASan + UBSan)"
cmake -S . -B build-asan -G Ninja -DCMAKE_BUILD_TYPE=Debug -DHERD_SANITIZE=ON \
  -DHERD_BUILD_BENCH=OFF >/dev/null
ninja -C build-asan -j "$JOBS"
echo "== tests (ASan + UBSan)"
ASAN_OPTIONS=detect_leaks=1:abort_on_error=1 UBSAN_OPTIONS=print_stacktrace=1 \
  ctest --test-dir build-asan --output-on-failure -j "$TEST_JOBS" --timeout 600 -E "$OPTIMISED_ONLY"

# The fuzzers (tests/fuzz/README.md): every target for a short fixed time from its seed
# corpus; any crash fails CI and its input is kept in build-fuzz/crashes/. 9 targets x 20 s
# plus a cold clang build keeps this step near 6 minutes on 2 cores. Longer runs:
# scripts/fuzz.sh SECONDS [TARGET...].
scripts/fuzz.sh "${HERD_FUZZ_SECONDS:-20}"
echo "== all tests passed"
