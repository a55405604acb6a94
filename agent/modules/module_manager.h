// ModuleManager: PM2's module system on top of the Supervisor, and the registry of what is
// installed.
//
// A module is a unit whose spec comes from a manifest (package.json) and that gets a
// channel (docs/module-protocol.md). The manager is the registry and the wiring of the
// pieces that do the work:
//   - ModuleInstaller (module_installer.h) stages and checks what install is given (npm
//     name, .tgz, directory) on an install worker thread; the manager then stops the old
//     version, has it moved into place, records it in $HERD_HOME/modules.json and starts
//     apps[0] through the Supervisor (which then resurrects it with the agent like any unit);
//   - ChannelEndpoint (channel_endpoint.h), one per module, is given to each module process
//     through the Supervisor's UnitHooks with its environment (module_environment.h), reads
//     the channel on the EventLoop and keeps the module's probes, actions, issues and events;
//     its PendingActions run triggers (one in flight per action, with a timeout);
//   - ModuleConfigService (module_config_service.h) owns the local configuration
//     (module_conf.json) or the control plane's snapshots, and restarts exactly the modules
//     whose values changed (through this registry, its ConfiguredModules);
//   - DevModeWatcher (dev_mode_watcher.h) restarts development-mode modules on change.
//
// Threading: like the Supervisor, every method runs on the loop thread. Installation work
// (tar, npm) runs on a worker thread and its result is posted back to the loop.
#pragma once

#include <sys/types.h>

#include <functional>
#include <map>
#include <memory>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "agent/loop/event_loop.h"
#include "common/archive_scan.h"
#include "agent/modules/channel.h"
#include "agent/modules/channel_endpoint.h"
#include "agent/modules/command_runner.h"
#include "agent/modules/dev_mode_watcher.h"
#include "agent/modules/dir_watcher.h"
#include "agent/modules/manifest.h"
#include "agent/modules/module_config_service.h"
#include "agent/modules/module_installer.h"
#include "agent/supervisor/spawner.h"
#include "agent/supervisor/supervisor.h"
#include "common/logging.h"
#include "herd/v1/agent.pb.h"
#include "herd/v1/gateway.pb.h"
#include "herd/v1/types.pb.h"

namespace herd::agent {

struct ModuleManagerOptions {
  std::string home;         // $HERD_HOME
  std::string search_path;  // PATH, for interpreters and npm
  ChannelLimits limits;
  absl::Duration action_timeout = absl::Seconds(30);
  absl::Duration install_timeout = absl::Minutes(5);
  // What one archive may unpack to (checked before extracting).
  ArchiveLimits archive_limits;
  absl::Duration watch_debounce = absl::Milliseconds(500);
};

// The manager's seams; a null one is the real thing (SpawnerCommandRunner on a PosixSpawner,
// InotifyDirWatcher on the loop). Given ones must outlive the manager.
struct ModuleManagerSeams {
  CommandRunner* commands = nullptr;
  DirWatcher* dir_watcher = nullptr;
};

// The action every module answers through agentd, not the module: forget its issues.
inline constexpr char kClearIssuesAction[] = "herd:clear-issues";

class ModuleManager final : public UnitHooks, private ConfiguredModules {
 public:
  template <typename T>
  using Done = std::function<void(absl::StatusOr<T>)>;

  ModuleManager(EventLoop& loop, Supervisor& supervisor, ModuleManagerOptions options,
                ModuleManagerSeams seams = {});
  ~ModuleManager() override;
  ModuleManager(const ModuleManager&) = delete;
  ModuleManager& operator=(const ModuleManager&) = delete;

  // Loads modules.json and module_conf.json, and watches development-mode directories.
  // Call before Supervisor::Restore so that resurrected modules get their channel.
  absl::Status Load();

  // `steps` hears each step as it begins (module_installer.h), on the worker or loop thread.
  void Install(const std::string& source, const std::string& base_dir,
               Done<herd::v1::ModuleInfo> done, InstallSteps steps = {});
  void Uninstall(const std::string& name, bool keep_config,
                 Done<herd::v1::UninstallModuleResponse> done);
  // Installs the module again from its source: from npm the latest, or `version`.
  void Update(const std::string& name, const std::string& version,
              Done<herd::v1::ModuleInfo> done, InstallSteps steps = {});

  absl::StatusOr<std::vector<herd::v1::ModuleConfig>> GetConfig(const std::string& module) const {
    return config_.Get(module);
  }
  void SetConfig(const herd::v1::SetConfigRequest& req, Done<herd::v1::ModuleConfig> done) {
    config_.Set(req, std::move(done));
  }
  void UnsetConfig(const herd::v1::UnsetConfigRequest& req, Done<herd::v1::ModuleConfig> done) {
    config_.Unset(req, std::move(done));
  }

  void TriggerAction(const herd::v1::TriggerActionRequest& req,
                     Done<herd::v1::TriggerActionResponse> done);

