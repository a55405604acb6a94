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

void ClusterSync::Queue(const etcd::KeyValue& kv, bool put) {
  const std::string id = HostIdOf(kv.key);
  if (id.empty()) return;
  HostChange& change = hosts_[id];
  if (kv.key.size() == hosts_prefix_.size() + id.size()) {  // the record's own key
    if (put) {
      change.deleted = false;
      change.record = kv;
    } else {
      change = HostChange{true, std::nullopt, std::nullopt};
    }
  } else if (put) {
    change.status = kv;
  }
  // (A status key deleted alone: its record's delete says what matters.)
}

void ClusterSync::OnHosts(const etcd::RangeResult* all, const etcd::WatchBatch* batch) {
  {
    std::lock_guard<std::mutex> l(mu_);
    if (all != nullptr) {
      // A (re)read: every record, as if each had just been put. (Hosts deleted while the
      // watch was down are not noticed here; deletes are an operator's rare act.)
      for (const auto& kv : all->kvs) Queue(kv, true);
    } else {
      for (const auto& ev : batch->events) {
        Queue(ev.kv, ev.type == etcd::WatchEvent::Type::kPut);
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

absl::Status ClusterSync::ReadHost(const std::string& host_id) {
  auto stored = store_.GetHost(host_id);
  if (absl::IsNotFound(stored.status())) return absl::OkStatus();  // deleted since
  if (!stored.ok()) return stored.status();
  fleet_.HostStored(*stored);
  std::lock_guard<std::mutex> l(mu_);
  ++stats_.hosts_stored;
  return absl::OkStatus();
}

absl::Status ClusterSync::ApplyHost(const std::string& host_id, const HostChange& change) {
  if (change.deleted) {
    fleet_.HostDeleted(host_id);
    std::lock_guard<std::mutex> l(mu_);
    ++stats_.hosts_deleted;
    return absl::OkStatus();
  }
  if (change.record) {
    auto decoded = options_.decode_host ? options_.decode_host(*change.record)
                                        : absl::UnimplementedError("no decoder");
    if (!decoded.ok() || decoded->host_id != host_id) {
      return ReadHost(host_id);  // the record and its latest status, merged by the store
    }
    fleet_.HostStored(*decoded);
    std::lock_guard<std::mutex> l(mu_);
    ++stats_.hosts_stored;
  }
  // A status written after the record (one from before it is in the record already).
  if (change.status &&
      (!change.record || change.status->mod_revision > change.record->mod_revision)) {
    auto decoded = options_.decode_status ? options_.decode_status(*change.status)
                                          : absl::UnimplementedError("no decoder");
    if (!decoded.ok() || decoded->host_id != host_id) return ReadHost(host_id);
    fleet_.HostStatusStored(*decoded);
    std::lock_guard<std::mutex> l(mu_);
    ++stats_.statuses_stored;
  }
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
      absl::Status s = ApplyHost(id, change);
      if (s.code() == absl::StatusCode::kDataLoss) {
        // A record that does not decode, read again from the store: no retry will mend it
        // (the next write of the host will). Dropped, said once, not retried for ever.
        log_->error("event=cluster_sync_host_skipped host={} error=\"{}\"", id, s.message());
        continue;
      }
      if (!s.ok()) {
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
    // Kept for the next try; a newer change of the host that came meanwhile wins over it,
    // field by field (a newer status does not drop an older record not yet applied).
    for (auto& [id, older] : retry) {
      auto [it, inserted] = hosts_.try_emplace(id, older);
      HostChange& newer = it->second;
      if (inserted || newer.deleted || newer.record) continue;
      newer.record = std::move(older.record);
      newer.deleted = older.deleted && !newer.status;
    }
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
