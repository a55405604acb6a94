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
// Served by cpp-httplib on a bounded thread pool; a stream (WatchMetrics, WatchRollout,
// StreamLogs) holds one thread for its lifetime, so streams are capped below the pool size,
// a quiet stream writes a heartbeat (a blank line) so that a client gone away is noticed,
// and Stop() cancels every call in flight. With a certificate it serves HTTPS. Behind the
// pool, connections are thread-per-connection: face the internet through a reverse proxy.
#pragma once

#include <atomic>
#include <functional>
#include <memory>
#include <set>
#include <string>
#include <thread>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "controlplane/http/json_gateway.h"
#include "spdlog/logger.h"

namespace httplib {
class Server;
}

namespace herd::controlplane {

struct HttpServerOptions {
  // host:port ([v6]:port); port 0 picks a free one (Start returns it).
  std::string listen;
  // HTTPS with this certificate and key (PEM files) when both are set.
  std::string tls_cert, tls_key;
  // Serve /metrics without a token (for scrapers that cannot send one).
  bool metrics_public = false;
  // Worker threads: concurrent connections, streams included.
  size_t threads = 32;
  // Streams open at once; further ones get 503 (keeps threads for everything else).
  size_t max_streams = 24;
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

  // Binds and starts serving on its own thread; returns the bound address (host:port).
  absl::StatusOr<std::string> Start();
  // Cancels open streams, stops accepting and waits for the workers. Idempotent.
  void Stop();

 private:
  void Routes();
  void ServeStream(const google::protobuf::MethodDescriptor* method, std::string body,
                   std::string authorization, const std::function<bool(const std::string&)>& write);

  const HttpServerOptions options_;
  const HttpHandlers handlers_;
  JsonGateway gateway_;
  std::shared_ptr<spdlog::logger> log_;
  std::unique_ptr<httplib::Server> server_;
  std::thread thread_;
  // Registers a call so that Stop() cancels it; false once stopping.
  bool Track(grpc::ClientContext* ctx);
  void Untrack(grpc::ClientContext* ctx);

  std::atomic<size_t> streams_{0};
  std::atomic<bool> listen_returned_{false};
  absl::Mutex mu_;
  bool stopping_ ABSL_GUARDED_BY(mu_) = false;
  std::set<grpc::ClientContext*> calls_ ABSL_GUARDED_BY(mu_);  // unary and streams
};

}  // namespace herd::controlplane
