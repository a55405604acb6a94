#include "common/clock.h"

#include <time.h>

namespace herd {

absl::Time SystemClock::Monotonic() const {
  timespec ts{};
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return absl::UnixEpoch() + absl::DurationFromTimespec(ts);
}

SystemClock& SystemClock::Get() {
  static SystemClock* clock = new SystemClock();
  return *clock;
}

bool StopWaiter::WaitFor(absl::Duration d) {
  std::unique_lock<std::mutex> l(mu_);
  // std::condition_variable waits on the steady (monotonic) clock.
  cv_.wait_for(l, absl::ToChronoNanoseconds(d), [this] { return stopped_; });
  return stopped_;
}

void StopWaiter::Stop() {
  {
    std::lock_guard<std::mutex> l(mu_);
    stopped_ = true;
  }
  cv_.notify_all();
}

bool StopWaiter::stopped() const {
  std::lock_guard<std::mutex> l(mu_);
  return stopped_;
}

}  // namespace herd
