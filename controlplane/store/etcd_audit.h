// The audit log of the etcd store (etcd_store.h): append with retention, list newest first.
// Keys and encoding: etcd_layout.h (<p>/audit/meta, <p>/audit/entries/<at>.<seq>).
//
// An append is: read the meta key and the few oldest entries (one Txn of reads), then one Txn
// guarded on the meta key's mod_revision that puts the entry, the new meta (next_seq + 1,
// count), and deletes the oldest entries that are beyond audit_max_entries or older than
// audit_max_age — at most audit_trim_per_append of them, so an append's work is bounded.
// Appends in this process are serialized by a mutex (they would only collide on the guard);
// appends from other replicas are retried on conflict.
#pragma once

#include <cstdint>
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

  absl::Status Append(const herd::v1::AuditEntry& entry);
  // Newest first (time, then insertion), at most `limit`.
  absl::StatusOr<std::vector<herd::v1::AuditEntry>> List(size_t limit);
  // Writes entries as they are, with fresh sequence numbers, and the meta (migrate: oldest
  // first). No retention applied.
  absl::Status Import(const std::vector<herd::v1::AuditEntry>& oldest_first);

 private:
  struct Plan;
  absl::StatusOr<std::optional<bool>> TryAppend(const herd::v1::AuditEntry& entry);

  etcd::Client& client_;
  const EtcdKeys& keys_;
  const EtcdStoreOptions& options_;
  std::mutex mu_;
};

}  // namespace herd::controlplane
