#!/usr/bin/env bash
# One fleetsim run against a control plane of its own: starts `controlplane` on a fresh data
# directory (loopback only), runs fleetsim against it, stops it and removes the directory.
# The rows of bench/README.md's "Fleet scale" tables come from this script.
#
#   bench/fleetsim/run.sh [options] [-- fleetsim options]
#
#   --build DIR      where the binaries are (default: build)
#   --pinned         the control plane on core 0, fleetsim on core 1 (default: both share all)
#   --cp-cpu PCT     the control plane gets at most PCT % of one core (a cgroup's CPU quota,
#                    10 ms period; needs root): how the numbers hold on a slower machine
#   --sim-cpu PCT    the same for fleetsim (all its processes together)
#   --rss-every S    also log the control plane's VmRSS every S seconds (for a soak)
#   --log FILE       keep the control plane's log there (by default it is removed with the
#                    run's directory; its last lines are printed if fleetsim fails)
#   --cp-arg ARG     one more argument for the control plane (repeatable), e.g.
#                    --cp-arg --metrics-batches-per-message=1
#
# Example: bench/fleetsim/run.sh --pinned -- --agents 10000 --steady 20 --json /tmp/r.json
set -euo pipefail

build=build pinned=0 cp_cpu="" sim_cpu="" rss_every="" log="" cp_args=()
needs_value() {
  [[ $# -ge 2 && "$2" != --* ]] || { echo "run.sh: $1 needs a value (see --help)" >&2; exit 2; }
}
while [[ $# -gt 0 ]]; do
  case "$1" in
    --build|--cp-cpu|--sim-cpu|--rss-every|--log) needs_value "$@" ;;&
    --cp-arg) [[ $# -ge 2 ]] || { echo "run.sh: --cp-arg needs a value" >&2; exit 2; }
      cp_args+=("$2"); shift 2 ;;
    --build) build="$2"; shift 2 ;;
    --pinned) pinned=1; shift ;;
    --cp-cpu) cp_cpu="$2"; shift 2 ;;
    --sim-cpu) sim_cpu="$2"; shift 2 ;;
    --rss-every) rss_every="$2"; shift 2 ;;
    --log) log="$2"; shift 2 ;;
    --) shift; break ;;
    -h|--help) sed -n '2,18p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) echo "run.sh: unknown option $1 (see --help)" >&2; exit 2 ;;
  esac
done
for b in controlplane fleetsim; do
  [[ -x "$build/bin/$b" ]] || { echo "run.sh: no $build/bin/$b: build first (ninja -C $build $b)" >&2; exit 2; }
done
for pct in "$cp_cpu" "$sim_cpu"; do
  # The kernel's smallest quota is 1 ms of each 10 ms period.
  if [[ -n "$pct" ]] && ! [[ "$pct" =~ ^[0-9]+$ && "$pct" -ge 10 ]]; then
    echo "run.sh: --cp-cpu and --sim-cpu take a whole percentage of one core, at least 10 (e.g. 70)" >&2
    exit 2
  fi
done
if [[ -n "$rss_every" && ! "$rss_every" =~ ^[0-9]+$ ]]; then
  echo "run.sh: --rss-every takes whole seconds" >&2; exit 2
fi
if [[ "$pinned" == 1 && $(nproc) -lt 2 ]]; then
  echo "run.sh: --pinned needs 2 cores" >&2; exit 2
fi

# fleetsim opens a connection per agent, the control plane accepts as many.
ulimit -n "$(ulimit -Hn)" 2>/dev/null || true

dir=$(mktemp -d /tmp/herd-fleetsim.XXXXXX)
[[ -n "$log" ]] || log="$dir/controlplane.log"
cgroups=() cp="" sampler=""
cleanup() {
  set +e  # every step runs, whatever the one before did
  [[ -n "$sampler" ]] && kill "$sampler" 2>/dev/null
  if [[ -n "$cp" ]] && kill -0 "$cp" 2>/dev/null; then
    kill "$cp" 2>/dev/null
    # It stops within a few seconds (it closes 10,000 streams); then it is killed.
    for _ in $(seq 150); do kill -0 "$cp" 2>/dev/null || break; sleep 0.1; done
    if kill -0 "$cp" 2>/dev/null; then
      echo "run.sh: the control plane did not stop in 15 s: killed" >&2
      kill -9 "$cp" 2>/dev/null
    fi
    wait "$cp" 2>/dev/null
  fi
  for g in "${cgroups[@]}"; do
    rmdir "$g" 2>/dev/null || echo "run.sh: could not remove the cgroup $g (rmdir it)" >&2
  done
  rm -rf "$dir"
}
trap cleanup EXIT

