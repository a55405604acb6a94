// Scheduler: timers on the clock seam. Components that wait (a sweeper, a rollout's next
// batch, a reconnect's backoff, a debounce) ask a Scheduler to run a task later instead of
// owning a thread that sleeps, so that tests drive them with FakeScheduler
// (tests/fakes/fake_scheduler.h) by advancing simulated time, and so that every delay is
// measured on the monotonic clock: stepping the wall clock by an hour fires nothing.
//
// Implementations:
//   - ThreadScheduler (below): one thread of its own; every method is thread-safe. The
//     control plane's timers.
//   - agent::EventLoop: the agent's loop thread runs the tasks; its methods are called on
//     the loop thread only (like everything else there).
//   - FakeScheduler: tasks run on the thread that advances time.
// Tasks run one at a time and must not block: what waits on I/O belongs on a thread of its
// own, which a task may wake.
#pragma once

#include <condition_variable>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <thread>
#include <utility>

#include "absl/container/flat_hash_map.h"
#include "absl/functional/any_invocable.h"
#include "absl/time/time.h"
#include "common/clock.h"

namespace herd {

class Scheduler {
 public:
  using Task = absl::AnyInvocable<void()>;
  using Handle = uint64_t;  // 0 is never a valid handle

  virtual ~Scheduler() = default;
  // Runs `task` once, `delay` from now on the monotonic clock (a delay ≤ 0: as soon as
  // possible, never inside this call). Returns a handle for Cancel.
  virtual Handle RunAfter(absl::Duration delay, Task task) = 0;
  // The task will not start after this returns. Cancelling a task that already ran, or 0,
  // is a no-op. (ThreadScheduler also waits for the task to finish when it is running on
  // another thread.)
  virtual void Cancel(Handle handle) = 0;
  virtual const Clock& clock() const = 0;
};

// A task run every `period` (the first run one period after Start) until Stop or
// destruction, on a Scheduler. The next run is planned after the current one finishes, so
// runs never overlap and a slow run delays, rather than piles up, the next.
class PeriodicTask {
 public:
  PeriodicTask(Scheduler& scheduler, absl::Duration period, std::function<void()> fn);
  ~PeriodicTask();
  PeriodicTask(const PeriodicTask&) = delete;
  PeriodicTask& operator=(const PeriodicTask&) = delete;

  void Start();
  // After Stop returns the task does not run again (nor is it running, unless Stop was
  // called from the task itself). The task may call Stop, but must not destroy this
  // PeriodicTask: the run re-arms (or not) after the function returns.
  void Stop();

 private:
  void Arm();

  Scheduler& scheduler_;
  const absl::Duration period_;
  const std::function<void()> fn_;
  std::mutex mu_;
  Scheduler::Handle handle_ = 0;  // guarded by mu_
  bool running_ = false;          // guarded by mu_: started and not stopped
};

// A Scheduler with one thread of its own, waiting on the monotonic clock
// (std::condition_variable waits on steady_clock; absl's timed waits would turn the delay
// into a wall-clock deadline).
class ThreadScheduler final : public Scheduler {
 public:
  // `name` names the thread (pthread_setname_np, 15 bytes) for top and gdb.
  explicit ThreadScheduler(const Clock& clock = SystemClock::Get(), std::string name = "scheduler");
  // Stops: tasks not yet run are dropped.
  ~ThreadScheduler() override;
  ThreadScheduler(const ThreadScheduler&) = delete;
  ThreadScheduler& operator=(const ThreadScheduler&) = delete;

  Handle RunAfter(absl::Duration delay, Task task) override;
  void Cancel(Handle handle) override;
  const Clock& clock() const override { return clock_; }

  // Ends the thread after the task running now (if any); later RunAfter calls are dropped.
  // Idempotent; not from a task.
  void Stop();
  // Tasks waiting to run (for /metrics and tests).
  size_t pending() const;

 private:
  void Loop();

  const Clock& clock_;
  const std::string name_;
  mutable std::mutex mu_;
  std::condition_variable cv_;        // the queue changed, or stop
  std::condition_variable finished_;  // a task finished (Cancel waits for it)
  bool stop_ = false;
  Handle next_ = 1;
  Handle running_ = 0;  // the task running now, 0 when none
  // (deadline, handle) → task; the handle orders tasks due at the same time by creation.
  std::map<std::pair<absl::Time, Handle>, Task> queue_;
  absl::flat_hash_map<Handle, absl::Time> deadlines_;
  std::thread thread_;
  std::thread::id thread_id_;
};

}  // namespace herd
