#include "controlplane/http/http_server.h"

#include <openssl/ssl.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <deque>
#include <list>
#include <mutex>
#include <optional>
#include <set>
#include <thread>
#include <unordered_map>
#include <vector>

#include <boost/asio.hpp>
#include <boost/asio/ssl.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>
#include <boost/beast/ssl.hpp>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"
#include "absl/synchronization/mutex.h"
#include "common/logging.h"
#include "controlplane/http/web_assets.h"
#include "spdlog/logger.h"

namespace herd::controlplane {
namespace {

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace http = beast::http;
namespace ssl = asio::ssl;
using tcp = asio::ip::tcp;
using Request = http::request<http::string_body>;
using Response = http::response<http::string_body>;

constexpr char kCsp[] =
    "default-src 'self'; img-src 'self' https: data:; style-src 'self'; script-src 'self'; "
    "connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'none'";
// Unary calls wait at most this long (an action fanned out to hosts has its own timeout,
// 30 s by default).
constexpr absl::Duration kUnaryDeadline = absl::Seconds(120);
constexpr uint64_t kMaxBody = 1 << 20;
constexpr uint32_t kMaxHeader = 16 << 10;
// A stream's queued lines are written in chunks of about this size.
constexpr size_t kChunk = 64 << 10;

std::chrono::steady_clock::duration Chrono(absl::Duration d) {
  return absl::ToChronoNanoseconds(d);
}

// A warning per event at most every 10 s, with how many of that event were not logged since:
// a flood of refusals costs a counter increment each, not a log line each.
class RateLimitedLog {
 public:
  explicit RateLimitedLog(std::shared_ptr<spdlog::logger> log) : log_(std::move(log)) {}

  void Warn(const char* event, const std::string& detail) {
    const auto now = std::chrono::steady_clock::now();
    uint64_t suppressed = 0;
    {
      absl::MutexLock l(&mu_);
      Entry& e = entries_[event];
      if (e.logged && now - e.last < std::chrono::seconds(10)) {
        ++e.suppressed;
        return;
      }
      e.logged = true;
      e.last = now;
      suppressed = std::exchange(e.suppressed, 0);
    }
    log_->warn("event={} {} not_logged_since_last={}", event, detail, suppressed);
  }

 private:
  struct Entry {
    bool logged = false;
    std::chrono::steady_clock::time_point last;
    uint64_t suppressed = 0;
  };
  std::shared_ptr<spdlog::logger> log_;
  absl::Mutex mu_;
  std::unordered_map<std::string, Entry> entries_ ABSL_GUARDED_BY(mu_);
};

// Threads for work that blocks (gRPC calls, rendering /metrics), started as needed up to
// `max_threads`, with at most `max_queued` jobs waiting. Submit never blocks.
class WorkerPool {
 public:
  WorkerPool(size_t max_threads, size_t max_queued)
      : max_threads_(std::max<size_t>(1, max_threads)), max_queued_(max_queued) {}
  ~WorkerPool() { Stop(); }

  // False when every thread is busy and the queue is full, or the pool is stopping: the job
  // is not run.
  bool Submit(std::function<void()> job) {
    absl::MutexLock l(&mu_);
    if (stopping_) return false;
    const size_t wanted = running_ + queue_.size() + 1;  // threads this job keeps busy
    if (wanted > max_threads_ + max_queued_) return false;
    if (wanted > threads_.size() && threads_.size() < max_threads_) {
      threads_.emplace_back([this] { Work(); });
    }
    queue_.push_back(std::move(job));
    return true;
  }

  // Drops queued jobs and waits for the running ones (whose calls the caller cancelled).
  void Stop() {
    std::vector<std::thread> threads;
    std::deque<std::function<void()>> dropped;  // destroyed outside the lock
    {
      absl::MutexLock l(&mu_);
      stopping_ = true;
      dropped.swap(queue_);
      threads.swap(threads_);
    }
    for (auto& t : threads) t.join();
  }

 private:
  void Work() {
    mu_.Lock();
    for (;;) {
      mu_.Await(absl::Condition(this, &WorkerPool::HasWork));
      if (stopping_) break;
      std::function<void()> job = std::move(queue_.front());
      queue_.pop_front();
      ++running_;
      mu_.Unlock();
      job();
      job = nullptr;  // what it holds goes before the thread counts as free
      mu_.Lock();
      --running_;
    }
    mu_.Unlock();
  }

  bool HasWork() const ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    return stopping_ || !queue_.empty();
  }

