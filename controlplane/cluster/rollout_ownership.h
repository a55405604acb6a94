// EtcdRolloutOwnership: which replica runs which rollout, in etcd (issue 22; the seam is
// controlplane/fleet/rollout_ownership.h, the story docs/controlplane.md "Rollouts across
// replicas").
//
// The owner of rollout <id> is the key <p>/rollout-owners/<id>, holding the owner's replica
// id, put under the replica's lease (ReplicaDirectory::lease_id()) by a Txn that creates it
// only if absent: one replica wins, whatever the races. The owner deletes it when the rollout
// finishes (after storing the final record) or is handed over; if the owner dies, etcd deletes
// it when the lease expires. Every replica watches <p>/rollout-owners/ and reports a deleted
// key (Events::owner_gone, naming the owner it last saw), so that the others read the rollout
// and, if it is still RUNNING, contend for the key; the engine's periodic scan (OwnerOf)
// catches what a watch missed. It also watches <p>/rollouts/ (the EtcdStore's records: a
// serialized herd.v1.Rollout per key) for Events::changed.
//
// Ownership is tied to the lease it was won under: once the replica's lease is replaced (it
// lost etcd for longer than the lease) StillOwned is false, and Confirm asks etcd whether the
// key is still there under that lease, so a replica never steps a rollout another won.
//
// Thread-safe. Events run on the etcd client's watch threads; Start/Stop/Sweep from one thread
// at a time.
#pragma once

#include <cstdint>
#include <map>
#include <memory>
#include <string>

#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "common/logging.h"
#include "controlplane/cluster/cluster.h"
#include "controlplane/etcd/etcd_client.h"
#include "controlplane/fleet/rollout_ownership.h"

namespace herd::controlplane {

class EtcdRolloutOwnership final : public RolloutOwnership {
 public:
  struct Options {
    // The etcd prefix of the whole control plane (--etcd-prefix).
    std::string prefix = "/herd";
    // How often the engine scans for orphans and this retries what failed.
    absl::Duration scan_period = absl::Seconds(5);
    // How long a rollout taken over waits before telling hosts (RolloutOwnership::
    // takeover_grace): about the time agents take to find another replica (issue 22: 15 s
    // at most), less the lease's TTL, which has passed already when the key goes.
    absl::Duration takeover_grace = absl::Seconds(5);
  };

  // `etcd` and `replicas` must outlive this.
  EtcdRolloutOwnership(etcd::Client& etcd, const ReplicaDirectory& replicas, Options options);
  ~EtcdRolloutOwnership() override;  // Stop()
  EtcdRolloutOwnership(const EtcdRolloutOwnership&) = delete;
  EtcdRolloutOwnership& operator=(const EtcdRolloutOwnership&) = delete;

  bool shared() const override { return true; }
  const std::string& self_id() const override { return replicas_.self_id(); }
  absl::Duration scan_period() const override { return options_.scan_period; }
  absl::Duration takeover_grace() const override { return options_.takeover_grace; }
  // Reads the owner keys (to name a dead owner) and starts both watches; an etcd that does
  // not answer is an error (the control plane does not start without its store).
  absl::Status Start(Events events) override;
  void Stop() override;
  absl::Status Acquire(const std::string& id) override;
  void Release(const std::string& id) override;
  bool StillOwned(const std::string& id) const override;
  absl::StatusOr<bool> Confirm(const std::string& id) override;
  absl::StatusOr<std::string> OwnerOf(const std::string& id) override;
  // Retries releases etcd refused, and re-establishes a watch that ended (compacted), then
  // asks the engine to read the store again (Events::resync).
  void Sweep() override;

  // The key of a rollout's owner.
  std::string OwnerKey(const std::string& id) const { return owners_prefix_ + id; }

 private:
  // What this replica owns: the lease it won the key under, and the revision it did so at
  // (a deletion older than that is of a previous holder of the key).
  struct Held {
    int64_t lease = 0;
    int64_t revision = 0;
  };

  absl::Status WatchOwners() ABSL_EXCLUSIVE_LOCKS_REQUIRED(watch_mu_);
  absl::Status WatchRollouts() ABSL_EXCLUSIVE_LOCKS_REQUIRED(watch_mu_);
  // Starts the watches that ended again; true if all did.
  bool Rewatch(bool owners, bool rollouts) ABSL_EXCLUSIVE_LOCKS_REQUIRED(watch_mu_);
  void OnOwnerBatch(const etcd::WatchBatch& batch);
  void OnRolloutBatch(const etcd::WatchBatch& batch);
  // Deletes the owner key if it is still under `lease`.
  absl::Status DeleteIfHeld(const std::string& id, int64_t lease);

  etcd::Client& etcd_;
  const ReplicaDirectory& replicas_;
  const Options options_;
  const std::string owners_prefix_;    // <p>/rollout-owners/
  const std::string rollouts_prefix_;  // <p>/rollouts/
  std::shared_ptr<spdlog::logger> log_;
  // Set by Start before the watches begin, read by their callbacks; unchanged until Stop has
  // ended the watches.
  Events events_;

  // Start, Stop and Sweep (re)create and end the watches under it; never taken by a callback.
  absl::Mutex watch_mu_;
  std::unique_ptr<etcd::Watch> owner_watch_ ABSL_GUARDED_BY(watch_mu_);
  std::unique_ptr<etcd::Watch> rollout_watch_ ABSL_GUARDED_BY(watch_mu_);
  bool stopped_ ABSL_GUARDED_BY(watch_mu_) = false;

  mutable absl::Mutex mu_ ABSL_ACQUIRED_AFTER(watch_mu_);
  std::map<std::string, Held> owned_ ABSL_GUARDED_BY(mu_);
  // Each owned rollout's owner as last seen (to name it when its key goes).
  std::map<std::string, std::string> owners_ ABSL_GUARDED_BY(mu_);
  // Releases etcd refused (no quorum): id → lease, retried by Sweep.
  std::map<std::string, int64_t> unreleased_ ABSL_GUARDED_BY(mu_);
  // A watch ended (compacted, cancelled): Sweep starts it again.
  bool rewatch_owners_ ABSL_GUARDED_BY(mu_) = false;
  bool rewatch_rollouts_ ABSL_GUARDED_BY(mu_) = false;
};

}  // namespace herd::controlplane
