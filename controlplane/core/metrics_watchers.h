// MetricsWatchers: the MetricsFeed (fleet_interfaces.h) — who watches which hosts' batches,
// and the hand-out of each batch to them. Thread-safe; its lock (watch_mu_) is taken after
// a host's in the hub's order and never held while a watcher runs. With no watcher (the
// common case) a batch costs one relaxed load.
#pragma once

#include <atomic>
#include <cstdint>
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
  uint64_t WatchMetrics(std::set<std::string> hosts, MetricsWatcher watcher) override {
    absl::MutexLock l(&mu_);
    uint64_t id = next_++;
    watchers_[id] = {std::move(hosts), std::move(watcher)};
    count_.store(watchers_.size(), std::memory_order_relaxed);
    return id;
  }
  void Unwatch(uint64_t id) override {
    absl::MutexLock l(&mu_);
    watchers_.erase(id);
    count_.store(watchers_.size(), std::memory_order_relaxed);
  }

  // Gives the host's batch to every watcher of it, on the caller's thread, outside the lock.
  void Publish(const std::string& host_id, const std::string& hostname,
               const herd::v1::MetricsBatch& batch) const {
    if (count_.load(std::memory_order_relaxed) == 0) return;
    std::vector<MetricsWatcher> watchers;
    {
      absl::MutexLock l(&mu_);
      for (const auto& [id, w] : watchers_) {
        if (w.first.empty() || w.first.count(host_id)) watchers.push_back(w.second);
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
  mutable absl::Mutex mu_;
  std::map<uint64_t, std::pair<std::set<std::string>, MetricsWatcher>> watchers_
      ABSL_GUARDED_BY(mu_);
  uint64_t next_ ABSL_GUARDED_BY(mu_) = 1;
  std::atomic<size_t> count_{0};
};

}  // namespace herd::controlplane