  const size_t max_threads_, max_queued_;
  absl::Mutex mu_;
  bool stopping_ ABSL_GUARDED_BY(mu_) = false;
  size_t running_ ABSL_GUARDED_BY(mu_) = 0;
  std::deque<std::function<void()>> queue_ ABSL_GUARDED_BY(mu_);
  std::vector<std::thread> threads_ ABSL_GUARDED_BY(mu_);
};

// The bearer token of the request: "" when there is none, an error when the header holds
// something no token of ours can be (tokens are [A-Za-z0-9_-]; gRPC metadata refuses most
// other bytes, so nothing else may be passed on).
absl::StatusOr<std::string> Bearer(const Request& req) {
  const auto it = req.find(http::field::authorization);
  if (it == req.end()) return std::string();
  absl::string_view h(it->value().data(), it->value().size());
  if (h.empty()) return std::string();
  if (!absl::ConsumePrefix(&h, "Bearer ") && !absl::ConsumePrefix(&h, "bearer ")) {
    return absl::UnauthenticatedError("the Authorization header is not \"Bearer <token>\"");
  }
  h = absl::StripAsciiWhitespace(h);
  const bool valid = !h.empty() && h.size() <= 256 &&
                     std::all_of(h.begin(), h.end(), [](char c) {
                       return absl::ascii_isalnum(static_cast<unsigned char>(c)) || c == '_' ||
                              c == '-' || c == '.' || c == '~' || c == '+' || c == '/' ||
                              c == '=';
                     });
  if (!valid) {
    return absl::UnauthenticatedError(
        "the bearer token has characters or a length no token has: paste it again from the "
        "control plane's operator-token or viewer-token file");
  }
  return std::string(h);
}

// "127.0.0.1:8080" / "[::1]:8080" → host and port.
absl::Status SplitHostPort(const std::string& addr, std::string* host, int* port) {
  size_t colon = addr.rfind(':');
  if (colon == std::string::npos || !absl::SimpleAtoi(addr.substr(colon + 1), port) ||
      *port < 0 || *port > 65535) {
    return absl::InvalidArgumentError(absl::StrCat(
        "--http ", addr, ": expected HOST:PORT, e.g. 127.0.0.1:8080 or 0.0.0.0:8080"));
  }
  *host = addr.substr(0, colon);
  if (host->size() >= 2 && host->front() == '[' && host->back() == ']') {
    *host = host->substr(1, host->size() - 2);
  }
  if (host->empty()) *host = "0.0.0.0";
  return absl::OkStatus();
}

// The value of `key` in a query string ("a=1&scope=fleet"), percent-decoded; "" if absent.
std::string QueryParam(absl::string_view query, absl::string_view key) {
  for (absl::string_view pair : absl::StrSplit(query, '&')) {
    const size_t eq = pair.find('=');
    if (pair.substr(0, eq) != key) continue;
    if (eq == absl::string_view::npos) return "";
    std::string out;
    absl::string_view v = pair.substr(eq + 1);
    for (size_t i = 0; i < v.size(); ++i) {
      int hi, lo;
      auto hex = [](char c) {
        return absl::ascii_isxdigit(static_cast<unsigned char>(c))
                   ? (absl::ascii_isdigit(static_cast<unsigned char>(c))
                          ? c - '0'
                          : absl::ascii_tolower(static_cast<unsigned char>(c)) - 'a' + 10)
                   : -1;
      };
      if (v[i] == '%' && i + 2 < v.size() && (hi = hex(v[i + 1])) >= 0 &&
          (lo = hex(v[i + 2])) >= 0) {
        out.push_back(static_cast<char>(hi * 16 + lo));
        i += 2;
      } else {
        out.push_back(v[i] == '+' ? ' ' : v[i]);
      }
    }
    return out;
  }
  return "";
}

Response MakeResponse(unsigned version, int status, std::string_view content_type,
                      std::string body) {
  Response res{static_cast<http::status>(status), version};
  res.set("X-Content-Type-Options", "nosniff");
  res.set("Referrer-Policy", "no-referrer");
  res.set("X-Frame-Options", "DENY");
  res.set(http::field::cache_control, "no-cache");
  res.set(http::field::content_type, beast::string_view(content_type.data(), content_type.size()));
  res.body() = std::move(body);
  return res;
}

Response JsonResponse(unsigned version, int status, std::string body) {
  return MakeResponse(version, status, "application/json", std::move(body));
}

Response ErrorResponse(unsigned version, const absl::Status& s) {
  return JsonResponse(version, HttpStatusFor(s.code()), ErrorJson(s));
}

Response TextResponse(unsigned version, int status, std::string body) {
  return MakeResponse(version, status, "text/plain", std::move(body));
}

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

}  // namespace

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
  friend class HttpServer::AsioListener;
  const std::string ip_, peer_;
  // Guarded by AsioListener::conn_mu_.
  bool counted_ = false;
  bool idle_ = false;
  std::list<std::weak_ptr<SessionBase>>::iterator idle_it_;
};

class HttpServer::AsioListener {
 public:
  AsioListener(HttpServerOptions options, std::shared_ptr<grpc::Channel> channel,
               HttpHandlers handlers)
      : options(std::move(options)),
        handlers(std::move(handlers)),
        gateway(std::move(channel)),
        log(herd::Logger("http")),
        warn(log),
        workers(this->options.workers, this->options.max_queued),
        stream_threads(this->options.max_streams, this->options.max_streams) {}

  ~AsioListener() { Stop(); }

  absl::StatusOr<std::string> Start();
  void Stop();
  HttpStats stats();

  // --- connections ---------------------------------------------------------------------
  // Counts a new connection in, closing the oldest idle one (of its IP, or of all) when a
  // limit is reached; false (counted, logged) when none can be closed.
  bool Admit(SessionBase& s) {
    std::shared_ptr<SessionBase> victim;
    {
      absl::MutexLock l(&conn_mu_);
      auto it = per_ip_.find(s.ip());
      const size_t from_ip = it == per_ip_.end() ? 0 : it->second;
      if (from_ip >= options.max_connections_per_ip) {
        victim = TakeOldestIdle(s.ip());
        if (!victim) {
          ++refused_ip_limit_;
          warn.Warn("http_connection_refused",
                    absl::StrCat("reason=ip_limit remote=", s.peer(),
                                 " max_per_ip=", options.max_connections_per_ip,
                                 " hint=\"raise --http-max-connections-per-ip if many clients "
                                 "share this address (a proxy)\""));
          return false;
        }
      } else if (open_ >= options.max_connections) {
        victim = TakeOldestIdle("");
        if (!victim) {
          ++refused_total_limit_;
          warn.Warn("http_connection_refused",
                    absl::StrCat("reason=total_limit remote=", s.peer(),
                                 " max=", options.max_connections,
                                 " hint=\"raise --http-max-connections\""));
          return false;
        }
      }
      if (victim) {
        ReleaseLocked(*victim);
        ++shed_idle_;
      }
      ++open_;
      ++per_ip_[s.ip()];
      s.counted_ = true;
    }
    if (victim) {
      warn.Warn("http_idle_connection_closed",
                absl::StrCat("reason=connection_limit remote=", victim->peer(),
                             " for=", s.peer()));
      victim->Abort();
    }
    return true;
  }

