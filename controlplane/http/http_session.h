// One connection of the HTTP listener (asio_listener.h): the TLS handshake (Stream =
// ssl_stream) or not, then requests one after the other, each read within the listener's
// header timeout, routed (/api/v1/<Method>, /metrics, /healthz, /readyz, the dashboard's
// files), and answered on the connection's strand or, when it blocks, on the worker pool; a
// server-streaming API call becomes a chunked ndjson answer fed by its gRPC call's thread.
// A template over the stream type, included only by http_server.cc, whose accept loop
// makes both kinds. Internal to controlplane/http.
#pragma once

#include <algorithm>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <type_traits>
#include <utility>

#include <boost/asio.hpp>
#include <boost/asio/ssl.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>
#include <boost/beast/ssl.hpp>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/strip.h"
#include "absl/synchronization/mutex.h"
#include "controlplane/http/asio_listener.h"
#include "controlplane/http/http_messages.h"
#include "controlplane/http/web_assets.h"

namespace herd::controlplane::httpd {

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace http = beast::http;
namespace ssl = asio::ssl;
using tcp = asio::ip::tcp;

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

}  // namespace herd::controlplane::httpd
