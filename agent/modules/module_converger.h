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
#include "agent/loop/event_loop.h"
#include "agent/modules/module_manager.h"
#include "common/logging.h"
#include "herd/v1/gateway.pb.h"

namespace herd::agent {

class ModuleConverger {
 public:
  ModuleConverger(EventLoop& loop, ModuleManager& modules);
  ~ModuleConverger();
  ModuleConverger(const ModuleConverger&) = delete;
  ModuleConverger& operator=(const ModuleConverger&) = delete;

  // What is wanted now (the whole set); converging starts or goes on.
  void SetDesired(const google::protobuf::Map<std::string, herd::v1::DesiredModule>& desired);
  // Where each wanted module (and each managed one being removed) stands.
  std::vector<herd::v1::DeploymentStatus> Status() const;
  // Called when a status changes (the uplink resends the inventory).
  void set_on_change(std::function<void()> f) { on_change_ = std::move(f); }

  static constexpr absl::Duration kFirstRetry = absl::Seconds(30);
  static constexpr absl::Duration kMaxRetry = absl::Minutes(10);

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

  EventLoop& loop_;
  ModuleManager& modules_;
  std::shared_ptr<spdlog::logger> log_;
  std::map<std::string, Item> items_;     // wanted, by name
  std::map<std::string, Item> removing_;  // managed, no longer wanted
  bool busy_ = false;
  EventLoop::Handle retry_timer_ = 0;
  std::function<void()> on_change_;
  // Callbacks that run after the converger is gone do nothing.
  std::shared_ptr<bool> alive_ = std::make_shared<bool>(true);
};

}  // namespace herd::agent
