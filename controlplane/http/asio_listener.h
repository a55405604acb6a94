// HttpServer::AsioListener: the HTTP listener behind http_server.h, on Boost.Asio. Internal to
// controlplane/http; http_server.h keeps Boost out of its includers. Its parts:
//   asio_listener.h          this class: options, handlers, counters, the limits' bookkeeping
//   http_server.cc           HttpServer, and the listener's lifecycle: TLS setup, bind,
//                            accept, the io threads, Stop
//   asio_listener_limits.cc  connections (total, per IP, oldest idle shed), requests in
//                            progress per IP, stream slots per token, calls to cancel,
//                            /readyz, stats()
//   http_session.h           one connection (Session<Stream>): read, route, write, streams
//   http_messages.{h,cc}     request parsing and response building, no I/O
//   worker_pool.{h,cc}       threads for blocking work; rate_limited_log.{h,cc} its warnings
// Locks: the listener's mutexes (conn_mu_, req_mu_, stream_mu_, calls_mu_, ready_mu_) and a
// StreamState's each guard their own fields and are never taken one inside another, nor held
// across I/O; WorkerPool's and RateLimitedLog's are leaves, taken under any of them.
#pragma once

#include <atomic>
#include <chrono>
#include <cstdint>
#include <deque>
#include <list>
#include <memory>
#include <optional>
#include <set>
#include <string>
#include <thread>
#include <unordered_map>
#include <vector>

#include <boost/asio.hpp>
#include <boost/asio/ssl.hpp>
#include <boost/beast/core.hpp>

#include "absl/base/thread_annotations.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "controlplane/http/http_server.h"
#include "controlplane/http/rate_limited_log.h"
#include "controlplane/http/worker_pool.h"
#include "grpcpp/client_context.h"
#include "spdlog/logger.h"

namespace herd::controlplane {

namespace httpd {

// What a connection shares with the thread running its stream's gRPC call.
struct StreamState {
  absl::Mutex mu;
  std::deque<std::string> queue ABSL_GUARDED_BY(mu);
  // Queued bytes plus those being written.
  size_t bytes ABSL_GUARDED_BY(mu) = 0;
  bool flush_posted ABSL_GUARDED_BY(mu) = false;
  // The connection is gone (or the stream was ended): take no more lines.
  bool closed ABSL_GUARDED_BY(mu) = false;
  // The call has returned: once the queue is written, the stream ends.
  bool done ABSL_GUARDED_BY(mu) = false;
  // The call's context while it runs, so that the connection can cancel it.
  grpc::ClientContext* ctx ABSL_GUARDED_BY(mu) = nullptr;
};

// One connection's place in the limits; the listener's bookkeeping is guarded by its mutex.
class SessionBase : public std::enable_shared_from_this<SessionBase> {
 public:
  SessionBase(std::string ip, std::string peer) : ip_(std::move(ip)), peer_(std::move(peer)) {}
  virtual ~SessionBase() = default;
  // From any thread: close the connection (on its own strand).
  virtual void Abort() = 0;
  const std::string& ip() const { return ip_; }
  const std::string& peer() const { return peer_; }

 private:
  friend class herd::controlplane::HttpServer::AsioListener;
  const std::string ip_, peer_;
  // Guarded by AsioListener::conn_mu_.
  bool counted_ = false;
  bool idle_ = false;
  std::list<std::weak_ptr<SessionBase>>::iterator idle_it_;
};

}  // namespace httpd

class HttpServer::AsioListener {
 public:
  AsioListener(HttpServerOptions options, std::shared_ptr<grpc::Channel> channel,
               HttpHandlers handlers);
  ~AsioListener() { Stop(); }

  absl::StatusOr<std::string> Start();
  void Stop();
  HttpStats stats();

  // --- connections ---------------------------------------------------------------------
  // Counts a new connection in, closing the oldest idle one (of its IP, or of all) when a
  // limit is reached; false (counted, logged) when none can be closed.
  bool Admit(httpd::SessionBase& s);
  void SetIdle(httpd::SessionBase& s, bool idle);
  void Release(httpd::SessionBase& s);

  // --- blocking work -------------------------------------------------------------------
  // A place for a request from `ip` on the worker pool; false (counted, logged) when the IP
  // has too many requests in progress.
  bool AcquireRequest(const std::string& ip, const std::string& peer);
  void ReleaseRequest(const std::string& ip);

