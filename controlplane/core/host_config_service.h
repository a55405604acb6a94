// HostConfigService: the fleet's configuration overrides (ConfigService, fleet_interfaces.h)
// and what hosts are sent of them: each host's snapshot resolved against the cached
// overrides (config_resolver.h), interned so hosts sent the same share one copy, versioned
// per host, and pushed through the SendPool when it changed.
//
// Locks: config_mu_ is the first in the hub's order (hub.h). It serializes config changes
// (store write + push), so pushes go out in revision order, and guards the overrides as
// stored (this is their only writer). A push takes, under it, the index's reader lock and
// each host's lock in turn; posting a message (a queue push) is the one call made under
// them, which keeps each host's Welcome first and its config versions in order.
#pragma once

#include <atomic>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <set>
#include <string>
#include <vector>

#include "absl/synchronization/mutex.h"
#include "common/clock.h"
#include "common/interner.h"
#include "common/logging.h"
#include "controlplane/core/fleet_interfaces.h"
#include "controlplane/core/host_registry.h"
#include "controlplane/core/hub_options.h"
#include "controlplane/core/send_pool.h"
#include "controlplane/store/store.h"

namespace herd::controlplane {

class HostConfigService final : public ConfigService {
 public:
  HostConfigService(Store& store, HostRegistry& registry, SendPool& sends, AuditLog& audit,
                    const Clock& clock, const HubOptions& options);

  // Reads the overrides from the store (at start).
  absl::Status Load();
  // Another replica changed the config (replica_hooks.h, ReplicatedFleet::ReloadConfig):
  // reads the store's config revision and, if it is not the one loaded (this replica's own
  // change was loaded when it made it: it is not pushed twice), the overrides, then pushes
  // the hosts attached here whose snapshot changed. Under config_mu_ like every change, so
  // each host's versions go out in order whichever replica made the change. The hosts whose
  // config changed; the store's error (nothing changed here) for the caller to retry.
  absl::StatusOr<std::vector<std::string>> ReloadFromStore();

  // ---- ConfigService
  absl::StatusOr<herd::v1::FleetConfig> GetConfig(const std::string& module,
                                                  const std::string& host_id) const override;
  absl::StatusOr<herd::v1::FleetConfigChange> SetConfig(
      const herd::v1::FleetSetConfigRequest& req, const Actor& actor) override;
  absl::StatusOr<herd::v1::FleetConfigChange> UnsetConfig(
      const herd::v1::FleetUnsetConfigRequest& req, const Actor& actor) override;
  // Deployments (host_config_deploy.cc).
  absl::StatusOr<herd::v1::DeployResponse> Deploy(const herd::v1::DeployRequest& req,
                                                  const Actor& actor) override;
  absl::StatusOr<herd::v1::DeployResponse> Undeploy(const herd::v1::UndeployRequest& req,
                                                    const Actor& actor) override;
  absl::StatusOr<herd::v1::ListDeploymentsResponse> ListDeployments(
      const std::string& name) const override;
  absl::StatusOr<Declared> GetDeclaration(const herd::v1::Scope& scope,
                                          const std::string& name) override;
  absl::StatusOr<herd::v1::DeployResponse> PutDeclaration(const std::string& name,
                                                          const Declared& d, const Actor& actor,
                                                          const std::string& action,
                                                          const std::string& detail) override;

  // ---- The hub's side
  // Attaches a host's new stream: under the config lock and the host's, `attach` updates
  // the host's state (it returns the session it replaced), then the Welcome and the host's
  // snapshot (always, with a new version) are posted, in that order, before anything else
  // can reach the agent. Returns the replaced session (to be closed by the caller).
  std::shared_ptr<HostSession> Attach(
      HostEntry& e, std::shared_ptr<HostSession> session, herd::v1::ControlMessage welcome,
      const std::function<std::shared_ptr<HostSession>(HostState&)>& attach);
  // After an inventory change (`only`: that host) or a config change (null: every host):
  // resolves the snapshots and pushes those that changed; returns the hosts whose config
  // changed. Hosts with the same labels, modules and no override of their own share one
  // resolution.
  std::vector<std::string> PushConfig(const std::string* only = nullptr);
  // A host's ConfigAck (the caller holds the host's lock). `save`: the acked version moved
  // (its status is to be written). Rejections past the limits are cut into `hits`.
  void OnAck(HostState& h, const herd::v1::ConfigAck& ack, LimitHits* hits, bool* save);

  void AddStats(HubStats& s) const;

 private:
  static std::set<std::string> Installed(const HostState& h);
  // Gives the host `snap` as its next snapshot (with a new version) when it differs from the
  // last one sent or when `force`; returns the message to send. Needs the host's lock.
  std::optional<herd::v1::ControlMessage> NextSnapshot(
      HostState& h, std::shared_ptr<const herd::v1::ConfigSnapshot> snap, bool force);
  // The shared copy of a resolved snapshot (without version).
  std::shared_ptr<const herd::v1::ConfigSnapshot> Shared(herd::v1::ConfigSnapshot snap);
  // The snapshot of one host in a push, resolved once per kind of host (`resolved`).
  struct Resolution;
  std::shared_ptr<const herd::v1::ConfigSnapshot> ResolveFor(
      const std::string& id, const HostState& h, bool alone,
      std::map<std::string, Resolution>& resolved) ABSL_EXCLUSIVE_LOCKS_REQUIRED(config_mu_);
  absl::Status ReloadOverrides() ABSL_EXCLUSIVE_LOCKS_REQUIRED(config_mu_);
  // Size checks of SetConfig (per value, per module): the error says by how much and what to do.
  absl::Status CheckConfigSize(const herd::v1::FleetSetConfigRequest& req,
                               const herd::v1::Scope& scope);
  absl::Status CheckConfigValue(const herd::v1::FleetSetConfigRequest& req) const;
  // A scope as stored: canonical, a hostname turned into its host id (NotFound for an
  // unknown host when `must_exist`).
  absl::StatusOr<herd::v1::Scope> StoredScope(const herd::v1::Scope& scope, bool must_exist);
  // After an override was written: audits a change, reloads the overrides and pushes.
  herd::v1::FleetConfigChange ConfigChanged(const ConfigWrite& w, const Actor& actor,
                                            const std::string& action,
                                            const std::string& detail_json);
  Store& store_;
  HostRegistry& registry_;
  SendPool& sends_;
  AuditLog& audit_;
  const Clock& clock_;
  const HubOptions& options_;
  std::shared_ptr<spdlog::logger> log_;

  absl::Mutex config_mu_;
  std::vector<herd::v1::Override> overrides_ ABSL_GUARDED_BY(config_mu_);
  // The store's config revision the overrides were read at (at least).
  uint64_t loaded_revision_ ABSL_GUARDED_BY(config_mu_) = 0;
  // SetConfig / UnsetConfig calls between their store write's start and their push's end:
  // ReloadFromStore waits for none (LocalChange counts them).
  int local_changes_ ABSL_GUARDED_BY(config_mu_) = 0;
  class LocalChange {
   public:
    explicit LocalChange(HostConfigService& s);
    ~LocalChange();

   private:
    HostConfigService& s_;
  };
  Interner<herd::v1::ConfigSnapshot> snapshots_;
  std::atomic<uint64_t> config_pushes_{0}, config_nacks_{0};
};

}  // namespace herd::controlplane
