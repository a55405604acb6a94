// DeployMover: what a deploy rollout (issue 24) does to each group of hosts, for the
// RolloutEngine (its batches, max-unavailable, failure threshold and replicas' takeover are
// the restart rollouts' own).
//
//   Move      pins the group's hosts to the new version in the declaration's value
//             (DeployPins: one store write, audited per step, pushed to those hosts only),
//             then watches each host until it passes or fails its health gate.
//   the gate  the host's agent reports the deployment converged and the module's unit at
//             the new version, online for wait_healthy_ms with no restart. It fails when the
//             install fails, when the unit restarts, stops or errors at the new version, or
//             when host_timeout_ms passes first (an offline host waits for it too).
//   Finished  succeeded: the declaration takes the new version and loses its pins. Failed or
//             aborted: the hosts that failed (or were interrupted) are unpinned, so they go
//             back to the previous version (their agent kept its artifact), unless
//             no_rollback; the hosts that passed stay at the new version, pinned, until the
//             operator deploys again (either version).
//
// The watch is a poll (every `poll`, on the scheduler given) of the hub's view of each
// waiting host: what the agents already report, no new message on the wire.
#pragma once

#include <functional>
#include <string>
#include <vector>

#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "common/logging.h"
#include "common/scheduler.h"
#include "controlplane/core/fleet_interfaces.h"
#include "controlplane/fleet/rollouts.h"

namespace herd::controlplane {

class DeployMover final : public RolloutEngine::Mover {
 public:
  // `scheduler` (which must outlive this) runs the poll, on its clock.
  DeployMover(HostDirectory& hosts, ConfigService& config, Scheduler& scheduler,
              absl::Duration poll = absl::Milliseconds(500));
  ~DeployMover() override;

  void Move(const herd::v1::Rollout& r, const std::vector<std::string>& hosts,
            std::function<void(size_t, absl::StatusOr<herd::v1::RestartResult>)> answer)
      override;
  void Finished(herd::v1::Rollout& r) override;

  // One round of the watch now (what the scheduler runs every `poll`).
  void Poll();
  size_t waiting() const;

 private:
  struct Waiting {
    std::string rollout_id, module, host, to_version;
    size_t index = 0;
    absl::Duration wait_healthy;
    absl::Time deadline;  // monotonic
    std::function<void(size_t, absl::StatusOr<herd::v1::RestartResult>)> answer;
    // Seen at the new version: since when online, with how many restarts then.
    absl::Time online_since = absl::InfiniteFuture();
    int64_t restarts_at_version = -1;
  };
  // Where one waiting host stands: empty while it waits, "ok" once it passed, else why it
  // failed.
  std::string Check(Waiting& w, absl::Time now);

  HostDirectory& hosts_;
  ConfigService& config_;
  const Clock& clock_;
  std::shared_ptr<spdlog::logger> log_;
  mutable absl::Mutex mu_;
  std::vector<Waiting> waiting_ ABSL_GUARDED_BY(mu_);
  PeriodicTask poll_;  // last: stopped first
};

}  // namespace herd::controlplane
