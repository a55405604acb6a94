#!/usr/bin/env bash
# {{NAME}}: builds the module when needed (first run, or a source newer than the binary),
# then becomes it. Needs a C++20 compiler and nlohmann/json (Debian: nlohmann-json3-dev).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")"

bin=build/{{NAME}}
sources=(main.cc herd_sdk/src/module.cc herd_sdk/include/herd/module.h)
stale=0
if [[ ! -x $bin ]]; then
  stale=1
else
  for f in "${sources[@]}"; do
    if [[ $f -nt $bin ]]; then stale=1; fi
  done
fi

if (( stale )); then
  mkdir -p build
  echo "{{NAME}}: compiling ${bin}" >&2
  tmp="${bin}.tmp.$$"
  if ! ${CXX:-c++} -std=c++20 -O2 -pthread -Iherd_sdk/include \
      main.cc herd_sdk/src/module.cc -o "$tmp"; then
    rm -f "$tmp"
    echo "{{NAME}}: build failed (is nlohmann-json3-dev installed?)" >&2
    exit 1
  fi
  mv -f "$tmp" "$bin"
fi

exec "./$bin" "$@"
