#include "common/controlplane_addresses.h"

#include <algorithm>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"

namespace herd {
namespace {

constexpr absl::string_view kForm = "give HOST:PORT, or HOST:PORT,HOST:PORT,... for replicas";

// The HOST:PORT part of one item (after any "scheme:///"): the error says what is wrong.
absl::Status CheckHostPort(absl::string_view item, absl::string_view hostport) {
  const size_t colon = hostport.rfind(':');
  if (colon == absl::string_view::npos) {
    return absl::InvalidArgumentError(absl::StrCat("\"", item, "\" has no port"));
  }
  absl::string_view host = hostport.substr(0, colon);
  const absl::string_view port = hostport.substr(colon + 1);
  if (absl::StartsWith(host, "[") != absl::EndsWith(host, "]")) {
    return absl::InvalidArgumentError(
        absl::StrCat("\"", item, "\": an IPv6 host goes in brackets, e.g. [::1]:8443"));
  }
  if (absl::StartsWith(host, "[")) {
    host = host.substr(1, host.size() - 2);
  } else if (absl::StrContains(host, ':')) {
    return absl::InvalidArgumentError(
        absl::StrCat("\"", item, "\": an IPv6 host goes in brackets, e.g. [::1]:8443"));
  }
  if (host.empty()) return absl::InvalidArgumentError(absl::StrCat("\"", item, "\" has no host"));
  if (std::any_of(host.begin(), host.end(),
                  [](char c) { return absl::ascii_isspace(static_cast<unsigned char>(c)) ||
                                      absl::ascii_iscntrl(static_cast<unsigned char>(c)); })) {
    return absl::InvalidArgumentError(absl::StrCat("\"", item, "\": the host has a space in it"));
  }
  uint32_t p = 0;
  if (!absl::SimpleAtoi(port, &p) || p == 0 || p > 65535 ||
      !std::all_of(port.begin(), port.end(),
                   [](char c) { return absl::ascii_isdigit(static_cast<unsigned char>(c)); })) {
    return absl::InvalidArgumentError(
        absl::StrCat("\"", item, "\": the port must be a number from 1 to 65535"));
  }
  return absl::OkStatus();
}

}  // namespace

absl::StatusOr<std::vector<std::string>> ParseControlPlaneAddresses(absl::string_view text,
                                                                    absl::string_view flag) {
  if (absl::StripAsciiWhitespace(text).empty()) {
    return absl::InvalidArgumentError(absl::StrCat(flag, " is empty: ", kForm));
  }
  std::vector<std::string> out;
  int n = 0;
  for (absl::string_view raw : absl::StrSplit(text, ',')) {
    ++n;
    const absl::string_view item = absl::StripAsciiWhitespace(raw);
    if (item.empty()) {
      return absl::InvalidArgumentError(absl::StrCat(
          flag, " \"", text, "\": item ", n, " is empty (a doubled or trailing comma?): ", kForm));
    }
    absl::string_view hostport = item;
    // A Unix socket target (gRPC's unix:PATH, unix:///PATH, unix-abstract:NAME) has no port.
    const bool unix_socket =
        absl::StartsWith(item, "unix:") || absl::StartsWith(item, "unix-abstract:");
    if (unix_socket) {
      hostport = "";
    } else if (const size_t scheme = item.find(":///"); scheme != absl::string_view::npos) {
      hostport = item.substr(scheme + 4);
    }
    if (auto s = unix_socket ? absl::OkStatus() : CheckHostPort(item, hostport); !s.ok()) {
      return absl::InvalidArgumentError(
          absl::StrCat(flag, ": item ", n, " ", s.message(), ": ", kForm));
    }
    if (std::find(out.begin(), out.end(), item) != out.end()) {
      return absl::InvalidArgumentError(
          absl::StrCat(flag, ": \"", item, "\" is given twice: name each replica once"));
    }
    if (out.size() == kMaxControlPlaneAddresses) {
      return absl::InvalidArgumentError(absl::StrCat(flag, " lists more than ",
                                                     kMaxControlPlaneAddresses,
                                                     " addresses: give one per replica"));
    }
    out.emplace_back(item);
  }
  return out;
}

namespace {

// FNV-1a, then splitmix64's finalizer: FNV alone leaves strings that differ only at the end
// (ports, host-0001) too alike in the high bits for a fair ranking.
uint64_t RendezvousWeight(absl::string_view host_id, absl::string_view address) {
  uint64_t h = 14695981039346656037ull;
  auto mix_in = [&h](absl::string_view s) {
    for (unsigned char c : s) {
      h ^= c;
      h *= 1099511628211ull;
    }
  };
  mix_in(host_id);
  mix_in("\n");
  mix_in(address);
  h ^= h >> 30;
  h *= 0xbf58476d1ce4e5b9ull;
  h ^= h >> 27;
  h *= 0x94d049bb133111ebull;
  h ^= h >> 31;
  return h;
}

}  // namespace

std::vector<size_t> ReplicaDialOrder(absl::string_view host_id,
                                     const std::vector<std::string>& addresses) {
  std::vector<std::pair<uint64_t, size_t>> ranked;
  ranked.reserve(addresses.size());
  for (size_t i = 0; i < addresses.size(); ++i) {
    ranked.emplace_back(RendezvousWeight(host_id, addresses[i]), i);
  }
  // Highest weight first; equal weights (practically never) by the address itself.
  std::sort(ranked.begin(), ranked.end(), [&](const auto& a, const auto& b) {
    if (a.first != b.first) return a.first > b.first;
    return addresses[a.second] < addresses[b.second];
  });
  std::vector<size_t> order;
  order.reserve(ranked.size());
  for (const auto& r : ranked) order.push_back(r.second);
  return order;
}

}  // namespace herd
