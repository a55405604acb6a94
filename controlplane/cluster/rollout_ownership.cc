#include "controlplane/cluster/rollout_ownership.h"

#include <optional>
#include <utility>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/strip.h"

namespace herd::controlplane {

namespace {

std::string Trimmed(std::string prefix) {
  while (!prefix.empty() && prefix.back() == '/') prefix.pop_back();
  return prefix;
}

// etcd's range end for every key starting with `prefix` (the prefixes here are never empty
// nor end in 0xff).
std::string RangeEnd(const std::string& prefix) {
  std::string end = prefix;
  end.back() = static_cast<char>(end.back() + 1);
  return end;
}

etcd::Compare KeyAbsent(const std::string& key) {
  etcd::Compare c;
  c.key = key;
  c.target = etcd::Compare::Target::kCreateRevision;
  c.result = etcd::Compare::Result::kEqual;
  c.number = 0;
  return c;
}

etcd::Compare KeyLeaseIs(const std::string& key, int64_t lease) {
  etcd::Compare c;
  c.key = key;
  c.target = etcd::Compare::Target::kLease;
  c.result = etcd::Compare::Result::kEqual;
  c.number = lease;
  return c;
}

etcd::Op PutOp(const std::string& key, const std::string& value, int64_t lease) {
  etcd::Op op;
  op.kind = etcd::Op::Kind::kPut;
  op.key = key;
  op.value = value;
  op.lease = lease;
  return op;
}

etcd::Op KeyOp(etcd::Op::Kind kind, const std::string& key) {
  etcd::Op op;
  op.kind = kind;
  op.key = key;
  return op;
}

}  // namespace

EtcdRolloutOwnership::EtcdRolloutOwnership(etcd::Client& etcd, const ReplicaDirectory& replicas,
                                           Options options)
    : etcd_(etcd),
      replicas_(replicas),
      options_(std::move(options)),
      owners_prefix_(Trimmed(options_.prefix) + "/rollout-owners/"),
      rollouts_prefix_(Trimmed(options_.prefix) + "/rollouts/"),
      log_(herd::Logger("rollout-owners")) {}

EtcdRolloutOwnership::~EtcdRolloutOwnership() { Stop(); }

absl::Status EtcdRolloutOwnership::Start(Events events) {
  events_ = std::move(events);
  absl::MutexLock w(&watch_mu_);
  stopped_ = false;
  if (owner_watch_ == nullptr) {
    if (auto s = WatchOwners(); !s.ok()) return s;
  }
  if (rollout_watch_ == nullptr) {
    if (auto s = WatchRollouts(); !s.ok()) return s;
  }
  return absl::OkStatus();
}

void EtcdRolloutOwnership::Stop() {
  // Destroying a watch waits for its callback: none runs after this.
  std::unique_ptr<etcd::Watch> owners, rollouts;
  {
    absl::MutexLock w(&watch_mu_);
    stopped_ = true;  // a Sweep running now starts no watch again
    owners = std::move(owner_watch_);
    rollouts = std::move(rollout_watch_);
  }
}

absl::Status EtcdRolloutOwnership::WatchOwners() {
  // The owners now, to name the one whose key goes; then every change after them.
  etcd::RangeOptions all;
  all.range_end = RangeEnd(owners_prefix_);
  auto now = etcd_.Range(owners_prefix_, all);
  if (!now.ok()) {
    return absl::Status(now.status().code(),
                        absl::StrCat("reading the rollouts' owners (", owners_prefix_,
                                     "): ", now.status().message()));
  }
  {
    absl::MutexLock l(&mu_);
    owners_.clear();
    for (const auto& kv : now->kvs) owners_[kv.key.substr(owners_prefix_.size())] = kv.value;
    rewatch_owners_ = false;
  }
  auto w = etcd_.WatchRange(owners_prefix_, all.range_end, now->revision + 1,
                            [this](const etcd::WatchBatch& b) { OnOwnerBatch(b); });
  if (!w.ok()) return w.status();
  owner_watch_ = std::move(*w);
  return absl::OkStatus();
}

absl::Status EtcdRolloutOwnership::WatchRollouts() {
  {
    absl::MutexLock l(&mu_);
    rewatch_rollouts_ = false;
  }
  auto w = etcd_.WatchRange(rollouts_prefix_, RangeEnd(rollouts_prefix_), 0,
                            [this](const etcd::WatchBatch& b) { OnRolloutBatch(b); });
  if (!w.ok()) return w.status();
  rollout_watch_ = std::move(*w);
  return absl::OkStatus();
}

void EtcdRolloutOwnership::OnOwnerBatch(const etcd::WatchBatch& batch) {
  if (batch.compacted || !batch.error.ok()) {
    // The watch is over; what it missed, the engine's scan finds (OwnerOf).
    log_->warn("event=owner_watch_ended compacted={} error=\"{}\"", batch.compacted,
               batch.error.message());
    absl::MutexLock l(&mu_);
    rewatch_owners_ = true;
    return;
  }
  std::vector<std::pair<std::string, std::string>> gone;  // id, its owner
  {
    absl::MutexLock l(&mu_);
    for (const auto& ev : batch.events) {
      if (!absl::StartsWith(ev.kv.key, owners_prefix_)) continue;
      std::string id = ev.kv.key.substr(owners_prefix_.size());
      if (ev.type == etcd::WatchEvent::Type::kPut) {
        owners_[id] = ev.kv.value;
        continue;
      }
      std::string previous;
      if (auto it = owners_.find(id); it != owners_.end()) {
        previous = std::move(it->second);
        owners_.erase(it);
      }
      // Ours, and deleted after we won it: not by our Release (which forgets it first), so
      // by etcd, when our lease expired.
      if (auto it = owned_.find(id); it != owned_.end() && ev.kv.mod_revision > it->second.revision) {
        log_->warn("event=rollout_owner_key_lost id={} lease={}", id, it->second.lease);
        owned_.erase(it);
      }
      gone.emplace_back(std::move(id), std::move(previous));
    }
  }
  if (!events_.owner_gone) return;
  for (const auto& [id, previous] : gone) events_.owner_gone(id, previous);
}

void EtcdRolloutOwnership::OnRolloutBatch(const etcd::WatchBatch& batch) {
  if (batch.compacted || !batch.error.ok()) {
    log_->warn("event=rollout_watch_ended compacted={} error=\"{}\"", batch.compacted,
               batch.error.message());
    absl::MutexLock l(&mu_);
    rewatch_rollouts_ = true;
    return;
  }
  if (!events_.changed) return;
  for (const auto& ev : batch.events) {
    if (ev.type != etcd::WatchEvent::Type::kPut) continue;
    herd::v1::Rollout r;
    if (!r.ParseFromString(ev.kv.value)) {
      log_->warn("event=rollout_record_unreadable key={} bytes={}", ev.kv.key,
                 ev.kv.value.size());
      continue;
    }
    events_.changed(r);
  }
}

absl::Status EtcdRolloutOwnership::Acquire(const std::string& id) {
  const int64_t lease = replicas_.lease_id();
  if (lease == 0) {
    return absl::UnavailableError(
        absl::StrCat("replica ", self_id(), " holds no etcd lease (yet), so it cannot run "
                     "rollout ", id, ": it registers in etcd first; try again in a few seconds "
                     "or on another replica"));
  }
  const std::string key = OwnerKey(id);
  auto txn = etcd_.Txn({KeyAbsent(key)}, {PutOp(key, self_id(), lease)},
                       {KeyOp(etcd::Op::Kind::kRange, key)});
  if (!txn.ok()) return txn.status();
  std::optional<etcd::KeyValue> holder;
  if (!txn->succeeded && !txn->ranges.empty() && !txn->ranges[0].kvs.empty()) {
    holder = txn->ranges[0].kvs[0];
  }
  absl::MutexLock l(&mu_);
  if (txn->succeeded) {
    owned_[id] = Held{lease, txn->revision};
    owners_[id] = self_id();
    return absl::OkStatus();
  }
  if (holder.has_value() && holder->lease == lease && holder->value == self_id()) {
    owned_[id] = Held{lease, holder->mod_revision};  // ours already (a retried Acquire)
    return absl::OkStatus();
  }
  return absl::AlreadyExistsError(absl::StrCat(
      "rollout ", id, " is run by replica ",
      holder.has_value() ? holder->value : std::string("(another, just finished)")));
}

absl::Status EtcdRolloutOwnership::DeleteIfHeld(const std::string& id, int64_t lease) {
  const std::string key = OwnerKey(id);
  auto txn = etcd_.Txn({KeyLeaseIs(key, lease)}, {KeyOp(etcd::Op::Kind::kDelete, key)});
  return txn.ok() ? absl::OkStatus() : txn.status();
}

void EtcdRolloutOwnership::Release(const std::string& id) {
  Held held;
  {
    absl::MutexLock l(&mu_);
    auto it = owned_.find(id);
    if (it == owned_.end()) return;
    held = it->second;
    owned_.erase(it);
  }
  if (auto s = DeleteIfHeld(id, held.lease); !s.ok()) {
    log_->warn("event=rollout_release_failed id={} error=\"{}\" retry=next_scan", id,
               s.message());
    absl::MutexLock l(&mu_);
    unreleased_[id] = held.lease;
  }
}

bool EtcdRolloutOwnership::StillOwned(const std::string& id) const {
  const int64_t lease = replicas_.lease_id();
  absl::MutexLock l(&mu_);
  auto it = owned_.find(id);
  return lease != 0 && it != owned_.end() && it->second.lease == lease;
}

absl::StatusOr<bool> EtcdRolloutOwnership::Confirm(const std::string& id) {
  if (!StillOwned(id)) return false;
  int64_t lease = 0;
  {
    absl::MutexLock l(&mu_);
    auto it = owned_.find(id);
    if (it == owned_.end()) return false;
    lease = it->second.lease;
  }
  auto kv = etcd_.Get(OwnerKey(id));
  if (!kv.ok()) return kv.status();
  if (kv->has_value() && (*kv)->lease == lease && (*kv)->value == self_id()) return true;
  log_->warn("event=rollout_not_ours id={} holder=\"{}\"", id,
             kv->has_value() ? (*kv)->value : std::string());
  absl::MutexLock l(&mu_);
  if (auto it = owned_.find(id); it != owned_.end() && it->second.lease == lease) owned_.erase(it);
  return false;
}

absl::StatusOr<std::string> EtcdRolloutOwnership::OwnerOf(const std::string& id) {
  auto kv = etcd_.Get(OwnerKey(id));
  if (!kv.ok()) return kv.status();
  return kv->has_value() ? (*kv)->value : std::string();
}

void EtcdRolloutOwnership::Sweep() {
  std::map<std::string, int64_t> retry;
  bool owners = false, rollouts = false;
  {
    absl::MutexLock l(&mu_);
    retry.swap(unreleased_);
    owners = rewatch_owners_;
    rollouts = rewatch_rollouts_;
  }
  for (const auto& [id, lease] : retry) {
    if (auto s = DeleteIfHeld(id, lease); !s.ok()) {
      absl::MutexLock l(&mu_);
      unreleased_[id] = lease;
    }
  }
  if (!owners && !rollouts) return;
  bool resumed = false;
  {
    absl::MutexLock w(&watch_mu_);
    resumed = Rewatch(owners, rollouts);
  }
  // What the ended watch would have said is in the store: the engine reads it again.
  if (resumed && events_.resync) events_.resync();
}

bool EtcdRolloutOwnership::Rewatch(bool owners, bool rollouts) {
  if (stopped_) return false;
  bool ok = true;
  if (owners) {
    owner_watch_.reset();  // ended already: this only frees it
    if (auto s = WatchOwners(); !s.ok()) {
      log_->warn("event=owner_watch_not_restarted error=\"{}\"", s.message());
      absl::MutexLock l(&mu_);
      rewatch_owners_ = true;
      ok = false;
    }
  }
  if (rollouts) {
    rollout_watch_.reset();
    if (auto s = WatchRollouts(); !s.ok()) {
      log_->warn("event=rollout_watch_not_restarted error=\"{}\"", s.message());
      absl::MutexLock l(&mu_);
      rewatch_rollouts_ = true;
      ok = false;
    }
  }
  if (ok) log_->info("event=watches_restarted owners={} rollouts={}", owners, rollouts);
  return ok;
}

}  // namespace herd::controlplane
