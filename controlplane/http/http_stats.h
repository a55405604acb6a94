// What the HTTP listener refused, shed and ended, for /metrics (prometheus.h renders it as
// herd_controlplane_http_* families). Plain numbers: the HTTP server fills them, the
// exposition reads a copy; neither depends on the other.
#pragma once

#include <cstdint>

namespace herd::controlplane {

struct HttpStats {
  // Open now.
  uint64_t connections = 0;
  uint64_t streams = 0;
  // New connections closed at once: the total or the peer's per-IP limit was reached and
  // no idle connection could be closed to make room.
  uint64_t refused_total_limit = 0;
  uint64_t refused_ip_limit = 0;
  // Idle connections (no request in progress) closed to make room for a new one.
  uint64_t shed_idle = 0;
  // Connections closed because a request (or the TLS handshake) did not arrive in time.
  uint64_t timed_out = 0;
  uint64_t tls_handshake_failed = 0;
  // Requests answered 503/429 without being run: the worker queue was full, or the peer
  // had too many requests in progress.
  uint64_t requests_shed_queue_full = 0;
  uint64_t requests_shed_ip_limit = 0;
  // Streams refused (429): every slot taken, or every slot of that token.
  uint64_t streams_refused_total = 0;
  uint64_t streams_refused_token = 0;
  // Streams ended because their reader did not take data: a write stalled past the stall
  // timeout, or the queued bytes passed their bound.
  uint64_t streams_ended_stalled = 0;
  uint64_t streams_ended_queue_full = 0;
};

}  // namespace herd::controlplane
