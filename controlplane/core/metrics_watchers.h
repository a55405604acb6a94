// MetricsWatchers: the MetricsFeed (fleet_interfaces.h) — who watches which hosts' batches,
// and the hand-out of each batch to them. Thread-safe; its lock (watch_mu_) is taken after
// a host's in the hub's order and never held while a watcher runs. With no watcher (the
// common case) a batch costs one relaxed load.
#pragma once

#include <atomic>
#include <cstdint>
#include <functional>
#include <map>
#include <set>
#include <string>
#include <utility>
#include <vector>

#include "absl/synchronization/mutex.h"
#include "controlplane/core/fleet_interfaces.h"

namespace herd::controlplane {

class MetricsWatchers final : public MetricsFeed {
 public:
  // Told (outside the lock) when a host gets its first watcher that names it, and when it
  // loses its last one: the hub asks that host for each batch as it is taken while someone
  // watches it live. (A watch of every host, or of more than kMaxLiveHosts, changes no
  // host's cadence: a fleet-wide view is not worth its messages.) Before any watch.
  using WatchedChange = std::function<void(const std::string& host_id, bool watched)>;
  void set_on_watched(WatchedChange f) { on_watched_ = std::move(f); }

  uint64_t WatchMetrics(std::set<std::string> hosts, MetricsWatcher watcher) override {
    std::vector<std::string> now_watched;
    uint64_t id;
    {
      absl::MutexLock l(&mu_);
      id = next_++;
      if (hosts.size() <= kMaxLiveHosts) {
        for (const auto& h : hosts) {
          if (named_[h]++ == 0) now_watched.push_back(h);
        }
      }
      watchers_[id] = {std::move(hosts), std::move(watcher)};
      count_.store(watchers_.size(), std::memory_order_relaxed);
    }
    if (on_watched_) {
      for (const auto& h : now_watched) on_watched_(h, true);
    }
    return id;
  }
  void Unwatch(uint64_t id) override {
    std::vector<std::string> unwatched;
    {
      absl::MutexLock l(&mu_);
      auto it = watchers_.find(id);
      if (it == watchers_.end()) return;
      const auto& hosts = it->second.first;
      if (hosts.size() <= kMaxLiveHosts) {
        for (const auto& h : hosts) {
          auto n = named_.find(h);
          if (n != named_.end() && --n->second == 0) {
            named_.erase(n);
            unwatched.push_back(h);
          }
        }
      }
      watchers_.erase(it);
      count_.store(watchers_.size(), std::memory_order_relaxed);
    }
    if (on_watched_) {
      for (const auto& h : unwatched) on_watched_(h, false);
    }
  }
  static constexpr size_t kMaxLiveHosts = 100;

  // A watcher names the host.
  bool Watched(const std::string& host_id) const {
    if (count_.load(std::memory_order_relaxed) == 0) return false;
    absl::MutexLock l(&mu_);
    return named_.count(host_id) > 0;
  }

  // Some watcher is handed the host's batches (it names the host, or watches every host).
  bool Wants(const std::string& host_id) const {
    if (count_.load(std::memory_order_relaxed) == 0) return false;
    absl::MutexLock l(&mu_);
    for (const auto& [id, w] : watchers_) {
      if (Covers(w.first, host_id)) return true;
    }
    return false;
  }

  // Gives the host's batch to every watcher of it, on the caller's thread, outside the lock.
  void Publish(const std::string& host_id, const std::string& hostname,
               const herd::v1::MetricsBatch& batch) const {
    if (count_.load(std::memory_order_relaxed) == 0) return;
    std::vector<MetricsWatcher> watchers;
    {
      absl::MutexLock l(&mu_);
      for (const auto& [id, w] : watchers_) {
        if (Covers(w.first, host_id)) watchers.push_back(w.second);
      }
    }
    if (watchers.empty()) return;
    herd::v1::HostMetrics update;
    update.set_host_id(host_id);
    update.set_hostname(hostname);
    *update.mutable_batch() = batch;
    for (auto& w : watchers) w(update);
  }

 private:
  // A watch of `hosts` (empty: every host) is handed `host_id`'s batches.
  static bool Covers(const std::set<std::string>& hosts, const std::string& host_id) {
    return hosts.empty() || hosts.count(host_id) > 0;
  }

  mutable absl::Mutex mu_;
  std::map<uint64_t, std::pair<std::set<std::string>, MetricsWatcher>> watchers_
      ABSL_GUARDED_BY(mu_);
  uint64_t next_ ABSL_GUARDED_BY(mu_) = 1;
  std::map<std::string, int> named_ ABSL_GUARDED_BY(mu_);  // host → watchers naming it
  WatchedChange on_watched_;
  std::atomic<size_t> count_{0};
};

}  // namespace herd::controlplane
