// RolloutEngine's private parts, shared by its two source files: rollouts.cc (a rollout's
// steps) and rollout_takeover.cc (what replicas add: taking a rollout over, handing it over,
// watching one another replica runs). Not for use outside them.
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "absl/functional/any_invocable.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "common/scheduler.h"
#include "controlplane/fleet/rollouts.h"
#include "herd/v1/fleet.pb.h"

namespace herd::controlplane {

// How far a rollout's record has come: its hosts' states (pending < restarting < an
// outcome) and whether it finished. Records of one rollout only grow in it, whichever replica
// writes them, so a watcher fed from the store skips any record not above the last it got.
inline uint64_t Progress(const herd::v1::Rollout& r) {
  uint64_t p = r.state() == herd::v1::ROLLOUT_STATE_RUNNING ? 0 : 1;
  for (const auto& h : r.hosts()) {
    if (h.state() == herd::v1::ROLLOUT_HOST_STATE_RESTARTING) {
      p += 1;
    } else if (h.state() != herd::v1::ROLLOUT_HOST_STATE_PENDING) {
      p += 2;
    }
  }
  return p;
}

// The answers of the group of hosts told last, filed by the relay's callbacks (hub threads).
struct RolloutEngine::Inbox {
  explicit Inbox(size_t n) : results(n), left(n) {}
  // Files host i's answer; true for the group's last one. A second answer is ignored.
  bool Put(size_t i, absl::StatusOr<herd::v1::RestartResult> res) {
    absl::MutexLock l(&mu);
    if (i >= results.size() || results[i].has_value()) return false;
    results[i] = std::move(res);
    return --left == 0;
  }
  // Host i's answer, once (nullopt if it has not answered, or was taken already).
  std::optional<absl::StatusOr<herd::v1::RestartResult>> Take(size_t i) {
    absl::MutexLock l(&mu);
    if (i >= results.size() || !results[i].has_value()) return std::nullopt;
    std::optional<absl::StatusOr<herd::v1::RestartResult>> out = std::move(results[i]);
    results[i].reset();
    return out;
  }

  absl::Mutex mu;
  std::vector<std::optional<absl::StatusOr<herd::v1::RestartResult>>> results ABSL_GUARDED_BY(mu);
  size_t left ABSL_GUARDED_BY(mu);
};

// A running rollout's working state (under step_mu_).
struct RolloutEngine::Active {
  herd::v1::Rollout r;  // the working copy: published after each change
  uint32_t failures = 0;
  uint32_t batch = 0;         // the batch being rolled out
  bool batch_open = false;    // members holds its hosts
  std::vector<int> members;   // its hosts (indexes in r.hosts)
  size_t next = 0;            // members told so far
  std::vector<int> group;     // the hosts told last (indexes in r.hosts)
  std::shared_ptr<Inbox> inbox;  // their answers
  // Replicas: the store could not confirm that this replica still owns the rollout (no
  // quorum): no step runs until the next scan confirms it (RolloutEngine::Scan).
  bool stalled = false;
  // Replicas: Owned confirmed it with the store in this step (a step confirms once).
  bool confirmed = false;
  // Replicas: what a takeover did (kept in the record's reason, and in the final one).
  std::string takeover_note;
};

// Scheduled steps and relay callbacks hold this, not the engine: Close (from Stop) makes
// them no-ops, waiting for a step that is running. Its two locks are never held together,
// nor with the engine's: Post may run inside RestartOnHosts, inside a step that holds mu_
// as a reader.
class RolloutEngine::Life : public std::enable_shared_from_this<Life> {
 public:
  Life(RolloutEngine* engine, Scheduler& scheduler) : scheduler_(&scheduler), engine_(engine) {}

  // Runs fn(engine) on the scheduler's thread after `delay` (soon by default), unless
  // closed by then.
  void Post(absl::AnyInvocable<void(RolloutEngine&)> fn,
            absl::Duration delay = absl::ZeroDuration()) {
    std::lock_guard<std::mutex> l(post_mu_);
    if (scheduler_ == nullptr) return;
    scheduler_->RunAfter(delay, [self = shared_from_this(), fn = std::move(fn)]() mutable {
      absl::ReaderMutexLock l(&self->mu_);
      if (self->engine_ != nullptr) fn(*self->engine_);
    });
  }
  void Close() {
    {
      std::lock_guard<std::mutex> l(post_mu_);
      scheduler_ = nullptr;
    }
    absl::MutexLock l(&mu_);  // waits for the step running now, if any
    engine_ = nullptr;
  }

 private:
  std::mutex post_mu_;
  Scheduler* scheduler_;  // guarded by post_mu_; null once closed
  absl::Mutex mu_;
  RolloutEngine* engine_ ABSL_GUARDED_BY(mu_);
};

}  // namespace herd::controlplane
