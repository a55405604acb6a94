#!/usr/bin/env bash
# {{NAME}}: builds the module when needed, then becomes it. With cmake: the CMake project
# (CMakeLists.txt) in .build/; without: c++ directly. Needs a C++20 compiler and nlohmann/json
# (Debian: g++ nlohmann-json3-dev). The build goes to a dot-folder, which development mode
# (`agentctl install .`) does not watch.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")"

if command -v cmake >/dev/null; then
  if [[ ! -f .build/CMakeCache.txt ]]; then
    echo "{{NAME}}: configuring .build" >&2
    cmake -S . -B .build >&2
  fi
  cmake --build .build >&2 || { echo "{{NAME}}: build failed" >&2; exit 1; }
  exec ./.build/{{NAME}} "$@"
fi

bin=.build/{{NAME}}
stale=0
if [[ ! -x $bin ]]; then
  stale=1
else
  for f in main.cc herd_sdk/src/module.cc herd_sdk/include/herd/module.h; do
    if [[ $f -nt $bin ]]; then stale=1; fi
  done
fi
if (( stale )); then
  mkdir -p .build
  echo "{{NAME}}: compiling $bin" >&2
  tmp="$bin.tmp.$$"
  if ! ${CXX:-c++} -std=c++20 -O2 -pthread -Iherd_sdk/include \
      main.cc herd_sdk/src/module.cc -o "$tmp"; then
    rm -f "$tmp"
    echo "{{NAME}}: build failed (is nlohmann-json3-dev installed?)" >&2
    exit 1
  fi
  mv -f "$tmp" "$bin"
fi
exec "./$bin" "$@"
