#include "controlplane/cluster/prefix_watch.h"

#include <pthread.h>

#include <chrono>
#include <utility>

#include "absl/strings/str_cat.h"

namespace herd::controlplane {

std::string RangeEndOfPrefix(const std::string& prefix) {
  std::string end = prefix;
  // The last byte that can be incremented is, and what follows it is dropped.
  while (!end.empty()) {
    auto& c = reinterpret_cast<unsigned char&>(end.back());
    if (c < 0xff) {
      ++c;
      return end;
    }
    end.pop_back();
  }
  return std::string(1, '\0');  // every key (etcd's convention)
}

PrefixWatch::PrefixWatch(etcd::Client& client, std::string prefix, Handlers handlers,
                         BackoffOptions retry, std::string name)
    : client_(client),
      prefix_(std::move(prefix)),
      handlers_(std::move(handlers)),
      name_(std::move(name)),
      log_(herd::Logger("cluster")),
      backoff_(retry) {}

absl::Status PrefixWatch::Sync() {
  etcd::RangeOptions options;
  options.range_end = RangeEndOfPrefix(prefix_);
  auto keys = client_.Range(prefix_, options);
  if (!keys.ok()) return keys.status();
  handlers_.on_snapshot(*keys);
  auto watch = client_.WatchRange(
      prefix_, options.range_end, keys->revision + 1, [this](const etcd::WatchBatch& batch) {
        if (batch.compacted || !batch.error.ok()) {
          // Events may have been lost: read everything again (on the thread, not here).
          log_->warn("event=watch_ended watch={} compacted={} error=\"{}\"", name_,
                     batch.compacted, batch.error.message());
          {
            std::lock_guard<std::mutex> l(mu_);
            resync_ = true;
          }
          cv_.notify_all();
          return;
        }
        handlers_.on_batch(batch);
      });
  if (!watch.ok()) return watch.status();
  watch_ = std::move(*watch);
  return absl::OkStatus();
}

absl::Status PrefixWatch::Start() {
  {
    std::lock_guard<std::mutex> l(mu_);
    if (started_) return absl::OkStatus();
  }
  if (auto s = Sync(); !s.ok()) {
    return absl::Status(s.code(), absl::StrCat("cannot watch ", prefix_, " (", name_,
                                               ") in etcd at ", client_.EndpointsText(), ": ",
                                               s.message()));
  }
  std::lock_guard<std::mutex> l(mu_);
  started_ = true;
  thread_ = std::thread([this] { Loop(); });
  return absl::OkStatus();
}

void PrefixWatch::Stop() {
  {
    std::lock_guard<std::mutex> l(mu_);
    stop_ = true;
  }
  cv_.notify_all();
  if (thread_.joinable()) thread_.join();
  // Waits until no callback runs (etcd::Watch's destructor).
  watch_.reset();
}

uint64_t PrefixWatch::resyncs() const {
  std::lock_guard<std::mutex> l(mu_);
  return resyncs_;
}

bool PrefixWatch::WaitResyncs(uint64_t n) {
  std::unique_lock<std::mutex> l(mu_);
  cv_.wait(l, [&] { return resyncs_ >= n || stop_; });
  return resyncs_ >= n;
}

void PrefixWatch::Loop() {
  pthread_setname_np(pthread_self(), "cluster-watch");
  std::unique_lock<std::mutex> l(mu_);
  while (true) {
    cv_.wait(l, [&] { return resync_ || stop_; });
    if (stop_) return;
    l.unlock();
    // Not under mu_: the old watch's callback takes it, and its destructor waits for it.
    watch_.reset();
    absl::Status s = Sync();
    l.lock();
    if (s.ok()) {
      resync_ = false;
      ++resyncs_;
      backoff_.Reset();
      cv_.notify_all();
      log_->info("event=watch_resynced watch={} prefix={}", name_, prefix_);
      continue;
    }
    const absl::Duration wait = backoff_.Next();
    log_->warn("event=watch_resync_failed watch={} error=\"{}\" retry_in_ms={}", name_,
               s.message(), absl::ToInt64Milliseconds(wait));
    cv_.wait_for(l, absl::ToChronoMilliseconds(wait), [&] { return stop_; });
  }
}

}  // namespace herd::controlplane
