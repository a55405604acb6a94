// LatencyHistogram: a fixed-bucket latency histogram for /metrics, shared by the control
// plane's store timings and its batch delay.
#pragma once

#include <array>
#include <atomic>
#include <cstdint>
#include <span>
#include <vector>

#include "absl/time/time.h"

namespace herd {

// A fixed-bucket latency histogram (Prometheus semantics: cumulative buckets by upper bound,
// plus +Inf). Observe() is lock-free and may run on any thread.
class LatencyHistogram {
 public:
  // The default upper bounds in seconds: 0.5 ms (a cached SQLite read) to 1 s (a stalled
  // disk).
  static constexpr std::array<double, 11> kBounds = {0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025,
                                                     0.05,   0.1,   0.25,   0.5,   1.0};

  // What the renderer needs, consistent in itself: cumulative[i] counts observations
  // <= bounds[i], and count (the +Inf bucket) is at least the last of them.
  struct Snapshot {
    std::vector<double> bounds;
    std::vector<uint64_t> cumulative;
    uint64_t count = 0;
    double sum_seconds = 0;
  };

  // `bounds`: ascending upper bounds in seconds.
  explicit LatencyHistogram(std::span<const double> bounds = kBounds)
      : bounds_(bounds.begin(), bounds.end()), buckets_(bounds_.size() + 1) {}

  void Observe(absl::Duration d);
  Snapshot Read() const;

 private:
  const std::vector<double> bounds_;
  // Per bucket (not cumulative), the last one being +Inf.
  std::vector<std::atomic<uint64_t>> buckets_;
  std::atomic<uint64_t> sum_ns_{0};
};

}  // namespace herd
