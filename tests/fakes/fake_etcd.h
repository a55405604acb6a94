// FakeEtcd: an in-memory herd::etcd::Client with etcd's semantics where Herd relies on them,
// for unit tests of the etcd store and the replicas' coordination without a real etcd:
//   - one store revision, increased once by every Put/Delete/Txn that writes (a Txn's writes
//     share it), keys with create/mod revision, version and lease; ranges over [key,
//     range_end) ("\0" as range_end: every key from key on), sorted, limited, counted;
//   - Txn compares (version, create, mod, value, lease) and both branches; more than
//     max_txn_ops operations (128, etcd's default) or a request over max_request_bytes
//     (1.5 MiB) is INVALID_ARGUMENT, as etcd answers;
//   - leases: granted, revoked (their keys deleted in one revision), expired by the test
//     (ExpireLease: as etcd does after a TTL without keepalive); KeepLease's KeptLease reports
//     the loss (on_lost) and gets a new lease (on_new) at once, or once quorum returns;
//   - watches from a revision (history replayed; compacted history → a `compacted` batch);
//     events are delivered when the test calls DeliverWatches() (on its thread, outside every
//     lock of the fake), so a component that writes while holding its own lock is never
//     re-entered — the real client delivers on its own threads;
//   - SetQuorum(false): every call fails UNAVAILABLE "the store has no quorum" (as the real
//     client reports it), leases do not expire and watches stay silent until it returns;
//     FailNext(n, status) fails the next n calls; LoseNextWriteTxn the next writing Txn's
//     answer (applied or not);
//   - counters of calls and written keys (writes per registration, per config change).
#pragma once

#include <algorithm>
#include <atomic>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <set>
#include <string>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "controlplane/etcd/etcd_client.h"

namespace herd::testing {

class FakeEtcd final : public herd::etcd::Client {
 public:
  using KeyValue = herd::etcd::KeyValue;
  using RangeOptions = herd::etcd::RangeOptions;
  using RangeResult = herd::etcd::RangeResult;
  using Compare = herd::etcd::Compare;
  using Op = herd::etcd::Op;
  using TxnResult = herd::etcd::TxnResult;
  using WatchBatch = herd::etcd::WatchBatch;
  using WatchEvent = herd::etcd::WatchEvent;

  size_t max_txn_ops = 128;
  size_t max_request_bytes = 1536 * 1024;

  struct Counters {
    uint64_t calls = 0;      // every call that reached the store
    uint64_t writes = 0;     // revisions created (a Txn that wrote = 1)
    uint64_t keys_put = 0;   // keys put (a Txn with 10 puts = 10)
    uint64_t keys_deleted = 0;
    uint64_t txns = 0;
    uint64_t refused = 0;    // calls failed by SetQuorum(false) / FailNext
  };