  void SetIdle(SessionBase& s, bool idle) {
    absl::MutexLock l(&conn_mu_);
    if (!s.counted_ || s.idle_ == idle) return;
    s.idle_ = idle;
    if (idle) {
      s.idle_it_ = idle_.insert(idle_.end(), s.weak_from_this());
    } else {
      idle_.erase(s.idle_it_);
    }
  }

  void Release(SessionBase& s) {
    absl::MutexLock l(&conn_mu_);
    ReleaseLocked(s);
  }

  // --- blocking work -------------------------------------------------------------------
  // A place for a request from `ip` on the worker pool; false (counted, logged) when the IP
  // has too many requests in progress.
  bool AcquireRequest(const std::string& ip, const std::string& peer) {
    absl::MutexLock l(&req_mu_);
    size_t& n = requests_per_ip_[ip];
    if (n >= options.max_requests_per_ip) {
      if (n == 0) requests_per_ip_.erase(ip);
      ++requests_shed_ip_limit_;
      warn.Warn("http_request_shed", absl::StrCat("reason=ip_limit remote=", peer, " max_per_ip=",
                                                  options.max_requests_per_ip));
      return false;
    }
    ++n;
    return true;
  }
  void ReleaseRequest(const std::string& ip) {
    absl::MutexLock l(&req_mu_);
    auto it = requests_per_ip_.find(ip);
    if (it != requests_per_ip_.end() && --it->second == 0) requests_per_ip_.erase(it);
  }

  // --- streams -------------------------------------------------------------------------
  // A stream slot for `token`: OK, or RESOURCE_EXHAUSTED saying which limit (counted, logged).
  absl::Status AcquireStream(const std::string& token, const std::string& peer) {
    absl::MutexLock l(&stream_mu_);
    if (streams_ >= options.max_streams) {
      ++streams_refused_total_;
      warn.Warn("http_stream_refused",
                absl::StrCat("reason=total_limit remote=", peer, " max=", options.max_streams));
      return absl::ResourceExhaustedError(
          "too many open streams on this control plane; retry later");
    }
    size_t& n = streams_per_token_[token];
    if (n >= options.max_streams_per_token) {
      ++streams_refused_token_;
      warn.Warn("http_stream_refused", absl::StrCat("reason=token_limit remote=", peer,
                                                    " max_per_token=",
                                                    options.max_streams_per_token));
      return absl::ResourceExhaustedError(absl::StrCat(
          "this token has ", n,
          " streams open, the most one token may have: close one (a dashboard tab), or use "
          "another token"));
    }
    ++n;
    ++streams_;
    return absl::OkStatus();
  }
  void ReleaseStream(const std::string& token) {
    absl::MutexLock l(&stream_mu_);
    --streams_;
    auto it = streams_per_token_.find(token);
    if (it != streams_per_token_.end() && --it->second == 0) streams_per_token_.erase(it);
  }

  // Registers a call so that Stop() cancels it; false once stopping.
  bool Track(grpc::ClientContext* ctx) {
    absl::MutexLock l(&calls_mu_);
    if (stopping_) return false;
    calls_.insert(ctx);
    return true;
  }
  void Untrack(grpc::ClientContext* ctx) {
    absl::MutexLock l(&calls_mu_);
    calls_.erase(ctx);
  }
  bool stopping() {
    absl::MutexLock l(&calls_mu_);
    return stopping_;
  }

  const HttpServerOptions options;
  const HttpHandlers handlers;
  JsonGateway gateway;
  std::shared_ptr<spdlog::logger> log;
  RateLimitedLog warn;

  std::atomic<uint64_t> timed_out{0}, tls_handshake_failed{0}, requests_shed_queue_full{0},
      streams_ended_stalled{0}, streams_ended_queue_full{0};

  WorkerPool workers;
  WorkerPool stream_threads;

  // /readyz answers from here, on the io thread, without waiting: the check itself reads the
  // store, which can block behind a slow disk's transaction, so it runs on a worker at most
  // once a second and the answer is the last result.
  absl::Status Readiness() {
    const auto now = std::chrono::steady_clock::now();
    absl::MutexLock l(&ready_mu_);
    if (!ready_refreshing_ && now - ready_checked_ >= std::chrono::seconds(1)) {
      ready_refreshing_ = true;
      const bool submitted = workers.Submit([this] {
        absl::Status s = handlers.ready ? handlers.ready() : absl::OkStatus();
        absl::MutexLock l(&ready_mu_);
        ready_ = s;
        ready_checked_ = std::chrono::steady_clock::now();
        ready_refreshing_ = false;
      });
      if (!submitted) ready_refreshing_ = false;  // busy: the last answer stands
    }
    return ready_;
  }
  // The first answer, before serving.
  void CheckReadyNow() {
    absl::Status s = handlers.ready ? handlers.ready() : absl::OkStatus();
    absl::MutexLock l(&ready_mu_);
    ready_ = s;
    ready_checked_ = std::chrono::steady_clock::now();
  }

 private:
  absl::Mutex ready_mu_;
  absl::Status ready_ ABSL_GUARDED_BY(ready_mu_);
  std::chrono::steady_clock::time_point ready_checked_ ABSL_GUARDED_BY(ready_mu_);
  bool ready_refreshing_ ABSL_GUARDED_BY(ready_mu_) = false;

  void Accept();
  void OnAccept(beast::error_code ec, tcp::socket socket);