  // Control plane mode: overrides come from the control plane's snapshot (cached in
  // $HERD_HOME/controlplane-config.json so a restart while it is away keeps them), and local
  // set/unset are refused. Call before Supervisor::Restore.
  absl::Status EnableManagedConfig(const std::string& controlplane) {
    return config_.EnableManaged(controlplane);
  }
  // Applies a snapshot whole, or rejects it whole (unknown module, a value that does not
  // convert to its default's type) keeping the last good one; restarts exactly the modules
  // whose values changed. `done` gets the ack to send.
  void ApplySnapshot(const herd::v1::ConfigSnapshot& snap,
                     std::function<void(herd::v1::ConfigAck)> done) {
    config_.ApplySnapshot(snap, std::move(done));
  }
  // The version of the snapshot in force (0 = none).
  uint64_t config_version() const { return config_.version(); }
  // What is installed, for the control plane.
  std::vector<herd::v1::ModuleInventory> Inventory() const;
  // One installed module, for the deployments' converger (nullopt: not installed).
  struct Installed {
    std::string version;
    std::string source;
    bool managed = false;     // installed for a deployment (module_converger.h)
    bool installing = false;  // an install or update of it is under way
  };
  std::optional<Installed> InstalledModule(const std::string& name) const;
  // Every module installed for a deployment.
  std::vector<std::string> ManagedModules() const;
  // Marks a module as installed for a deployment (or not); saved in modules.json.
  void SetManaged(const std::string& name, bool managed);
  // The deployments of the snapshot in force (cached across restarts).
  const google::protobuf::Map<std::string, herd::v1::DesiredModule>& CachedDeployments() const {
    return config_.snapshot().deployments();
  }
  // Called after every install, update and uninstall (the uplink resends the inventory).
  void set_on_inventory_change(std::function<void()> f) { on_inventory_change_ = std::move(f); }
  // Called with (module, type, data) for every message a module sends on its channel.
  using ChannelListener =
      std::function<void(const std::string&, const std::string&, const nlohmann::json&)>;
  void set_on_channel_message(ChannelListener f) { on_channel_message_ = std::move(f); }

  bool IsModule(const std::string& name) const { return modules_.count(name) > 0; }
  // Adds module fields to a unit's status / detail (no-op for plain units).
  void FillStatus(herd::v1::UnitStatus* status) const;
  void FillDetail(herd::v1::UnitDetail* detail) const;

  // UnitHooks.
  absl::Status BeforeSpawn(const herd::v1::AppSpec& spec, std::vector<std::string>* env,
                           int* channel_fd) override;
  void AfterSpawn(const std::string& unit, pid_t pid) override;
  void AfterExit(const std::string& unit) override;
  std::vector<pid_t> SampleRoots(const std::string& unit, bool* join) override;

 private:
  struct Module {
    std::string name;
    std::string source;  // what install was given
    std::string dir;
    bool dev_mode = false;
    bool managed = false;  // installed for a deployment
    Manifest manifest;
    // Why the module cannot start (its package.json no longer loads), "" when it can. Such
    // a module stays listed and errored with this reason while the others run.
    std::string load_error;
    std::unique_ptr<ChannelEndpoint> channel;
  };

  // ConfiguredModules (for the config service).
  std::vector<std::string> ModuleNames() const override;
  const nlohmann::json* Defaults(const std::string& module) const override;
  void RestartForConfig(const std::string& module,
                        std::function<void(absl::Status)> done) override;

  std::unique_ptr<Module> NewModule(const std::string& name) const;
  absl::Status LoadRecords();
  absl::Status SaveRecords();
  // Saves modules.json and tells the uplink.
  void RecordsChanged();
  void FinishInstall(absl::StatusOr<PreparedModule> prepared, Done<herd::v1::ModuleInfo> done,
                     InstallSteps steps);
  // With the old version stopped: moves the module into place, records it and starts it.
  void Replace(PreparedModule prepared, Done<herd::v1::ModuleInfo> done,
               const InstallSteps& steps);
  void StartInstalled(Module& m, bool fresh, Done<herd::v1::ModuleInfo> done);
  void RemoveModule(const std::string& name, bool keep_config,
                    herd::v1::UninstallModuleResponse* resp);
  herd::v1::ModuleInfo Info(const Module& m) const;
  // The module's configuration variables for a start, after reading a hand edit of
  // module_conf.json; what of it cannot apply is noted in the module's log.
  absl::StatusOr<ConfigEnvironment> ConfigEnvironmentOf(const Module& m);
  // A development-mode module's files changed: reload package.json and restart it.
  void ReloadDevModule(const std::string& name);
  void RunOnWorker(std::function<void()> work);

  EventLoop& loop_;
  Supervisor& supervisor_;
  const ModuleManagerOptions options_;
  std::shared_ptr<spdlog::logger> log_;
  // The real seams, when none was given.
  std::unique_ptr<PosixSpawner> spawner_;
  std::unique_ptr<CommandRunner> own_commands_;
  std::unique_ptr<DirWatcher> own_dir_watcher_;
  ModuleInstaller installer_;
  ModuleConfigService config_;
  DevModeWatcher dev_watch_;
  std::map<std::string, std::unique_ptr<Module>> modules_;
  std::map<std::string, bool> installing_;  // names with an install/update in progress
  std::vector<std::thread> workers_;
  std::function<void()> on_inventory_change_;
  ChannelListener on_channel_message_;
};

}  // namespace herd::agent
