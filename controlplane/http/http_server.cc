// HttpServer and its listener's lifecycle: TLS setup, bind, the accept loop, the io threads,
// Stop and stats. The listener's parts are listed in asio_listener.h.
#include "controlplane/http/http_server.h"

#include <openssl/ssl.h>

#include <algorithm>
#include <chrono>
#include <exception>
#include <memory>
#include <string>
#include <utility>

#include <boost/asio.hpp>
#include <boost/asio/ssl.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/ssl.hpp>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "common/logging.h"
#include "controlplane/http/asio_listener.h"
#include "controlplane/http/http_messages.h"
#include "controlplane/http/http_session.h"

namespace herd::controlplane {

using httpd::Session;
using httpd::SplitHostPort;
namespace asio = boost::asio;
namespace beast = boost::beast;
namespace ssl = asio::ssl;
using tcp = asio::ip::tcp;

HttpServer::AsioListener::AsioListener(HttpServerOptions options,
                                       std::shared_ptr<grpc::Channel> channel,
                                       HttpHandlers handlers)
    : options(std::move(options)),
      handlers(std::move(handlers)),
      gateway(std::move(channel)),
      log(herd::Logger("http")),
      warn(log),
      workers(this->options.workers, this->options.max_queued),
      stream_threads(this->options.max_streams, this->options.max_streams) {}

absl::Status HttpServer::AsioListener::ConfigureTls() {
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
  if (options.client_ca.empty()) return absl::OkStatus();
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
  return absl::OkStatus();
}

absl::StatusOr<int> HttpServer::AsioListener::Listen(const std::string& host, int port) {
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
  return acceptor_->local_endpoint(ec).port();
}

absl::StatusOr<std::string> HttpServer::AsioListener::Start() {
  std::string host;
  int port = 0;
  if (auto s = SplitHostPort(options.listen, &host, &port); !s.ok()) return s;
  const bool tls = !options.tls_cert.empty() && !options.tls_key.empty();
  if (tls) {
    if (absl::Status s = ConfigureTls(); !s.ok()) return s;
  }
  absl::StatusOr<int> bound = Listen(host, port);
  if (!bound.ok()) return bound.status();
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
                                     ":", *bound);
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
