#include "controlplane/cluster/membership.h"

#include <pthread.h>

#include <algorithm>
#include <chrono>
#include <utility>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "controlplane/core/secrets.h"

namespace herd::controlplane {
namespace {

// The part of `key` after `prefix` ("" when it is not under it).
std::string After(const std::string& key, const std::string& prefix) {
  return absl::StartsWith(key, prefix) ? key.substr(prefix.size()) : std::string();
}

}  // namespace

EtcdMembership::EtcdMembership(etcd::Client& client, MembershipOptions options)
    : client_(client),
      options_(std::move(options)),
      log_(herd::Logger("cluster")),
      backoff_(options_.retry) {}

std::string EtcdMembership::ReplicaKey(const std::string& id) const {
  return absl::StrCat(options_.prefix, "/replicas/", id);
}

std::string EtcdMembership::PresenceKey(const std::string& host) const {
  return absl::StrCat(options_.prefix, "/presence/", host);
}

absl::Status EtcdMembership::LoadPeerSecret() {
  const std::string key = absl::StrCat(options_.prefix, "/cluster/peer-secret");
  auto fresh = NewSecret("hp_");
  if (!fresh.ok()) return fresh.status();
  // Created by whichever replica comes first; the others read that one.
  auto txn = client_.Txn({etcd::Compare::Absent(key)}, {etcd::Op::Put(key, *fresh, 0)}, {etcd::Op::Get(key)});
  if (!txn.ok()) return txn.status();
  std::string secret = *fresh;
  if (!txn->succeeded) {
    if (txn->ranges.empty() || txn->ranges[0].kvs.empty()) {
      return absl::InternalError(absl::StrCat(key, " exists but etcd returned no value for it"));
    }
    secret = txn->ranges[0].kvs[0].value;
  }
  absl::MutexLock l(&view_mu_);
  peer_secret_ = std::move(secret);
  return absl::OkStatus();
}

absl::Status EtcdMembership::Start() {
  {
    std::lock_guard<std::mutex> l(mu_);
    if (started_ || stop_) return absl::FailedPreconditionError("membership started already");
  }
  if (options_.self_id.empty() || absl::StrContains(options_.self_id, '/')) {
    return absl::InvalidArgumentError(absl::StrCat(
        "replica id \"", options_.self_id,
        "\": give each replica a unique id without '/' (e.g. its host name and port)"));
  }
  started_at_unix_ms_ = absl::ToUnixMillis(absl::Now());
  auto fail = [this](const absl::Status& s) {
    replicas_watch_.reset();
    presence_watch_.reset();
    kept_lease_.reset();
    lease_ = 0;
    return absl::Status(s.code(), absl::StrCat("replica ", options_.self_id,
                                               " cannot join through etcd at ",
                                               client_.EndpointsText(), ": ", s.message()));
  };
  auto lease = client_.KeepLease(
      options_.lease_ttl, [this] { OnLeaseLost(); }, [this](int64_t id) { OnNewLease(id); });
  if (!lease.ok()) return fail(lease.status());
  const int64_t lease_id = (*lease)->id();
  kept_lease_ = std::move(*lease);
  // Unless OnNewLease ran meanwhile (it is the newer).
  int64_t none = 0;
  lease_.compare_exchange_strong(none, lease_id);
  if (auto put = client_.Put(ReplicaKey(options_.self_id), options_.address, lease_id);
      !put.ok()) {
    return fail(put.status());
  }
  if (auto s = LoadPeerSecret(); !s.ok()) return fail(s);
  auto handlers = [this](void (EtcdMembership::*on)(const etcd::RangeResult*,
                                                    const etcd::WatchBatch*)) {
    return PrefixWatch::Handlers{
        [this, on](const etcd::RangeResult& all) { (this->*on)(&all, nullptr); },
        [this, on](const etcd::WatchBatch& batch) { (this->*on)(nullptr, &batch); }};
  };
  replicas_watch_ = std::make_unique<PrefixWatch>(
      client_, absl::StrCat(options_.prefix, "/replicas/"),
      handlers(&EtcdMembership::OnReplicas), options_.retry, "replicas");
  presence_watch_ = std::make_unique<PrefixWatch>(
      client_, absl::StrCat(options_.prefix, "/presence/"),
      handlers(&EtcdMembership::OnPresence), options_.retry, "presence");
  if (auto s = replicas_watch_->Start(); !s.ok()) return fail(s);
  if (auto s = presence_watch_->Start(); !s.ok()) return fail(s);
  {
    std::lock_guard<std::mutex> l(mu_);
    started_ = true;
    thread_ = std::thread([this] { Loop(); });
  }
  log_->info("event=replica_joined replica={} address={} lease={:x} peers={}", options_.self_id,
             options_.address, lease_id, Peers().size());
  return absl::OkStatus();
}

void EtcdMembership::Stop() {
  {
    std::lock_guard<std::mutex> l(mu_);
    if (stop_) return;
    stop_ = true;
  }
  work_cv_.notify_all();
  done_cv_.notify_all();
  if (thread_.joinable()) thread_.join();
  if (replicas_watch_) replicas_watch_->Stop();
  if (presence_watch_) presence_watch_->Stop();
  // Revokes it: the replica's key and its hosts' presence go at once, not after the TTL.
  const bool had = kept_lease_ != nullptr;
  kept_lease_.reset();
  lease_ = 0;
  if (had) log_->info("event=replica_left replica={}", options_.self_id);
}

// ---------------------------------------------------------------------------------------
// The directory

std::vector<ReplicaInfo> EtcdMembership::Peers() const {
  absl::ReaderMutexLock l(&view_mu_);
  std::vector<ReplicaInfo> out;
  for (const auto& [id, info] : replicas_) {
    if (id != options_.self_id) out.push_back(info);
  }
  return out;
}

std::optional<ReplicaInfo> EtcdMembership::HolderOf(const std::string& host_id) const {
  {
    // What the hub said is ahead of the watch (the put may still be queued).
    std::lock_guard<std::mutex> l(mu_);
    if (held_.count(host_id) > 0) {
      return ReplicaInfo{options_.self_id, options_.address, started_at_unix_ms_};
    }
  }
  absl::ReaderMutexLock l(&view_mu_);
  auto it = holders_.find(host_id);
  // A key naming this replica for a host no longer held here: its delete is queued.
  if (it == holders_.end() || it->second == options_.self_id) return std::nullopt;
  auto r = replicas_.find(it->second);
  if (r == replicas_.end()) return ReplicaInfo{it->second, "", 0};
  return r->second;
}

std::string EtcdMembership::peer_secret() const {
  absl::ReaderMutexLock l(&view_mu_);
  return peer_secret_;
}

int64_t EtcdMembership::lease_id() const { return lease_.load(); }

void EtcdMembership::OnReplicas(const etcd::RangeResult* all, const etcd::WatchBatch* batch) {
  const std::string prefix = absl::StrCat(options_.prefix, "/replicas/");
  auto info = [&](const etcd::KeyValue& kv) {
    const std::string id = After(kv.key, prefix);
    return ReplicaInfo{id, kv.value,
                       id == options_.self_id ? started_at_unix_ms_ : int64_t{0}};
  };
  absl::MutexLock l(&view_mu_);
  if (all != nullptr) {
    replicas_.clear();
    for (const auto& kv : all->kvs) replicas_[info(kv).id] = info(kv);
    return;
  }
  for (const auto& ev : batch->events) {
    const std::string id = After(ev.kv.key, prefix);
    if (id.empty()) continue;
    const bool peer = id != options_.self_id;
    if (ev.type == etcd::WatchEvent::Type::kPut) {
      if (peer && replicas_.count(id) == 0) {
        log_->info("event=peer_joined replica={} address={}", id, ev.kv.value);
      }
      replicas_[id] = info(ev.kv);
    } else if (replicas_.erase(id) > 0 && peer) {
      log_->info("event=peer_left replica={}", id);
    }
  }
}

void EtcdMembership::OnPresence(const etcd::RangeResult* all, const etcd::WatchBatch* batch) {
  const std::string prefix = absl::StrCat(options_.prefix, "/presence/");
  absl::MutexLock l(&view_mu_);
  if (all != nullptr) {
    holders_.clear();
    for (const auto& kv : all->kvs) holders_[After(kv.key, prefix)] = kv.value;
    return;
  }
  for (const auto& ev : batch->events) {
    const std::string host = After(ev.kv.key, prefix);
    if (host.empty()) continue;
    if (ev.type == etcd::WatchEvent::Type::kPut) {
      holders_[host] = ev.kv.value;
    } else {
      holders_.erase(host);
    }
  }
}

// ---------------------------------------------------------------------------------------
// Presence

void EtcdMembership::HostAttached(const std::string& host_id) {
  {
    std::lock_guard<std::mutex> l(mu_);
    held_.insert(host_id);
    pending_[host_id] = true;
    ++queued_gen_;
  }
  work_cv_.notify_one();
}

void EtcdMembership::HostDetached(const std::string& host_id) {
  {
    std::lock_guard<std::mutex> l(mu_);
    held_.erase(host_id);
    pending_[host_id] = false;
    ++queued_gen_;
  }
  work_cv_.notify_one();
}

void EtcdMembership::OnLeaseLost() {
  lease_ = 0;
  log_->warn("event=lease_lost replica={} note=\"presence is put again under a new lease\"",
             options_.self_id);
}

void EtcdMembership::OnNewLease(int64_t lease) {
  size_t held = 0;
  {
    std::lock_guard<std::mutex> l(mu_);
    lease_ = lease;
    replica_key_dirty_ = true;
    for (const auto& host : held_) pending_[host] = true;
    held = held_.size();
    ++queued_gen_;
    ++stats_.leases_replaced;
  }
  log_->info("event=lease_replaced replica={} lease={:x} hosts={}", options_.self_id, lease,
             held);
  work_cv_.notify_one();
}

absl::Status EtcdMembership::FlushPresence() {
  std::unique_lock<std::mutex> l(mu_);
  const uint64_t gen = queued_gen_;
  const uint64_t failures = stats_.failures;
  done_cv_.wait(l, [&] {
    return written_gen_ >= gen || stats_.failures > failures || stop_ || !started_;
  });
  if (written_gen_ >= gen) return absl::OkStatus();
  if (!last_write_.ok()) return last_write_;
  return absl::UnavailableError("presence not written: the membership is not running");
}

EtcdMembership::Stats EtcdMembership::stats() const {
  std::lock_guard<std::mutex> l(mu_);
  Stats s = stats_;
  s.queued = pending_.size();
  return s;
}

absl::Status EtcdMembership::WriteBatch(const std::map<std::string, bool>& batch,
                                        bool replica_key, int64_t lease) {
  std::vector<etcd::Compare> compares;
  std::vector<etcd::Op> success, failure;
  std::vector<std::string> detached;
  for (const auto& [host, attached] : batch) {
    if (attached) {
      success.push_back(etcd::Op::Put(PresenceKey(host), options_.self_id, lease));
      failure.push_back(success.back());
    } else {
      // Only if it still names this replica: another may hold the host already.
      compares.push_back(etcd::Compare::ValueIs(PresenceKey(host), options_.self_id));
      success.push_back(etcd::Op::Delete(PresenceKey(host)));
      detached.push_back(host);
    }
  }
  if (replica_key) {
    success.push_back(etcd::Op::Put(ReplicaKey(options_.self_id), options_.address, lease));
    failure.push_back(success.back());
  }
  auto txn = client_.Txn(compares, success, failure);
  if (!txn.ok()) return txn.status();
  {
    std::lock_guard<std::mutex> l(mu_);
    ++stats_.txns;
    stats_.ops += txn->succeeded ? success.size() : failure.size();
  }
  if (txn->succeeded || detached.empty()) return absl::OkStatus();
  return DeleteOneByOne(detached);
}

absl::Status EtcdMembership::DeleteOneByOne(const std::vector<std::string>& hosts) {
  for (const auto& host : hosts) {
    auto txn = client_.Txn({etcd::Compare::ValueIs(PresenceKey(host), options_.self_id)},
                           {etcd::Op::Delete(PresenceKey(host))});
    if (!txn.ok()) return txn.status();
    std::lock_guard<std::mutex> l(mu_);
    ++stats_.txns;
    if (txn->succeeded) {
      ++stats_.ops;
    } else {
      ++stats_.not_ours;
    }
  }
  return absl::OkStatus();
}

void EtcdMembership::Loop() {
  pthread_setname_np(pthread_self(), "cluster-presence");
  std::unique_lock<std::mutex> l(mu_);
  while (true) {
    work_cv_.wait(l, [&] { return stop_ || !pending_.empty() || replica_key_dirty_; });
    if (stop_) return;
    const int64_t lease = lease_.load();
    if (lease == 0) {
      // Lost, not yet replaced: OnNewLease queues everything again (and wakes this).
      work_cv_.wait_for(l, std::chrono::seconds(1));
      continue;
    }
    std::map<std::string, bool> batch;
    const bool replica_key = std::exchange(replica_key_dirty_, false);
    const size_t room = std::max<size_t>(1, options_.max_batch_ops) - (replica_key ? 1 : 0);
    while (!pending_.empty() && batch.size() < room) {
      batch.insert(pending_.extract(pending_.begin()));
    }
    // Flushes wait for the generation queued when the queue was emptied.
    const uint64_t gen = pending_.empty() ? queued_gen_ : written_gen_;
    l.unlock();
    absl::Status s = WriteBatch(batch, replica_key, lease);
    l.lock();
    last_write_ = s;
    if (s.ok()) {
      written_gen_ = std::max(written_gen_, gen);
      backoff_.Reset();
      done_cv_.notify_all();
      continue;
    }
    // Nothing is lost: tried again, unless a newer state of the host was queued meanwhile.
    ++stats_.failures;
    for (const auto& entry : batch) pending_.insert(entry);
    replica_key_dirty_ |= replica_key;
    const absl::Duration wait = backoff_.Next();
    log_->warn("event=presence_not_written hosts={} error=\"{}\" retry_in_ms={}", batch.size(),
               s.message(), absl::ToInt64Milliseconds(wait));
    done_cv_.notify_all();
    work_cv_.wait_for(l, absl::ToChronoMilliseconds(wait), [&] { return stop_; });
  }
}

}  // namespace herd::controlplane