  std::shared_ptr<SessionBase> TakeOldestIdle(const std::string& ip)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(conn_mu_) {
    for (auto it = idle_.begin(); it != idle_.end();) {
      std::shared_ptr<SessionBase> s = it->lock();
      if (!s) {  // being destroyed: its Release removes it
        ++it;
        continue;
      }
      if (ip.empty() || s->ip() == ip) {
        s->idle_ = false;
        idle_.erase(it);
        return s;
      }
      ++it;
    }
    return nullptr;
  }
  void ReleaseLocked(SessionBase& s) ABSL_EXCLUSIVE_LOCKS_REQUIRED(conn_mu_) {
    if (s.idle_) {
      idle_.erase(s.idle_it_);
      s.idle_ = false;
    }
    if (!s.counted_) return;
    s.counted_ = false;
    --open_;
    auto it = per_ip_.find(s.ip());
    if (it != per_ip_.end() && --it->second == 0) per_ip_.erase(it);
  }

  absl::Mutex conn_mu_;
  size_t open_ ABSL_GUARDED_BY(conn_mu_) = 0;
  std::unordered_map<std::string, size_t> per_ip_ ABSL_GUARDED_BY(conn_mu_);
  // Connections with no request in progress, oldest first: the first to close at a limit.
  std::list<std::weak_ptr<SessionBase>> idle_ ABSL_GUARDED_BY(conn_mu_);
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
  std::optional<ssl::context> ssl_ctx_;
  // Declared after everything its handlers use: destroying it destroys the connections.
  asio::io_context ioc_;
  std::optional<tcp::acceptor> acceptor_;
  std::optional<asio::steady_timer> accept_retry_;
  std::vector<std::thread> io_threads_;
};

namespace {

// One connection: TLS handshake (Stream = ssl_stream) or not, then requests one after the
// other; everything it does runs on its strand.
template <class Stream>
class Session : public SessionBase {
 public:
  using Listener = HttpServer::AsioListener;
  static constexpr bool kTls = !std::is_same_v<Stream, beast::tcp_stream>;

  template <class... Args>
  Session(Listener& l, std::string ip, std::string peer, Args&&... args)
      : SessionBase(std::move(ip), std::move(peer)), l_(l), stream_(std::forward<Args>(args)...) {}

  ~Session() override { l_.Release(*this); }

  void Run() {
    asio::dispatch(stream_.get_executor(), [self = Self()] { self->Begin(); });
  }

  void Abort() override {
    asio::post(stream_.get_executor(), [self = Self()] { self->Close(); });
  }

 private:
  std::shared_ptr<Session> Self() {
    return std::static_pointer_cast<Session>(shared_from_this());
  }
  beast::tcp_stream& Tcp() { return beast::get_lowest_layer(stream_); }

  void Begin() {
    l_.SetIdle(*this, true);
    if constexpr (kTls) {
      Tcp().expires_after(Chrono(l_.options.header_timeout));
      stream_.async_handshake(ssl::stream_base::server,
                              [self = Self()](beast::error_code ec) {
                                if (ec) return self->Failed(ec, "tls_handshake");
                                self->ReadRequest();
                              });
    } else {
      ReadRequest();
    }
  }

  // Closes on a failed read or handshake, counting and logging what a client may be doing
  // on purpose (holding a connection, a failed certificate check).
  void Failed(beast::error_code ec, const char* during) {
    if (ec == beast::error::timeout) {
      ++l_.timed_out;
      l_.warn.Warn("http_connection_timed_out",
                   absl::StrCat("during=", during, " remote=", peer(), " hint=\"a client must "
                                "send its request within --http-header-timeout\""));
    } else if (absl::string_view(during) == "tls_handshake" &&
               ec != asio::error::operation_aborted) {
      ++l_.tls_handshake_failed;
      l_.warn.Warn("http_tls_handshake_failed",
                   absl::StrCat("remote=", peer(), " error=\"", ec.message(), "\""));
    }
    Close();
  }

  void ReadRequest() {
    if (closed_) return;
    l_.SetIdle(*this, true);
    parser_.emplace();
    parser_->body_limit(kMaxBody);
    parser_->header_limit(kMaxHeader);
    if (first_ || buffer_.size() > 0) {
      first_ = false;
      return ReadHeader();
    }
    // Between requests: wait for the next one's first byte as long as a keep-alive lasts,
    // then header_timeout for the rest.
    Tcp().expires_after(Chrono(l_.options.idle_timeout));
    stream_.async_read_some(buffer_.prepare(1024),
                            [self = Self()](beast::error_code ec, size_t n) {
                              if (ec) return self->Close();  // idle: a keep-alive ended
                              self->buffer_.commit(n);
                              self->ReadHeader();
                            });
  }

  void ReadHeader() {
    Tcp().expires_after(Chrono(l_.options.header_timeout));
    http::async_read_header(stream_, buffer_, *parser_,
                            [self = Self()](beast::error_code ec, size_t) { self->OnHeader(ec); });
  }

  void OnHeader(beast::error_code ec) {
    if (ec) return OnReadError(ec);
    if (parser_->is_done()) return OnRequest({});
    const auto expect = parser_->get()[http::field::expect];
    if (beast::iequals(expect, "100-continue")) {
      static constexpr char kContinue[] = "HTTP/1.1 100 Continue\r\n\r\n";
      asio::async_write(stream_, asio::buffer(kContinue, sizeof kContinue - 1),
                        [self = Self()](beast::error_code ec, size_t) {
                          if (ec) return self->Close();
                          self->ReadBody();
                        });
      return;
    }
    ReadBody();
  }

  void ReadBody() {
    http::async_read(stream_, buffer_, *parser_,
                     [self = Self()](beast::error_code ec, size_t) { self->OnRequest(ec); });
  }

