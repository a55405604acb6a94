#include "common/backoff.h"

#include <algorithm>

namespace herd {

Backoff::Backoff(BackoffOptions options, uint64_t seed)
    : options_(options),
      step_(options.initial),
      rng_(seed != 0 ? seed : std::random_device{}()) {
  // Bounds a caller's mistakes instead of looping hot or never growing.
  if (options_.initial <= absl::ZeroDuration()) options_.initial = absl::Milliseconds(1);
  if (options_.max < options_.initial) options_.max = options_.initial;
  if (!(options_.multiplier >= 1.0)) options_.multiplier = 1.0;
  options_.jitter = std::clamp(options_.jitter, 0.0, 1.0);
  step_ = options_.initial;
}

absl::Duration Backoff::Next() {
  absl::Duration delay = step_;
  if (options_.jitter > 0) {
    std::uniform_real_distribution<double> factor(1.0 - options_.jitter, 1.0);
    delay = step_ * factor(rng_);
  }
  step_ = std::min(step_ * options_.multiplier, options_.max);
  ++attempts_;
  return delay;
}

void Backoff::Reset() {
  step_ = options_.initial;
  attempts_ = 0;
}

}  // namespace herd
