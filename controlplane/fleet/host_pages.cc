#include "controlplane/fleet/host_pages.h"

#include <algorithm>
#include <tuple>

#include "absl/strings/ascii.h"
#include "absl/strings/escaping.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"

namespace herd::controlplane {
namespace {

// "k1." + the hostname + "." + the host id, each in web-safe base64 (which has no '.').
constexpr absl::string_view kTokenPrefix = "k1";

bool After(const herd::v1::Host& h, const HostPageKey& key) {
  return std::tie(key.hostname, key.host_id) < std::tie(h.hostname(), h.host_id());
}

bool Less(const herd::v1::Host* a, const herd::v1::Host* b) {
  return std::tie(a->hostname(), a->host_id()) < std::tie(b->hostname(), b->host_id());
}

}  // namespace

std::string PageTokenAfter(const herd::v1::Host& h) {
  return absl::StrCat(kTokenPrefix, ".", absl::WebSafeBase64Escape(h.hostname()), ".",
                      absl::WebSafeBase64Escape(h.host_id()));
}

absl::StatusOr<std::optional<HostPageKey>> ParsePageToken(absl::string_view token) {
  if (token.empty()) return std::optional<HostPageKey>();
  const std::vector<absl::string_view> parts = absl::StrSplit(token, '.');
  HostPageKey key;
  if (parts.size() != 3 || parts[0] != kTokenPrefix ||
      !absl::WebSafeBase64Unescape(parts[1], &key.hostname) ||
      !absl::WebSafeBase64Unescape(parts[2], &key.host_id) || key.host_id.empty()) {
    return absl::InvalidArgumentError(
        "page_token is not one this API returned: pass next_page_token as is, or leave it "
        "empty for the first page");
  }
  return std::optional<HostPageKey>(std::move(key));
}

bool HostMatches(const herd::v1::Host& h, const std::string& lower_query) {
  if (lower_query.empty()) return true;
  auto has = [&](const std::string& text) {
    return absl::StrContains(absl::AsciiStrToLower(text), lower_query);
  };
  if (has(h.host_id()) || has(h.hostname())) return true;
  for (const auto& [k, v] : h.labels()) {
    if (has(absl::StrCat(k, "=", v))) return true;
  }
  return false;
}

void PageHosts(const herd::v1::ListHostsRequest& req, const std::optional<HostPageKey>& after,
               std::vector<herd::v1::Host>& hosts, herd::v1::ListHostsResponse* resp) {
  const std::string query = absl::AsciiStrToLower(req.query());
  uint32_t total = 0, online = 0;
  std::vector<herd::v1::Host*> rest;  // matching, after the key
  for (auto& h : hosts) {
    if (!HostMatches(h, query)) continue;
    ++total;
    if (h.online()) ++online;
    if (!after || After(h, *after)) rest.push_back(&h);
  }
  resp->set_total_size(total);
  resp->set_online_size(online);
  // Only the page is sorted: a page of 50 from 100,000 hosts is not a sort of 100,000.
  const size_t n = req.page_size() == 0 ? rest.size()
                                        : std::min<size_t>(rest.size(), req.page_size());
  std::partial_sort(rest.begin(), rest.begin() + static_cast<std::ptrdiff_t>(n), rest.end(), Less);
  for (size_t i = 0; i < n; ++i) *resp->add_hosts() = std::move(*rest[i]);
  if (n < rest.size()) {
    resp->set_next_page_token(PageTokenAfter(resp->hosts(resp->hosts_size() - 1)));
  }
}

}  // namespace herd::controlplane
