#include "controlplane/http/worker_pool.h"

#include <utility>

namespace herd::controlplane::httpd {

bool WorkerPool::Submit(std::function<void()> job) {
  absl::MutexLock l(&mu_);
  if (stopping_) return false;
  const size_t wanted = running_ + queue_.size() + 1;  // threads this job keeps busy
  if (wanted > max_threads_ + max_queued_) return false;
  if (wanted > threads_.size() && threads_.size() < max_threads_) {
    threads_.emplace_back([this] { Work(); });
  }
  queue_.push_back(std::move(job));
  return true;
}

void WorkerPool::Stop() {
  std::vector<std::thread> threads;
  std::deque<std::function<void()>> dropped;  // destroyed outside the lock
  {
    absl::MutexLock l(&mu_);
    stopping_ = true;
    dropped.swap(queue_);
    threads.swap(threads_);
  }
  for (auto& t : threads) t.join();
}

void WorkerPool::Work() {
  mu_.Lock();
  for (;;) {
    mu_.Await(absl::Condition(this, &WorkerPool::HasWork));
    if (stopping_) break;
    std::function<void()> job = std::move(queue_.front());
    queue_.pop_front();
    ++running_;
    mu_.Unlock();
    job();
    job = nullptr;  // what it holds goes before the thread counts as free
    mu_.Lock();
    --running_;
  }
  mu_.Unlock();
}

}  // namespace herd::controlplane::httpd
