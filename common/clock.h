// Clock: the one source of time for Herd components, so that tests can drive time by hand
// instead of sleeping. Wall time (Now) is for display and timestamps; monotonic time
// (Monotonic) is for every interval: uptimes, delays, CPU rates. A wall-clock jump must
// never make a process look unstable or a delay fire early.
#pragma once

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

// A clock that only moves when told to; both readings advance together.
class FakeClock final : public Clock {
 public:
  explicit FakeClock(absl::Time start = absl::FromUnixSeconds(1'700'000'000)) : now_(start) {}
  absl::Time Now() const override {
    absl::MutexLock l(&mu_);
    return now_;
  }
  absl::Time Monotonic() const override {
    absl::MutexLock l(&mu_);
    return absl::UnixEpoch() + (now_ - start_);
  }
  void Advance(absl::Duration d) {
    absl::MutexLock l(&mu_);
    now_ += d;
  }

 private:
  mutable absl::Mutex mu_;
  absl::Time now_ ABSL_GUARDED_BY(mu_);
  const absl::Time start_ = now_;
};

}  // namespace herd
