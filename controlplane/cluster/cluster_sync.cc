#include "controlplane/cluster/cluster_sync.h"

#include <pthread.h>

#include <chrono>
#include <utility>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"

namespace herd::controlplane {

ClusterSync::ClusterSync(etcd::Client& client, Store& store, ReplicatedFleet& fleet,
                         ClusterSyncOptions options)
    : client_(client),
      store_(store),
      fleet_(fleet),
      options_(std::move(options)),
      hosts_prefix_(absl::StrCat(options_.prefix, "/hosts/")),
      log_(herd::Logger("cluster")),
      backoff_(options_.retry) {}

std::string ClusterSync::HostIdOf(const std::string& key) const {
  if (!absl::StartsWith(key, hosts_prefix_)) return "";
  std::string rest = key.substr(hosts_prefix_.size());
  // A store may keep parts of a record under the host's key (<id>/...): the host is <id>.
  if (auto slash = rest.find('/'); slash != std::string::npos) rest.resize(slash);
  return rest;
}

absl::Status ClusterSync::Start() {
  {
    std::lock_guard<std::mutex> l(mu_);
    if (started_ || stop_) return absl::FailedPreconditionError("cluster sync started already");
  }
  hosts_watch_ = std::make_unique<PrefixWatch>(
      client_, hosts_prefix_,
      PrefixWatch::Handlers{
          [this](const etcd::RangeResult& all) { OnHosts(&all, nullptr); },
          [this](const etcd::WatchBatch& batch) { OnHosts(nullptr, &batch); }},
      options_.retry, "hosts");
  config_watch_ = std::make_unique<PrefixWatch>(
      client_, absl::StrCat(options_.prefix, "/config/"),
      PrefixWatch::Handlers{[this](const etcd::RangeResult&) { OnConfig(); },
                            [this](const etcd::WatchBatch&) { OnConfig(); }},
      options_.retry, "config");
  for (auto* w : {hosts_watch_.get(), config_watch_.get()}) {
    if (auto s = w->Start(); !s.ok()) {
      hosts_watch_.reset();
      config_watch_.reset();
      return s;
    }
  }
  std::lock_guard<std::mutex> l(mu_);
  started_ = true;
  thread_ = std::thread([this] { Loop(); });
  return absl::OkStatus();
}

void ClusterSync::Stop() {
  // The watches first: nothing is queued after them.
  if (hosts_watch_) hosts_watch_->Stop();
  if (config_watch_) config_watch_->Stop();
  {
    std::lock_guard<std::mutex> l(mu_);
    stop_ = true;
  }
  work_cv_.notify_all();
  done_cv_.notify_all();
  if (thread_.joinable()) thread_.join();
}

void ClusterSync::OnHosts(const etcd::RangeResult* all, const etcd::WatchBatch* batch) {
  {
    std::lock_guard<std::mutex> l(mu_);
    if (all != nullptr) {
      // A (re)read: every record, as if each had just been put. (Hosts deleted while the
      // watch was down are not noticed here; deletes are an operator's rare act.)
      for (const auto& kv : all->kvs) {
        std::string id = HostIdOf(kv.key);
        if (!id.empty()) hosts_[id] = HostChange{false, false, kv};
      }
    } else {
      for (const auto& ev : batch->events) {
        std::string id = HostIdOf(ev.kv.key);
        if (id.empty()) continue;
        const bool whole = ev.kv.key == hosts_prefix_ + id;
        if (ev.type == etcd::WatchEvent::Type::kPut) {
          hosts_[id] = HostChange{false, false, ev.kv};
        } else {
          hosts_[id] = HostChange{whole, !whole, ev.kv};
        }
      }
    }
    ++queued_gen_;
  }
  work_cv_.notify_one();
}

void ClusterSync::OnConfig() {
  {
    std::lock_guard<std::mutex> l(mu_);
    config_dirty_ = true;
    ++queued_gen_;
  }
  work_cv_.notify_one();
}

absl::Status ClusterSync::ApplyHost(const std::string& host_id, const HostChange& change) {
  if (change.deleted) {
    fleet_.HostDeleted(host_id);
    std::lock_guard<std::mutex> l(mu_);
    ++stats_.hosts_deleted;
    return absl::OkStatus();
  }
  std::optional<HostRecord> record;
  if (options_.decode_host && !change.reread) {
    auto decoded = options_.decode_host(change.kv);
    if (decoded.ok() && decoded->host_id == host_id) record = std::move(*decoded);
  }
  if (!record) {
    auto stored = store_.GetHost(host_id);
    if (absl::IsNotFound(stored.status())) return absl::OkStatus();  // deleted since
    if (!stored.ok()) return stored.status();
    record = std::move(*stored);
  }
  fleet_.HostStored(*record);
  std::lock_guard<std::mutex> l(mu_);
  ++stats_.hosts_stored;
  return absl::OkStatus();
}

absl::Status ClusterSync::WaitApplied() {
  std::unique_lock<std::mutex> l(mu_);
  const uint64_t gen = queued_gen_;
  const uint64_t failures = stats_.failures;
  done_cv_.wait(l, [&] {
    return applied_gen_ >= gen || stats_.failures > failures || stop_ || !started_;
  });
  if (applied_gen_ >= gen) return absl::OkStatus();
  if (!last_.ok()) return last_;
  return absl::UnavailableError("not applied: the cluster sync is not running");
}

ClusterSync::Stats ClusterSync::stats() const {
  std::lock_guard<std::mutex> l(mu_);
  return stats_;
}

void ClusterSync::Loop() {
  pthread_setname_np(pthread_self(), "cluster-sync");
  std::unique_lock<std::mutex> l(mu_);
  while (true) {
    work_cv_.wait(l, [&] { return stop_ || !hosts_.empty() || config_dirty_; });
    if (stop_) return;
    std::map<std::string, HostChange> hosts;
    hosts.swap(hosts_);
    const bool config = std::exchange(config_dirty_, false);
    const uint64_t gen = queued_gen_;
    l.unlock();
    absl::Status failed;
    std::map<std::string, HostChange> retry;
    for (auto& [id, change] : hosts) {
      if (absl::Status s = ApplyHost(id, change); !s.ok()) {
        failed = s;
        retry.emplace(id, std::move(change));
      }
    }
    bool config_failed = false;
    if (config) {
      auto pushed = fleet_.ReloadConfig();
      config_failed = !pushed.ok();
      if (config_failed) failed = pushed.status();
      l.lock();
      ++stats_.config_reloads;
      if (pushed.ok()) stats_.hosts_pushed += pushed->size();
      l.unlock();
    }
    l.lock();
    if (failed.ok()) {
      applied_gen_ = std::max(applied_gen_, gen);
      last_ = absl::OkStatus();
      backoff_.Reset();
      done_cv_.notify_all();
      continue;
    }
    // Kept for the next try, unless a newer change of the host came meanwhile.
    for (auto& entry : retry) hosts_.insert(std::move(entry));
    config_dirty_ |= config_failed;
    ++stats_.failures;
    last_ = failed;
    const absl::Duration wait = backoff_.Next();
    log_->warn("event=cluster_sync_failed hosts={} config={} error=\"{}\" retry_in_ms={}",
               retry.size(), config_failed, failed.message(), absl::ToInt64Milliseconds(wait));
    done_cv_.notify_all();
    work_cv_.wait_for(l, absl::ToChronoMilliseconds(wait), [&] { return stop_; });
  }
}

}  // namespace herd::controlplane
