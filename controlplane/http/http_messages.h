// Requests and responses of the control plane's HTTP listener: the Beast types it uses, its
// fixed limits, the security headers every answer carries, and the parsing of what a client
// sends besides the body (the bearer token, the listen address, query parameters). Pure
// functions, no I/O: tests/controlplane/http_messages_test.cc drives them on canned input.
// Internal to controlplane/http.
#pragma once

#include <chrono>
#include <cstdint>
#include <string>
#include <string_view>

#include <boost/beast/http.hpp>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/time/time.h"

namespace herd::controlplane::httpd {

using Request = boost::beast::http::request<boost::beast::http::string_body>;
using Response = boost::beast::http::response<boost::beast::http::string_body>;

// The dashboard page's Content-Security-Policy.
inline constexpr char kCsp[] =
    "default-src 'self'; img-src 'self' https: data:; style-src 'self'; script-src 'self'; "
    "connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'none'";
// Unary calls wait at most this long (an action fanned out to hosts has its own timeout,
// 30 s by default).
inline constexpr absl::Duration kUnaryDeadline = absl::Seconds(120);
inline constexpr uint64_t kMaxBody = 1 << 20;
inline constexpr uint32_t kMaxHeader = 16 << 10;
// A stream's queued lines are written in chunks of about this size.
inline constexpr size_t kChunk = 64 << 10;

inline std::chrono::steady_clock::duration Chrono(absl::Duration d) {
  return absl::ToChronoNanoseconds(d);
}

// The bearer token of the request: "" when there is none, an error when the header holds
// something no token of ours can be (tokens are [A-Za-z0-9_-]; gRPC metadata refuses most
// other bytes, so nothing else may be passed on).
absl::StatusOr<std::string> Bearer(const Request& req);

// "127.0.0.1:8080" / "[::1]:8080" → host and port.
absl::Status SplitHostPort(const std::string& addr, std::string* host, int* port);

// The value of `key` in a query string ("a=1&scope=fleet"), percent-decoded; "" if absent.
std::string QueryParam(absl::string_view query, absl::string_view key);

// An answer with the headers every answer carries (nosniff, no referrer, no framing,
// no-cache).
Response MakeResponse(unsigned version, int status, std::string_view content_type,
                      std::string body);
Response JsonResponse(unsigned version, int status, std::string body);
// The status as the JSON error the API answers with, under its HTTP status.
Response ErrorResponse(unsigned version, const absl::Status& s);
Response TextResponse(unsigned version, int status, std::string body);

}  // namespace herd::controlplane::httpd