  void OnReadError(beast::error_code ec) {
    if (ec == http::error::end_of_stream || ec == asio::error::eof ||
        ec == asio::error::operation_aborted || ec == asio::error::connection_reset) {
      return Close();
    }
    if (ec == beast::error::timeout) return Failed(ec, "request");
    keep_alive_ = false;
    version_ = 11;
    if (ec == http::error::body_limit) {
      return Write(ErrorResponse(version_, absl::InvalidArgumentError(
                                               "the request body is over 1 MiB")),
                   413);
    }
    if (ec == http::error::header_limit) {
      return Write(TextResponse(version_, 431, "HTTP 431: request headers over 16 KiB\n"));
    }
    l_.log->debug("event=bad_request remote={} error=\"{}\"", peer(), ec.message());
    if (ec == http::error::bad_field || ec == http::error::bad_value) {
      return Write(TextResponse(
          version_, 400,
          absl::StrCat("HTTP 400: malformed request: ", ec.message(),
                       " (a header name or value holds bytes HTTP does not allow, such as "
                       "control characters)\n")));
    }
    Write(TextResponse(version_, 400,
                       absl::StrCat("HTTP 400: malformed request: ", ec.message(),
                                    " (API calls are POST with a JSON body and a "
                                    "Content-Length)\n")));
  }

  void OnRequest(beast::error_code ec) {
    if (ec) return OnReadError(ec);
    l_.SetIdle(*this, false);
    Tcp().expires_never();
    Request req = parser_->release();
    parser_.reset();
    version_ = req.version();
    keep_alive_ = req.keep_alive();
    try {
      Route(std::move(req));
    } catch (const std::exception& e) {
      l_.log->error("event=handler_exception remote={} error=\"{}\"", peer(), e.what());
      Write(ErrorResponse(version_, absl::InternalError("the request could not be handled")));
    }
  }

  void Route(Request req) {
    const absl::string_view target(req.target().data(), req.target().size());
    const size_t q = target.find('?');
    const absl::string_view path = target.substr(0, q);
    const absl::string_view query =
        q == absl::string_view::npos ? absl::string_view() : target.substr(q + 1);
    const bool get = req.method() == http::verb::get;
    l_.log->debug("event=request method={} path={} remote={}", std::string(req.method_string()),
              std::string(path), peer());

    if (absl::StartsWith(path, "/api/v1/")) return Api(std::move(req), path.substr(8));
    if (!get) return Write(TextResponse(version_, 404, "not found\n"));
    if (path == "/healthz") return Write(TextResponse(version_, 200, "ok\n"));
    if (path == "/readyz") {
      absl::Status s = l_.stopping() ? absl::UnavailableError("stopping") : l_.Readiness();
      if (!s.ok()) l_.log->warn("event=not_ready reason=\"{}\"", s.message());
      // The reason is in the log, not in this unauthenticated answer.
      return Write(TextResponse(version_, s.ok() ? 200 : 503, s.ok() ? "ready\n" : "not ready\n"));
    }
    if (path == "/metrics") return Metrics(std::move(req), std::string(query));
    if (path == "/") return Asset("index.html");
    absl::string_view name = path;
    if (absl::ConsumePrefix(&name, "/assets/") && !name.empty() &&
        std::all_of(name.begin(), name.end(), [](char c) {
          return absl::ascii_isalnum(static_cast<unsigned char>(c)) || c == '.' || c == '_' ||
                 c == '-';
        })) {
      return Asset(std::string_view(name.data(), name.size()));
    }
    Write(TextResponse(version_, 404, "not found\n"));
  }

  void Asset(std::string_view name) {
    for (const auto& a : WebAssets()) {
      if (a.name == name) {
        Response res = MakeResponse(version_, 200, a.content_type, std::string(a.body));
        if (name == "index.html") res.set("Content-Security-Policy", kCsp);
        return Write(std::move(res));
      }
    }
    Write(TextResponse(version_, 404, "not found\n"));
  }

  void Metrics(Request req, std::string query) {
    auto bearer = Bearer(req);
    Offload([&l = l_, version = version_, bearer = std::move(bearer),
             query = std::move(query)]() -> Response {
      if (!l.options.metrics_public) {
        absl::Status s = bearer.ok() ? l.handlers.authorize_read(*bearer) : bearer.status();
        if (!s.ok()) {
          Response res = TextResponse(
              version, HttpStatusFor(s.code()),
              absl::StrCat(s.message(),
                           " (send Authorization: Bearer <viewer token>, or start the control "
                           "plane with --metrics-public)\n"));
          res.set(http::field::www_authenticate, "Bearer");
          return res;
        }
      }
      const std::string scope = QueryParam(query, "scope");
      if (!scope.empty() && scope != "fleet" && scope != "controlplane") {
        return TextResponse(version, 400,
                            absl::StrCat("unknown scope \"", scope.substr(0, 64),
                                         "\": give scope=fleet (the default) or "
                                         "scope=controlplane\n"));
      }
      return MakeResponse(version, 200, "text/plain; version=0.0.4; charset=utf-8",
                          l.handlers.metrics(scope != "controlplane"));
    });
  }

  void Api(Request req, absl::string_view name) {
    if (req.method() != http::verb::post) {
      return Write(ErrorResponse(
          version_, absl::InvalidArgumentError("the API takes POST with a JSON body")));
    }
    const bool plain_name = !name.empty() && std::all_of(name.begin(), name.end(), [](char c) {
      return absl::ascii_isalpha(static_cast<unsigned char>(c));
    });
    const auto* method = plain_name ? l_.gateway.Find(name) : nullptr;
    if (method == nullptr || method->client_streaming()) {
      return Write(ErrorResponse(
          version_, absl::NotFoundError(absl::StrCat("no method ", name.substr(0, 64),
                                                     " in the Fleet API: see "
                                                     "proto/herd/v1/fleet.proto"))));
    }
    auto bearer = Bearer(req);
    if (!bearer.ok()) return Write(ErrorResponse(version_, bearer.status()));
    std::string authorization = bearer->empty() ? "" : "Bearer " + *bearer;
    if (method->server_streaming()) {
      return StartStream(method, std::move(req.body()), std::move(authorization), *bearer);
    }
    Offload([&l = l_, version = version_, method, body = std::move(req.body()),
             authorization = std::move(authorization)]() -> Response {
      grpc::ClientContext ctx;
      if (!l.Track(&ctx)) {
        return ErrorResponse(version, absl::UnavailableError("shutting down"));
      }
      auto reply = l.gateway.Unary(method, body, authorization, ctx, kUnaryDeadline);
      l.Untrack(&ctx);
      return JsonResponse(version, reply.http_status, std::move(reply.body));
    });
  }

