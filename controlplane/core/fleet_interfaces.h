// The narrow interfaces the Fleet API (controlplane/fleet) sees of the hub, one per concern,
// so that FleetService and RolloutEngine depend on what they use and are unit-tested with
// fakes (tests/fakes/fake_fleet.h) instead of a hub with agents behind it.
//
//   HostDirectory   which hosts there are and what they run (reads)
//   ConfigService   the fleet's configuration overrides (reads and writes, pushed to hosts)
//   RequestRelay    requests to hosts and their answers: actions, restarts, logs
//   MetricsFeed     every metrics batch as it arrives
//   AuditLog        who changed what
//
// Every method is thread-safe. Callbacks run on the hub's threads and must not block. A host
// id names a host wherever it is connected: callers never learn which process holds its
// stream (so a relay through another control-plane replica can be added behind RequestRelay
// without touching them).
#pragma once

#include <cstdint>
#include <functional>
#include <set>
#include <string>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "controlplane/core/deployments.h"
#include "controlplane/store/store.h"
#include "herd/v1/fleet.pb.h"
#include "herd/v1/gateway.pb.h"

namespace herd::controlplane {

// Who is calling the Fleet API (from its token) — for the audit log.
struct Actor {
  std::string name;
  Role role = Role::kViewer;
  // SHA-256 (hex) of the API token's secret it authenticated with (StreamTokens watches it).
  std::string token_hash;
  // The call was audited already, whole (issue 22: the replica that forwarded it, or that
  // runs this part of a fan-out across replicas, wrote the one entry): not audited again.
  bool audited = false;
};

class HostDirectory {
 public:
  virtual ~HostDirectory() = default;
  // Host ids a target selects (unset target: every host, for reads). Unknown host ids / bad
  // selectors are errors.
  virtual absl::StatusOr<std::vector<std::string>> ResolveTarget(
      const herd::v1::Target& target) const = 0;
  virtual absl::StatusOr<std::vector<herd::v1::Host>> ListHosts(
      const herd::v1::Target& target) const = 0;
  virtual absl::StatusOr<herd::v1::HostDetail> GetHost(const std::string& host_id) const = 0;
  virtual absl::StatusOr<std::vector<herd::v1::ModuleInstance>> ListModules(
      const herd::v1::Target& target, const std::string& module) const = 0;
  // The selected hosts that have `module` installed: (host id, hostname), in host id order.
  virtual absl::StatusOr<std::vector<std::pair<std::string, std::string>>> HostsWithModule(
      const herd::v1::Target& target, const std::string& module) const = 0;
  virtual absl::StatusOr<herd::v1::Series> QuerySeries(
      const herd::v1::QuerySeriesRequest& req) const = 0;
};

class ConfigService {
 public:
  virtual ~ConfigService() = default;
  virtual absl::StatusOr<herd::v1::FleetConfig> GetConfig(const std::string& module,
                                                          const std::string& host_id) const = 0;
  virtual absl::StatusOr<herd::v1::FleetConfigChange> SetConfig(
      const herd::v1::FleetSetConfigRequest& req, const Actor& actor) = 0;
  virtual absl::StatusOr<herd::v1::FleetConfigChange> UnsetConfig(
      const herd::v1::FleetUnsetConfigRequest& req, const Actor& actor) = 0;
  // Deployments (deployments.h): which modules the hosts should have, declared at the
  // scopes config has; they reach the hosts in their snapshots.
  virtual absl::StatusOr<herd::v1::DeployResponse> Deploy(const herd::v1::DeployRequest&,
                                                          const Actor&) {
    return absl::UnimplementedError("deployments are not served here");
  }
  virtual absl::StatusOr<herd::v1::DeployResponse> Undeploy(const herd::v1::UndeployRequest&,
                                                            const Actor&) {
    return absl::UnimplementedError("deployments are not served here");
  }
  virtual absl::StatusOr<herd::v1::ListDeploymentsResponse> ListDeployments(
      const std::string&) const {
    return absl::UnimplementedError("deployments are not served here");
  }
  // Deploy rollouts (controlplane/fleet/deploy_rollouts.h). The declaration of `name` at
  // `scope` as stored (NOT_FOUND when there is none): its base, its rollout's pins, and its
  // scope as stored (a hostname turned into its host id).
  struct Declared {
    herd::v1::Scope scope;
    herd::v1::DesiredModule base;
    DeployPins pins;
  };
  virtual absl::StatusOr<Declared> GetDeclaration(const herd::v1::Scope&,
                                                  const std::string&) {
    return absl::UnimplementedError("deployments are not served here");
  }
  // Stores the declaration again as `d` says (no pins when d.pins.rollout_id is empty),
  // pushes what changed and audits `action` with `detail_json`.
  virtual absl::StatusOr<herd::v1::DeployResponse> PutDeclaration(const std::string&,
                                                                  const Declared&, const Actor&,
                                                                  const std::string&,
                                                                  const std::string&) {
    return absl::UnimplementedError("deployments are not served here");
  }
};

class RequestRelay {
 public:
  virtual ~RequestRelay() = default;
  // Triggers the action on every selected host; `done` runs once, with one result per
  // host, when all have answered, failed or timed out.
  virtual void TriggerAction(
      const herd::v1::FleetActionRequest& req, const Actor& actor,
      std::function<void(absl::StatusOr<herd::v1::FleetActionResponse>)> done) = 0;
  // Restarts units on each of the hosts (a rollout's step). `done(i, result)` gets
  // host_ids[i]'s result, or an error if that host is offline, disconnects, or does not
  // answer in time; it may run before this returns.
  virtual void RestartOnHosts(
      const std::vector<std::string>& host_ids, const std::vector<std::string>& units,
      uint32_t wait_healthy_ms, const std::string& rollout_id,
      std::function<void(size_t, absl::StatusOr<herd::v1::RestartResult>)> done) = 0;
  // Streams a unit's log from its host: `on_lines` for each chunk; `on_end` once (OK when the
  // log ended, an error if the host is gone). Returns an id for CancelLogs.
  virtual std::string StreamLogs(const herd::v1::FleetLogsRequest& req,
                                 std::function<void(const herd::v1::LogChunk&)> on_lines,
                                 std::function<void(absl::Status)> on_end) = 0;
  virtual void CancelLogs(const std::string& request_id) = 0;
};

class MetricsFeed {
 public:
  virtual ~MetricsFeed() = default;
  // Every metrics batch of the selected hosts (empty set = all) as it arrives. The callback
  // runs on the thread that received the batch and must not block.
  using MetricsWatcher = std::function<void(const herd::v1::HostMetrics&)>;
  virtual uint64_t WatchMetrics(std::set<std::string> hosts, MetricsWatcher watcher) = 0;
  virtual void Unwatch(uint64_t id) = 0;
};

class AuditLog {
 public:
  virtual ~AuditLog() = default;
  virtual absl::StatusOr<std::vector<herd::v1::AuditEntry>> ListAudit(size_t limit) const = 0;
  virtual void Audit(const std::string& actor, const std::string& action,
                     const std::string& detail_json) = 0;
};

}  // namespace herd::controlplane
