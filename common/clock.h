// Clock: the one source of time for Herd components, so that tests can drive time by hand
// instead of sleeping. Wall time (Now) is for display and timestamps; monotonic time
// (Monotonic) is for every interval: uptimes, delays, CPU rates. A wall-clock jump must
// never make a process look unstable or a delay fire early.
#pragma once

#include <condition_variable>
#include <mutex>

#include "absl/synchronization/mutex.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"

namespace herd {

class Clock {
 public:
  virtual ~Clock() = default;
  // Wall-clock time.
  virtual absl::Time Now() const = 0;
  // Monotonic time, as an absl::Time whose epoch is arbitrary (boot): only differences mean
  // anything.
  virtual absl::Time Monotonic() const = 0;
};

// The real clocks: CLOCK_REALTIME and CLOCK_MONOTONIC.
class SystemClock final : public Clock {
 public:
  absl::Time Now() const override { return absl::Now(); }
  absl::Time Monotonic() const override;
  static SystemClock& Get();
};

// A clock that only moves when told to. Advance moves both readings; StepWall moves the wall
// clock alone (an NTP step, or an operator setting the date), forwards or back.
class FakeClock final : public Clock {
 public:
  explicit FakeClock(absl::Time start = absl::FromUnixSeconds(1'700'000'000)) : now_(start) {}
  absl::Time Now() const override {
    absl::MutexLock l(&mu_);
    return now_;
  }
  absl::Time Monotonic() const override {
    absl::MutexLock l(&mu_);
    return absl::UnixEpoch() + elapsed_;
  }
  void Advance(absl::Duration d) {
    absl::MutexLock l(&mu_);
    now_ += d;
    elapsed_ += d;
  }
  void StepWall(absl::Duration d) {
    absl::MutexLock l(&mu_);
    now_ += d;
  }

 private:
  mutable absl::Mutex mu_;
  absl::Time now_ ABSL_GUARDED_BY(mu_);
  absl::Duration elapsed_ ABSL_GUARDED_BY(mu_) = absl::ZeroDuration();
};

// A thread's periodic wait that another thread can end early (Stop). Timed on the monotonic
// clock: this Abseil's timed waits (Mutex::AwaitWithTimeout, CondVar::WaitWithTimeout) turn
// the timeout into a wall-clock deadline, so a clock stepped back an hour would hold a
// sweeper asleep for that hour.
class StopWaiter {
 public:
  // Waits `d` or until Stop(); true once stopped.
  bool WaitFor(absl::Duration d);
  void Stop();
  bool stopped() const;

 private:
  mutable std::mutex mu_;
  std::condition_variable cv_;
  bool stopped_ = false;
};

}  // namespace herd