  // --- streams -------------------------------------------------------------------------
  // A stream slot for `token`: OK, or RESOURCE_EXHAUSTED saying which limit (counted, logged).
  absl::Status AcquireStream(const std::string& token, const std::string& peer);
  void ReleaseStream(const std::string& token);

  // Registers a call so that Stop() cancels it; false once stopping.
  bool Track(grpc::ClientContext* ctx);
  void Untrack(grpc::ClientContext* ctx);
  bool stopping();

  const HttpServerOptions options;
  const HttpHandlers handlers;
  JsonGateway gateway;
  std::shared_ptr<spdlog::logger> log;
  httpd::RateLimitedLog warn;

  std::atomic<uint64_t> timed_out{0}, tls_handshake_failed{0}, requests_shed_queue_full{0},
      streams_ended_stalled{0}, streams_ended_queue_full{0};

  httpd::WorkerPool workers;
  httpd::WorkerPool stream_threads;

  // /readyz answers from here, on the io thread, without waiting: the check itself reads the
  // store, which can block behind a slow disk's transaction, so it runs on a worker at most
  // once a second and the answer is the last result.
  absl::Status Readiness();
  // The first answer, before serving.
  void CheckReadyNow();

 private:
  absl::Mutex ready_mu_;
  absl::Status ready_ ABSL_GUARDED_BY(ready_mu_);
  std::chrono::steady_clock::time_point ready_checked_ ABSL_GUARDED_BY(ready_mu_);
  bool ready_refreshing_ ABSL_GUARDED_BY(ready_mu_) = false;

  // Start's parts: the TLS context from the options (none without a certificate), and the
  // bound acceptor.
  absl::Status ConfigureTls();
  absl::StatusOr<int> Listen(const std::string& host, int port);
  void Accept();
  void OnAccept(boost::beast::error_code ec, boost::asio::ip::tcp::socket socket);

  std::shared_ptr<httpd::SessionBase> TakeOldestIdle(const std::string& ip)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(conn_mu_);
  void ReleaseLocked(httpd::SessionBase& s) ABSL_EXCLUSIVE_LOCKS_REQUIRED(conn_mu_);

  absl::Mutex conn_mu_;
  size_t open_ ABSL_GUARDED_BY(conn_mu_) = 0;
  std::unordered_map<std::string, size_t> per_ip_ ABSL_GUARDED_BY(conn_mu_);
  // Connections with no request in progress, oldest first: the first to close at a limit.
  std::list<std::weak_ptr<httpd::SessionBase>> idle_ ABSL_GUARDED_BY(conn_mu_);
  uint64_t refused_ip_limit_ ABSL_GUARDED_BY(conn_mu_) = 0;
  uint64_t refused_total_limit_ ABSL_GUARDED_BY(conn_mu_) = 0;
  uint64_t shed_idle_ ABSL_GUARDED_BY(conn_mu_) = 0;

  absl::Mutex req_mu_;
  std::unordered_map<std::string, size_t> requests_per_ip_ ABSL_GUARDED_BY(req_mu_);
  uint64_t requests_shed_ip_limit_ ABSL_GUARDED_BY(req_mu_) = 0;

  absl::Mutex stream_mu_;
  size_t streams_ ABSL_GUARDED_BY(stream_mu_) = 0;
  std::unordered_map<std::string, size_t> streams_per_token_ ABSL_GUARDED_BY(stream_mu_);
  uint64_t streams_refused_total_ ABSL_GUARDED_BY(stream_mu_) = 0;
  uint64_t streams_refused_token_ ABSL_GUARDED_BY(stream_mu_) = 0;

  absl::Mutex calls_mu_;
  bool stopping_ ABSL_GUARDED_BY(calls_mu_) = false;
  std::set<grpc::ClientContext*> calls_ ABSL_GUARDED_BY(calls_mu_);  // unary and streams

  bool started_ = false;
  std::optional<boost::asio::ssl::context> ssl_ctx_;
  // Declared after everything its handlers use: destroying it destroys the connections.
  boost::asio::io_context ioc_;
  std::optional<boost::asio::ip::tcp::acceptor> acceptor_;
  std::optional<boost::asio::steady_timer> accept_retry_;
  std::vector<std::thread> io_threads_;
};

}  // namespace herd::controlplane