  // Runs `work` on the worker pool and writes what it returns; 429 / 503 when the pool or
  // this IP's share of it is full.
  void Offload(std::function<Response()> work) {
    if (!l_.AcquireRequest(ip(), peer())) {
      return Write(ErrorResponse(
          version_, absl::ResourceExhaustedError(
                        "too many requests in progress from your address; wait for them to "
                        "finish, then retry")));
    }
    auto job = [self = Self(), work = std::move(work)] {
      auto res = std::make_shared<Response>();
      try {
        *res = work();
      } catch (const std::exception& e) {
        self->l_.log->error("event=handler_exception remote={} error=\"{}\"", self->peer(),
                            e.what());
        *res = ErrorResponse(self->version_,
                             absl::InternalError("the request could not be handled"));
      }
      self->l_.ReleaseRequest(self->ip());
      asio::post(self->stream_.get_executor(), [self, res] { self->Write(std::move(*res)); });
    };
    if (!l_.workers.Submit(std::move(job))) {
      l_.ReleaseRequest(ip());
      ++l_.requests_shed_queue_full;
      l_.warn.Warn("http_request_shed",
                   absl::StrCat("reason=queue_full remote=", peer(), " workers=",
                                l_.options.workers, " queued=", l_.options.max_queued));
      Write(ErrorResponse(version_, absl::UnavailableError(
                                        "the control plane is busy (every HTTP worker is taken "
                                        "and the queue is full); retry shortly")));
    }
  }

  void Write(Response res, int status_override = 0) {
    if (closed_) return;
    if (status_override != 0) res.result(static_cast<http::status>(status_override));
    res.keep_alive(keep_alive_ && !l_.stopping());
    res.prepare_payload();
    res_ = std::make_shared<Response>(std::move(res));
    // A reader that takes nothing for this long is not reading.
    Tcp().expires_after(Chrono(l_.options.stream_stall_timeout));
    http::async_write(stream_, *res_, [self = Self()](beast::error_code ec, size_t) {
      const bool keep = self->res_ && self->res_->keep_alive();
      self->res_.reset();
      if (ec || !keep) return self->Close();
      self->ReadRequest();
    });
  }

  // --- streams -------------------------------------------------------------------------
  void StartStream(const google::protobuf::MethodDescriptor* method, std::string body,
                   std::string authorization, const std::string& token) {
    if (absl::Status s = l_.AcquireStream(token, peer()); !s.ok()) {
      return Write(ErrorResponse(version_, s));
    }
    state_ = std::make_shared<StreamState>();
    hdr_.emplace(http::status::ok, version_);
    hdr_->set("X-Content-Type-Options", "nosniff");
    hdr_->set("Referrer-Policy", "no-referrer");
    hdr_->set("X-Frame-Options", "DENY");
    hdr_->set(http::field::cache_control, "no-cache");
    hdr_->set(http::field::content_type, "application/x-ndjson");
    hdr_->set("X-Accel-Buffering", "no");
    hdr_->keep_alive(false);
    hdr_->chunked(true);
    sr_.emplace(*hdr_);
    writing_ = true;
    Tcp().expires_after(Chrono(l_.options.stream_stall_timeout));
    http::async_write_header(stream_, *sr_, [self = Self()](beast::error_code ec, size_t) {
      self->writing_ = false;
      if (ec) return self->Close();
      self->Flush();
    });
    auto run = [self = Self(), state = state_, method, body = std::move(body),
                authorization = std::move(authorization), token] {
      Listener& l = self->l_;
      grpc::ClientContext ctx;
      const bool tracked = l.Track(&ctx);
      {
        absl::MutexLock lock(&state->mu);
        if (state->closed || !tracked) ctx.TryCancel();
        state->ctx = &ctx;
      }
      absl::Status s = absl::UnavailableError("shutting down");
      if (tracked) {
        s = l.gateway.Stream(method, body, authorization, ctx, l.options.heartbeat,
                             [&](const std::string& line) { return self->Push(line); });
        l.Untrack(&ctx);
      }
      l.log->debug("event=stream_end method={} remote={} status=\"{}\"", method->name(),
                   self->peer(), s.ToString());
      {
        absl::MutexLock lock(&state->mu);
        state->ctx = nullptr;
        state->done = true;
      }
      l.ReleaseStream(token);
      asio::post(self->stream_.get_executor(), [self] { self->Flush(); });
    };
    if (!l_.stream_threads.Submit(std::move(run))) {
      // Only when stopping: a slot always has its thread.
      l_.ReleaseStream(token);
      Close();
    }
  }

  // From the stream's thread: queues a line; false ends the call (connection gone, or its
  // reader so far behind that the queue is full).
  bool Push(const std::string& line) {
    bool ended = false;
    {
      absl::MutexLock lock(&state_->mu);
      if (state_->closed) return false;
      if (state_->bytes + line.size() > l_.options.stream_queue_bytes) {
        state_->closed = true;
        ended = true;
        ++l_.streams_ended_queue_full;
        l_.warn.Warn("http_stream_ended",
                     absl::StrCat("reason=queue_full remote=", peer(), " queued_bytes=",
                                  state_->bytes, " max=", l_.options.stream_queue_bytes,
                                  " hint=\"the client is not reading\""));
      } else {
        state_->queue.push_back(line);
        state_->bytes += line.size();
        if (std::exchange(state_->flush_posted, true)) return true;
      }
    }
    // Flush closes the connection if the stream was ended here.
    asio::post(stream_.get_executor(), [self = Self()] { self->Flush(); });
    return !ended;
  }

