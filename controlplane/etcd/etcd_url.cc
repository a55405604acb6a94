// ParseEtcdUrl and PrefixEnd of etcd_client.h: the parts of the contract that need no
// connection.
#include <cstdint>
#include <string>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "controlplane/etcd/etcd_client.h"

namespace herd::etcd {
namespace {

constexpr char kUrlExample[] =
    "expected etcd://HOST:PORT[,HOST:PORT...] (or etcds:// for TLS), e.g. "
    "etcd://127.0.0.1:2379,127.0.0.1:22379";

absl::Status BadUrl(const std::string& url, const std::string& why) {
  return absl::InvalidArgumentError(
      absl::StrCat("bad etcd URL \"", url, "\": ", why, "; ", kUrlExample));
}

// "" when `endpoint` is HOST:PORT or [IPV6]:PORT with a port in 1..65535, else why not.
std::string EndpointProblem(absl::string_view endpoint) {
  if (endpoint.empty()) return "an empty endpoint (two commas, or a trailing comma)";
  size_t colon = endpoint.rfind(':');
  if (colon == absl::string_view::npos) {
    return absl::StrCat("endpoint \"", endpoint, "\" has no :PORT");
  }
  absl::string_view host = endpoint.substr(0, colon);
  absl::string_view port = endpoint.substr(colon + 1);
  if (absl::StartsWith(host, "[") != absl::EndsWith(host, "]")) {
    return absl::StrCat("endpoint \"", endpoint, "\" has an unclosed IPv6 bracket");
  }
  if (!absl::StartsWith(host, "[") && absl::StrContains(host, ':')) {
    return absl::StrCat("endpoint \"", endpoint, "\": write an IPv6 address in brackets ([::1]:2379)");
  }
  if (host.empty() || host == "[]") return absl::StrCat("endpoint \"", endpoint, "\" has no host");
  for (char c : host) {
    if (c <= ' ' || c == '/' || c == '@' || c == '?' || c == '#' || static_cast<unsigned char>(c) >= 0x7f) {
      return absl::StrCat("endpoint \"", endpoint, "\" has a character a host cannot have");
    }
  }
  int port_number = 0;
  if (port.empty() || port.size() > 5 || !absl::SimpleAtoi(port, &port_number) ||
      port_number < 1 || port_number > 65535 || port.find_first_not_of("0123456789") != absl::string_view::npos) {
    return absl::StrCat("endpoint \"", endpoint, "\" has no valid port (1-65535)");
  }
  return "";
}

}  // namespace

absl::StatusOr<Options> ParseEtcdUrl(const std::string& url) {
  Options options;
  absl::string_view rest = url;
  if (absl::ConsumePrefix(&rest, "etcds://")) {
    options.tls = true;
  } else if (!absl::ConsumePrefix(&rest, "etcd://")) {
    return BadUrl(url, "it does not start with etcd:// or etcds://");
  }
  if (rest.empty()) return BadUrl(url, "no endpoint");
  for (absl::string_view endpoint : absl::StrSplit(rest, ',')) {
    if (std::string problem = EndpointProblem(endpoint); !problem.empty()) {
      return BadUrl(url, problem);
    }
    options.endpoints.emplace_back(endpoint);
  }
  return options;
}

std::string PrefixEnd(const std::string& prefix) {
  // etcd's clientv3.GetPrefixRangeEnd: the prefix with its last byte below 0xff incremented
  // and what follows dropped; no such byte (empty, or all 0xff) means "every key": "\0".
  std::string end = prefix;
  while (!end.empty()) {
    unsigned char last = static_cast<unsigned char>(end.back());
    if (last < 0xff) {
      end.back() = static_cast<char>(last + 1);
      return end;
    }
    end.pop_back();
  }
  return std::string(1, '\0');
}

}  // namespace herd::etcd
