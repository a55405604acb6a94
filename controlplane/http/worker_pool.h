// Threads for the HTTP listener's work that blocks (gRPC calls, rendering /metrics), started
// as needed up to `max_threads`, with at most `max_queued` jobs waiting. Submit never blocks:
// past those bounds it refuses, and the listener answers 503. Thread-safe.
#pragma once

#include <algorithm>
#include <cstddef>
#include <deque>
#include <functional>
#include <thread>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/synchronization/mutex.h"

namespace herd::controlplane::httpd {

class WorkerPool {
 public:
  WorkerPool(size_t max_threads, size_t max_queued)
      : max_threads_(std::max<size_t>(1, max_threads)), max_queued_(max_queued) {}
  ~WorkerPool() { Stop(); }

  // False when every thread is busy and the queue is full, or the pool is stopping: the job
  // is not run.
  bool Submit(std::function<void()> job);

  // Drops queued jobs and waits for the running ones (whose calls the caller cancelled).
  void Stop();

 private:
  void Work();

  bool HasWork() const ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    return stopping_ || !queue_.empty();
  }

  const size_t max_threads_, max_queued_;
  absl::Mutex mu_;
  bool stopping_ ABSL_GUARDED_BY(mu_) = false;
  size_t running_ ABSL_GUARDED_BY(mu_) = 0;
  std::deque<std::function<void()>> queue_ ABSL_GUARDED_BY(mu_);
  std::vector<std::thread> threads_ ABSL_GUARDED_BY(mu_);
};

}  // namespace herd::controlplane::httpd