  // --- test controls
  void SetQuorum(bool on) {
    std::vector<std::function<void()>> renew;
    {
      std::lock_guard<std::mutex> l(mu_);
      quorum_ = on;
      if (on) {
        for (auto& [state, fn] : pending_renewals_) renew.push_back(std::move(fn));
        pending_renewals_.clear();
      }
    }
    for (auto& r : renew) r();
  }
  void FailNext(int n, absl::Status status) {
    std::lock_guard<std::mutex> l(mu_);
    fail_next_ = n;
    fail_status_ = std::move(status);
  }
  // The next Txn that writes (a Put or Delete in the branch its compares pick) fails with
  // `status` as a Txn lost in flight does: the answer is lost after etcd applied it
  // (`applied`), or the request before.
  void LoseNextWriteTxn(bool applied, absl::Status status) {
    std::lock_guard<std::mutex> l(mu_);
    lose_next_write_ = true;
    lose_applied_ = applied;
    lose_status_ = std::move(status);
  }
  // As etcd does to a lease whose TTL ran out: its keys are deleted, and the KeptLease
  // holding it (if any) reports the loss and takes a new lease (once quorum is back).
  void ExpireLease(int64_t lease) {
    std::function<void()> lost;
    {
      std::lock_guard<std::mutex> l(mu_);
      RevokeLocked(lease);
      auto k = kept_.find(lease);
      if (k != kept_.end()) {
        KeptState* state = k->second;
        kept_.erase(k);
        state->id = 0;
        lost = [this, state] { Renew(state); };
      }
    }
    if (lost) lost();
  }
  // Delivers every watch event written so far, in revision order, on the caller's thread.
  void DeliverWatches() {
    for (;;) {
      std::function<void(const WatchBatch&)> cb;
      WatchBatch batch;
      {
        std::lock_guard<std::mutex> l(mu_);
        if (!quorum_) return;
        bool found = false;
        for (auto& [id, w] : watches_) {
          if (NextBatchLocked(*w, &batch)) {
            cb = w->cb;
            found = true;
            break;
          }
        }
        if (!found) return;
      }
      cb(batch);
    }
  }
  Counters counters() const {
    std::lock_guard<std::mutex> l(mu_);
    return counters_;
  }
  int64_t revision() const {
    std::lock_guard<std::mutex> l(mu_);
    return revision_;
  }
  std::set<int64_t> leases() const {
    std::lock_guard<std::mutex> l(mu_);
    std::set<int64_t> out;
    for (const auto& [id, keys] : leases_) out.insert(id);
    return out;
  }
  // Every key and value with the prefix (for assertions).
  std::map<std::string, std::string> Dump(const std::string& prefix = "") const {
    std::lock_guard<std::mutex> l(mu_);
    std::map<std::string, std::string> out;
    for (auto it = kv_.lower_bound(prefix); it != kv_.end() && it->first.rfind(prefix, 0) == 0;
         ++it) {
      out[it->first] = it->second.value;
    }
    return out;
  }

  // --- Client
  absl::StatusOr<RangeResult> Range(const std::string& key,
                                    const RangeOptions& options = {}) override {
    std::lock_guard<std::mutex> l(mu_);
    if (auto s = AdmitLocked(key.size()); !s.ok()) return s;
    return RangeLocked(key, options.range_end, options);
  }
  absl::StatusOr<std::optional<KeyValue>> Get(const std::string& key) override {
    std::lock_guard<std::mutex> l(mu_);
    if (auto s = AdmitLocked(key.size()); !s.ok()) return s;
    auto it = kv_.find(key);
    if (it == kv_.end()) return std::optional<KeyValue>();
    return std::optional<KeyValue>(it->second);
  }
  absl::StatusOr<int64_t> Put(const std::string& key, const std::string& value,
                              int64_t lease = 0) override {
    auto r = Txn({}, {Op::Put(key, value, lease)});
    if (!r.ok()) return r.status();
    return r->revision;
  }
  absl::StatusOr<int64_t> Delete(const std::string& key,
                                 const std::string& range_end = "") override {
    std::lock_guard<std::mutex> l(mu_);
    if (auto s = AdmitLocked(key.size()); !s.ok()) return s;
    const int64_t n = static_cast<int64_t>(KeysInLocked(key, range_end).size());
    if (n > 0) {
      ++revision_;
      ++counters_.writes;
      DeleteRangeLocked(key, range_end);
    }
    return n;
  }
  // Each Txn takes this long before it runs, as a round trip to a real etcd would (the
  // callers' concurrency shows: group commits, waits).
  void SetTxnDelay(absl::Duration d) { txn_delay_ns_ = absl::ToInt64Nanoseconds(d); }

