// The control plane's addresses as agentd, agentctl and the fleet simulator take them: one
// HOST:PORT, or several separated by commas, one per replica ("cp1:8443,cp2:8443,cp3:8443").
// Each item is what gRPC dials: HOST:PORT (an IPv6 host in brackets, "[::1]:8443") or a
// target with a scheme ("dns:///cp.example:8443", whose name may resolve to several
// addresses; "unix:/run/herd.sock", a Unix socket, has no port). The list is checked once, at
// start, so that a typo stops the binary with a message naming the item instead of failing
// every reconnection for ever.
#pragma once

#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"

namespace herd {

// More replicas than this in one list is a mistake (a pasted host list), not a fleet.
inline constexpr size_t kMaxControlPlaneAddresses = 64;

// Splits and checks `text`; `flag` names where it came from in the errors ("--controlplane").
// Refuses an empty list, an empty item ("a,,b", a trailing comma), an item without a port or
// with a port outside 1-65535, a host with spaces, a repeated item and more than
// kMaxControlPlaneAddresses items. Whitespace around items is ignored.
absl::StatusOr<std::vector<std::string>> ParseControlPlaneAddresses(absl::string_view text,
                                                                    absl::string_view flag);

// The order in which a host dials the replicas (indices into `addresses`): rendezvous, or
// highest-random-weight, hashing of its host id with each address. It is stable across
// restarts and builds; a fleet given the same list spreads evenly over it; when a replica
// goes away, the hosts it held spread evenly over the others (each host's next choice)
// instead of all moving to the replica after it in the list; and adding a replica moves only
// the hosts that now rank it first (about 1/n of them). The order of `addresses` does not
// matter.
std::vector<size_t> ReplicaDialOrder(absl::string_view host_id,
                                     const std::vector<std::string>& addresses);

}  // namespace herd
