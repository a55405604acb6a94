// One host's configuration from every stored override.
//
// Precedence, lowest to highest: global; label selectors that match the host (fewer terms
// first, then older first: a more specific or more recent selector wins); the host's own.
// Only modules installed on the host are included: a snapshot never names a module the
// host does not have (the agent would reject it). Deployments (deployments.h) resolve the
// same way, into the snapshot's `deployments`, for every host they match.
#pragma once

#include <map>
#include <set>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "herd/v1/fleet.pb.h"
#include "herd/v1/gateway.pb.h"

namespace herd::controlplane {

herd::v1::ConfigSnapshot ResolveHostConfig(const std::vector<herd::v1::Override>& overrides,
                                           const std::string& host_id,
                                           const std::map<std::string, std::string>& labels,
                                           const std::set<std::string>& installed);

// Whether the override's scope applies to the host (a bad selector applies to none).
bool ScopeMatches(const herd::v1::Scope& scope, const std::string& host_id,
                  const std::map<std::string, std::string>& labels);

// "global", "selector:env=prod", "host".
std::string SourceName(const herd::v1::Scope& scope);

// InvalidArgument unless exactly one scope is set, validly.
absl::Status CheckScope(const herd::v1::Scope& scope);
// The scope with its selector in canonical form (terms sorted), as stored.
herd::v1::Scope CanonicalScope(const herd::v1::Scope& scope);

}  // namespace herd::controlplane