  void Flush() {
    if (closed_ || writing_ || !state_) return;
    std::string out;
    bool done, closed;
    {
      absl::MutexLock lock(&state_->mu);
      state_->flush_posted = false;
      while (!state_->queue.empty() && out.size() < kChunk) {
        out += state_->queue.front();
        state_->queue.pop_front();
      }
      done = state_->done;
      closed = state_->closed;
    }
    if (closed) return Close();
    if (out.empty()) {
      if (!done) return;
      writing_ = true;
      Tcp().expires_after(Chrono(l_.options.stream_stall_timeout));
      asio::async_write(stream_, http::make_chunk_last(),
                        [self = Self()](beast::error_code, size_t) { self->Close(); });
      return;
    }
    writing_ = true;
    chunk_ = std::move(out);
    Tcp().expires_after(Chrono(l_.options.stream_stall_timeout));
    asio::async_write(stream_, http::make_chunk(asio::buffer(chunk_)),
                      [self = Self()](beast::error_code ec, size_t) {
                        self->writing_ = false;
                        if (ec) {
                          if (ec == beast::error::timeout) {
                            ++self->l_.streams_ended_stalled;
                            self->l_.warn.Warn(
                                "http_stream_ended",
                                absl::StrCat("reason=stalled remote=", self->peer(),
                                             " stalled_for_s=",
                                             absl::ToDoubleSeconds(
                                                 self->l_.options.stream_stall_timeout),
                                             " hint=\"the client is not reading\""));
                          }
                          return self->Close();
                        }
                        {
                          absl::MutexLock lock(&self->state_->mu);
                          self->state_->bytes -= self->chunk_.size();
                        }
                        self->chunk_.clear();
                        self->Flush();
                      });
  }

  void Close() {
    if (closed_) return;
    closed_ = true;
    if (state_) {
      absl::MutexLock lock(&state_->mu);
      state_->closed = true;
      state_->queue.clear();
      if (state_->ctx != nullptr) state_->ctx->TryCancel();
    }
    beast::error_code ec;
    Tcp().socket().shutdown(tcp::socket::shutdown_both, ec);
    Tcp().close();
    l_.Release(*this);
  }

  Listener& l_;
  Stream stream_;
  beast::flat_buffer buffer_;
  std::optional<http::request_parser<http::string_body>> parser_;
  std::shared_ptr<Response> res_;
  bool first_ = true;
  bool closed_ = false;
  bool keep_alive_ = false;
  unsigned version_ = 11;
  // While streaming.
  std::shared_ptr<StreamState> state_;
  std::optional<http::response<http::empty_body>> hdr_;
  std::optional<http::response_serializer<http::empty_body>> sr_;
  bool writing_ = false;
  std::string chunk_;
};

}  // namespace

absl::StatusOr<std::string> HttpServer::AsioListener::Start() {
  std::string host;
  int port = 0;
  if (auto s = SplitHostPort(options.listen, &host, &port); !s.ok()) return s;
  const bool tls = !options.tls_cert.empty() && !options.tls_key.empty();
  if (tls) {
    ssl_ctx_.emplace(ssl::context::tls_server);
    ssl_ctx_->set_options(ssl::context::default_workarounds | ssl::context::no_sslv2 |
                          ssl::context::no_sslv3 | ssl::context::no_tlsv1 |
                          ssl::context::no_tlsv1_1);
    beast::error_code ec;
    ssl_ctx_->use_certificate_chain_file(options.tls_cert, ec);
    if (!ec) ssl_ctx_->use_private_key_file(options.tls_key, ssl::context::pem, ec);
    if (ec) {
      return absl::InvalidArgumentError(absl::StrCat(
          "cannot serve HTTPS with --tls-cert / --tls-key (", ec.message(),
          "): check that both are readable PEM files and that the key is the certificate's"));
    }
    if (!options.client_ca.empty()) {
      ssl_ctx_->load_verify_file(options.client_ca, ec);
      if (ec) {
        return absl::InvalidArgumentError(absl::StrCat(
            "cannot read --client-ca ", options.client_ca, " for HTTPS (", ec.message(),
            "): give a readable PEM CA bundle"));
      }
      ssl_ctx_->set_verify_mode(ssl::verify_peer | ssl::verify_fail_if_no_peer_cert);
      // Tells clients which CAs we accept (browsers pick a certificate by it).
      if (STACK_OF(X509_NAME)* names = SSL_load_client_CA_file(options.client_ca.c_str())) {
        SSL_CTX_set_client_CA_list(ssl_ctx_->native_handle(), names);
      }
      static const unsigned char kSessionContext[] = "herd-http";
      SSL_CTX_set_session_id_context(ssl_ctx_->native_handle(), kSessionContext,
                                     sizeof kSessionContext - 1);
    }
  }
  beast::error_code ec;
  tcp::resolver resolver(ioc_);
  auto endpoints = resolver.resolve(host, std::to_string(port),
                                    tcp::resolver::passive | tcp::resolver::numeric_service, ec);
  if (ec || endpoints.empty()) {
    return absl::InvalidArgumentError(absl::StrCat("--http ", options.listen, ": cannot resolve ",
                                                   host, " (", ec.message(), ")"));
  }
  const tcp::endpoint endpoint = endpoints.begin()->endpoint();
  acceptor_.emplace(asio::make_strand(ioc_));
  acceptor_->open(endpoint.protocol(), ec);
  if (!ec) acceptor_->set_option(asio::socket_base::reuse_address(true), ec);
  if (!ec) acceptor_->bind(endpoint, ec);
  if (!ec) acceptor_->listen(asio::socket_base::max_listen_connections, ec);
  if (ec) {
    acceptor_.reset();
    return absl::UnavailableError(absl::StrCat("cannot listen on ", options.listen,
                                               " for HTTP (", ec.message(),
                                               "): is the port in use? choose another --http "
                                               "address"));
  }
  const int bound = acceptor_->local_endpoint(ec).port();
  accept_retry_.emplace(acceptor_->get_executor());
  Accept();
  started_ = true;
  for (size_t i = 0; i < std::max<size_t>(1, options.io_threads); ++i) {
    io_threads_.emplace_back([this] {
      for (;;) {
        try {
          ioc_.run();
          return;
        } catch (const std::exception& e) {
          log->error("event=io_exception error=\"{}\"", e.what());
        }
      }
    });
  }
  std::string address = absl::StrCat(absl::StrContains(host, ':') ? "[" + host + "]" : host,
                                     ":", bound);
  log->info(
      "event=http_ready listen={} tls={} client_cert_required={} metrics_public={} "
      "max_connections={} max_connections_per_ip={} header_timeout_s={} workers={} "
      "max_streams={} max_streams_per_token={}",
      address, tls, tls && !options.client_ca.empty(), options.metrics_public,
      options.max_connections, options.max_connections_per_ip,
      absl::ToDoubleSeconds(options.header_timeout), options.workers, options.max_streams,
      options.max_streams_per_token);
  return address;
}

