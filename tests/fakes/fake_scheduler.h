// FakeScheduler: a Scheduler on a FakeClock whose tasks run only when a test advances time,
// on the test's thread. Tests of anything that waits (sweeps, backoffs, debounces, rollout
// batches) advance simulated time instead of sleeping:
//
//   FakeClock clock;
//   FakeScheduler sched(clock);
//   Thing thing(sched);           // asks for RunAfter(5s, ...)
//   sched.Advance(absl::Seconds(4));   // nothing yet
//   sched.Advance(absl::Seconds(1));   // it runs, with clock.Monotonic() at its deadline
//
// Advance moves the clock to each due task's deadline before running it, so a task sees the
// time it was planned for, and tasks it schedules inside the window run too. Wall-clock steps
// (clock.StepWall) move no deadline: that is the point of running on the monotonic clock.
// Thread-safe (code under test may schedule from its own threads); tasks run without the lock.
#pragma once

#include <cstdint>
#include <map>
#include <mutex>
#include <utility>

#include "absl/container/flat_hash_map.h"
#include "absl/time/time.h"
#include "common/clock.h"
#include "common/scheduler.h"

namespace herd::testing {

class FakeScheduler final : public Scheduler {
 public:
  explicit FakeScheduler(FakeClock& clock) : clock_(clock) {}

  Handle RunAfter(absl::Duration delay, Task task) override {
    std::lock_guard<std::mutex> l(mu_);
    const Handle h = next_++;
    const absl::Time at = clock_.Monotonic() + std::max(delay, absl::ZeroDuration());
    queue_.emplace(std::make_pair(at, h), std::move(task));
    deadlines_.emplace(h, at);
    return h;
  }
  void Cancel(Handle handle) override {
    std::lock_guard<std::mutex> l(mu_);
    auto it = deadlines_.find(handle);
    if (it == deadlines_.end()) return;
    queue_.erase({it->second, handle});
    deadlines_.erase(it);
  }
  const Clock& clock() const override { return clock_; }

  // Moves time forward by `d`, running every task that falls due on the way, in order.
  // Returns how many ran.
  size_t Advance(absl::Duration d) {
    const absl::Time until = clock_.Monotonic() + d;
    size_t ran = 0;
    while (true) {
      Task task;
      {
        std::lock_guard<std::mutex> l(mu_);
        if (queue_.empty() || queue_.begin()->first.first > until) break;
        auto first = queue_.begin();
        const absl::Duration step = first->first.first - clock_.Monotonic();
        if (step > absl::ZeroDuration()) clock_.Advance(step);
        task = std::move(first->second);
        deadlines_.erase(first->first.second);
        queue_.erase(first);
      }
      task();
      ++ran;
    }
    const absl::Duration rest = until - clock_.Monotonic();
    if (rest > absl::ZeroDuration()) clock_.Advance(rest);
    return ran;
  }
  // Runs what is due now (delay 0 tasks, posted work) without moving time.
  size_t RunDue() { return Advance(absl::ZeroDuration()); }
  // Tasks waiting.
  size_t pending() const {
    std::lock_guard<std::mutex> l(mu_);
    return queue_.size();
  }
  // How long until the next task is due (InfiniteDuration when none).
  absl::Duration NextIn() const {
    std::lock_guard<std::mutex> l(mu_);
    if (queue_.empty()) return absl::InfiniteDuration();
    return queue_.begin()->first.first - clock_.Monotonic();
  }

 private:
  FakeClock& clock_;
  mutable std::mutex mu_;
  Handle next_ = 1;
  std::map<std::pair<absl::Time, Handle>, Task> queue_;
  absl::flat_hash_map<Handle, absl::Time> deadlines_;
};

}  // namespace herd::testing