  absl::StatusOr<TxnResult> Txn(const std::vector<Compare>& compares,
                                const std::vector<Op>& success,
                                const std::vector<Op>& failure = {}) override {
    if (const int64_t ns = txn_delay_ns_.load()) absl::SleepFor(absl::Nanoseconds(ns));
    std::lock_guard<std::mutex> l(mu_);
    size_t bytes = 0;
    for (const auto& op : success) bytes += op.key.size() + op.value.size();
    for (const auto& op : failure) bytes += op.key.size() + op.value.size();
    if (auto s = AdmitLocked(bytes); !s.ok()) return s;
    ++counters_.txns;
    if (success.size() > max_txn_ops || failure.size() > max_txn_ops) {
      return absl::InvalidArgumentError("etcdserver: too many operations in txn request");
    }
    TxnResult out;
    out.succeeded = std::all_of(compares.begin(), compares.end(),
                                [&](const Compare& c) { return HoldsLocked(c); });
    const std::vector<Op>& ops = out.succeeded ? success : failure;
    for (const Op& op : ops) {
      if (op.kind == Op::Kind::kPut && op.lease != 0 && !leases_.count(op.lease)) {
        return absl::NotFoundError("etcdserver: requested lease not found");
      }
    }
    bool wrote = std::any_of(ops.begin(), ops.end(),
                             [](const Op& op) { return op.kind != Op::Kind::kRange; });
    const bool lost = wrote && lose_next_write_;
    if (lost) {
      lose_next_write_ = false;
      ++counters_.refused;
      if (!lose_applied_) return lose_status_;
    }
    if (wrote) {
      ++revision_;
      ++counters_.writes;
    }
    for (const Op& op : ops) {
      if (op.kind == Op::Kind::kPut) {
        PutLocked(op.key, op.value, op.lease);
      } else if (op.kind == Op::Kind::kDelete) {
        DeleteRangeLocked(op.key, op.range_end);
      } else {
        out.ranges.push_back(RangeLocked(op.key, op.range_end, op.range));
      }
    }
    out.revision = revision_;
    if (lost) return lose_status_;
    return out;
  }
  absl::Status Compact(int64_t revision) override {
    std::lock_guard<std::mutex> l(mu_);
    if (auto s = AdmitLocked(0); !s.ok()) return s;
    if (revision > revision_) {
      return absl::InvalidArgumentError("etcdserver: mvcc: required revision is a future revision");
    }
    compacted_ = std::max(compacted_, revision);
    history_.erase(std::remove_if(history_.begin(), history_.end(),
                                  [&](const auto& e) { return e.first <= compacted_; }),
                   history_.end());
    return absl::OkStatus();
  }
  absl::StatusOr<int64_t> LeaseGrant(absl::Duration) override {
    std::lock_guard<std::mutex> l(mu_);
    if (auto s = AdmitLocked(0); !s.ok()) return s;
    const int64_t id = next_lease_++;
    leases_[id];
    return id;
  }
  absl::Status LeaseRevoke(int64_t lease) override {
    std::lock_guard<std::mutex> l(mu_);
    if (auto s = AdmitLocked(0); !s.ok()) return s;
    if (!leases_.count(lease)) return absl::NotFoundError("etcdserver: requested lease not found");
    RevokeLocked(lease);
    return absl::OkStatus();
  }
  absl::StatusOr<std::unique_ptr<herd::etcd::KeptLease>> KeepLease(
      absl::Duration ttl, std::function<void()> on_lost,
      std::function<void(int64_t)> on_new) override {
    auto id = LeaseGrant(ttl);
    if (!id.ok()) return id.status();
    auto kept = std::make_unique<Kept>(this);
    kept->state.on_lost = std::move(on_lost);
    kept->state.on_new = std::move(on_new);
    std::lock_guard<std::mutex> l(mu_);
    kept->state.id = *id;
    kept_[*id] = &kept->state;
    return std::unique_ptr<herd::etcd::KeptLease>(std::move(kept));
  }
  absl::StatusOr<std::unique_ptr<herd::etcd::Watch>> WatchRange(
      const std::string& key, const std::string& range_end, int64_t start_revision,
      std::function<void(const WatchBatch&)> on_batch) override {
    std::lock_guard<std::mutex> l(mu_);
    if (auto s = AdmitLocked(key.size()); !s.ok()) return s;
    auto w = std::make_shared<WatchState>();
    w->key = key;
    w->range_end = range_end;
    w->next = start_revision > 0 ? start_revision : revision_ + 1;
    w->cb = std::move(on_batch);
    const uint64_t id = next_watch_++;
    watches_[id] = w;
    return std::unique_ptr<herd::etcd::Watch>(std::make_unique<WatchHandle>(this, id));
  }
  std::string EndpointsText() const override { return "fake-etcd"; }

 private:
  struct KeptState {
    int64_t id = 0;
    std::function<void()> on_lost;
    std::function<void(int64_t)> on_new;
  };
  class Kept final : public herd::etcd::KeptLease {
   public:
    explicit Kept(FakeEtcd* fake) : fake_(fake) {}
    ~Kept() override { fake_->DropKept(&state); }
    int64_t id() const override {
      std::lock_guard<std::mutex> l(fake_->mu_);
      return state.id;
    }
    KeptState state;