void HttpServer::AsioListener::Accept() {
  acceptor_->async_accept(asio::make_strand(ioc_),
                          [this](beast::error_code ec, tcp::socket socket) {
                            OnAccept(ec, std::move(socket));
                          });
}

void HttpServer::AsioListener::OnAccept(beast::error_code ec, tcp::socket socket) {
  if (ec == asio::error::operation_aborted || !acceptor_->is_open()) return;
  if (ec) {
    warn.Warn("http_accept_failed",
              absl::StrCat("error=\"", ec.message(),
                           "\" hint=\"out of file descriptors? raise the limit (ulimit -n) or "
                           "lower --http-max-connections\""));
    // Out of descriptors: the pending connection stays in the backlog; try again shortly
    // rather than spinning.
    accept_retry_->expires_after(std::chrono::milliseconds(100));
    accept_retry_->async_wait([this](beast::error_code e) {
      if (!e) Accept();
    });
    return;
  }
  beast::error_code peer_ec;
  const tcp::endpoint remote = socket.remote_endpoint(peer_ec);
  if (!peer_ec) {
    socket.set_option(tcp::no_delay(true), peer_ec);
    const std::string ip = remote.address().to_string();
    const std::string peer = remote.address().is_v6()
                                 ? absl::StrCat("[", ip, "]:", remote.port())
                                 : absl::StrCat(ip, ":", remote.port());
    // Whatever one connection throws (an allocation, an SSL object that cannot be made), the
    // listener goes on accepting the next.
    try {
      if (ssl_ctx_) {
        auto s = std::make_shared<Session<beast::ssl_stream<beast::tcp_stream>>>(
            *this, ip, peer, std::move(socket), *ssl_ctx_);
        if (Admit(*s)) s->Run();
      } else {
        auto s = std::make_shared<Session<beast::tcp_stream>>(*this, ip, peer, std::move(socket));
        if (Admit(*s)) s->Run();
      }
    } catch (const std::exception& e) {
      warn.Warn("http_accept_failed", absl::StrCat("remote=", peer, " error=\"", e.what(), "\""));
    }
  }
  Accept();
}

void HttpServer::AsioListener::Stop() {
  {
    absl::MutexLock l(&calls_mu_);
    if (stopping_) return;
    stopping_ = true;
    for (auto* ctx : calls_) ctx->TryCancel();
  }
  if (!started_) return;
  asio::post(acceptor_->get_executor(), [this] {
    beast::error_code ec;
    acceptor_->close(ec);
    accept_retry_->cancel();
  });
  // Their calls are cancelled: they return promptly.
  stream_threads.Stop();
  workers.Stop();
  ioc_.stop();
  for (auto& t : io_threads_) t.join();
  io_threads_.clear();
  log->info("event=http_stopped");
}

HttpStats HttpServer::AsioListener::stats() {
  HttpStats s;
  {
    absl::MutexLock l(&conn_mu_);
    s.connections = open_;
    s.refused_total_limit = refused_total_limit_;
    s.refused_ip_limit = refused_ip_limit_;
    s.shed_idle = shed_idle_;
  }
  {
    absl::MutexLock l(&req_mu_);
    s.requests_shed_ip_limit = requests_shed_ip_limit_;
  }
  {
    absl::MutexLock l(&stream_mu_);
    s.streams = streams_;
    s.streams_refused_total = streams_refused_total_;
    s.streams_refused_token = streams_refused_token_;
  }
  s.timed_out = timed_out;
  s.tls_handshake_failed = tls_handshake_failed;
  s.requests_shed_queue_full = requests_shed_queue_full;
  s.streams_ended_stalled = streams_ended_stalled;
  s.streams_ended_queue_full = streams_ended_queue_full;
  return s;
}

HttpServer::HttpServer(HttpServerOptions options, std::shared_ptr<grpc::Channel> fleet_channel,
                       HttpHandlers handlers)
    : listener_(std::make_unique<AsioListener>(std::move(options), std::move(fleet_channel),
                                               std::move(handlers))) {}

HttpServer::~HttpServer() { Stop(); }

absl::StatusOr<std::string> HttpServer::Start() {
  listener_->CheckReadyNow();
  return listener_->Start();
}

void HttpServer::Stop() { listener_->Stop(); }

HttpStats HttpServer::stats() const { return listener_->stats(); }

}  // namespace herd::controlplane
