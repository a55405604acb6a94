// EtcdStore: the control plane's store on etcd v3 (issue 22: several replicas over one etcd),
// the second backend of store.h next to SqliteStore; it passes the same contract suite
// (tests/controlplane/store_contract_test.cc). The keys and their encoding are in
// etcd_layout.h (what other components watch: <p>/config/revision changes with every config
// change; <p>/hosts/<host> and <p>/hosts/<host>/status are a host's record and status).
//
// Atomicity on etcd, where one Txn holds at most 128 operations (--max-txn-ops) and one
// request at most 1.5 MiB (--max-request-bytes):
//  - Config changes: one Txn each, guarded on <p>/config/revision's mod_revision and retried
//    when another writer (this process or another replica) got there first, so the revision
//    goes up by exactly one per change across every replica.
//  - PutHosts / PutHostStatus: every record is checked and encoded before anything is
//    written (a bad record writes nothing); then they go in Txns of at most
//    EtcdStoreOptions::max_txn_ops records and max_txn_bytes bytes, in order. Each Txn is all
//    or none; if etcd fails part way, the Txns before it stay written (whole records, so
//    nothing is torn) and the error says how many hosts were written: writing the same batch
//    again — what the hub's HostRecordWriter does on failure — completes it.
//  - Tokens: the record and its secret index change in one Txn; a lookup by secret is one Get.
//  - Audit: entries are appended in a Txn with <p>/audit/meta; each append also removes at
//    most audit_trim_per_append of the oldest entries beyond audit_max_entries or older than
//    audit_max_age (bounded work per append; a backlog — after lowering the limits — goes
//    that many per append).
//
// Errors: etcd's own come back unchanged (UNAVAILABLE "the store has no quorum: ..." first of
// all, so callers can tell it apart); a value that does not decode is DATA_LOSS naming the key;
// a write that lost its guard more than max_conflict_retries times is ABORTED.
//
// Thread-safe. The client must outlive the store.
#pragma once

#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>

#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "controlplane/etcd/etcd_client.h"
#include "controlplane/store/store.h"

namespace herd::controlplane {

struct EtcdStoreOptions {
  // Audit retention (0 / ZeroDuration: no limit of that kind): --audit-max-entries,
  // --audit-max-age. By default the count bounds the keyspace (a million entries of ~200
  // bytes: ~200 MB before compaction) and age is not limited.
  uint64_t audit_max_entries = 1'000'000;
  absl::Duration audit_max_age = absl::ZeroDuration();
  // Oldest entries removed per append at most.
  size_t audit_trim_per_append = 16;
  // etcd's limits (its defaults: --max-txn-ops 128, --max-request-bytes 1.5 MiB): a batch is
  // cut into Txns under both. A single host record over max_txn_bytes is refused.
  size_t max_txn_ops = 128;
  size_t max_txn_bytes = 1 << 20;
  // Keys per Range page when listing (one answer stays far under gRPC's message limit).
  int64_t range_page = 500;
  // Guarded writes retried this many times before ABORTED.
  int max_conflict_retries = 100;
  // Now, for audit_max_age (tests pass their own).
  std::function<int64_t()> now_unix_ms;
};

// Opens the store under `prefix` (e.g. "/herd"; "" is refused: a store needs its own
// directory in the keyspace). Reads the config revision once, so an unreachable etcd or
// refused credentials fail here, with etcd's message.
absl::StatusOr<std::unique_ptr<Store>> OpenEtcdStore(etcd::Client& client,
                                                     const std::string& prefix,
                                                     EtcdStoreOptions options = {});

}  // namespace herd::controlplane
