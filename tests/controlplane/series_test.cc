#include "controlplane/core/series.h"

#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "gtest/gtest.h"

namespace herd::controlplane {
namespace {

std::vector<herd::v1::Point> Get(const HostSeries& s, const std::string& unit,
                                 const std::string& metric, int64_t since = 0) {
  std::vector<herd::v1::Point> out;
  EXPECT_TRUE(s.Points(unit, metric, since, &out)) << unit << " " << metric;
  return out;
}

TEST(HostSeries, KeepsTheLastPointsInOrderWithTheirTimes) {
  HostSeries s(SeriesOptions{.points = 4, .probe_points = 2, .max_series = 100});
  for (int i = 0; i < 6; ++i) {
    ASSERT_TRUE(s.Begin(1000 * i));
    s.Add("web", "cpu", i * 1.5);
    s.Add("web", "probe:hits", i);
  }
  auto cpu = Get(s, "web", "cpu");
  ASSERT_EQ(cpu.size(), 4u);
  for (int i = 0; i < 4; ++i) {
    EXPECT_EQ(cpu[i].at_unix_ms(), 1000 * (i + 2));
    EXPECT_DOUBLE_EQ(cpu[i].value(), (i + 2) * 1.5);
  }
  // Probes keep fewer points.
  auto hits = Get(s, "web", "probe:hits");
  ASSERT_EQ(hits.size(), 2u);
  EXPECT_EQ(hits[0].at_unix_ms(), 4000);
  EXPECT_EQ(Get(s, "web", "cpu", 4000).size(), 2u);
  std::vector<herd::v1::Point> none;
  EXPECT_FALSE(s.Points("web", "rss", 0, &none));
  EXPECT_FALSE(s.Points("", "cpu", 0, &none));
}

TEST(HostSeries, ASeriesMissingFromSomeBatchesHasNoPointsThere) {
  HostSeries s(SeriesOptions{.points = 10, .probe_points = 10, .max_series = 100});
  for (int i = 0; i < 6; ++i) {
    s.Begin(1000 * i);
    s.Add("", "cpu", i);
    if (i % 2 == 0) s.Add("job", "cpu", i);
  }
  auto job = Get(s, "job", "cpu");
  ASSERT_EQ(job.size(), 3u);
  EXPECT_EQ(job[1].at_unix_ms(), 2000);
  EXPECT_EQ(job[2].at_unix_ms(), 4000);
  // A unit gone for longer than the history has nothing left to show.
  for (int i = 6; i < 30; ++i) {
    s.Begin(1000 * i);
    s.Add("", "cpu", i);
  }
  EXPECT_TRUE(Get(s, "job", "cpu").empty());
  EXPECT_EQ(Get(s, "", "cpu").size(), 10u);
}

TEST(HostSeries, LateSamplesAndTooManySeriesAreCountedNotKept) {
  HostSeries s(SeriesOptions{.points = 5, .probe_points = 5, .max_series = 2});
  ASSERT_TRUE(s.Begin(5000));
  s.Add("a", "cpu", 1);
  EXPECT_FALSE(s.Begin(4000));
  s.Add("a", "cpu", 99);  // ignored: the sample was refused
  EXPECT_EQ(s.dropped_late(), 1u);
  ASSERT_TRUE(s.Begin(5000));  // the same time is not late
  s.Add("a", "cpu", 2);
  s.Add("b", "cpu", 3);
  s.Add("c", "cpu", 4);
  EXPECT_EQ(s.dropped_series(), 1u);
  auto a = Get(s, "a", "cpu");
  ASSERT_EQ(a.size(), 2u);
  EXPECT_DOUBLE_EQ(a[1].value(), 2);
}

TEST(HostSeries, SeriesOfUnitsLongGoneMakeRoomForNewOnes) {
  HostSeries s(SeriesOptions{.points = 3, .probe_points = 3, .max_series = 2});
  s.Begin(1000);
  s.Add("old", "cpu", 1);
  s.Add("old", "rss", 2);
  for (int t = 2; t < 6; ++t) s.Begin(1000 * t);  // "old" is gone for longer than the history
  s.Add("new", "cpu", 7);
  EXPECT_EQ(s.dropped_series(), 0u);
  auto n = Get(s, "new", "cpu");
  ASSERT_EQ(n.size(), 1u);
  EXPECT_DOUBLE_EQ(n[0].value(), 7);
  std::vector<herd::v1::Point> none;
  EXPECT_FALSE(s.Points("old", "cpu", 0, &none));
  // Still full of live series: a third one is refused.
  s.Add("new", "rss", 8);
  s.Add("newer", "cpu", 9);
  EXPECT_EQ(s.dropped_series(), 1u);
}

// The budget behind bench/README.md's per-agent memory: a host with 10 modules of 10 probes
// (123 series) holds its whole history in under 48 KiB.
TEST(HostSeries, AFullHostFitsItsMemoryBudget) {
  HostSeries s;  // defaults: 180 points, 60 per probe
  for (int t = 0; t < 400; ++t) {
    s.Begin(1000 * t);
    s.Add("", "cpu", t);
    s.Add("", "memory_available", t);
    s.Add("", "load1", t);
    for (int m = 0; m < 10; ++m) {
      const std::string unit = absl::StrCat("module-", m);
      s.Add(unit, "cpu", t);
      s.Add(unit, "rss", t);
      for (int p = 0; p < 10; ++p) s.Add(unit, absl::StrCat("probe:probe_", p), t);
    }
  }
  EXPECT_LT(s.MemoryBytes(), 48u * 1024) << s.MemoryBytes();
  EXPECT_EQ(Get(s, "module-3", "rss").size(), 180u);
  EXPECT_EQ(Get(s, "module-3", "probe:probe_7").size(), 60u);
}

}  // namespace
}  // namespace herd::controlplane
