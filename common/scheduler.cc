#include "common/scheduler.h"

#include <pthread.h>

#include <string>

namespace herd {

PeriodicTask::PeriodicTask(Scheduler& scheduler, absl::Duration period, std::function<void()> fn)
    : scheduler_(scheduler), period_(period), fn_(std::move(fn)) {}

PeriodicTask::~PeriodicTask() { Stop(); }

void PeriodicTask::Start() {
  std::lock_guard<std::mutex> l(mu_);
  if (running_) return;
  running_ = true;
  Arm();
}

void PeriodicTask::Arm() {
  handle_ = scheduler_.RunAfter(period_, [this] {
    fn_();
    std::lock_guard<std::mutex> l(mu_);
    if (running_) Arm();
  });
}

void PeriodicTask::Stop() {
  Scheduler::Handle h;
  {
    std::lock_guard<std::mutex> l(mu_);
    if (!running_) return;
    running_ = false;
    h = handle_;
    handle_ = 0;
  }
  // Outside the lock: a run in progress takes it to re-arm (and then sees running_ false).
  scheduler_.Cancel(h);
}

ThreadScheduler::ThreadScheduler(const Clock& clock, std::string name)
    : clock_(clock), name_(std::move(name)) {
  thread_ = std::thread([this] { Loop(); });
  std::lock_guard<std::mutex> l(mu_);
  thread_id_ = thread_.get_id();
}

ThreadScheduler::~ThreadScheduler() { Stop(); }

Scheduler::Handle ThreadScheduler::RunAfter(absl::Duration delay, Task task) {
  const absl::Time at = clock_.Monotonic() + std::max(delay, absl::ZeroDuration());
  std::lock_guard<std::mutex> l(mu_);
  if (stop_) return 0;
  const Handle h = next_++;
  const bool first = queue_.empty() || std::make_pair(at, h) < queue_.begin()->first;
  queue_.emplace(std::make_pair(at, h), std::move(task));
  deadlines_.emplace(h, at);
  if (first) cv_.notify_one();
  return h;
}

void ThreadScheduler::Cancel(Handle handle) {
  if (handle == 0) return;
  std::unique_lock<std::mutex> l(mu_);
  if (auto it = deadlines_.find(handle); it != deadlines_.end()) {
    queue_.erase({it->second, handle});
    deadlines_.erase(it);
    return;
  }
  if (std::this_thread::get_id() == thread_id_) return;  // from a task: it is ours running
  finished_.wait(l, [&] { return running_ != handle; });
}

void ThreadScheduler::Stop() {
  {
    std::lock_guard<std::mutex> l(mu_);
    if (stop_ && !thread_.joinable()) return;
    stop_ = true;
  }
  cv_.notify_all();
  if (thread_.joinable() && std::this_thread::get_id() != thread_.get_id()) thread_.join();
  // The dropped tasks' captures are destroyed outside the lock, as Loop does: a capture's
  // destructor may call back in (Cancel, RunAfter).
  std::map<std::pair<absl::Time, Handle>, Task> dropped;
  {
    std::lock_guard<std::mutex> l(mu_);
    dropped.swap(queue_);
    deadlines_.clear();
  }
}

size_t ThreadScheduler::pending() const {
  std::lock_guard<std::mutex> l(mu_);
  return queue_.size();
}

void ThreadScheduler::Loop() {
  pthread_setname_np(pthread_self(), name_.substr(0, 15).c_str());
  std::unique_lock<std::mutex> l(mu_);
  while (!stop_) {
    if (queue_.empty()) {
      cv_.wait(l);
      continue;
    }
    auto first = queue_.begin();
    const absl::Duration left = first->first.first - clock_.Monotonic();
    if (left > absl::ZeroDuration()) {
      // Monotonic: std::condition_variable::wait_for measures on steady_clock.
      cv_.wait_for(l, absl::ToChronoNanoseconds(left));
      continue;
    }
    Task task = std::move(first->second);
    running_ = first->first.second;
    deadlines_.erase(running_);
    queue_.erase(first);
    l.unlock();
    task();
    // The task's captures are destroyed outside the lock too (they may call back in).
    task = nullptr;
    l.lock();
    running_ = 0;
    finished_.notify_all();
  }
}

}  // namespace herd
