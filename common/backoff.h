// Backoff: the delays between retries of something that failed (a reconnect, a store write),
// growing from `initial` by `multiplier` up to `max`, each drawn with jitter so that many
// agents that lost the same control plane do not come back in step. One helper for every
// retry loop, so they all grow, cap and reset the same way.
//
// Not thread-safe: one Backoff per retry loop, used by that loop's thread.
#pragma once

#include <cstdint>
#include <random>

#include "absl/time/time.h"

namespace herd {

struct BackoffOptions {
  absl::Duration initial = absl::Milliseconds(500);
  absl::Duration max = absl::Seconds(30);
  double multiplier = 2.0;
  // Each delay is the current step times a factor drawn from [1 - jitter, 1]: never more
  // than the step (so `max` is a real bound), at most `jitter` less. 0 disables it.
  double jitter = 0.5;
};

class Backoff {
 public:
  // `seed` makes the jitter reproducible in tests; 0 seeds from std::random_device.
  explicit Backoff(BackoffOptions options, uint64_t seed = 0);

  // The delay before the next attempt; the step after it grows (up to max).
  absl::Duration Next();
  // After a success (or an attempt that lasted): the next delay starts from `initial`.
  void Reset();
  // The step the next delay is drawn from (before jitter).
  absl::Duration step() const { return step_; }
  // Attempts since the last Reset.
  uint64_t attempts() const { return attempts_; }

 private:
  BackoffOptions options_;
  absl::Duration step_;
  uint64_t attempts_ = 0;
  std::mt19937_64 rng_;
};

}  // namespace herd
