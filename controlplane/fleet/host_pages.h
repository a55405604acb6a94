// Pages of a host listing (Fleet.ListHosts), ordered by hostname, then host id.
//
// A page token is the key of the last host of the page before ("keyset" paging), not a
// position: a host registered or removed between two pages moves no other host across a
// page boundary, and a replica asked for "the page after this key" of the hosts it holds
// returns at most one page, however many it holds (PeerRouter::ListHosts). The token is
// opaque to clients; one this API did not make is refused with INVALID_ARGUMENT.
#pragma once

#include <optional>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "herd/v1/fleet.pb.h"

namespace herd::controlplane {

struct HostPageKey {
  std::string hostname;
  std::string host_id;
};

// The token for the page after `h`.
std::string PageTokenAfter(const herd::v1::Host& h);
// The key a token names; nullopt for the empty token (the first page).
absl::StatusOr<std::optional<HostPageKey>> ParsePageToken(absl::string_view token);

// Whether `h`'s id, hostname or one of its `key=value` labels contains `lower_query` (lower
// case; empty matches every host).
bool HostMatches(const herd::v1::Host& h, const std::string& lower_query);

// Fills `resp` from `hosts` (moved from): total_size and online_size over every host matching
// req.query, then the hosts after `after` (every one, in order, if page_size is 0) and the
// token for the next page if there are more.
void PageHosts(const herd::v1::ListHostsRequest& req, const std::optional<HostPageKey>& after,
               std::vector<herd::v1::Host>& hosts, herd::v1::ListHostsResponse* resp);

}  // namespace herd::controlplane
