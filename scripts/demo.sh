#!/usr/bin/env bash
# Installs what Herd needs, builds it, starts agentd (in the background, home
# $HERD_HOME or ./.herd-demo) with the sample units of deploy/examples/ecosystem.json under
# supervision and a sample module (generated with the Python SDK, installed in development
# mode), and shows them. Run it again at any time: it reuses the running agent.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT="$PWD"
export HERD_HOME="${HERD_HOME:-$ROOT/.herd-demo}"

scripts/install-deps.sh
cmake -S . -B build -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null
ninja -C build agentd agentctl

BIN="$ROOT/build/bin"
if ! "$BIN/agentctl" info >/dev/null 2>&1; then
  "$BIN/agentd" --daemon
fi
(cd deploy/examples && "$BIN/agentctl" start ecosystem.json >/dev/null)
MODULE_SRC="$HERD_HOME/src/hello-module"
if [ ! -e "$MODULE_SRC/package.json" ]; then
  "$BIN/agentctl" generate hello-module --lang python --dir "$MODULE_SRC" >/dev/null
fi
if ! "$BIN/agentctl" describe hello-module >/dev/null 2>&1; then
  "$BIN/agentctl" install "$MODULE_SRC" >/dev/null
fi
sleep 2   # one sample period, so CPU, memory and probes show
"$BIN/agentctl" list

cat <<MSG

Herd is running: agentd supervises the units above (home: $HERD_HOME).
  export HERD_HOME=$HERD_HOME PATH=$BIN:\$PATH
  agentctl list                  # status, pid, cpu, memory, restarts, uptime  (-o json)
  agentctl top                   # live view (Ctrl-C to quit)
  agentctl describe ticker       # spec, status, events
  agentctl logs ticker -f        # follow the logs (files in $HERD_HOME/logs)
  agentctl restart busy          # restart; stop / delete work the same way
  agentctl describe hello-module # a module: probes, actions, issues, config
  agentctl action hello-module greet --param name=you
  agentctl set hello-module:greeting hi   # override a config default (restarts the module)
  agentctl conf hello-module     # each key: default, override, effective
  \$EDITOR $MODULE_SRC/main.py   # development mode: the module restarts on save
  agentctl kill                  # stop every unit and agentd
  agentd's own log:              $HERD_HOME/agentd.log
MSG
