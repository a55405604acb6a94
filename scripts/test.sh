#!/usr/bin/env bash
# Installs what Herd needs, builds it twice (optimised, and with AddressSanitizer +
# UndefinedBehaviorSanitizer) and runs every test in both builds. What CI runs.
set -euo pipefail
cd "$(dirname "$0")/.."
JOBS="${HERD_JOBS:-$(nproc)}"

scripts/install-deps.sh

echo "== build (RelWithDebInfo)"
cmake -S . -B build -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null
ninja -C build -j "$JOBS"
echo "== tests (RelWithDebInfo)"
ctest --test-dir build --output-on-failure -j "$JOBS" --timeout 300

echo "== build (ASan + UBSan)"
cmake -S . -B build-asan -G Ninja -DCMAKE_BUILD_TYPE=Debug -DHERD_SANITIZE=ON \
  -DHERD_BUILD_BENCH=OFF >/dev/null
ninja -C build-asan -j "$JOBS"
echo "== tests (ASan + UBSan)"
ASAN_OPTIONS=detect_leaks=1:abort_on_error=1 UBSAN_OPTIONS=print_stacktrace=1 \
  ctest --test-dir build-asan --output-on-failure -j "$JOBS" --timeout 600
echo "== all tests passed"
