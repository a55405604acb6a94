#include "controlplane/store/etcd_audit.h"

#include <algorithm>
#include <optional>
#include <utility>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "common/status_macros.h"
#include "controlplane/store/etcd_ops.h"
#include "herd/v1/store.pb.h"

namespace herd::controlplane {
namespace {

// at_unix_ms from an entry's key (<dir><at:20>.<seq:20>); nullopt if it is not one.
std::optional<int64_t> AtOfKey(const std::string& dir, const std::string& key) {
  if (key.size() != dir.size() + 41 || key.compare(0, dir.size(), dir) != 0) return std::nullopt;
  uint64_t at = 0;
  if (!absl::SimpleAtoi(key.substr(dir.size(), 20), &at)) return std::nullopt;
  return static_cast<int64_t>(at ^ (uint64_t{1} << 63));
}

absl::StatusOr<herd::v1::StoredAuditMeta> DecodeMeta(const std::string& key,
                                                     const std::vector<etcd::KeyValue>& kvs) {
  herd::v1::StoredAuditMeta meta;
  if (!kvs.empty() && !meta.ParseFromString(kvs.front().value)) {
    return absl::DataLossError(absl::StrCat(
        "etcd key ", key, " is not the audit log's meta record; delete it (etcdctl del) and "
        "the audit log starts counting again"));
  }
  return meta;
}

etcd::Op PutOp(std::string key, std::string value) {
  return etcd::Op::Put(std::move(key), std::move(value));
}

}  // namespace

absl::Status EtcdAuditLog::Append(const std::vector<const herd::v1::AuditEntry*>& entries) {
  std::vector<Waiter> mine;
  mine.reserve(entries.size());
  for (const herd::v1::AuditEntry* e : entries) mine.push_back(Waiter{e, absl::OkStatus()});
  auto all_done = [&] {
    return std::all_of(mine.begin(), mine.end(), [](const Waiter& w) { return w.done; });
  };
  std::unique_lock lock(mu_);
  for (Waiter& w : mine) waiting_.push_back(&w);
  while (!all_done()) {
    if (writing_) {
      written_.wait(lock);
      continue;
    }
    // Nobody is writing: this append writes what waits (its own entry among it, unless more
    // than a batch waits before it: then it writes again).
    writing_ = true;
    std::vector<Waiter*> batch = TakeBatchLocked();
    lock.unlock();
    const absl::Status s =
        RetryOnConflict<bool>(options_.max_conflict_retries, "appending to the audit log",
                              [&] { return TryAppend(batch); })
            .status();
    lock.lock();
    for (Waiter* w : batch) {
      w->status = s;
      w->done = true;
    }
    writing_ = false;
    written_.notify_all();
  }
  for (const Waiter& w : mine) {
    if (!w.status.ok()) return w.status;
  }
  return absl::OkStatus();
}

std::vector<EtcdAuditLog::Waiter*> EtcdAuditLog::TakeBatchLocked() {
  std::vector<Waiter*> batch;
  size_t bytes = 0;
  // A quarter of a Txn's operations at most: the rest for the meta and the trims.
  const size_t most = std::clamp<size_t>(options_.max_txn_ops / 4, 1, kMaxBatch);
  const size_t most_bytes = std::min(kMaxBatchBytes, options_.max_txn_bytes / 2);
  while (!waiting_.empty() && batch.size() < most) {
    const size_t size = waiting_.front()->entry->ByteSizeLong();
    if (!batch.empty() && bytes + size > most_bytes) break;
    bytes += size;
    batch.push_back(waiting_.front());
    waiting_.pop_front();
  }
  return batch;
}

absl::StatusOr<std::optional<bool>> EtcdAuditLog::TryAppend(const std::vector<Waiter*>& batch) {
  const std::string meta_key = keys_.AuditMeta();
  const std::string dir = keys_.AuditEntriesDir();
  etcd::Op oldest = GetOp(dir, /*keys_only=*/true);
  oldest.range_end = oldest.range.range_end = etcd::PrefixEnd(dir);
  // Trimmed at most audit_trim_per_append per entry, within a Txn's operations (the entries,
  // the trims, the meta).
  const size_t trim_max =
      std::max<size_t>(1, std::min(std::max<size_t>(options_.audit_trim_per_append, 1) *
                                       batch.size(),
                                   options_.max_txn_ops - 1 - batch.size()));
  oldest.range.limit = static_cast<int64_t>(trim_max);
  oldest.range.sort = etcd::RangeOptions::Sort::kKeyAscend;
  HERD_ASSIGN_OR_RETURN(etcd::TxnResult read, client_.Txn({}, {GetOp(meta_key), oldest}));
  if (read.ranges.size() != 2) return absl::InternalError("etcd answered a Txn of 2 reads badly");
  HERD_ASSIGN_OR_RETURN(herd::v1::StoredAuditMeta meta, DecodeMeta(meta_key, read.ranges[0].kvs));
  const int64_t meta_rev = read.ranges[0].kvs.empty() ? 0 : read.ranges[0].kvs[0].mod_revision;

  std::vector<etcd::Op> ops;
  uint64_t seq = meta.next_seq();
  for (const Waiter* w : batch) {
    ops.push_back(PutOp(keys_.AuditEntry(w->entry->at_unix_ms(), seq++),
                        w->entry->SerializeAsString()));
  }
  uint64_t count = meta.count() + batch.size();
  const int64_t now = options_.now_unix_ms ? options_.now_unix_ms()
                                           : absl::ToUnixMillis(absl::Now());
  const bool by_age = options_.audit_max_age > absl::ZeroDuration();
  const int64_t cutoff = now - absl::ToInt64Milliseconds(options_.audit_max_age);
  for (const etcd::KeyValue& kv : read.ranges[1].kvs) {
    const bool over = options_.audit_max_entries > 0 && count > options_.audit_max_entries;
    const std::optional<int64_t> at = AtOfKey(dir, kv.key);
    const bool old = by_age && at.has_value() && *at < cutoff;
    if (!over && !old) break;  // oldest first: the rest are newer
    ops.push_back(etcd::Op::Delete(kv.key));
    if (count > 0) --count;
  }
  meta.set_next_seq(seq);
  meta.set_count(count);
  ops.push_back(PutOp(meta_key, meta.SerializeAsString()));
  HERD_ASSIGN_OR_RETURN(etcd::TxnResult w, client_.Txn({Unchanged(meta_key, meta_rev)}, ops));
  if (!w.succeeded) return std::optional<bool>();
  return std::optional<bool>(true);
}

absl::StatusOr<std::vector<herd::v1::AuditEntry>> EtcdAuditLog::List(size_t limit) {
  std::vector<herd::v1::AuditEntry> out;
  const std::string dir = keys_.AuditEntriesDir();
  etcd::RangeOptions opts;
  opts.range_end = etcd::PrefixEnd(dir);
  opts.sort = etcd::RangeOptions::Sort::kKeyDescend;
  while (out.size() < limit) {
    opts.limit = static_cast<int64_t>(
        std::min<size_t>(limit - out.size(), static_cast<size_t>(options_.range_page)));
    HERD_ASSIGN_OR_RETURN(etcd::RangeResult r, client_.Range(dir, opts));
    if (opts.revision == 0) opts.revision = r.revision;
    for (const etcd::KeyValue& kv : r.kvs) {
      herd::v1::AuditEntry& e = out.emplace_back();
      if (!e.ParseFromString(kv.value)) {
        return absl::DataLossError(absl::StrCat("etcd key ", kv.key,
                                                " is not an audit entry; delete it (etcdctl del)"));
      }
    }
    if (!r.more || r.kvs.empty()) break;
    // The next page: everything before the last key read.
    opts.range_end = r.kvs.back().key;
  }
  return out;
}

absl::Status EtcdAuditLog::Import(const std::vector<herd::v1::AuditEntry>& oldest_first) {
  std::unique_lock lock(mu_);
  written_.wait(lock, [&] { return !writing_; });  // no batch in flight; none starts now
  const std::string meta_key = keys_.AuditMeta();
  HERD_ASSIGN_OR_RETURN(etcd::RangeResult r, client_.Range(meta_key));
  HERD_ASSIGN_OR_RETURN(herd::v1::StoredAuditMeta meta, DecodeMeta(meta_key, r.kvs));
  std::vector<std::string> values;
  std::vector<size_t> bytes;
  for (const auto& e : oldest_first) {
    values.push_back(e.SerializeAsString());
    bytes.push_back(values.back().size() + 64);
  }
  for (auto [begin, end] : CutIntoTxns(bytes, options_.max_txn_ops, options_.max_txn_bytes)) {
    std::vector<etcd::Op> ops;
    for (size_t i = begin; i < end; ++i) {
      ops.push_back(PutOp(keys_.AuditEntry(oldest_first[i].at_unix_ms(), meta.next_seq()),
                          values[i]));
      meta.set_next_seq(meta.next_seq() + 1);
    }
    HERD_RETURN_IF_ERROR(client_.Txn({}, ops).status());
  }
  meta.set_count(meta.count() + oldest_first.size());
  return client_.Put(meta_key, meta.SerializeAsString()).status();
}

}  // namespace herd::controlplane
