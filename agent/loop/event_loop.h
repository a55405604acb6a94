// EventLoop: the agent's single-threaded reactor. Child exits (pidfds), child output pipes,
// timers and signals are all multiplexed on one epoll instance, so the supervisor's state is
// only ever touched from the loop thread and needs no locks. Other threads (gRPC callbacks)
// hand work in with Post(), which is the only thread-safe entry point besides Stop().
//
// Invariants: callbacks run on the loop thread, one at a time; a callback may add or remove
// any registration, including its own; a removed registration is never called again, even if
// its event was already fetched in the current batch.
#pragma once

#include <sys/epoll.h>

#include <atomic>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/functional/any_invocable.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "common/clock.h"
#include "common/scheduler.h"

namespace herd::agent {

// The agent's Scheduler (common/scheduler.h): its timers run on the loop thread, and are set
// and cancelled from it.
class EventLoop final : public Scheduler {
 public:
  using FdCallback = std::function<void(uint32_t events)>;

  static absl::StatusOr<std::unique_ptr<EventLoop>> Create(const Clock& clock);
  ~EventLoop() override;
  EventLoop(const EventLoop&) = delete;
  EventLoop& operator=(const EventLoop&) = delete;

  // Watches fd for events (EPOLLIN, EPOLLOUT...). The loop does not own fd.
  absl::StatusOr<Handle> WatchFd(int fd, uint32_t events, FdCallback cb);
  void UnwatchFd(Handle h);

  // Runs task once, `delay` from now (monotonic). Returns a handle for CancelTimer.
  Handle RunAfter(absl::Duration delay, Task task) override;
  void CancelTimer(Handle h);
  void Cancel(Handle h) override { CancelTimer(h); }

  // Thread-safe: runs task on the loop thread soon.
  void Post(Task task);

  // Runs until Stop(). Must be called from one thread only.
  void Run();
  // Thread-safe.
  void Stop();

  bool InLoopThread() const;
  const Clock& clock() const override { return clock_; }

 private:
  EventLoop(const Clock& clock, int epfd, int wakefd, int timerfd);
  void DrainPosted();
  void FireTimers();
  void ArmTimerFd();

  struct FdWatch {
    int fd;
    FdCallback cb;
  };

  const Clock& clock_;
  const int epfd_;
  const int wakefd_;
  const int timerfd_;
  Handle next_handle_ = 1;
  absl::flat_hash_map<Handle, std::shared_ptr<FdWatch>> fds_;
  // deadline (monotonic) -> timer handle; ordered so the earliest is first.
  std::multimap<absl::Time, Handle> timer_queue_;
  absl::flat_hash_map<Handle, std::pair<std::multimap<absl::Time, Handle>::iterator, Task>> timers_;
  absl::Mutex post_mu_;
  std::vector<Task> posted_ ABSL_GUARDED_BY(post_mu_);
  std::atomic<bool> stop_{false};
  std::atomic<uint64_t> loop_thread_id_{0};
};

}  // namespace herd::agent
