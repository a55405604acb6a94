#!/usr/bin/env bash
# Installs what Herd needs, builds it twice (optimised, and with AddressSanitizer +
# UndefinedBehaviorSanitizer) and runs every test in both builds. What CI runs.
set -euo pipefail
cd "$(dirname "$0")/.."
JOBS="${HERD_JOBS:-$(nproc)}"
# Most integration tests wait on processes and sockets, not on the CPU: one more than the
# cores keeps both busy (their timeouts are generous enough for a loaded machine).
TEST_JOBS="${HERD_TEST_JOBS:-$((JOBS + 1))}"

scripts/install-deps.sh

# Optimised without debug info by default (a third faster to compile than RelWithDebInfo,
# which keeps CI within its time); HERD_BUILD_TYPE=RelWithDebInfo for a debuggable build.
BUILD_TYPE="${HERD_BUILD_TYPE:-Release}"
echo "== build ($BUILD_TYPE)"
cmake -S . -B build -G Ninja -DCMAKE_BUILD_TYPE="$BUILD_TYPE" >/dev/null
ninja -C build -j "$JOBS"
echo "== tests ($BUILD_TYPE)"
ctest --test-dir build --output-on-failure -j "$TEST_JOBS" --timeout 300

echo "== build (ASan + UBSan)"
cmake -S . -B build-asan -G Ninja -DCMAKE_BUILD_TYPE=Debug -DHERD_SANITIZE=ON \
  -DHERD_BUILD_BENCH=OFF >/dev/null
ninja -C build-asan -j "$JOBS"
echo "== tests (ASan + UBSan)"
# The generated C++ and Node samples spend their time compiling and npm-installing; agentd's
# side of them is what the Python and shell samples exercise here too, so they run once, above.
# Likewise the browser test and Prometheus's own server: the C++ they reach (the JSON API,
# /metrics) has its own tests that run here.
ASAN_OPTIONS=detect_leaks=1:abort_on_error=1 UBSAN_OPTIONS=print_stacktrace=1 \
  ctest --test-dir build-asan --output-on-failure -j "$TEST_JOBS" --timeout 600 \
  -E 'GeneratedModuleTest\..*/(cpp|node)( |$)|DashboardTest\.Browser|PrometheusTest\.PrometheusScrapes'   # param names end in ' # GetParam() = ...'
echo "== all tests passed"
