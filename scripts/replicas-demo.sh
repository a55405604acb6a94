#!/usr/bin/env bash
# Herd with several control plane replicas (issue 22), all on this machine: a 3-member etcd
# cluster on loopback, 3 `controlplane` replicas sharing it (--store etcd://...), and agents
# given every replica (agentd --controlplane A,B,C) running the sample units and a sample
# module. It prints where to look, then waits: Ctrl-C (or any exit) stops everything it
# started and removes its temporary directory. Try `kill -9` of a replica's pid (printed)
# and watch its agents move to the others (`agentctl hosts`, each dashboard).
#
#   scripts/replicas-demo.sh [--agents N] [--build DIR] [--no-build]
#
# Needs etcd from Debian (etcd-server, etcd-client: scripts/install-deps.sh installs them).
# Ports are free ones chosen at start; everything listens on 127.0.0.1 only.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT="$PWD"
. scripts/lib/local-etcd.sh
AGENTS=3 BUILD=build DO_BUILD=1
while [[ $# -gt 0 ]]; do
  case "$1" in
    --agents) AGENTS="${2:?--agents needs a number}"; shift 2 ;;
    --build) BUILD="${2:?--build needs a directory}"; shift 2 ;;
    --no-build) DO_BUILD=0; shift ;;
    -h|--help) sed -n '2,12p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) echo "replicas-demo.sh: unknown option $1 (see --help)" >&2; exit 2 ;;
  esac
done
[[ "$AGENTS" =~ ^[1-9][0-9]?$ ]] || { echo "replicas-demo.sh: --agents takes 1 to 99" >&2; exit 2; }
BIN="$ROOT/$BUILD/bin"
for tool in etcd etcdctl python3; do
  command -v "$tool" >/dev/null || {
    echo "replicas-demo.sh: no $tool: run scripts/install-deps.sh (etcd-server, etcd-client)" >&2
    exit 2
  }
done
if [[ $DO_BUILD == 1 ]]; then
  cmake -S . -B "$BUILD" -G Ninja >/dev/null
  ninja -C "$BUILD" agentd agentctl controlplane
fi

