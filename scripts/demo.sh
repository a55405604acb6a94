#!/usr/bin/env bash
# Installs what Herd needs, builds it, starts agentd (in the background, home
# $HERD_HOME or ./.herd-demo) with the sample units of deploy/examples/ecosystem.json under
# supervision, and shows them. Run it again at any time: it reuses the running agent.
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
sleep 2   # one sample period, so CPU and memory show
"$BIN/agentctl" list

cat <<MSG

Herd is running: agentd supervises the units above (home: $HERD_HOME).
  export HERD_HOME=$HERD_HOME PATH=$BIN:\$PATH
  agentctl list                  # status, pid, cpu, memory, restarts, uptime  (-o json)
  agentctl top                   # live view (Ctrl-C to quit)
  agentctl describe ticker       # spec, status, events
  agentctl logs ticker -f        # follow the logs (files in $HERD_HOME/logs)
  agentctl restart busy          # restart; stop / delete work the same way
  agentctl kill                  # stop every unit and agentd
  agentd's own log:              $HERD_HOME/agentd.log
MSG
