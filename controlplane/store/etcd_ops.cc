#include "controlplane/store/etcd_ops.h"

#include <algorithm>
#include <chrono>
#include <random>
#include <thread>

#include "absl/strings/str_cat.h"

namespace herd::controlplane {
namespace {

absl::StatusOr<std::vector<etcd::KeyValue>> RangeOnce(etcd::Client& client,
                                                      const std::string& dir, int64_t page) {
  std::vector<etcd::KeyValue> out;
  etcd::RangeOptions opts;
  opts.range_end = etcd::PrefixEnd(dir);
  opts.limit = std::max<int64_t>(page, 1);
  opts.sort = etcd::RangeOptions::Sort::kKeyAscend;
  std::string from = dir;
  while (true) {
    absl::StatusOr<etcd::RangeResult> r = client.Range(from, opts);
    if (!r.ok()) return r.status();
    // Every page at the first page's revision: one snapshot.
    if (opts.revision == 0) opts.revision = r->revision;
    for (auto& kv : r->kvs) out.push_back(std::move(kv));
    if (!r->more || out.empty()) return out;
    // The next page starts just after the last key read.
    from = out.back().key + std::string(1, '\0');
  }
}

}  // namespace

absl::StatusOr<std::vector<etcd::KeyValue>> RangeAll(etcd::Client& client, const std::string& dir,
                                                     int64_t page) {
  absl::StatusOr<std::vector<etcd::KeyValue>> r = RangeOnce(client, dir, page);
  // A compaction between two pages: once more from the start, at a new revision.
  if (r.status().code() == absl::StatusCode::kFailedPrecondition) {
    r = RangeOnce(client, dir, page);
  }
  return r;
}

std::vector<std::pair<size_t, size_t>> CutIntoTxns(const std::vector<size_t>& item_bytes,
                                                   size_t max_items, size_t max_bytes) {
  std::vector<std::pair<size_t, size_t>> out;
  max_items = std::max<size_t>(max_items, 1);
  size_t begin = 0, bytes = 0;
  for (size_t i = 0; i < item_bytes.size(); ++i) {
    const bool full = i - begin >= max_items || (i > begin && bytes + item_bytes[i] > max_bytes);
    if (full) {
      out.emplace_back(begin, i);
      begin = i;
      bytes = 0;
    }
    bytes += item_bytes[i];
  }
  if (begin < item_bytes.size()) out.emplace_back(begin, item_bytes.size());
  return out;
}

void WaitAfterConflict(int tries) {
  thread_local std::minstd_rand rng(std::random_device{}());
  // Up to 1 ms more per try, capped at 20 ms: colliding writers spread out, a lone retry
  // barely waits.
  const int max_us = std::min(tries, 20) * 1000;
  std::this_thread::sleep_for(std::chrono::microseconds(rng() % (max_us + 1)));
}

etcd::Op GetOp(const std::string& key, bool keys_only) {
  etcd::Op op;
  op.kind = etcd::Op::Kind::kRange;
  op.key = key;
  op.range.keys_only = keys_only;
  return op;
}

etcd::Compare Unchanged(const std::string& key, int64_t mod_revision) {
  if (mod_revision == 0) return etcd::Compare::Absent(key);
  etcd::Compare c;
  c.key = key;
  c.target = etcd::Compare::Target::kModRevision;
  c.result = etcd::Compare::Result::kEqual;
  c.number = mod_revision;
  return c;
}

}  // namespace herd::controlplane
