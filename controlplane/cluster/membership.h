// EtcdMembership: what one control-plane replica knows of the others, kept in etcd (the key
// layout is cluster.h's). It is the replica's ReplicaDirectory and the hub's PresenceSink.
//
//   lease         one per replica, kept alive in the background (etcd::KeptLease); every key
//                 below is put under it, so a dead replica's keys go when its lease expires.
//   <p>/replicas/<id> → the replica's address (host:port, what peers dial). Peers() is a
//                 watch of <p>/replicas/, answered from memory.
//   <p>/presence/<host> → the id of the replica holding the host's stream. HolderOf() is a
//                 watch of <p>/presence/ (and, for hosts held here, what the hub said).
//   <p>/cluster/peer-secret  created once by the first replica (a Txn: only if absent),
//                 read by every other one; not leased.
//
// Presence is never written on the hub's hot path: HostAttached / HostDetached (called under
// a host's lock) only record the host's latest state in a queue. One thread drains it into
// Txns of at most max_batch_ops operations (etcd's --max-txn-ops, default 128): puts under the
// lease for attached hosts; for detached ones, a delete guarded by the key still naming this
// replica (the host may already be held by another: its key is not ours to delete). While
// etcd fails (no quorum, unreachable), the batch stays queued and is tried again after a
// backoff with jitter; a newer state of a host queued meanwhile wins over the older one.
// When the lease is replaced (it expired while etcd was unreachable: KeptLease's on_new),
// the replica's key and the presence of every host held here are put again under the new one.
//
// Threads: the presence thread; the client's watch and lease threads (callbacks: short, under
// mu_). Every public method is thread-safe. mu_ is a leaf lock (last in the hub's order).
#pragma once

#include <atomic>
#include <condition_variable>
#include <cstdint>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "absl/status/status.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "common/backoff.h"
#include "common/logging.h"
#include "controlplane/cluster/cluster.h"
#include "controlplane/cluster/prefix_watch.h"
#include "controlplane/core/replica_hooks.h"
#include "controlplane/etcd/etcd_client.h"

namespace herd::controlplane {

struct MembershipOptions {
  // The etcd prefix (--etcd-prefix), without a trailing '/'.
  std::string prefix = "/herd";
  // This replica's id: unique among the replicas (letters, digits, '.', '_', '-', ':').
  std::string self_id;
  // host:port of its gRPC server as peers dial it (--advertise).
  std::string address;
  // How long the replica's keys outlive it: a dead replica's hosts are released this long
  // after it stopped answering etcd (agents reconnect elsewhere sooner, by themselves).
  absl::Duration lease_ttl = absl::Seconds(10);
  // Operations per presence Txn (etcd's --max-txn-ops).
  size_t max_batch_ops = 128;
  // Between tries of a failed presence write.
  BackoffOptions retry{.initial = absl::Milliseconds(200),
                       .max = absl::Seconds(10),
                       .multiplier = 2.0,
                       .jitter = 0.5};
};

class EtcdMembership final : public ReplicaDirectory, public PresenceSink {
 public:
  EtcdMembership(etcd::Client& client, MembershipOptions options);
  ~EtcdMembership() override { Stop(); }
  EtcdMembership(const EtcdMembership&) = delete;
  EtcdMembership& operator=(const EtcdMembership&) = delete;

  // Takes the lease, puts the replica's key, reads (or creates) the peer secret, starts the
  // watches and the presence thread. Its error when etcd cannot answer (nothing kept then):
  // a replica does not start without its store.
  absl::Status Start();
  // The address peers dial, when it is known only once the server is bound (--listen with
  // port 0): before Start.
  void set_address(std::string address) { options_.address = std::move(address); }
  // Ends the thread and the watches, then revokes the lease (best effort): the replica's
  // key and its hosts' presence go with it, so peers see them released at once. Idempotent.
  void Stop();

  // ---- ReplicaDirectory (from memory)
  const std::string& self_id() const override { return options_.self_id; }
  std::vector<ReplicaInfo> Peers() const override;
  std::optional<ReplicaInfo> HolderOf(const std::string& host_id) const override;
  std::string peer_secret() const override;
  int64_t lease_id() const override;

  // ---- PresenceSink (queues only)
  void HostAttached(const std::string& host_id) override;
  void HostDetached(const std::string& host_id) override;

  // Waits until every presence change queued so far is written; while etcd fails, returns
  // the last failure at once (the changes stay queued). For tests and shutdown.
  absl::Status FlushPresence();

  struct Stats {
    uint64_t txns = 0;           // presence Txns that etcd applied
    uint64_t ops = 0;            // presence puts and deletes in them
    uint64_t failures = 0;       // presence writes that failed (and were retried)
    uint64_t not_ours = 0;       // detached hosts whose key another replica held already
    uint64_t leases_replaced = 0;
    size_t queued = 0;
  };
  Stats stats() const;

 private:
  std::string ReplicaKey(const std::string& id) const;
  std::string PresenceKey(const std::string& host) const;
  absl::Status LoadPeerSecret();
  // The lease's callbacks (client's thread).
  void OnLeaseLost();
  void OnNewLease(int64_t lease);
  // The watches' handlers.
  void OnReplicas(const etcd::RangeResult* all, const etcd::WatchBatch* batch);
  void OnPresence(const etcd::RangeResult* all, const etcd::WatchBatch* batch);

  void Loop();
  // One Txn for `batch` (host → attached) and, with `replica_key`, the replica's own key.
  absl::Status WriteBatch(const std::map<std::string, bool>& batch, bool replica_key,
                          int64_t lease);
  // The detached hosts of a batch whose guard failed, one by one.
  absl::Status DeleteOneByOne(const std::vector<std::string>& hosts);

  etcd::Client& client_;
  MembershipOptions options_;  // address set before Start, then read-only
  std::shared_ptr<spdlog::logger> log_;
  Backoff backoff_;  // the presence thread's only
  // Set by Start, destroyed by Stop (the presence thread has ended then): not shared.
  std::unique_ptr<etcd::KeptLease> kept_lease_;
  // Its current id, as its callbacks told (0 while lost): read without calling into the
  // KeptLease, whose callbacks take mu_.
  std::atomic<int64_t> lease_{0};
  std::unique_ptr<PrefixWatch> replicas_watch_, presence_watch_;
  int64_t started_at_unix_ms_ = 0;

  // What the watches tell (their handlers are the only writers).
  mutable absl::Mutex view_mu_;
  std::map<std::string, ReplicaInfo> replicas_ ABSL_GUARDED_BY(view_mu_);  // self included
  std::map<std::string, std::string> holders_ ABSL_GUARDED_BY(view_mu_);   // host → replica
  std::string peer_secret_ ABSL_GUARDED_BY(view_mu_);

  // The presence queue.
  mutable std::mutex mu_;
  std::condition_variable work_cv_;  // the thread's: work, the lease back, stop
  std::condition_variable done_cv_;  // FlushPresence's: a write finished
  std::set<std::string> held_;           // hosts whose stream is attached here
  std::map<std::string, bool> pending_;  // host → attached, not yet written
  bool replica_key_dirty_ = false;       // put the replica's key again (a new lease)
  uint64_t queued_gen_ = 0, written_gen_ = 0;
  absl::Status last_write_;
  bool stop_ = false;
  bool started_ = false;
  Stats stats_;
  std::thread thread_;
};

}  // namespace herd::controlplane
