// The HTTP listener's limits: connections in total and per client IP (closing the oldest
// idle one to make room), requests in progress per IP, stream slots in total and per token,
// the calls Stop() cancels, and the cached /readyz answer. Each refusal is counted (stats())
// and logged, rate-limited, with the peer.
#include <chrono>

#include "absl/strings/str_cat.h"
#include "controlplane/http/asio_listener.h"

namespace herd::controlplane {

// Counts a new connection in, closing the oldest idle one (of its IP, or of all) when a
// limit is reached; false (counted, logged) when none can be closed.
bool HttpServer::AsioListener::Admit(httpd::SessionBase& s) {
  std::shared_ptr<httpd::SessionBase> victim;
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

void HttpServer::AsioListener::SetIdle(httpd::SessionBase& s, bool idle) {
  absl::MutexLock l(&conn_mu_);
  if (!s.counted_ || s.idle_ == idle) return;
  s.idle_ = idle;
  if (idle) {
    s.idle_it_ = idle_.insert(idle_.end(), s.weak_from_this());
  } else {
    idle_.erase(s.idle_it_);
  }
}

void HttpServer::AsioListener::Release(httpd::SessionBase& s) {
  absl::MutexLock l(&conn_mu_);
  ReleaseLocked(s);
}

// A place for a request from `ip` on the worker pool; false (counted, logged) when the IP
// has too many requests in progress.
bool HttpServer::AsioListener::AcquireRequest(const std::string& ip, const std::string& peer) {
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
void HttpServer::AsioListener::ReleaseRequest(const std::string& ip) {
  absl::MutexLock l(&req_mu_);
  auto it = requests_per_ip_.find(ip);
  if (it != requests_per_ip_.end() && --it->second == 0) requests_per_ip_.erase(it);
}

// A stream slot for `token`: OK, or RESOURCE_EXHAUSTED saying which limit (counted, logged).
absl::Status HttpServer::AsioListener::AcquireStream(const std::string& token,
                                                   const std::string& peer) {
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
void HttpServer::AsioListener::ReleaseStream(const std::string& token) {
  absl::MutexLock l(&stream_mu_);
  --streams_;
  auto it = streams_per_token_.find(token);
  if (it != streams_per_token_.end() && --it->second == 0) streams_per_token_.erase(it);
}

// Registers a call so that Stop() cancels it; false once stopping.
bool HttpServer::AsioListener::Track(grpc::ClientContext* ctx) {
  absl::MutexLock l(&calls_mu_);
  if (stopping_) return false;
  calls_.insert(ctx);
  return true;
}
void HttpServer::AsioListener::Untrack(grpc::ClientContext* ctx) {
  absl::MutexLock l(&calls_mu_);
  calls_.erase(ctx);
}
bool HttpServer::AsioListener::stopping() {
  absl::MutexLock l(&calls_mu_);
  return stopping_;
}

// /readyz answers from here, on the io thread, without waiting: the check itself reads the
// store, which can block behind a slow disk's transaction, so it runs on a worker at most
// once a second and the answer is the last result.
absl::Status HttpServer::AsioListener::Readiness() {
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
void HttpServer::AsioListener::CheckReadyNow() {
  absl::Status s = handlers.ready ? handlers.ready() : absl::OkStatus();
  absl::MutexLock l(&ready_mu_);
  ready_ = s;
  ready_checked_ = std::chrono::steady_clock::now();
}

std::shared_ptr<httpd::SessionBase> HttpServer::AsioListener::TakeOldestIdle(
    const std::string& ip) {
  for (auto it = idle_.begin(); it != idle_.end();) {
    std::shared_ptr<httpd::SessionBase> s = it->lock();
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
void HttpServer::AsioListener::ReleaseLocked(httpd::SessionBase& s) {
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

}  // namespace herd::controlplane
