// RolloutEngine: restarts a module across hosts batch by batch (FleetRestartRequest).
//
// Hosts are taken in batches (batch_size or batch_percent of the hosts that have the
// module); within a batch at most max_unavailable restart at once (a "group"); a host is
// done when its agent reports the module restarted and online for wait_healthy_ms; the
// rollout stops (FAILED, the rest SKIPPED) once failure_threshold hosts failed. Every change
// is stored and pushed to watchers, in order. A rollout still running when the control plane
// stops (Stop), or found RUNNING at start, is ABORTED: its hosts that were told to restart
// and did not answer are INTERRUPTED (they may have restarted), the rest SKIPPED.
//
// A rollout is a state machine, not a thread: a step tells one group of hosts to restart
// (RequestRelay::RestartOnHosts) and returns; the relay's answers arrive on the hub's threads,
// which only file them and, with the group's last answer, post the next step to the
// Scheduler. So every step (and every store write and watcher call) runs on the scheduler's
// thread, one at a time, and no hub thread waits for the disk. Stop runs on its caller's
// thread; it and the steps take step_mu_, which orders the changes of every rollout.
//
// Replicas (issue 22): a RolloutOwnership says which replica steps which rollout. On one
// machine (SingleNodeOwnership, the default) all of the above holds as is. With replicas
// (EtcdRolloutOwnership) a rollout is acquired when created and released when finished; every
// step first confirms it is still this replica's (a replica whose lease was replaced stops
// stepping and lets whoever wins the owner key go on); a RUNNING rollout with no owner is
// taken over from its stored record (rollout_takeover.cc: hosts told to restart that never
// answered are INTERRUPTED and not restarted again); Stop hands running rollouts over instead
// of aborting them; watchers of a rollout another replica runs get its stored changes.
//
// Locks, in this order: step_mu_ → watch_mu_ → mu_; Life's locks are taken alone (see
// rollouts_internal.h). No callback into a watcher is made under mu_.
#pragma once

#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <set>
#include <string>
#include <utility>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "common/logging.h"
#include "common/scheduler.h"
#include "controlplane/core/fleet_interfaces.h"
#include "controlplane/fleet/rollout_ownership.h"
#include "controlplane/store/store.h"
#include "herd/v1/fleet.pb.h"

namespace herd::controlplane {

class RolloutEngine {
 public:
  // `scheduler` runs the rollouts' steps and must outlive the engine; its clock stamps them.
  // One machine: every rollout is this process's.
  RolloutEngine(HostDirectory& hosts, RequestRelay& relay, AuditLog& audit, Store& store,
                Scheduler& scheduler);
  // Replicas: `owners` says which rollouts are this replica's; it must outlive the engine.
  RolloutEngine(HostDirectory& hosts, RequestRelay& relay, AuditLog& audit, Store& store,
                Scheduler& scheduler, RolloutOwnership& owners);
  ~RolloutEngine();  // Stop()
  RolloutEngine(const RolloutEngine&) = delete;
  RolloutEngine& operator=(const RolloutEngine&) = delete;

  // Marks rollouts left RUNNING by a previous run as ABORTED (one machine); with replicas,
  // starts the ownership's events and looks for RUNNING rollouts with no owner at once,
  // then every scan_period.
  absl::Status Start();
  // Aborts the running rollouts (stored and pushed to their watchers before it returns);
  // with replicas, hands them over instead (answers in are stored, the owner key released:
  // another replica takes each over). After it returns no step runs, and answers still to
  // come are ignored. Idempotent; not from a scheduler task or a watcher.
  void Stop();

  absl::StatusOr<herd::v1::Rollout> Create(const herd::v1::FleetRestartRequest& req,
                                           const Actor& actor);

  // Deploy rollouts (issue 24): what moves a group of hosts to a new module version where a
  // restart rollout restarts them (DeployMover, deploy_rollouts.h). Answers come as a
  // restart's do: one per host, a UnitRestartResult saying whether it passed the gate.
  class Mover {
   public:
    virtual ~Mover() = default;
    virtual void Move(const herd::v1::Rollout& r, const std::vector<std::string>& hosts,
                      std::function<void(size_t, absl::StatusOr<herd::v1::RestartResult>)>
                          answer) = 0;
    // The rollout has its final state and is about to be published (engine's thread): the
    // declaration takes the new version, or a failed rollout's hosts are moved back (noted
    // in r.deploy().rolled_back).
    virtual void Finished(herd::v1::Rollout& r) = 0;
  };
  // Set before any deploy rollout is created; must outlive the engine.
  void set_mover(Mover* mover) { mover_ = mover; }
  // A rollout of req's version over `hosts` (id, hostname; the online hosts under the
  // declaration), from the declaration in `deploy`.
  absl::StatusOr<herd::v1::Rollout> CreateDeploy(
      const herd::v1::DeployRequest& req, herd::v1::RolloutDeploy deploy,
      const std::vector<std::pair<std::string, std::string>>& hosts, const Actor& actor);
  // The running deploy rollout of `module` at `scope_text` (store.h's ScopeText), if
  // any: a declaration being rolled out is not changed by another deploy meanwhile.
  std::optional<std::string> RunningDeploy(const std::string& module,
                                           const std::string& scope_text) const;
  absl::StatusOr<herd::v1::Rollout> Get(const std::string& id) const;
  absl::StatusOr<std::vector<herd::v1::Rollout>> List(size_t limit) const;

  // Called with the rollout now and after every change, in order, each change once; the
  // last call has a finished state. Calls are made on the scheduler's thread (or Stop's),
  // and must not block.
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
  struct Active;
  struct Inbox;
  class Life;

