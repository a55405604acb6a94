// The control plane's HTTP side (`controlplane --http ADDR`):
//   GET  /                  the dashboard (a single page; its files are built into the binary)
//   GET  /assets/<file>     its scripts, styles and the charting library
//   POST /api/v1/<Method>   the Fleet API as JSON (JsonGateway), same tokens as gRPC
//   GET  /metrics           Prometheus text exposition (viewer token, unless metrics_public);
//                           ?scope=controlplane: the control plane's own families only (no
//                           per-host or per-module series: cheap at any fleet size)
//   GET  /healthz           the process is up (liveness)
//   GET  /readyz            the store answers and the server is not stopping (readiness)
//
// Event-driven (Boost.Beast on Boost.Asio), so that what a client can hold before it
// authenticates is bounded and cheap:
//   - a few io threads accept, do the TLS handshake and read requests; a connection is an
//     object and a buffer, not a thread. A request (header and body) must arrive within
//     header_timeout of the connection or of its first byte; a keep-alive connection waits
//     idle_timeout for its next request.
//   - connections are limited in total and per client IP; at a limit, the oldest idle one
//     (no request in progress) is closed to make room, else the new one is refused. Idle
//     connections therefore cannot lock real clients out, and /healthz, /readyz and the
//     dashboard's files are answered on the io threads without waiting behind anything.
//   - what blocks (unary API calls, /metrics) runs on a bounded worker pool with a bounded
//     queue and a per-IP in-flight limit: past them 503 / 429 with a JSON error.
//   - a stream (WatchMetrics, WatchRollout, StreamLogs as ndjson) holds a thread for its
//     gRPC call; slots are limited in total and per bearer token. Its outbound queue is
//     bounded in bytes, and a write that stalls past stream_stall_timeout ends it (its
//     reader is not reading): the gRPC call is cancelled and the slot freed. A quiet stream
//     writes a heartbeat (a blank line) so that a client gone away is noticed.
// Every refusal is counted (stats(), on /metrics) and logged, rate-limited, with the peer.
// Stop() cancels every call in flight. With a certificate it serves HTTPS, and with a client
// CA it requires a client certificate signed by it (mTLS) unless told not to.
#pragma once

#include <memory>
#include <string>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "controlplane/http/http_stats.h"
#include "controlplane/http/json_gateway.h"

namespace herd::controlplane {

struct HttpServerOptions {
  // host:port ([v6]:port); port 0 picks a free one (Start returns it).
  std::string listen;
  // HTTPS with this certificate and key (PEM files) when both are set.
  std::string tls_cert, tls_key;
  // With HTTPS: require a client certificate signed by this CA bundle (PEM).
  std::string client_ca;
  // Serve /metrics without a token (for scrapers that cannot send one).
  bool metrics_public = false;
  // Threads for accepting, TLS and reading requests.
  size_t io_threads = 2;
  // Unary API calls and /metrics: worker threads, requests waiting for one, and requests in
  // progress (running or waiting) per client IP.
  size_t workers = 16;
  size_t max_queued = 64;
  size_t max_requests_per_ip = 16;
  // Open connections in total and per client IP.
  size_t max_connections = 1024;
  size_t max_connections_per_ip = 128;
  // A request must arrive (TLS handshake, header and body) within this; a keep-alive
  // connection waits idle_timeout for the first byte of its next request.
  absl::Duration header_timeout = absl::Seconds(5);
  absl::Duration idle_timeout = absl::Seconds(30);
  // Streams open at once, in total and per bearer token; further ones get 429.
  size_t max_streams = 24;
  size_t max_streams_per_token = 8;
  // A stream whose queued output passes this many bytes, or one of whose writes has not
  // completed for stream_stall_timeout, is ended.
  size_t stream_queue_bytes = 1 << 20;
  absl::Duration stream_stall_timeout = absl::Seconds(30);
  // A quiet stream writes a blank line this often.
  absl::Duration heartbeat = absl::Seconds(5);
};

struct HttpHandlers {
  // The Prometheus exposition, rendered per scrape: with the fleet's hosts and modules, or
  // the control plane's own families only.
  std::function<std::string(bool fleet)> metrics;
  // OK when the control plane can serve (store reachable...).
  std::function<absl::Status()> ready;
  // OK when the bearer token may read (a viewer or operator token).
  std::function<absl::Status(const std::string& bearer)> authorize_read;
};

class HttpServer {
 public:
  HttpServer(HttpServerOptions options, std::shared_ptr<grpc::Channel> fleet_channel,
             HttpHandlers handlers);
  ~HttpServer();
  HttpServer(const HttpServer&) = delete;
  HttpServer& operator=(const HttpServer&) = delete;

  // Binds and starts serving on its own threads; returns the bound address (host:port).
  absl::StatusOr<std::string> Start();
  // Cancels open streams and calls, stops accepting and waits for every thread. Idempotent.
  void Stop();

  // What was refused, shed and ended so far, and what is open now.
  HttpStats stats() const;

  class AsioListener;  // asio_listener.h: keeps Boost out of this header

 private:
  std::unique_ptr<AsioListener> listener_;
};

}  // namespace herd::controlplane