DEMO="$(mktemp -d /tmp/herd-replicas-XXXXXX)"
PIDS=()
AGENT_HOMES=()
stop_all() {
  trap - EXIT INT TERM
  echo
  echo "stopping the agents, the replicas and etcd..."
  for home in "${AGENT_HOMES[@]}"; do "$BIN/agentctl" --home "$home" kill >/dev/null 2>&1 || true; done
  # Replicas first, then etcd (reverse order of start), each by the pid this script got.
  for ((i = ${#PIDS[@]} - 1; i >= 0; i--)); do kill "${PIDS[$i]}" 2>/dev/null || true; done
  for pid in "${PIDS[@]}"; do wait "$pid" 2>/dev/null || true; done
  rm -rf "$DEMO"
  echo "stopped; $DEMO removed"
}
trap stop_all EXIT
trap 'exit 130' INT TERM

# Free loopback ports: 6 for etcd (client + peer per member), 6 for the replicas (gRPC + HTTP).
mapfile -t PORTS < <(free_ports 12)

# etcd: 3 members, one cluster.
etcd_ok=1
start_etcd3 "$DEMO" herd-replicas-demo "${PORTS[@]:0:6}" || etcd_ok=0
ETCD_PIDS=("${ETCD_MEMBER_PIDS[@]}") ENDPOINTS="$ETCD_ENDPOINTS"
PIDS+=("${ETCD_PIDS[@]}")
[[ $etcd_ok == 1 ]] || { echo "etcd did not become healthy: see $DEMO/etcd*.log (above)" >&2; exit 1; }
echo "etcd: 3 members at $ENDPOINTS"

# The replicas. The first creates the fleet's tokens in its data directory; the others are
# given copies, so that every replica's files hold the same join and API tokens.
LISTEN=() WEB=()
start_replica() {
  local i=$1 data="$DEMO/replica$1"
  mkdir -p "$data" && chmod 700 "$data"
  LISTEN[$i]="127.0.0.1:${PORTS[$((6 + 2 * i))]}"
  local http="127.0.0.1:${PORTS[$((7 + 2 * i))]}"
  "$BIN/controlplane" --data "$data" --store "etcd://$ENDPOINTS" --etcd-prefix /herd \
    --replica-id "r$i" --advertise "${LISTEN[$i]}" --listen "${LISTEN[$i]}" --http "$http" \
    --log-file "$DEMO/replica$i.log" >"$DEMO/replica$i.out" 2>&1 &
  PIDS+=($!)
  REPLICA_PIDS[$i]=$!
  for _ in $(seq 100); do [ -s "$data/http-address" ] && break; sleep 0.1; done
  if [ ! -s "$data/http-address" ]; then
    echo "replica $i did not start; its output:" >&2
    tail -5 "$DEMO/replica$i.out" >&2
    exit 1
  fi
  WEB[$i]="http://$(cat "$data/http-address")"
}
start_replica 0
for i in 1 2; do
  mkdir -p "$DEMO/replica$i" && chmod 700 "$DEMO/replica$i"
  for f in join-token operator-token viewer-token; do
    if [ -f "$DEMO/replica0/$f" ]; then install -m 600 "$DEMO/replica0/$f" "$DEMO/replica$i/$f"; fi
  done
  start_replica "$i"
done
REPLICAS="${LISTEN[0]},${LISTEN[1]},${LISTEN[2]}"
export HERD_CONTROLPLANE="$REPLICAS" HERD_TOKEN_FILE="$DEMO/replica0/operator-token"

# The agents, each given every replica (each starts on the one its host id hashes to).
MODULE_SRC="$DEMO/src/hello-module"
"$BIN/agentctl" generate hello-module --lang python --dir "$MODULE_SRC" >/dev/null
for ((a = 0; a < AGENTS; a++)); do
  home="$DEMO/agent$a"
  mkdir -p "$home" && chmod 700 "$home"
  AGENT_HOMES+=("$home")
  "$BIN/agentd" --daemon --home "$home" --controlplane "$REPLICAS" \
    --join-token-file "$DEMO/replica0/join-token" --labels "env=demo,agent=a$a" >/dev/null
  (cd deploy/examples && "$BIN/agentctl" --home "$home" start ecosystem.json >/dev/null)
  "$BIN/agentctl" --home "$home" install "$MODULE_SRC" >/dev/null
done
sleep 3  # a metrics batch or two, so CPU, memory and probes show

echo "== the fleet, through any replica (agentctl hosts)"
"$BIN/agentctl" --home "${AGENT_HOMES[0]}" hosts || true
cat <<MSG

Herd replicas are running (everything under $DEMO):
  etcd members:  $ENDPOINTS   (pids ${ETCD_PIDS[*]})
$(for i in 0 1 2; do echo "  replica r$i:    ${LISTEN[$i]}  dashboard ${WEB[$i]}/  pid ${REPLICA_PIDS[$i]}  log $DEMO/replica$i.log"; done)
  Log in to any dashboard with the token in $DEMO/replica0/operator-token: each shows the whole fleet.
  Prometheus: each replica's /metrics has only the hosts connected to it; scrape them all
  (deploy/prometheus/replicas.yml).

  export PATH=$BIN:\$PATH HERD_CONTROLPLANE=$REPLICAS HERD_TOKEN_FILE=$HERD_TOKEN_FILE
  agentctl hosts                               # the fleet (the first replica that answers)
  agentctl --home $DEMO/agent0 info            # which replica agent0 is connected to
  agentctl set hello-module:greeting hi --global   # written once in etcd, pushed by every replica
  agentctl restart hello-module --all-hosts --batch 1
  kill -9 ${REPLICA_PIDS[1]}                        # replica r1 dies: its agents move to r0 or r2
  kill -9 ${ETCD_PIDS[2]}                        # one etcd member: nothing noticeable

Ctrl-C stops everything.
MSG
while true; do sleep 3600; done
