#!/usr/bin/env python3
"""/healthz latency while N idle, unauthenticated TCP connections are held on the control
plane's HTTP port (issue 20: 2,000 of them once made every page time out).

Starts its own controlplane (loopback, a fresh data directory), opens the idle connections
(bounded: at most 20,000, held at most --hold seconds), asks /healthz --probes times from
another source address while they are held, prints the latency percentiles and how many of
the idle connections the server had closed by then, and stops everything it started.

    python3 bench/http_idle.py --bin build/bin --idle 2000
"""
import argparse
import os
import resource
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time


def healthz(host, port, source):
    start = time.monotonic()
    s = socket.create_connection((host, port), timeout=5, source_address=(source, 0))
    try:
        s.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        data = b""
        while b"\r\n\r\n" not in data:
            chunk = s.recv(4096)
            if not chunk:
                break
            data += chunk
    finally:
        s.close()
    if not data.startswith(b"HTTP/1.1 200"):
        raise RuntimeError("unexpected answer: %r" % data[:60])
    return time.monotonic() - start


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--bin", default="build/bin", help="directory with controlplane")
    ap.add_argument("--idle", type=int, default=2000, help="idle connections to hold")
    ap.add_argument("--probes", type=int, default=50, help="/healthz requests while held")
    ap.add_argument("--hold", type=float, default=60, help="seconds to hold them at most")
    args = ap.parse_args()
    if not 1 <= args.idle <= 20000 or not 1 <= args.probes <= 1000:
        sys.exit("http_idle: --idle must be 1..20000 and --probes 1..1000")
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    if hard < args.idle + 64:
        sys.exit("http_idle: the open-file limit (%d) is below --idle + 64" % hard)

    data = tempfile.mkdtemp(prefix="herd-http-idle-")
    cp = subprocess.Popen(
        [os.path.join(args.bin, "controlplane"), "--data", data, "--listen", "127.0.0.1:0",
         "--http", "127.0.0.1:0", "--log-level", "warn"],
        stdout=subprocess.DEVNULL, stderr=open(os.path.join(data, "cp.log"), "w"))
    idle = []
    try:
        addr_file = os.path.join(data, "http-address")
        deadline = time.monotonic() + 30
        while not os.path.exists(addr_file) and time.monotonic() < deadline:
            time.sleep(0.05)
        host, port = open(addr_file).read().strip().rsplit(":", 1)
        port = int(port)
        baseline = sorted(healthz(host, port, "127.0.0.2") for _ in range(10))

        t0 = time.monotonic()
        for _ in range(args.idle):
            idle.append(socket.create_connection((host, port), timeout=5))
        opened = time.monotonic() - t0
        lat = []
        while len(lat) < args.probes and time.monotonic() - t0 < args.hold:
            lat.append(healthz(host, port, "127.0.0.2"))
        lat.sort()
        closed = 0
        for s in idle:
            s.setblocking(False)
            try:
                if s.recv(1) == b"":
                    closed += 1
            except BlockingIOError:
                pass
            except OSError:
                closed += 1

        def pct(v, p):
            return v[min(len(v) - 1, int(p * len(v)))] * 1000

        print("idle connections opened: %d in %.2f s" % (len(idle), opened))
        print("/healthz without them:  p50 %.1f ms  max %.1f ms" % (pct(baseline, .5),
                                                                   baseline[-1] * 1000))
        print("/healthz while held:    p50 %.1f ms  p99 %.1f ms  max %.1f ms  (%d probes)" %
              (pct(lat, .5), pct(lat, .99), lat[-1] * 1000, len(lat)))
        print("idle connections the server had closed by then: %d" % closed)
    finally:
        for s in idle:
            s.close()
        cp.send_signal(signal.SIGTERM)
        try:
            cp.wait(timeout=15)
        except subprocess.TimeoutExpired:
            cp.kill()
            cp.wait()
        shutil.rmtree(data, ignore_errors=True)


if __name__ == "__main__":
    main()