cp_cpus=0-$(( $(nproc) - 1 )) sim_cpus=0-$(( $(nproc) - 1 ))
if [[ "$pinned" == 1 ]]; then cp_cpus=0 sim_cpus=1; fi

taskset -c "$cp_cpus" "$build/bin/controlplane" --data "$dir/data" --listen 127.0.0.1:0 \
  --http 127.0.0.1:0 --log-level info "${cp_args[@]}" >"$log" 2>&1 &
cp=$!

# new_cgroup NAME PCT: a cgroup whose processes get at most PCT % of one core, in $made. 10 ms
# periods: a quota over 100 ms would stop a process for tens of milliseconds at a time, which
# is not what a slower core does.
new_cgroup() {
  local quota=$(( $2 * 100 ))
  if [[ -f /sys/fs/cgroup/cgroup.controllers ]]; then  # cgroup v2
    made=/sys/fs/cgroup/herd-fleetsim-$$-$1
    mkdir "$made" && cgroups+=("$made") && echo "$quota 10000" >"$made/cpu.max"
  elif [[ -d /sys/fs/cgroup/cpu ]]; then  # cgroup v1
    made=/sys/fs/cgroup/cpu/herd-fleetsim-$$-$1
    mkdir "$made" && cgroups+=("$made") && echo 10000 >"$made/cpu.cfs_period_us" &&
      echo "$quota" >"$made/cpu.cfs_quota_us"
  else
    echo "run.sh: --$1-cpu needs a cgroup CPU controller (none under /sys/fs/cgroup)" >&2
    return 1
  fi || {
    echo "run.sh: cannot set a CPU quota in $made: run as root; on cgroup v2 the cpu" \
      "controller must be enabled (echo +cpu > /sys/fs/cgroup/cgroup.subtree_control)" >&2
    return 1
  }
}
sim_cgroup=""
if [[ -n "$sim_cpu" ]]; then new_cgroup sim "$sim_cpu" || exit 2; sim_cgroup=$made; fi
if [[ -n "$cp_cpu" ]]; then
  new_cgroup cp "$cp_cpu" || exit 2
  echo "$cp" >"$made/cgroup.procs" ||
    { echo "run.sh: cannot move the control plane into $made" >&2; exit 2; }
fi

# The control plane writes listen-address last, once everything serves (http-address before).
for _ in $(seq 300); do
  [[ -s "$dir/data/listen-address" ]] && break
  kill -0 "$cp" 2>/dev/null || { echo "run.sh: the control plane exited:" >&2; tail -5 "$log" >&2; exit 1; }
  sleep 0.1
done
if [[ ! -s "$dir/data/listen-address" ]]; then
  echo "run.sh: the control plane did not start serving in 30 s:" >&2; tail -5 "$log" >&2; exit 1
fi
grpc_addr=$(cat "$dir/data/listen-address")
http_addr=$(cat "$dir/data/http-address")

if [[ -n "$rss_every" ]]; then
  (
    start=$(date +%s)
    while kill -0 "$cp" 2>/dev/null; do
      echo "rss t=$(( $(date +%s) - start ))s $(grep VmRSS "/proc/$cp/status" | awk '{print $2, $3}')"
      sleep "$rss_every"
    done
  ) &
  sampler=$!
fi

rc=0
(
  # (set -e does not hold in a subshell whose status is tested: each step says so itself.)
  if [[ -n "$sim_cgroup" ]]; then
    echo "$BASHPID" >"$sim_cgroup/cgroup.procs" ||
      { echo "run.sh: cannot move fleetsim into $sim_cgroup" >&2; exit 2; }
  fi
  exec taskset -c "$sim_cpus" "$build/bin/fleetsim" --controlplane "$grpc_addr" --http "$http_addr" \
  --join-token-file "$dir/data/join-token" --operator-token-file "$dir/data/operator-token" \
  --viewer-token-file "$dir/data/viewer-token" --controlplane-pid "$cp" "$@"
) || rc=$?
grep -hE "event=rollout_(started|batch_sent)" "$log" | sed 's/^/controlplane: /' || true
if [[ "$rc" != 0 ]]; then
  echo "run.sh: fleetsim failed (exit $rc); the control plane's log ends:" >&2
  tail -20 "$log" >&2
fi
exit "$rc"
