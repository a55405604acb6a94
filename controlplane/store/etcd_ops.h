// The etcd operations the etcd store is made of: listing a directory in pages at one
// revision, cutting a batch into Txns under etcd's limits, and retrying a guarded write
// that lost its guard to another writer.
#pragma once

#include <cstddef>
#include <cstdint>
#include <functional>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "controlplane/etcd/etcd_client.h"

namespace herd::controlplane {

// Every key with the prefix `dir`, in key order, read in pages of `page` keys all at the
// revision of the first page (a consistent snapshot). If etcd compacts that revision while
// pages are read, the listing starts again once.
absl::StatusOr<std::vector<etcd::KeyValue>> RangeAll(etcd::Client& client, const std::string& dir,
                                                     int64_t page);

// [begin, end) index ranges of `item_bytes` such that each range has at most `max_items`
// items and (unless one item alone is larger) at most `max_bytes` bytes.
std::vector<std::pair<size_t, size_t>> CutIntoTxns(const std::vector<size_t>& item_bytes,
                                                   size_t max_items, size_t max_bytes);

// What one try of a guarded write gives: a value, or nullopt when the guard did not hold
// (another writer changed the key first) and the write should be tried again on fresh data.
template <typename T>
using GuardedTry = std::function<absl::StatusOr<std::optional<T>>()>;

// Calls `attempt` until it gives a value or an error; after `max_tries` lost guards,
// ABORTED naming `what`. Between tries it waits a little (random, growing), so that writers
// that keep colliding spread out.
void WaitAfterConflict(int tries);
template <typename T>
absl::StatusOr<T> RetryOnConflict(int max_tries, const std::string& what,
                                  const GuardedTry<T>& attempt) {
  for (int tries = 1;; ++tries) {
    absl::StatusOr<std::optional<T>> r = attempt();
    if (!r.ok()) return r.status();
    if (r->has_value()) return std::move(**r);
    if (tries >= max_tries) {
      return absl::AbortedError(what + ": other writers changed the store " +
                                std::to_string(tries) +
                                " times in a row while this change was tried; try again");
    }
    WaitAfterConflict(tries);
  }
}

// A Get op of a Txn (the key alone).
etcd::Op GetOp(const std::string& key, bool keys_only = false);
// The guard "key unchanged since it was read" (absent when mod_revision is 0).
etcd::Compare Unchanged(const std::string& key, int64_t mod_revision);

}  // namespace herd::controlplane
