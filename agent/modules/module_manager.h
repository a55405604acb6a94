// ModuleManager: PM2's module system on top of the Supervisor.
//
// A module is a unit whose spec comes from a manifest (package.json) and that gets a
// channel (docs/module-protocol.md). The manager
//   - installs (npm name via `npm pack`, .tgz via `tar`, local directory in development
//     mode), runs `npm install --omit=dev` for Node modules with dependencies, records what
//     is installed in $HERD_HOME/modules.json, and starts apps[0] through the Supervisor
//     (which then resurrects it with the agent like any unit);
//   - gives each module process its channel and environment (config, name, dir) through the
//     Supervisor's UnitHooks, reads the channel on the EventLoop and keeps the module's
//     probes, actions, issues and events (ModuleChannelState);
//   - owns the local configuration (module_conf.json) and restarts exactly the module whose
//     values changed;
//   - triggers actions (one in flight per action, with a timeout) and returns the replies;
//   - watches development-mode directories with inotify and restarts on change (debounced).
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
#include "agent/modules/archive_scan.h"
#include "agent/modules/channel.h"
#include "agent/modules/manifest.h"
#include "agent/modules/module_config.h"
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

class ModuleManager final : public UnitHooks {
 public:
  template <typename T>
  using Done = std::function<void(absl::StatusOr<T>)>;

  ModuleManager(EventLoop& loop, Supervisor& supervisor, ModuleManagerOptions options);
  ~ModuleManager() override;
  ModuleManager(const ModuleManager&) = delete;
  ModuleManager& operator=(const ModuleManager&) = delete;

  // Loads modules.json and module_conf.json, and watches development-mode directories.
  // Call before Supervisor::Restore so that resurrected modules get their channel.
  absl::Status Load();

  void Install(const std::string& source, const std::string& base_dir,
               Done<herd::v1::ModuleInfo> done);
  void Uninstall(const std::string& name, bool keep_config,
                 Done<herd::v1::UninstallModuleResponse> done);
  void Update(const std::string& name, Done<herd::v1::ModuleInfo> done);

  absl::StatusOr<std::vector<herd::v1::ModuleConfig>> GetConfig(const std::string& module) const;
  void SetConfig(const herd::v1::SetConfigRequest& req, Done<herd::v1::ModuleConfig> done);
  void UnsetConfig(const herd::v1::UnsetConfigRequest& req, Done<herd::v1::ModuleConfig> done);

  void TriggerAction(const herd::v1::TriggerActionRequest& req,
                     Done<herd::v1::TriggerActionResponse> done);

  // Control plane mode: overrides come from the control plane's snapshot (cached in
  // $HERD_HOME/controlplane-config.json so a restart while it is away keeps them), and local
  // set/unset are refused. Call before Supervisor::Restore.
  absl::Status EnableManagedConfig(const std::string& controlplane);
  // Applies a snapshot whole, or rejects it whole (unknown module, a value that does not
  // convert to its default's type) keeping the last good one; restarts exactly the modules
  // whose values changed. `done` gets the ack to send.
  void ApplySnapshot(const herd::v1::ConfigSnapshot& snap, std::function<void(herd::v1::ConfigAck)> done);
  // The version of the snapshot in force (0 = none).
  uint64_t config_version() const { return managed_ ? snapshot_.version() : 0; }
  // What is installed, for the control plane.
  std::vector<herd::v1::ModuleInventory> Inventory() const;
  // Called after every install, update and uninstall (the uplink resends the inventory).
  void set_on_inventory_change(std::function<void()> f) { on_inventory_change_ = std::move(f); }

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
  struct Pending {
    uint64_t id = 0;
    std::string uuid;  // scoped actions
    EventLoop::Handle timer = 0;
    absl::Time started;
    std::vector<std::string> stream;
    Done<herd::v1::TriggerActionResponse> done;
  };
  struct Module {
    std::string name;
    std::string source;  // what install was given
    std::string dir;
    bool dev_mode = false;
    Manifest manifest;
    // Why the module cannot start (its package.json no longer loads), "" when it can. Such
    // a module stays listed and errored with this reason while the others run.
    std::string load_error;
    ModuleChannelState channel;
    std::unique_ptr<LineFramer> framer;
    int agent_fd = -1;       // our end of the socketpair
    int child_fd = -1;       // the child's end, between BeforeSpawn and AfterSpawn
    EventLoop::Handle watch = 0;
    std::map<std::string, Pending> pending;  // by action name
    // Development mode.
    int inotify_fd = -1;
    EventLoop::Handle inotify_watch = 0;
    std::map<int, std::string> watched_dirs;
    EventLoop::Handle debounce_timer = 0;
  };
  struct Prepared {
    std::string name, dir, source;
    bool dev_mode = false;
    Manifest manifest;
  };

  absl::StatusOr<Prepared> PrepareInstall(const std::string& source, const std::string& base_dir);
  void FinishInstall(absl::StatusOr<Prepared> prepared, Done<herd::v1::ModuleInfo> done);
  absl::Status SaveRecords();
  herd::v1::ModuleInfo Info(const Module& m) const;
  herd::v1::ModuleConfig ConfigOf(const Module& m) const;
  // The module's overrides (strings, PM2's layout) from the snapshot or module_conf.json.
  nlohmann::json Overrides(const std::string& module) const;
  std::string SnapshotPath() const;
  void RestartForConfig(Module& m, Done<herd::v1::ModuleConfig> done);
  // Modules that could not start after the last snapshot changed their values.
  std::set<std::string> config_failed_;
  // Restarts each module in turn; those that could not start are added to `failures`.
  void RestartEach(std::vector<std::string> names,
                   std::shared_ptr<std::vector<std::pair<std::string, std::string>>> failures,
                   std::function<void()> done);
  void OnReadable(const std::string& name);
  void CloseChannel(Module& m, const std::string& why);
  void FinishPending(Module& m, const std::string& action,
                     absl::StatusOr<herd::v1::TriggerActionResponse> result);
  bool SendLine(Module& m, const std::string& line);
  void StartWatching(Module& m);
  void StopWatching(Module& m);
  void AddWatchTree(Module& m, const std::string& dir);
  void OnInotify(const std::string& name);
  void RunOnWorker(std::function<void()> work);
  std::string PreloadPath() const;

  EventLoop& loop_;
  Supervisor& supervisor_;
  const ModuleManagerOptions options_;
  std::shared_ptr<spdlog::logger> log_;
  ModuleConfStore conf_;
  std::map<std::string, std::unique_ptr<Module>> modules_;
  std::map<std::string, bool> installing_;  // names with an install/update in progress
  std::vector<std::thread> workers_;
  uint64_t next_action_id_ = 1;
  bool managed_ = false;
  std::string controlplane_;
  herd::v1::ConfigSnapshot snapshot_;
  std::function<void()> on_inventory_change_;
};

}  // namespace herd::agent
