// ModuleConfigService: the values a module runs with beside its manifest's defaults.
//
// Two modes. Locally (the default) the operator's overrides live in
// $HERD_HOME/module_conf.json (ModuleConfStore) and `agentctl set/unset` change them. Managed
// by a control plane, the overrides are the control plane's ConfigSnapshot (cached in
// $HERD_HOME/controlplane-config.json so a restart while it is away keeps them) and local
// set/unset are refused with where to set them instead.
//
// A snapshot is applied whole or rejected whole (a module this host does not have, a value
// that does not convert to its default's type, values too large for the environment), keeping
// the last good one. Exactly the modules whose values change are restarted, one after the
// other; one that cannot start with its new values turns the ack into a rejection naming it.
//
// What the service needs of the installed modules (their defaults, restarting one) comes
// through ConfiguredModules, which the registry (ModuleManager) implements, so that the
// service is tested without a supervisor. Threading: the loop thread only.
#pragma once

#include <functional>
#include <set>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "agent/modules/module_config.h"
#include "common/logging.h"
#include "herd/v1/agent.pb.h"
#include "herd/v1/gateway.pb.h"
#include "nlohmann/json.hpp"

namespace herd::agent {

class ConfiguredModules {
 public:
  virtual ~ConfiguredModules() = default;
  // The installed modules, sorted by name.
  virtual std::vector<std::string> ModuleNames() const = 0;
  // The module's defaults (its manifest's `config`), or null when there is no such module.
  virtual const nlohmann::json* Defaults(const std::string& module) const = 0;
  // Makes a running module pick up its values (restarts it); OK when it runs with them or
  // is stopped (they apply at its next start), an error when it could not start.
  virtual void RestartForConfig(const std::string& module,
                                std::function<void(absl::Status)> done) = 0;
};

class ModuleConfigService {
 public:
  template <typename T>
  using Done = std::function<void(absl::StatusOr<T>)>;

  ModuleConfigService(std::string home, ConfiguredModules& modules);

  // Loads module_conf.json (a corrupt one is an error: the agent does not start).
  absl::Status Load() { return conf_.Load(); }
  // Locally, reads module_conf.json again if it was edited by hand (see
  // ModuleConfStore::Refresh); managed, the file is not in use.
  absl::Status Refresh() { return managed_ ? absl::OkStatus() : conf_.Refresh(); }
  // Managed mode from now on; loads the cached snapshot if there is one.
  absl::Status EnableManaged(const std::string& controlplane);
  bool managed() const { return managed_; }
  // The version of the snapshot in force (0 = none, or not managed).
  uint64_t version() const { return managed_ ? snapshot_.version() : 0; }

  // The module's overrides (strings, PM2's layout) from the snapshot or module_conf.json.
  nlohmann::json Overrides(const std::string& module) const;
  // Every key of the module with its value and where the value comes from.
  herd::v1::ModuleConfig ConfigOf(const std::string& module, const nlohmann::json& defaults) const;
  // One module's, or every module's when `module` is empty.
  absl::StatusOr<std::vector<herd::v1::ModuleConfig>> Get(const std::string& module) const;
  // The module's two configuration variables, or why they would not fit.
  absl::StatusOr<ConfigEnvironment> EnvironmentOf(const std::string& module,
                                                  const nlohmann::json& defaults) const;

  void Set(const herd::v1::SetConfigRequest& req, Done<herd::v1::ModuleConfig> done);
  void Unset(const herd::v1::UnsetConfigRequest& req, Done<herd::v1::ModuleConfig> done);
  // Forgets the module's local overrides (uninstall without --keep-config).
  absl::Status Erase(const std::string& module) { return conf_.Erase(module); }

  // The snapshot in force (empty before the first; read from its cache at start).
  const herd::v1::ConfigSnapshot& snapshot() const { return snapshot_; }
  // `done` gets the ack to send.
  void ApplySnapshot(const herd::v1::ConfigSnapshot& snap,
                     std::function<void(herd::v1::ConfigAck)> done);

 private:
  using Failures = std::vector<std::pair<std::string, std::string>>;
  // Adds to `ack` every reason to refuse `snap`.
  void CheckSnapshot(const herd::v1::ConfigSnapshot& snap, herd::v1::ConfigAck* ack) const;
  // The modules whose values `snap` changes.
  std::vector<std::string> Changed(const herd::v1::ConfigSnapshot& snap) const;
  void SaveSnapshot(const herd::v1::ConfigSnapshot& snap) const;
  absl::Status CheckSet(const herd::v1::SetConfigRequest& req, const nlohmann::json& defaults) const;
  void Restart(const std::string& module, const nlohmann::json& defaults,
               Done<herd::v1::ModuleConfig> done);
  // Restarts each module in turn; those that could not start are added to `failures`.
  void RestartEach(std::vector<std::string> names, std::shared_ptr<Failures> failures,
                   std::function<void()> done);
  std::string SnapshotPath() const { return home_ + "/controlplane-config.json"; }

  const std::string home_;
  ConfiguredModules& modules_;
  std::shared_ptr<spdlog::logger> log_;
  ModuleConfStore conf_;
  bool managed_ = false;
  std::string controlplane_;
  herd::v1::ConfigSnapshot snapshot_;
  // Modules that could not start after the last snapshot changed their values.
  std::set<std::string> config_failed_;
};

}  // namespace herd::agent
