// RolloutOwnership: which control-plane replica runs (steps) a rollout (issue 22).
//
// A rollout is a state machine that exactly one RolloutEngine may step: two engines stepping
// one rollout would tell the same hosts to restart twice and overwrite each other's record.
// On one machine (SQLite) there is one engine, and SingleNodeOwnership (below) says so: every
// rollout is this process's, and one found RUNNING at start was left by a previous run of it
// (ABORTED, as always). With replicas over etcd, EtcdRolloutOwnership
// (controlplane/cluster/rollout_ownership.h) keeps an owner key per running rollout under the
// replica's lease: when the owner dies its lease ends, the key goes, and another replica takes
// the rollout over from its stored record (RolloutEngine, rollout_takeover.cc;
// docs/controlplane.md, "Rollouts across replicas").
//
// The engine calls every method on its scheduler's thread (Start and Stop on their caller's);
// Events run on the implementation's threads and must only post work.
#pragma once

#include <functional>
#include <string>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "herd/v1/fleet.pb.h"

namespace herd::controlplane {

class RolloutOwnership {
 public:
  struct Events {
    // A rollout's owner key went away: its owner finished it (the stored record says so), or
    // the owner's lease ended (it died, or lost etcd for longer than its lease). `previous`:
    // the replica that owned it, "" when not known. May be this replica's own rollout.
    std::function<void(const std::string& id, const std::string& previous)> owner_gone;
    // A rollout's stored record changed (any replica's write, this one's included): for the
    // watchers of rollouts that another replica runs.
    std::function<void(const herd::v1::Rollout&)> changed;
    // Changes may have been missed (a watch had to be established again): read the store.
    std::function<void()> resync;
  };

  virtual ~RolloutOwnership() = default;

  // False on a single node: no other process will ever run this one's rollouts, so one found
  // RUNNING at start is aborted and Stop aborts those running. True with replicas: a rollout
  // with no owner is taken over, and Stop hands the running ones over.
  virtual bool shared() const = 0;
  // This replica's id (for reasons and the audit log).
  virtual const std::string& self_id() const = 0;
  // How often the engine looks for rollouts it lost and RUNNING ones with no owner (and
  // calls Sweep). InfiniteDuration: never (single node).
  virtual absl::Duration scan_period() const = 0;
  // How long a rollout taken over waits before it tells its next group: the dead owner's
  // agents are moving to other replicas meanwhile, and a host told while it has no stream
  // answers "offline", a failure.
  virtual absl::Duration takeover_grace() const = 0;

  // Starts delivering Events; Stop ends them (after it returns no event runs).
  virtual absl::Status Start(Events events) = 0;
  virtual void Stop() = 0;

  // Claims the rollout for this replica. OK: it is ours. ALREADY_EXISTS: another replica owns
  // it (the message names it). UNAVAILABLE: the store cannot say (no quorum, no lease yet).
  virtual absl::Status Acquire(const std::string& id) = 0;
  // Gives up a rollout this replica owns (it finished, or is handed over). Best effort: a
  // release etcd refused is retried by Sweep; the key goes with the lease anyway.
  virtual void Release(const std::string& id) = 0;
  // From memory, no I/O: the rollout is ours as far as this replica knows (acquired, not
  // released, its key not seen deleted, and acquired under the replica's current lease).
  virtual bool StillOwned(const std::string& id) const = 0;
  // Asks the store, before a step tells hosts or writes the record: true if the rollout is
  // still ours; false (and forgotten) if not; UNAVAILABLE if the store cannot answer.
  virtual absl::StatusOr<bool> Confirm(const std::string& id) = 0;
  // The replica owning the rollout now, "" when none does.
  virtual absl::StatusOr<std::string> OwnerOf(const std::string& id) = 0;
  // Called every scan_period: retries what failed (releases, a watch to re-establish).
  virtual void Sweep() = 0;
};

// One control plane, no replicas: every rollout is this process's (today's behaviour).
class SingleNodeOwnership final : public RolloutOwnership {
 public:
  explicit SingleNodeOwnership(std::string self_id = "local") : self_id_(std::move(self_id)) {}
  bool shared() const override { return false; }
  const std::string& self_id() const override { return self_id_; }
  absl::Duration scan_period() const override { return absl::InfiniteDuration(); }
  absl::Duration takeover_grace() const override { return absl::ZeroDuration(); }
  absl::Status Start(Events) override { return absl::OkStatus(); }
  void Stop() override {}
  absl::Status Acquire(const std::string&) override { return absl::OkStatus(); }
  void Release(const std::string&) override {}
  bool StillOwned(const std::string&) const override { return true; }
  absl::StatusOr<bool> Confirm(const std::string&) override { return true; }
  absl::StatusOr<std::string> OwnerOf(const std::string&) override { return self_id_; }
  void Sweep() override {}

 private:
  std::string self_id_;
};

}  // namespace herd::controlplane
