#include "controlplane/http/http_server.h"

#include <httplib.h>

#include <algorithm>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/strip.h"
#include "common/logging.h"
#include "controlplane/http/web_assets.h"

namespace herd::controlplane {
namespace {

constexpr char kCsp[] =
    "default-src 'self'; img-src 'self' https: data:; style-src 'self'; script-src 'self'; "
    "connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'none'";
// Unary calls wait at most this long (an action fanned out to hosts has its own timeout,
// 30 s by default).
constexpr absl::Duration kUnaryDeadline = absl::Seconds(120);
constexpr size_t kMaxBody = 1 << 20;
// A stream with nothing to send writes a blank line this often, which is how a browser that
// went away is noticed (and its call cancelled) on a quiet stream.
constexpr absl::Duration kHeartbeat = absl::Seconds(5);

void SendJson(httplib::Response& res, int status, const std::string& body) {
  res.status = status;
  res.set_content(body, "application/json");
}

void SendError(httplib::Response& res, const absl::Status& s) {
  SendJson(res, HttpStatusFor(s.code()), ErrorJson(s));
}

// The bearer token of the request: "" when there is none, an error when the header holds
// something no token of ours can be (tokens are [A-Za-z0-9_-]; gRPC metadata refuses most
// other bytes, so nothing else may be passed on).
absl::StatusOr<std::string> Bearer(const httplib::Request& req) {
  const std::string header = req.get_header_value("Authorization");
  if (header.empty()) return std::string();
  absl::string_view h = header;
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

}  // namespace

HttpServer::HttpServer(HttpServerOptions options, std::shared_ptr<grpc::Channel> fleet_channel,
                       HttpHandlers handlers)
    : options_(std::move(options)),
      handlers_(std::move(handlers)),
      gateway_(std::move(fleet_channel)),
      log_(herd::Logger("http")) {}

HttpServer::~HttpServer() { Stop(); }

absl::StatusOr<std::string> HttpServer::Start() {
  std::string host;
  int port = 0;
  if (auto s = SplitHostPort(options_.listen, &host, &port); !s.ok()) return s;
  const bool tls = !options_.tls_cert.empty() && !options_.tls_key.empty();
  if (tls) {
    server_ = std::make_unique<httplib::SSLServer>(options_.tls_cert.c_str(),
                                                   options_.tls_key.c_str());
  } else {
    server_ = std::make_unique<httplib::Server>();
  }
  if (!server_->is_valid()) {
    return absl::InvalidArgumentError(
        "cannot serve HTTPS with --tls-cert / --tls-key: check that both are readable PEM files");
  }
  const size_t threads = options_.threads;
  server_->new_task_queue = [threads] { return new httplib::ThreadPool(threads); };
  server_->set_payload_max_length(kMaxBody);
  server_->set_default_headers({{"X-Content-Type-Options", "nosniff"},
                                {"Referrer-Policy", "no-referrer"},
                                {"X-Frame-Options", "DENY"},
                                {"Cache-Control", "no-cache"}});
  server_->set_logger([this](const httplib::Request& req, const httplib::Response& res) {
    log_->debug("event=request method={} path={} status={} remote={}", req.method, req.path,
                res.status, req.remote_addr);
  });
  // httplib's own refusals (no Content-Length, body too large...) get a reason.
  server_->set_error_handler([](const httplib::Request&, httplib::Response& res) {
    if (res.body.empty()) {
      res.set_content(absl::StrCat("HTTP ", res.status,
                                   res.status == 400 ? ": malformed request (API calls are POST "
                                                       "with a JSON body and a Content-Length)\n"
                                                     : "\n"),
                      "text/plain");
    }
  });
  server_->set_exception_handler(
      [this](const httplib::Request& req, httplib::Response& res, std::exception_ptr) {
        log_->error("event=handler_exception path={}", req.path);
        SendError(res, absl::InternalError("the request could not be handled"));
      });
  Routes();
  const int bound = port == 0 ? server_->bind_to_any_port(host) : port;
  if (bound <= 0 || (port != 0 && !server_->bind_to_port(host, port))) {
    return absl::UnavailableError(absl::StrCat("cannot listen on ", options_.listen,
                                               " for HTTP: is the port in use? choose another "
                                               "--http address"));
  }
  thread_ = std::thread([this] {
    server_->listen_after_bind();
    listen_returned_ = true;
  });
  // stop() only works on a running server: make sure it is before anyone can call Stop().
  while (!server_->is_running() && !listen_returned_) {
    std::this_thread::sleep_for(std::chrono::milliseconds(1));
  }
  if (!server_->is_running()) {
    thread_.join();
    return absl::UnavailableError(absl::StrCat("the HTTP server on ", options_.listen,
                                               " stopped as it started: see the log"));
  }
  std::string address = absl::StrCat(absl::StrContains(host, ':') ? "[" + host + "]" : host,
                                     ":", bound);
  log_->info("event=http_ready listen={} tls={} metrics_public={}", address, tls,
             options_.metrics_public);
  return address;
}

void HttpServer::Stop() {
  if (!server_) return;
  {
    absl::MutexLock l(&mu_);
    if (stopping_) return;
    stopping_ = true;
    for (auto* ctx : calls_) ctx->TryCancel();
  }
  server_->stop();
  if (thread_.joinable()) thread_.join();
  log_->info("event=http_stopped");
}

void HttpServer::Routes() {
  server_->Get("/healthz", [](const httplib::Request&, httplib::Response& res) {
    res.set_content("ok\n", "text/plain");
  });
  server_->Get("/readyz", [this](const httplib::Request&, httplib::Response& res) {
    bool stopping;
    {
      absl::MutexLock l(&mu_);
      stopping = stopping_;
    }
    absl::Status s = stopping ? absl::UnavailableError("stopping")
                              : (handlers_.ready ? handlers_.ready() : absl::OkStatus());
    res.status = s.ok() ? 200 : 503;
    if (!s.ok()) log_->warn("event=not_ready reason=\"{}\"", s.message());
    // The reason is in the log, not in this unauthenticated answer.
    res.set_content(s.ok() ? "ready\n" : "not ready\n", "text/plain");
  });
  server_->Get("/metrics", [this](const httplib::Request& req, httplib::Response& res) {
    if (!options_.metrics_public) {
      auto bearer = Bearer(req);
      absl::Status s = bearer.ok() ? handlers_.authorize_read(*bearer) : bearer.status();
      if (!s.ok()) {
        res.set_header("WWW-Authenticate", "Bearer");
        res.status = HttpStatusFor(s.code());
        res.set_content(absl::StrCat(s.message(),
                                     " (send Authorization: Bearer <viewer token>, or start the "
                                     "control plane with --metrics-public)\n"),
                        "text/plain");
        return;
      }
    }
    const std::string scope = req.get_param_value("scope");
    if (!scope.empty() && scope != "fleet" && scope != "controlplane") {
      res.status = 400;
      res.set_content(absl::StrCat("unknown scope \"", scope.substr(0, 64),
                                   "\": give scope=fleet (the default) or scope=controlplane\n"),
                      "text/plain");
      return;
    }
    res.set_content(handlers_.metrics(scope != "controlplane"),
                    "text/plain; version=0.0.4; charset=utf-8");
  });

  server_->Post(R"(/api/v1/([A-Za-z]+))", [this](const httplib::Request& req,
                                                 httplib::Response& res) {
    const auto* method = gateway_.Find(req.matches[1].str());
    if (method == nullptr || method->client_streaming()) {
      return SendError(res, absl::NotFoundError(absl::StrCat(
                                "no method ", req.matches[1].str(),
                                " in the Fleet API: see proto/herd/v1/fleet.proto")));
    }
    auto bearer = Bearer(req);
    if (!bearer.ok()) return SendError(res, bearer.status());
    const std::string authorization = bearer->empty() ? "" : "Bearer " + *bearer;
    if (!method->server_streaming()) {
      grpc::ClientContext ctx;
      if (!Track(&ctx)) return SendError(res, absl::UnavailableError("shutting down"));
      auto reply = gateway_.Unary(method, req.body, authorization, ctx, kUnaryDeadline);
      Untrack(&ctx);
      return SendJson(res, reply.http_status, reply.body);
    }
    if (streams_.fetch_add(1) >= options_.max_streams) {
      streams_.fetch_sub(1);
      return SendError(res, absl::ResourceExhaustedError(
                                "too many open streams on this control plane; retry later"));
    }
    res.set_header("X-Accel-Buffering", "no");
    res.set_chunked_content_provider(
        "application/x-ndjson",
        [this, method, body = req.body, authorization](size_t, httplib::DataSink& sink) {
          ServeStream(method, body, authorization, [&sink](const std::string& line) {
            return sink.is_writable() && sink.write(line.data(), line.size());
          });
          sink.done();
          return true;
        },
        [this](bool) { streams_.fetch_sub(1); });
  });
  server_->Get(R"(/api/v1/.*)", [](const httplib::Request&, httplib::Response& res) {
    SendError(res, absl::InvalidArgumentError("the API takes POST with a JSON body"));
  });

  auto serve_asset = [](const std::string& name, httplib::Response& res) {
    for (const auto& a : WebAssets()) {
      if (a.name == name) {
        if (name == "index.html") res.set_header("Content-Security-Policy", kCsp);
        res.set_content(a.body.data(), a.body.size(), std::string(a.content_type).c_str());
        return;
      }
    }
    res.status = 404;
    res.set_content("not found\n", "text/plain");
  };
  server_->Get("/", [serve_asset](const httplib::Request&, httplib::Response& res) {
    serve_asset("index.html", res);
  });
  server_->Get(R"(/assets/([A-Za-z0-9._-]+))",
               [serve_asset](const httplib::Request& req, httplib::Response& res) {
                 serve_asset(req.matches[1].str(), res);
               });
}

void HttpServer::ServeStream(const google::protobuf::MethodDescriptor* method, std::string body,
                             std::string authorization,
                             const std::function<bool(const std::string&)>& write) {
  grpc::ClientContext ctx;
  if (!Track(&ctx)) return;
  absl::Status s = gateway_.Stream(method, body, authorization, ctx, kHeartbeat, write);
  log_->debug("event=stream_end method={} status=\"{}\"", method->name(), s.ToString());
  Untrack(&ctx);
}

bool HttpServer::Track(grpc::ClientContext* ctx) {
  absl::MutexLock l(&mu_);
  if (stopping_) return false;
  calls_.insert(ctx);
  return true;
}

void HttpServer::Untrack(grpc::ClientContext* ctx) {
  absl::MutexLock l(&mu_);
  calls_.erase(ctx);
}

}  // namespace herd::controlplane
