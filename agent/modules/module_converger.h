// ModuleConverger: brings the host's modules to what the control plane wants on it (the
// `deployments` of its ConfigSnapshot, issue 24):
//   - a wanted module that is missing, or at another version, is installed from its source
//     (npm spec, or a .tgz or directory on the host) and marked managed;
//   - a managed module no longer wanted is uninstalled;
//   - a module installed by hand is left alone unless it is wanted (then it becomes managed,
//     at the wanted version).
// An uploaded artifact (source "sha256:HEX") is fetched from the control plane into
// `artifacts_dir` first (ArtifactFetcher: the bytes are checked against the digest before the
// file is there), hashed again before each install from it, and kept: per module the
// artifact installed last and the one before (so that going back to the previous version
// needs no fetch), plus any a wanted module names; others are removed.
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
#include "common/sha256.h"
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

// Fetches an artifact into `dest` (the Uplink, with the host credential); `done` on the
// converger's thread.
class ArtifactFetcher {
 public:
  virtual ~ArtifactFetcher() = default;
  virtual void Fetch(const std::string& sha256, const std::string& dest,
                     std::function<void(absl::Status)> done) = 0;
};

class ModuleConverger {
 public:
  struct Options {
    absl::Duration first_retry = absl::Seconds(30);
    absl::Duration max_retry = absl::Minutes(10);
    // Where fetched artifacts are kept (created if missing); empty: artifact sources fail.
    std::string artifacts_dir;
    // A fetch the control plane refused as busy (RESOURCE_EXHAUSTED) or that could not
    // reach it is tried again after a pause drawn from [1, this] (not the failure backoff:
    // a fleet-wide deploy makes the control plane busy on purpose).
    absl::Duration busy_retry_max = absl::Seconds(5);
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
  // Who fetches artifacts (must outlive the converger); none: artifact sources fail.
  void set_fetcher(ArtifactFetcher* fetcher) { fetcher_ = fetcher; }
  // The artifacts kept for `name` (newest first), for tests and describe.
  std::vector<std::string> KeptArtifacts(const std::string& name) const;


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
  // `wait` overrides the failure backoff (a busy control plane).
  void Failed(Item& item, const std::string& error, absl::Duration wait = absl::ZeroDuration());
  // Artifacts (module_converger_artifacts.cc). What to install for `item`: its source, or
  // the artifact's file once it is here and checked; nullopt when a fetch was started (or
  // failed: the item's state says which).
  std::optional<std::string> InstallSource(const std::string& name, Item& item);
  void Fetched(const std::string& name, const herd::v1::DesiredModule& asked,
               const absl::Status& s);
  std::string ArtifactPath(const std::string& sha256) const;
  // The artifact `name` was installed from (front of its kept list), or forgets `name`'s.
  void Remember(const std::string& name, const std::string& sha256);
  void Forget(const std::string& name);
  // Removes the files no module keeps or wants, and saves the kept lists.
  void Prune();
  void LoadKept();
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
  ArtifactFetcher* fetcher_ = nullptr;
  std::map<std::string, std::vector<std::string>> kept_;  // module → sha256s, newest first
  uint64_t rng_ = 0x9e3779b97f4a7c15ull;  // the busy pauses' jitter
  // Callbacks that run after the converger is gone do nothing.
  std::shared_ptr<bool> alive_ = std::make_shared<bool>(true);
};

}  // namespace herd::agent
