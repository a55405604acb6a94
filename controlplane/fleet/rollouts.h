// RolloutEngine: restarts a module across hosts batch by batch (FleetRestartRequest).
//
// Each rollout runs on its own thread: hosts are taken in batches (batch_size or
// batch_percent of the hosts that have the module); within a batch at most max_unavailable
// restart at once; a host is done when its agent reports the module restarted and online for
// wait_healthy_ms; the rollout stops (FAILED, the rest SKIPPED) once failure_threshold hosts
// failed. Every change is stored and pushed to watchers. A rollout still running when the
// control plane stops (or found RUNNING at start) is ABORTED: its hosts that were told to
// restart and did not answer are INTERRUPTED (they may have restarted), the rest SKIPPED.
#pragma once

#include <functional>
#include <map>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "common/clock.h"
#include "common/logging.h"
#include "controlplane/core/hub.h"
#include "controlplane/store/store.h"
#include "herd/v1/fleet.pb.h"

namespace herd::controlplane {

class RolloutEngine {
 public:
  RolloutEngine(Hub& hub, Store& store, const Clock& clock);
  ~RolloutEngine();

  // Marks rollouts left RUNNING by a previous run as ABORTED.
  absl::Status Start();
  // Aborts running rollouts and waits for their threads.
  void Stop();

  absl::StatusOr<herd::v1::Rollout> Create(const herd::v1::FleetRestartRequest& req,
                                           const Actor& actor);
  absl::StatusOr<herd::v1::Rollout> Get(const std::string& id) const;
  absl::StatusOr<std::vector<herd::v1::Rollout>> List(size_t limit) const;

  // Called with the rollout now and after every change; the last call has a finished state.
  using Watcher = std::function<void(const herd::v1::Rollout&)>;
  absl::StatusOr<uint64_t> Watch(const std::string& id, Watcher watcher);
  void Unwatch(uint64_t id);

  // For /metrics: rollouts running now, and those this process finished, by final state
  // (the ones a previous run left RUNNING count as aborted when Start() closes them).
  struct Counts {
    uint64_t running = 0, succeeded = 0, failed = 0, aborted = 0;
  };
  Counts counts() const;

 private:
  // Counts a finished rollout. Needs mu_.
  void CountFinished(herd::v1::RolloutState state) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);

  void Run(std::string id);
  // Publishes the rollout's current state to Get, List and watchers, and stores it.
  void Publish(const herd::v1::Rollout& r);

  Hub& hub_;
  Store& store_;
  const Clock& clock_;
  std::shared_ptr<spdlog::logger> log_;
  mutable absl::Mutex mu_;
  std::map<std::string, herd::v1::Rollout> running_ ABSL_GUARDED_BY(mu_);
  std::map<uint64_t, std::pair<std::string, Watcher>> watchers_ ABSL_GUARDED_BY(mu_);
  uint64_t next_watcher_ ABSL_GUARDED_BY(mu_) = 1;
  bool stopping_ ABSL_GUARDED_BY(mu_) = false;
  Counts finished_ ABSL_GUARDED_BY(mu_);
  std::vector<std::thread> threads_ ABSL_GUARDED_BY(mu_);
};

}  // namespace herd::controlplane
