#include "controlplane/http/http_messages.h"

#include <algorithm>

#include "absl/strings/ascii.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"
#include "controlplane/http/json_gateway.h"

namespace herd::controlplane::httpd {

namespace beast = boost::beast;
namespace http = beast::http;

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

}  // namespace herd::controlplane::httpd