  // Steps (on the scheduler's thread, under step_mu_).
  void Begin(const std::string& id);
  void OnAnswered(const std::string& id, const Inbox* inbox);
  // Tells the next group of hosts to restart, or finishes the rollout when none is left.
  void Next(Active& a) ABSL_EXCLUSIVE_LOCKS_REQUIRED(step_mu_);
  bool StoreBeforeTelling(Active& a, const std::vector<int>& group)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(step_mu_);
  void TellGroup(Active& a, std::vector<int> group) ABSL_EXCLUSIVE_LOCKS_REQUIRED(step_mu_);
  // Files the answers the group's inbox holds; false when some host has not answered.
  bool ApplyAnswers(Active& a) ABSL_EXCLUSIVE_LOCKS_REQUIRED(step_mu_);
  // Sets the final state, publishes it and forgets the rollout.
  void Finish(const std::string& id, herd::v1::RolloutState state, const std::string& reason)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(step_mu_);
  Active* FindActive(const std::string& id) ABSL_EXCLUSIVE_LOCKS_REQUIRED(step_mu_);

  // Replicas (rollout_takeover.cc). True if the rollout is still this replica's to step
  // (always on one machine). False when it is not: forgotten (Drop), or stalled until the
  // next scan when the store cannot say.
  bool Owned(Active& a) ABSL_EXCLUSIVE_LOCKS_REQUIRED(step_mu_);
  // Forgets a rollout this replica no longer owns: no final state, no count; its watchers
  // go on with the stored record (the new owner's changes).
  void Drop(const std::string& id, const std::string& why) ABSL_EXCLUSIVE_LOCKS_REQUIRED(step_mu_);
  absl::Status StartShared();
  void StopShared() ABSL_EXCLUSIVE_LOCKS_REQUIRED(step_mu_);
  // Drops rollouts lost, retries stalled ones, and takes over the RUNNING ones with no
  // owner: those known RUNNING from the stored changes seen (one etcd read each), and, with
  // `read_store` (at start, after a watch was re-established), those the store lists.
  void Scan(bool read_store);
  // Scan every scan_period.
  void Tick();
  void OnOwnerGone(const std::string& id, const std::string& previous);
  // Resumes a RUNNING rollout with no owner from its stored record, if this replica wins it.
  void TakeOver(const std::string& id, const std::string& previous)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(step_mu_);
  // A stored change of a rollout another replica runs: to this replica's watchers of it.
  void OnStoredChange(const herd::v1::Rollout& r);
  // Files the answers in and goes on (threshold, next group, or finish).
  void Continue(Active& a) ABSL_EXCLUSIVE_LOCKS_REQUIRED(step_mu_);

  // Stores `r` and hands it to Get, List and watchers; a finished one leaves the running set.
  void Publish(const herd::v1::Rollout& r) ABSL_EXCLUSIVE_LOCKS_REQUIRED(step_mu_);
  // Counts a finished rollout.
  void CountFinished(herd::v1::RolloutState state) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  herd::v1::Rollout NewRollout(const herd::v1::FleetRestartRequest& req, const Actor& actor,
                               const std::vector<std::pair<std::string, std::string>>& hosts,
                               uint32_t batch) const;
  // Create's last steps: owned, stored, audited, started.
  absl::StatusOr<herd::v1::Rollout> Launch(herd::v1::Rollout r, const Actor& actor,
                                           absl::Time called);

  Mover* mover_ = nullptr;

  // The ownership on one machine when none is given (owners_ then points at it).
  std::unique_ptr<RolloutOwnership> single_node_;
  RolloutOwnership& owners_;
  HostDirectory& hosts_;
  RequestRelay& relay_;
  AuditLog& audit_;
  Store& store_;
  Scheduler& scheduler_;
  const Clock& clock_;  // scheduler_'s
  std::shared_ptr<spdlog::logger> log_;
  // What posted steps and relay callbacks reach the engine through: Stop closes it, so that
  // neither touches an engine that has stopped (or been destroyed).
  std::shared_ptr<Life> life_;

  absl::Mutex step_mu_;
  std::map<std::string, std::unique_ptr<Active>> active_ ABSL_GUARDED_BY(step_mu_);
  // Orders deliveries to watchers with Watch's first call.
  absl::Mutex watch_mu_ ABSL_ACQUIRED_AFTER(step_mu_);
  mutable absl::Mutex mu_ ABSL_ACQUIRED_AFTER(watch_mu_);
  // The running rollouts as last published (what Get and List return).
  std::map<std::string, herd::v1::Rollout> running_ ABSL_GUARDED_BY(mu_);
  std::map<uint64_t, std::pair<std::string, Watcher>> watchers_ ABSL_GUARDED_BY(mu_);
  uint64_t next_watcher_ ABSL_GUARDED_BY(mu_) = 1;
  // Replicas: the Progress (rollouts_internal.h) of the latest record given to the watchers
  // of each watched rollout, so that a stored change is given once, and never an older one
  // (this replica's own writes come back through the ownership's `changed` too).
  std::map<std::string, uint64_t> delivered_ ABSL_GUARDED_BY(mu_);
  // Replicas: the rollouts whose latest stored record seen is RUNNING, run here or not (from
  // the stored changes and the store's list): what Scan checks for an owner.
  std::set<std::string> seen_running_ ABSL_GUARDED_BY(mu_);
  bool stopping_ ABSL_GUARDED_BY(mu_) = false;
  Counts finished_ ABSL_GUARDED_BY(mu_);
};

}  // namespace herd::controlplane
