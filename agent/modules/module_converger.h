// ModuleConverger: brings the host's modules to what the control plane wants on it (the
// `deployments` of its ConfigSnapshot, issue 24):
//   - a wanted module that is missing, or at another version, is installed from its source
//     (npm spec, or a .tgz or directory on the host) and marked managed;
//   - a managed module no longer wanted is uninstalled;
//   - a module installed by hand is left alone unless it is wanted (then it becomes managed,
//     at the wanted version).
// One install or uninstall at a time, on the loop thread. A failure is reported with its
// reason and tried again after a backoff (30 s, doubling to 10 min), or at once when the
// wanted state changes. Where each wanted module stands goes to the control plane with the
// inventory (DeploymentStatus). Without a control plane nothing is wanted and nothing moves;
// an agent restarted while the control plane is away resumes from the cached snapshot.
#pragma once

#include <functional>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "absl/time/time.h"
#include "agent/modules/module_manager.h"
#include "common/logging.h"
#include "common/scheduler.h"
#include "herd/v1/gateway.pb.h"

namespace herd::agent {

// What the converger needs of the installed modules (ModuleManagerModules below; tests give
// a fake). Called on the converger's thread; `done` may run later, on the same thread.
class ConvergerModules {
 public:
  virtual ~ConvergerModules() = default;
  virtual std::optional<ModuleManager::Installed> Installed(const std::string& name) const = 0;
  virtual std::vector<std::string> Managed() const = 0;
  virtual void SetManaged(const std::string& name, bool managed) = 0;
  virtual void Install(const std::string& source,
                       std::function<void(absl::StatusOr<herd::v1::ModuleInfo>)> done) = 0;
  virtual void Uninstall(const std::string& name, std::function<void(absl::Status)> done) = 0;
};

class ModuleManagerModules final : public ConvergerModules {
 public:
  explicit ModuleManagerModules(ModuleManager& m) : m_(m) {}
  std::optional<ModuleManager::Installed> Installed(const std::string& name) const override {
    return m_.InstalledModule(name);
  }
  std::vector<std::string> Managed() const override { return m_.ManagedModules(); }
  void SetManaged(const std::string& name, bool managed) override { m_.SetManaged(name, managed); }
  void Install(const std::string& source,
               std::function<void(absl::StatusOr<herd::v1::ModuleInfo>)> done) override {
    m_.Install(source, "/", std::move(done));
  }
  void Uninstall(const std::string& name, std::function<void(absl::Status)> done) override {
    m_.Uninstall(name, /*keep_config=*/false,
                 [done = std::move(done)](auto r) { done(r.ok() ? absl::OkStatus() : r.status()); });
  }

 private:
  ModuleManager& m_;
};

class ModuleConverger {
 public:
  struct Options {
    absl::Duration first_retry = absl::Seconds(30);
    absl::Duration max_retry = absl::Minutes(10);
  };
  ModuleConverger(Scheduler& scheduler, ConvergerModules& modules, Options options);
  ModuleConverger(Scheduler& scheduler, ConvergerModules& modules)
      : ModuleConverger(scheduler, modules, Options{}) {}
  ~ModuleConverger();
  ModuleConverger(const ModuleConverger&) = delete;
  ModuleConverger& operator=(const ModuleConverger&) = delete;

  // At most this many wanted modules (the first by name): what a peer sends is bounded.
  static constexpr size_t kMaxDesired = 256;
  // What is wanted now (the whole set); converging starts or goes on.
  void SetDesired(const google::protobuf::Map<std::string, herd::v1::DesiredModule>& desired);
  // Where each wanted module (and each managed one being removed) stands.
  std::vector<herd::v1::DeploymentStatus> Status() const;
  // Called when a status changes (the uplink resends the inventory).
  void set_on_change(std::function<void()> f) { on_change_ = std::move(f); }


 private:
  struct Item {
    herd::v1::DesiredModule want;
    herd::v1::DeploymentStatus status;
    absl::Time retry_at = absl::InfinitePast();
  };
  // Starts the next operation, if none runs; arms the retry timer for what waits.
  void Next();
  bool Converged(const std::string& name, const herd::v1::DesiredModule& want) const;
  void SetState(Item& item, const std::string& state, const std::string& error = "");
  // An install started for `asked` has ended.
  void Installed(const std::string& name, const herd::v1::DesiredModule& asked,
                 const absl::StatusOr<herd::v1::ModuleInfo>& info);
  void Removed(const std::string& name, const absl::Status& s);
  void Failed(Item& item, const std::string& error);
  void Changed();

  absl::Duration Backoff(uint32_t attempts) const;
  absl::Time Now() const { return scheduler_.clock().Monotonic(); }

  Scheduler& scheduler_;
  ConvergerModules& modules_;
  const Options options_;
  std::shared_ptr<spdlog::logger> log_;
  std::map<std::string, Item> items_;     // wanted, by name
  std::map<std::string, Item> removing_;  // managed, no longer wanted
  bool busy_ = false;
  Scheduler::Handle retry_timer_ = 0;
  std::function<void()> on_change_;
  // Callbacks that run after the converger is gone do nothing.
  std::shared_ptr<bool> alive_ = std::make_shared<bool>(true);
};

}  // namespace herd::agent