   private:
    FakeEtcd* fake_;
  };
  struct WatchState {
    std::string key, range_end;
    int64_t next = 0;  // the first revision not delivered yet
    bool ended = false;
    std::function<void(const WatchBatch&)> cb;
  };
  class WatchHandle final : public herd::etcd::Watch {
   public:
    WatchHandle(FakeEtcd* fake, uint64_t id) : fake_(fake), id_(id) {}
    ~WatchHandle() override {
      std::lock_guard<std::mutex> l(fake_->mu_);
      fake_->watches_.erase(id_);
    }

   private:
    FakeEtcd* fake_;
    uint64_t id_;
  };

  absl::Status AdmitLocked(size_t bytes) {
    ++counters_.calls;
    if (!quorum_) {
      ++counters_.refused;
      return absl::UnavailableError(
          "the store has no quorum: etcd at fake-etcd did not answer (no leader)");
    }
    if (fail_next_ > 0) {
      --fail_next_;
      ++counters_.refused;
      return fail_status_;
    }
    if (bytes > max_request_bytes) {
      return absl::InvalidArgumentError("etcdserver: request is too large");
    }
    return absl::OkStatus();
  }
  static bool InRange(const std::string& k, const std::string& key, const std::string& end) {
    if (end.empty()) return k == key;
    if (end == std::string(1, '\0')) return k >= key;
    return k >= key && k < end;
  }
  std::vector<std::string> KeysInLocked(const std::string& key, const std::string& end) const {
    std::vector<std::string> out;
    for (auto it = kv_.lower_bound(key); it != kv_.end() && InRange(it->first, key, end); ++it) {
      out.push_back(it->first);
    }
    return out;
  }
  RangeResult RangeLocked(const std::string& key, const std::string& end,
                          const RangeOptions& o) const {
    RangeResult r;
    r.revision = revision_;
    for (const std::string& k : KeysInLocked(key, end)) r.kvs.push_back(kv_.at(k));
    r.count = static_cast<int64_t>(r.kvs.size());
    if (o.sort == RangeOptions::Sort::kKeyDescend) std::reverse(r.kvs.begin(), r.kvs.end());
    if (o.count_only) r.kvs.clear();
    if (o.limit > 0 && static_cast<int64_t>(r.kvs.size()) > o.limit) {
      r.kvs.resize(static_cast<size_t>(o.limit));
      r.more = true;
    }
    if (o.keys_only) {
      for (auto& kv : r.kvs) kv.value.clear();
    }
    return r;
  }
  bool HoldsLocked(const Compare& c) const {
    std::vector<std::string> keys = KeysInLocked(c.key, c.range_end);
    if (keys.empty()) keys.push_back("");  // an absent key: version/revisions/lease 0, value ""
    for (const std::string& k : keys) {
      KeyValue kv;
      if (!k.empty()) kv = kv_.at(k);
      int cmp = 0;
      switch (c.target) {
        case Compare::Target::kValue:
          if (k.empty()) return false;  // etcd: a value compare on an absent key fails
          cmp = kv.value.compare(c.value);
          break;
        case Compare::Target::kVersion: cmp = Sign(kv.version - c.number); break;
        case Compare::Target::kCreateRevision: cmp = Sign(kv.create_revision - c.number); break;
        case Compare::Target::kModRevision: cmp = Sign(kv.mod_revision - c.number); break;
        case Compare::Target::kLease: cmp = Sign(kv.lease - c.number); break;
      }
      bool ok = false;
      switch (c.result) {
        case Compare::Result::kEqual: ok = cmp == 0; break;
        case Compare::Result::kGreater: ok = cmp > 0; break;
        case Compare::Result::kLess: ok = cmp < 0; break;
        case Compare::Result::kNotEqual: ok = cmp != 0; break;
      }
      if (!ok) return false;
    }
    return true;
  }
  static int Sign(int64_t v) { return v < 0 ? -1 : (v > 0 ? 1 : 0); }
  void PutLocked(const std::string& key, const std::string& value, int64_t lease) {
    KeyValue& kv = kv_[key];
    if (kv.create_revision == 0) {
      kv.key = key;
      kv.create_revision = revision_;
    }
    if (auto l = leases_.find(kv.lease); kv.lease != lease && l != leases_.end()) {
      l->second.erase(key);
    }
    kv.value = value;
    kv.mod_revision = revision_;
    ++kv.version;
    kv.lease = lease;
    if (lease != 0) leases_[lease].insert(key);
    ++counters_.keys_put;
    history_.push_back({revision_, WatchEvent{WatchEvent::Type::kPut, kv}});
  }
  void DeleteRangeLocked(const std::string& key, const std::string& end) {
    for (const std::string& k : KeysInLocked(key, end)) {
      KeyValue& kv = kv_[k];
      if (auto l = leases_.find(kv.lease); kv.lease != 0 && l != leases_.end()) l->second.erase(k);
      WatchEvent e{WatchEvent::Type::kDelete, {}};
      e.kv.key = k;
      e.kv.mod_revision = revision_;
      history_.push_back({revision_, e});
      kv_.erase(k);
      ++counters_.keys_deleted;
    }
  }
  void RevokeLocked(int64_t lease) {
    auto it = leases_.find(lease);
    if (it == leases_.end()) return;
    std::set<std::string> keys = it->second;
    leases_.erase(it);
    if (keys.empty()) return;
    ++revision_;
    ++counters_.writes;
    for (const std::string& k : keys) DeleteRangeLocked(k, "");
  }
  // The next batch for `w` (one revision's events), if any.
  bool NextBatchLocked(WatchState& w, WatchBatch* out) {
    if (w.ended) return false;
    if (w.next <= compacted_) {
      w.ended = true;
      *out = WatchBatch{};
      out->compacted = true;
      out->revision = compacted_;
      out->error = absl::FailedPreconditionError("etcdserver: mvcc: required revision has been compacted");
      return true;
    }
    *out = WatchBatch{};
    for (const auto& [rev, e] : history_) {
      if (rev < w.next || !InRange(e.kv.key, w.key, w.range_end)) continue;
      if (!out->events.empty() && rev != out->revision) break;
      out->events.push_back(e);
      out->revision = rev;
    }
    if (out->events.empty()) {
      w.next = revision_ + 1;
      return false;
    }
    w.next = out->revision + 1;
    return true;
  }
  void Renew(KeptState* state) {
    if (state->on_lost) state->on_lost();
    std::unique_lock<std::mutex> l(mu_);
    if (!quorum_) {
      pending_renewals_.push_back({state, [this, state] { RenewNow(state); }});
      return;
    }
    l.unlock();
    RenewNow(state);
  }
  void RenewNow(KeptState* state) {
    int64_t id = 0;
    {
      std::lock_guard<std::mutex> l(mu_);
      id = next_lease_++;
      leases_[id];
      state->id = id;
      kept_[id] = state;
    }
    if (state->on_new) state->on_new(id);
  }
  void DropKept(KeptState* state) {
    std::lock_guard<std::mutex> l(mu_);
    for (auto it = kept_.begin(); it != kept_.end();) {
      it = it->second == state ? kept_.erase(it) : std::next(it);
    }
    if (state->id != 0 && quorum_) RevokeLocked(state->id);
    pending_renewals_.erase(
        std::remove_if(pending_renewals_.begin(), pending_renewals_.end(),
                       [state](const auto& p) { return p.first == state; }),
        pending_renewals_.end());
  }

  mutable std::mutex mu_;
  std::atomic<int64_t> txn_delay_ns_{0};
  std::map<std::string, KeyValue> kv_;
  std::map<int64_t, std::set<std::string>> leases_;
  std::map<int64_t, KeptState*> kept_;
  std::vector<std::pair<int64_t, WatchEvent>> history_;
  std::map<uint64_t, std::shared_ptr<WatchState>> watches_;
  std::vector<std::pair<KeptState*, std::function<void()>>> pending_renewals_;
  int64_t revision_ = 1;  // etcd's empty store is at revision 1
  int64_t compacted_ = 0;
  int64_t next_lease_ = 0x1000;
  uint64_t next_watch_ = 1;
  bool quorum_ = true;
  int fail_next_ = 0;
  absl::Status fail_status_;
  bool lose_next_write_ = false;
  bool lose_applied_ = false;
  absl::Status lose_status_;
  Counters counters_;
};

}  // namespace herd::testing
