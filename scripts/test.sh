#!/usr/bin/env bash
# Installs what Herd needs, builds it with AddressSanitizer + UndefinedBehaviorSanitizer,
# runs every test once (see below), then the fuzzers for a short time each. What CI runs.
set -euo pipefail
cd "$(dirname "$0")/.."
JOBS="${HERD_JOBS:-$(nproc)}"
# Most integration tests wait on processes and sockets, not on the CPU: one more than the
# cores keeps both busy (their timeouts are generous enough for a loaded machine).
TEST_JOBS="${HERD_TEST_JOBS:-$((JOBS + 1))}"

# Each stage's start, in seconds since this script began (CI's log shows where time goes).
stage() { echo "== $* (at ${SECONDS} s)"; }

scripts/install-deps.sh

# Size limits first (seconds): no file in agent/, controlplane/, cli/ over 800 lines, no
# function over 80 (docs/agent.md, "Seams and their fakes").
stage "size limits"
python3 scripts/check-size.py

# One build, the one that finds the most: Debug with AddressSanitizer and
# UndefinedBehaviorSanitizer, warnings as errors, the benchmarks compiled too. Every test runs
# once in it. (Until 2026-12 a second, optimised build ran the browser, Prometheus and
# generated C++/Node module tests; they take 40 s here under the sanitizers, and the second
# compile of everything cost CI about 11 minutes.) The optimised build is README's and the
# benchmarks': `cmake -S . -B build -G Ninja && ninja -C build && ctest --test-dir build`.
stage "build (ASan + UBSan)"
cmake -S . -B build-asan -G Ninja -DCMAKE_BUILD_TYPE=Debug -DHERD_SANITIZE=ON \
  -DHERD_WERROR=ON -DHERD_BUILD_BENCH=ON >/dev/null
# One more job than cores: compiles also wait on the disk (the assembler, the linker).
ninja -C build-asan -j "$((JOBS + 1))"
stage "tests (ASan + UBSan)"
ASAN_OPTIONS=detect_leaks=1:abort_on_error=1 UBSAN_OPTIONS=print_stacktrace=1 \
  ctest --test-dir build-asan --output-on-failure -j "$TEST_JOBS" --timeout 600

# The fuzzers (tests/fuzz/README.md): every target for a short fixed time from its seed
# corpus; any crash fails CI and its input is kept in build-fuzz/crashes/. 11 targets x 15 s
# plus a cold clang build keeps this step near 6 minutes on 2 cores. Longer runs:
# scripts/fuzz.sh SECONDS [TARGET...].
stage "fuzz"
scripts/fuzz.sh "${HERD_FUZZ_SECONDS:-15}"
stage "all tests passed"
