// Deployments: which modules should be installed where (issue 24). A declaration is stored
// as an override of the reserved module kDeployModule, its key the module's name and its
// value {"source", "version"} as JSON: it then has everything config has for free (the
// scopes and their precedence, the store on SQLite and etcd, migration, the revision that
// replicas watch, the per-host snapshot the agents already receive, ack and cache). The
// reserved name cannot be a real module's (':' is not allowed in one), and the config
// listings leave it out.
#pragma once

#include <map>
#include <set>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "herd/v1/fleet.pb.h"
#include "herd/v1/gateway.pb.h"

namespace herd::controlplane {

inline constexpr char kDeployModule[] = "herd:deploy";

// A module's name as agentd names it on a host (its unit name rules), and an exact
// (semver) version.
bool IsModuleName(const std::string& s);
bool IsExactVersion(const std::string& v);

// An uploaded module archive's package.json (read by ScanArchive) → its name (a scoped
// package's without the scope, as agentd names the module) and exact version;
// INVALID_ARGUMENT saying what is missing. Never throws, whatever the bytes.
absl::Status ReadArtifactManifest(const std::string& manifest, std::string* name,
                                  std::string* version);

// A deploy request checked and completed: the name and version derived from an npm spec
// when not given. InvalidArgument says what is wrong with the source, name or version.
absl::StatusOr<herd::v1::DeployRequest> NormalizeDeploy(herd::v1::DeployRequest req);

// A rollout under way on a declaration (issue 24): the hosts it moved so far to the new
// source and version. Kept in the declaration's value, so that every replica resolves the
// same snapshot for each host, and an agent that reconnects is told the same.
struct DeployPins {
  std::string rollout_id;
  herd::v1::DesiredModule to;  // source, version
  std::set<std::string> hosts;
};

// The stored value of a declaration, and back (a value that does not parse gives nothing:
// the declaration is ignored, never a crash). ParseDeployValue gives the declared (base)
// source and version; with `host_id`, a host the rollout moved gets the rollout's.
std::string DeployValue(const herd::v1::DeployRequest& req, const DeployPins* pins = nullptr);
bool ParseDeployValue(const std::string& value, herd::v1::DesiredModule* out,
                      const std::string* host_id = nullptr, DeployPins* pins = nullptr);

// The deployment declarations among `overrides`, as the Fleet API shows them (no hosts yet).
std::vector<herd::v1::Deployment> Declarations(const std::vector<herd::v1::Override>& overrides,
                                               const std::string& name);

}  // namespace herd::controlplane
