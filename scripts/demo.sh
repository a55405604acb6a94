#!/usr/bin/env bash
# Herd's main job on its embedded defaults: installs what Herd needs, builds it, starts a
# controlplane (SQLite store, loopback port, tokens created on first start) and an agentd
# linked to it, with the sample units of deploy/examples/ecosystem.json and a sample module
# (generated with the Python SDK, installed in development mode), then shows where to look.
# Everything lives in $HERD_DEMO (default ./.herd-demo). Run it again at any time: it reuses
# what is running. Stop it all with: scripts/demo.sh stop
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT="$PWD"
DEMO="${HERD_DEMO:-$ROOT/.herd-demo}"
export HERD_HOME="$DEMO/agent"
CP_DATA="$DEMO/controlplane"
BIN="$ROOT/build/bin"

if [ "${1:-}" = "stop" ]; then
  "$BIN/agentctl" kill 2>/dev/null || true
  if [ -f "$DEMO/controlplane.pid" ]; then kill "$(cat "$DEMO/controlplane.pid")" 2>/dev/null || true; fi
  rm -f "$DEMO/controlplane.pid"
  echo "demo stopped (state kept in $DEMO)"
  exit 0
fi

scripts/install-deps.sh
cmake -S . -B build -G Ninja >/dev/null   # keeps the build type of an existing build/
ninja -C build agentd agentctl controlplane
mkdir -p "$DEMO"

# The control plane, in the background, on a fixed loopback port (free one chosen if taken).
if ! { [ -f "$DEMO/controlplane.pid" ] && kill -0 "$(cat "$DEMO/controlplane.pid")" 2>/dev/null; }; then
  LISTEN="127.0.0.1:${HERD_DEMO_PORT:-7070}"
  HTTP="127.0.0.1:${HERD_DEMO_HTTP_PORT:-8080}"
  if [ -f "$CP_DATA/listen-address" ]; then LISTEN="$(cat "$CP_DATA/listen-address")"; fi
  if [ -f "$CP_DATA/http-address" ]; then HTTP="$(cat "$CP_DATA/http-address")"; fi
  rm -f "$CP_DATA/listen-address" "$CP_DATA/http-address"
  nohup "$BIN/controlplane" --data "$CP_DATA" --listen "$LISTEN" --http "$HTTP" \
    --log-file "$DEMO/controlplane.log" >/dev/null 2>&1 &
  echo $! > "$DEMO/controlplane.pid"
  for _ in $(seq 50); do [ -s "$CP_DATA/http-address" ] && break; sleep 0.1; done
  if [ ! -s "$CP_DATA/http-address" ]; then
    # A port was taken: let the system choose them.
    kill "$(cat "$DEMO/controlplane.pid")" 2>/dev/null || true
    nohup "$BIN/controlplane" --data "$CP_DATA" --listen 127.0.0.1:0 --http 127.0.0.1:0 \
      --log-file "$DEMO/controlplane.log" >/dev/null 2>&1 &
    echo $! > "$DEMO/controlplane.pid"
    for _ in $(seq 50); do [ -s "$CP_DATA/http-address" ] && break; sleep 0.1; done
  fi
  [ -s "$CP_DATA/http-address" ] || { echo "controlplane did not start: see $DEMO/controlplane.log" >&2; exit 1; }
fi
CP="$(cat "$CP_DATA/listen-address")"
WEB="http://$(cat "$CP_DATA/http-address")"
export HERD_CONTROLPLANE="$CP" HERD_TOKEN_FILE="$CP_DATA/operator-token"

# The agent, linked to it.
if ! "$BIN/agentctl" info >/dev/null 2>&1; then
  "$BIN/agentd" --daemon --controlplane "$CP" --join-token-file "$CP_DATA/join-token" \
    --labels env=demo,role=sample
fi
(cd deploy/examples && "$BIN/agentctl" start ecosystem.json >/dev/null)
MODULE_SRC="$DEMO/src/hello-module"
if [ ! -e "$MODULE_SRC/package.json" ]; then
  "$BIN/agentctl" generate hello-module --lang python --dir "$MODULE_SRC" >/dev/null
fi
if ! "$BIN/agentctl" describe hello-module >/dev/null 2>&1; then
  "$BIN/agentctl" install "$MODULE_SRC" >/dev/null
fi
sleep 2   # a sample period and a metrics batch, so CPU, memory and probes show
echo "== this host (agentctl list)"
"$BIN/agentctl" list
echo "== the fleet (agentctl hosts, agentctl modules)"
"$BIN/agentctl" hosts
"$BIN/agentctl" modules

cat <<MSG

Herd is running: controlplane at $CP (data: $CP_DATA) and agentd (home: $HERD_HOME).
  Dashboard: $WEB/   log in with the token in $CP_DATA/operator-token (viewer-token: read-only)
  Prometheus: curl -H "Authorization: Bearer \$(cat $CP_DATA/viewer-token)" $WEB/metrics
  export HERD_HOME=$HERD_HOME PATH=$BIN:\$PATH
  export HERD_CONTROLPLANE=$CP HERD_TOKEN_FILE=$CP_DATA/operator-token
  agentctl list | top | logs ticker -f     # this host's units (PM2's list, monit, logs)
  agentctl describe hello-module           # a module: probes, actions, issues, config
  agentctl hosts | modules | audit         # the fleet, through the control plane
  agentctl set hello-module:greeting hi    # this host's config, owned by the control plane
  agentctl set hello-module:greeting hey --selector env=demo   # or --global, --host H
  agentctl action hello-module greet --param name=you --all-hosts
  agentctl restart hello-module --all-hosts --batch 1          # a rollout, with progress
  \$EDITOR $MODULE_SRC/main.py     # development mode: the module restarts on save
  logs: $DEMO/controlplane.log, $HERD_HOME/agentd.log
  stop everything: scripts/demo.sh stop
MSG
