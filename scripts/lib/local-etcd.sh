# Sourced by scripts/replicas-demo.sh and bench/fleetsim/replicas.sh: free loopback ports, and
# a 3-member etcd cluster on them (etcd and etcdctl from Debian's etcd-server and etcd-client,
# python3 for the ports). Everything listens on 127.0.0.1 only.

# Prints N free loopback TCP ports, one a line (all bound at once, so they differ).
free_ports() {
  python3 - "$1" <<'PY'
import socket, sys
socks = [socket.socket() for _ in range(int(sys.argv[1]))]
for s in socks:
    s.bind(("127.0.0.1", 0))
for s in socks:
    print(s.getsockname()[1])
PY
}

# start_etcd3 DIR TOKEN C0 P0 C1 P1 C2 P2 [etcd args...]: members m0..m2 with client port Ci
# and peer port Pi, data in DIR/etcdI, logs in DIR/etcdI.log. Sets ETCD_ENDPOINTS
# (host:port,...) and ETCD_MEMBER_PIDS (set as each starts, for the caller's cleanup even on
# failure). Returns 1, with the first member's last log lines on stderr, if the cluster is
# not healthy within 20 s.
start_etcd3() {
  local dir="$1" token="$2"
  local ports=("$3" "$4" "$5" "$6" "$7" "$8")
  shift 8
  local cluster="" i client peer
  ETCD_ENDPOINTS="" ETCD_MEMBER_PIDS=()
  for i in 0 1 2; do cluster+="${cluster:+,}m$i=http://127.0.0.1:${ports[$((2 * i + 1))]}"; done
  for i in 0 1 2; do
    client="127.0.0.1:${ports[$((2 * i))]}" peer="127.0.0.1:${ports[$((2 * i + 1))]}"
    ETCD_ENDPOINTS+="${ETCD_ENDPOINTS:+,}$client"
    etcd --name "m$i" --data-dir "$dir/etcd$i" \
      --listen-client-urls "http://$client" --advertise-client-urls "http://$client" \
      --listen-peer-urls "http://$peer" --initial-advertise-peer-urls "http://$peer" \
      --initial-cluster "$cluster" --initial-cluster-state new \
      --initial-cluster-token "$token" "$@" >"$dir/etcd$i.log" 2>&1 &
    ETCD_MEMBER_PIDS+=($!)
  done
  for _ in $(seq 100); do
    etcdctl --endpoints "$ETCD_ENDPOINTS" endpoint health >/dev/null 2>&1 && return 0
    sleep 0.2
  done
  tail -5 "$dir/etcd0.log" >&2
  return 1
}
