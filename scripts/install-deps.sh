#!/usr/bin/env bash
# Installs every system package Herd needs to build, test and run, from Debian 12's archive.
# Idempotent: only packages that are missing are passed to apt-get.
set -euo pipefail

PACKAGES=(
  # toolchain
  g++ cmake ninja-build pkg-config git lld
  # the fuzzers (tests/fuzz, scripts/fuzz.sh): clang with libFuzzer
  clang libfuzzer-14-dev
  # fixed dependencies (see README)
  libgrpc++-dev protobuf-compiler-grpc libprotobuf-dev protobuf-compiler libabsl-dev
  libspdlog-dev libfmt-dev libgtest-dev libgmock-dev libbenchmark-dev
  # chosen dependencies: arguments, JSON
  libcli11-dev nlohmann-json3-dev
  # control plane: embedded store (SQLite), secrets and TLS (OpenSSL), HTTP listener
  # (Boost.Beast and Boost.Asio, header-only); HTTP clients in tests and benchmarks (cpp-httplib)
  libsqlite3-dev libssl-dev openssl libboost1.74-dev libcpp-httplib-dev libyaml-cpp-dev
  # module archives are read through zlib before tar extracts them (agent/modules/archive_scan)
  zlib1g-dev
  # examples/python/fleet_client.py: another service on the Fleet API (Debian python3)
  python3-grpcio python3-protobuf
  # used by tests and the demo (shell and Python sample apps)
  python3 procps
  # agentctl's completion scripts are run by each shell they are for
  zsh fish
  # modules: archives with tar; the module integration tests watch a redis-server through
  # its pid file. Node.js and npm are checked as commands below.
  tar redis-server
  # dashboard tests: a real browser (driven by playwright-core from npm), and Prometheus's
  # own parser (promtool) and server scraping /metrics
  chromium prometheus
  # the replicated store of control plane replicas (--store etcd://): etcd 3.4 and etcdctl,
  # started by the etcd store and replica tests on loopback
  etcd-server etcd-client
  # fault tests (tests/faults): network namespaces, veths and a drop rule for a partition;
  # a stepped wall clock (LD_PRELOAD)
  iproute2 nftables libfaketime
)

missing=()
for p in "${PACKAGES[@]}"; do
  if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed"; then
    missing+=("$p")
  fi
done

# Node modules (pmx, @pm2/io) run under node and install with npm. A machine may already
# carry a Node.js from elsewhere whose package also provides npm; adding Debian's npm beside
# it cannot resolve ("held broken packages"), so only ask apt for what no command provides.
if ! command -v node >/dev/null; then missing+=(nodejs); fi
if ! command -v npm >/dev/null; then missing+=(npm); fi

if [ ${#missing[@]} -eq 0 ]; then
  echo "install-deps: all ${#PACKAGES[@]} packages already installed"
  exit 0
fi

SUDO=""
if [ "$(id -u)" -ne 0 ]; then
  if command -v sudo >/dev/null; then SUDO="sudo"; else
    echo "install-deps: need root (or sudo) to install: ${missing[*]}" >&2; exit 1
  fi
fi
echo "install-deps: installing ${missing[*]}"
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq
$SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}"
