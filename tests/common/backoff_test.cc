#include "common/backoff.h"

#include <gtest/gtest.h>

namespace herd {
namespace {

TEST(Backoff, GrowsByTheMultiplierUpToMaxWithoutJitter) {
  Backoff b({.initial = absl::Seconds(1), .max = absl::Seconds(5), .multiplier = 2, .jitter = 0});
  EXPECT_EQ(b.Next(), absl::Seconds(1));
  EXPECT_EQ(b.Next(), absl::Seconds(2));
  EXPECT_EQ(b.Next(), absl::Seconds(4));
  EXPECT_EQ(b.Next(), absl::Seconds(5));
  EXPECT_EQ(b.Next(), absl::Seconds(5));
  EXPECT_EQ(b.attempts(), 5u);
}

TEST(Backoff, ResetStartsAgainFromInitial) {
  Backoff b({.initial = absl::Milliseconds(100), .max = absl::Seconds(1), .jitter = 0});
  b.Next();
  b.Next();
  EXPECT_EQ(b.step(), absl::Milliseconds(400));
  b.Reset();
  EXPECT_EQ(b.attempts(), 0u);
  EXPECT_EQ(b.Next(), absl::Milliseconds(100));
}

TEST(Backoff, JitterStaysWithinTheStepAndVaries) {
  Backoff b({.initial = absl::Seconds(10), .max = absl::Seconds(10), .jitter = 0.5}, 42);
  absl::Duration lo = absl::InfiniteDuration(), hi = absl::ZeroDuration();
  for (int i = 0; i < 200; ++i) {
    absl::Duration d = b.Next();
    ASSERT_GE(d, absl::Seconds(5));
    ASSERT_LE(d, absl::Seconds(10));
    lo = std::min(lo, d);
    hi = std::max(hi, d);
  }
  EXPECT_GT(hi - lo, absl::Seconds(1)) << "jitter should spread the delays";
}

TEST(Backoff, SameSeedSameDelays) {
  Backoff a({}, 7), b({}, 7);
  for (int i = 0; i < 10; ++i) EXPECT_EQ(a.Next(), b.Next());
}

TEST(Backoff, NonsenseOptionsAreBoundedInsteadOfLoopingHot) {
  Backoff b({.initial = absl::ZeroDuration(), .max = absl::ZeroDuration(), .multiplier = 0.1,
             .jitter = 7});
  absl::Duration d = b.Next();
  EXPECT_GE(d, absl::ZeroDuration());
  EXPECT_GE(b.step(), absl::Milliseconds(1));
}

}  // namespace
}  // namespace herd
