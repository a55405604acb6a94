#!/usr/bin/env bash
# One fleetsim run against 3 control plane replicas sharing a 3-member etcd cluster, all on
# this machine's loopback (issue 22's measurements): starts etcd and the replicas in a fresh
# temporary directory, runs fleetsim with the agents spread over the replicas, stops
# everything it started and removes the directory. bench/README.md ("Replicas") has the rows.
#
#   bench/fleetsim/replicas.sh [options] [-- fleetsim options]
#
#   --build DIR      where the binaries are (default: build)
#   --replicas N     control plane replicas (default 3, at least 2)
#   --kill           kill -9 replica 1 after the fan-outs (fleetsim --kill-replica 1): its
#                    agents' failover, a config change during it, and what was kept
#   --keep-logs DIR  copy etcd's and the replicas' logs there before removing the rest
#
# Example: bench/fleetsim/replicas.sh --kill -- --agents 10000 --steady 20 --json /tmp/r.json
set -euo pipefail
cd "$(dirname "$0")/../.."

build=build replicas=3 kill_one=0 keep_logs=""
while [[ $# -gt 0 ]]; do
  case "$1" in
    --build) build="${2:?--build needs a directory}"; shift 2 ;;
    --replicas) replicas="${2:?--replicas needs a number}"; shift 2 ;;
    --kill) kill_one=1; shift ;;
    --keep-logs) keep_logs="${2:?--keep-logs needs a directory}"; shift 2 ;;
    --) shift; break ;;
    -h|--help) sed -n '2,16p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) echo "replicas.sh: unknown option $1 (see --help)" >&2; exit 2 ;;
  esac
done
[[ "$replicas" =~ ^[2-9]$ ]] || { echo "replicas.sh: --replicas takes 2 to 9" >&2; exit 2; }
for b in controlplane fleetsim; do
  [[ -x "$build/bin/$b" ]] || { echo "replicas.sh: no $build/bin/$b: build first (ninja -C $build $b)" >&2; exit 2; }
done
for tool in etcd etcdctl python3; do
  command -v "$tool" >/dev/null ||
    { echo "replicas.sh: no $tool: run scripts/install-deps.sh (etcd-server, etcd-client)" >&2; exit 2; }
done
ulimit -n "$(ulimit -Hn)" 2>/dev/null || true
. "$(dirname "$0")/../../scripts/lib/local-etcd.sh"

dir=$(mktemp -d /tmp/herd-replicas-bench.XXXXXX)
etcd_pids=() cp_pids=()
# The replicas first, etcd once they are gone: a replica stopping writes what it still has
# queued (audit entries, presence) to etcd.
stop_all() {
  for pid in "$@"; do kill "$pid" 2>/dev/null; done
  for pid in "$@"; do
    for _ in $(seq 150); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    kill -9 "$pid" 2>/dev/null
    { wait "$pid"; } 2>/dev/null  # (also bash's "Killed" notice for the replica killed)
  done
}
cleanup() {
  set +e
  stop_all "${cp_pids[@]}"
  stop_all "${etcd_pids[@]}"
  if [[ -n "$keep_logs" ]]; then mkdir -p "$keep_logs" && cp "$dir"/*.log "$keep_logs"/; fi
  rm -rf "$dir"
}
trap cleanup EXIT

# Free loopback ports: client + peer for each etcd member, gRPC + HTTP for each replica.
mapfile -t ports < <(free_ports "$((6 + 2 * replicas))")

etcd_ok=1
start_etcd3 "$dir" herd-bench "${ports[@]:0:6}" --log-level warn || etcd_ok=0
etcd_pids=("${ETCD_MEMBER_PIDS[@]}") endpoints="$ETCD_ENDPOINTS"
[[ $etcd_ok == 1 ]] || { echo "replicas.sh: etcd did not become healthy (above)" >&2; exit 1; }

# The replicas. The first makes the fleet's tokens; the others get copies of its files.
addresses="" https=""
for ((k = 0; k < replicas; k++)); do
  data="$dir/r$k"
  mkdir -p "$data" && chmod 700 "$data"
  if [[ $k -gt 0 ]]; then
    for f in join-token operator-token viewer-token; do install -m 600 "$dir/r0/$f" "$data/$f"; done
  fi
  listen="127.0.0.1:${ports[$((6 + 2 * k))]}"
  "$build/bin/controlplane" --data "$data" --store "etcd://$endpoints" --etcd-prefix /herd \
    --replica-id "r$k" --advertise "$listen" --listen "$listen" \
    --http "127.0.0.1:${ports[$((7 + 2 * k))]}" --log-level info >"$dir/r$k.log" 2>&1 &
  cp_pids+=($!)
  for _ in $(seq 300); do
    [[ -s "$data/listen-address" ]] && break
    kill -0 "${cp_pids[$k]}" 2>/dev/null || { echo "replicas.sh: replica $k exited:" >&2; tail -5 "$dir/r$k.log" >&2; exit 1; }
    sleep 0.1
  done
  [[ -s "$data/listen-address" ]] ||
    { echo "replicas.sh: replica $k did not serve in 30 s:" >&2; tail -5 "$dir/r$k.log" >&2; exit 1; }
  addresses+="${addresses:+,}$listen"
  https+="${https:+,}$(cat "$data/http-address")"
done
pids=$(IFS=,; echo "${cp_pids[*]}")
extra=()
[[ "$kill_one" == 1 ]] && extra+=(--kill-replica 1)

rc=0
"$build/bin/fleetsim" --controlplane "$addresses" --http "$https" \
  --join-token-file "$dir/r0/join-token" --operator-token-file "$dir/r0/operator-token" \
  --viewer-token-file "$dir/r0/viewer-token" --controlplane-pid "${cp_pids[0]}" \
  --replica-pids "$pids" --etcd-metrics "http://127.0.0.1:${ports[0]}" "${extra[@]}" "$@" || rc=$?
# What the fleet left in etcd: keys and bytes by kind (the hosts' ids and the ids of rollouts
# and audit entries folded), and the database's size.
etcdctl --endpoints "$endpoints" get --prefix /herd -w json 2>/dev/null | python3 -c '
import base64, collections, json, re, sys
try:
    kvs = json.load(sys.stdin).get("kvs", [])
except ValueError:
    sys.exit(0)
count, size = collections.Counter(), collections.Counter()
for kv in kvs:
    key = base64.b64decode(kv["key"]).decode(errors="replace")
    kind = re.sub(r"^/herd/([^/]+)(/[^/]+)?(/status)?.*$", lambda m: m.group(1) + ("/*" if m.group(2) else "") + (m.group(3) or ""), key)
    count[kind] += 1
    size[kind] += len(key) + len(base64.b64decode(kv.get("value", "")))
print("  etcd keys           " + ", ".join("%s %d (%.0f B each)" % (k, count[k], size[k] / count[k]) for k in sorted(count)))
'
etcdctl --endpoints "127.0.0.1:${ports[0]}" endpoint status -w json 2>/dev/null | python3 -c '
import json, sys
s = json.load(sys.stdin)[0]["Status"]
print("  etcd database       %.1f MiB (in use %.1f MiB), revision %d, raft index %d" % (s["dbSize"] / 2**20, s.get("dbSizeInUse", 0) / 2**20, s["header"]["revision"], s["raftIndex"]))
' || true
if [[ "$rc" != 0 ]]; then
  echo "replicas.sh: fleetsim failed (exit $rc); the replicas' logs end:" >&2
  for ((k = 0; k < replicas; k++)); do echo "--- r$k" >&2; tail -5 "$dir/r$k.log" >&2; done
fi
exit "$rc"
