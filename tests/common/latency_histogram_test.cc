#include "common/latency_histogram.h"

#include <thread>
#include <vector>

#include "gtest/gtest.h"

namespace herd {
namespace {

TEST(LatencyHistogram, BucketsAreCumulativeAndInfIsTheCount) {
  LatencyHistogram h;
  h.Observe(absl::ZeroDuration());
  h.Observe(absl::Microseconds(500));  // on a bound: counted in it (le)
  h.Observe(absl::Milliseconds(20));
  h.Observe(absl::Seconds(3));  // beyond every bound: only +Inf
  auto s = h.Read();
  ASSERT_EQ(s.bounds.size(), LatencyHistogram::kBounds.size());
  EXPECT_EQ(s.bounds.front(), 0.0005);
  EXPECT_EQ(s.bounds.back(), 1.0);
  EXPECT_EQ(s.cumulative.front(), 2u);
  EXPECT_EQ(s.cumulative[4], 2u);  // le 0.01
  EXPECT_EQ(s.cumulative[5], 3u);  // le 0.025
  EXPECT_EQ(s.cumulative.back(), 3u);
  EXPECT_EQ(s.count, 4u);
  EXPECT_NEAR(s.sum_seconds, 3.0205, 1e-9);
}

TEST(LatencyHistogram, ConcurrentObservationsAreAllCounted) {
  LatencyHistogram h;
  std::vector<std::thread> threads;
  for (int t = 0; t < 4; ++t) {
    threads.emplace_back([&h, t] {
      for (int i = 0; i < 10000; ++i) h.Observe(absl::Microseconds(100 * (t + 1)));
    });
  }
  for (auto& t : threads) t.join();
  auto s = h.Read();
  EXPECT_EQ(s.count, 40000u);
  EXPECT_EQ(s.cumulative.front(), 40000u);
  EXPECT_NEAR(s.sum_seconds, 10000 * (0.0001 + 0.0002 + 0.0003 + 0.0004), 1e-6);
}

}  // namespace
}  // namespace herd
