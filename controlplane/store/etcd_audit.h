// The audit log of the etcd store (etcd_store.h): append with retention, list newest first.
// Keys and encoding: etcd_layout.h (<p>/audit/meta, <p>/audit/entries/<at>.<seq>).
//
// An append is: read the meta key and the few oldest entries (one Txn of reads), then one Txn
// guarded on the meta key's mod_revision that puts the entry, the new meta (next_seq + 1,
// count), and deletes the oldest entries that are beyond audit_max_entries or older than
// audit_max_age — at most audit_trim_per_append of them, so an append's work is bounded.
// Appends in this process are written one Txn at a time (they would only collide on the
// guard), and those that wait meanwhile go together in the next (group commit: up to
// kMaxBatch entries or kMaxBatchBytes, one read and one write for all, which is what lets a
// fleet register at the rate etcd commits rather than one round trip pair per host);
// appends from other replicas are retried on conflict.
#pragma once

#include <condition_variable>
#include <cstdint>
#include <deque>
#include <mutex>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "controlplane/etcd/etcd_client.h"
#include "controlplane/store/etcd_layout.h"
#include "controlplane/store/etcd_store.h"
#include "herd/v1/fleet.pb.h"

namespace herd::controlplane {

class EtcdAuditLog {
 public:
  EtcdAuditLog(etcd::Client& client, const EtcdKeys& keys, const EtcdStoreOptions& options)
      : client_(client), keys_(keys), options_(options) {}

  // The entries go into the group commit together (in order, in one Txn when they fit);
  // the first failure is returned.
  absl::Status Append(const std::vector<const herd::v1::AuditEntry*>& entries);
  // Newest first (time, then insertion), at most `limit`.
  absl::StatusOr<std::vector<herd::v1::AuditEntry>> List(size_t limit);
  // Writes entries as they are, with fresh sequence numbers, and the meta (migrate: oldest
  // first). No retention applied.
  absl::Status Import(const std::vector<herd::v1::AuditEntry>& oldest_first);

 private:
  struct Plan;
  // An Append waiting for its entry to be written (by itself or by the append writing then).
  struct Waiter {
    const herd::v1::AuditEntry* entry;
    absl::Status status;
    bool done = false;
  };
  static constexpr size_t kMaxBatch = 32;                 // Txn ops: entries, trims, meta
  static constexpr size_t kMaxBatchBytes = 512 * 1024;    // under etcd's request limit
  // Takes the next batch from waiting_ (under mu_).
  std::vector<Waiter*> TakeBatchLocked();
  absl::StatusOr<std::optional<bool>> TryAppend(const std::vector<Waiter*>& batch);

  etcd::Client& client_;
  const EtcdKeys& keys_;
  const EtcdStoreOptions& options_;
  std::mutex mu_;
  std::condition_variable written_;
  std::deque<Waiter*> waiting_;  // under mu_
  bool writing_ = false;         // under mu_: an append is writing a batch
};

}  // namespace herd::controlplane
