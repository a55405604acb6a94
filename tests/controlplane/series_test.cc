#include "controlplane/core/series.h"

#include <algorithm>
#include <limits>
#include <string>
#include <utility>
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
  HostSeries s(SeriesOptions{.points = 4, .probe_points = 2, .coarse_points = 0, .probe_coarse_points = 0, .max_series = 100});
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
  HostSeries s(SeriesOptions{.points = 10, .probe_points = 10, .coarse_points = 0, .probe_coarse_points = 0, .max_series = 100});
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
  HostSeries s(SeriesOptions{.points = 5, .probe_points = 5, .coarse_points = 0, .probe_coarse_points = 0, .max_series = 2});
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
  HostSeries s(SeriesOptions{.points = 3, .probe_points = 3, .coarse_points = 0, .probe_coarse_points = 0, .max_series = 2});
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

TEST(HostSeries, OlderSamplesAreKeptAsBlockMeansBeforeTheFineWindow) {
  HostSeries s(SeriesOptions{.points = 4,
                             .probe_points = 0,
                             .coarse_every = 3,
                             .coarse_points = 3,
                             .probe_coarse_points = 2,
                             .max_series = 100});
  for (int i = 1; i <= 14; ++i) {
    ASSERT_TRUE(s.Begin(1000 * i));
    s.Add("web", "cpu", i);
    s.Add("web", "probe:hits", 10 * i);
  }
  // Blocks of 3 samples: 1-3, 4-6, 7-9, 10-12; the fine window holds samples 11-14. The ring
  // of 3 blocks still holds 4-6 and 7-9 before it (10-12 overlaps it), each dated by its last
  // sample.
  auto cpu = Get(s, "web", "cpu");
  std::vector<std::pair<int64_t, double>> got;
  for (const auto& p : cpu) got.emplace_back(p.at_unix_ms(), p.value());
  EXPECT_EQ(got, (std::vector<std::pair<int64_t, double>>{
                     {6000, 5}, {9000, 8}, {11000, 11}, {12000, 12}, {13000, 13}, {14000, 14}}));
  // A probe with no fine tier: its last 2 complete blocks, then the block in progress
  // (samples 13-14) as its mean so far, dated by its latest sample.
  auto hits = Get(s, "web", "probe:hits");
  ASSERT_EQ(hits.size(), 3u);
  EXPECT_EQ(hits[0].at_unix_ms(), 9000);
  EXPECT_DOUBLE_EQ(hits[0].value(), 80);
  EXPECT_EQ(hits[1].at_unix_ms(), 12000);
  EXPECT_DOUBLE_EQ(hits[1].value(), 110);
  EXPECT_EQ(hits[2].at_unix_ms(), 14000);
  EXPECT_DOUBLE_EQ(hits[2].value(), 135);
  // `since` applies to coarse points by their date.
  EXPECT_EQ(Get(s, "web", "cpu", 9000).size(), 5u);
}

TEST(HostSeries, ABlockMeanCountsOnlyTheSamplesItHas) {
  HostSeries s(SeriesOptions{.points = 1,
                             .probe_points = 0,
                             .coarse_every = 4,
                             .coarse_points = 8,
                             .probe_coarse_points = 8,
                             .max_series = 100});
  // Samples 1-4: values at 1 and 3 only; 5-8: none; 9-12: all; then the unit is gone.
  for (int i = 1; i <= 16; ++i) {
    ASSERT_TRUE(s.Begin(1000 * i));
    s.Add("", "cpu", 0);
    if (i == 1 || i == 3 || (i >= 9 && i <= 12)) s.Add("job", "rss", i);
  }
  auto rss = Get(s, "job", "rss");
  ASSERT_EQ(rss.size(), 2u);
  EXPECT_EQ(rss[0].at_unix_ms(), 4000);
  EXPECT_DOUBLE_EQ(rss[0].value(), 2);  // (1 + 3) / 2, not / 4
  EXPECT_EQ(rss[1].at_unix_ms(), 12000);  // its last block, never followed by another value
  EXPECT_DOUBLE_EQ(rss[1].value(), 10.5);
  // A block still in progress is not shown as a mean.
  s.Begin(17000);
  s.Add("late", "cpu", 5);
  auto late = Get(s, "late", "cpu");
  ASSERT_EQ(late.size(), 1u);  // its one fine point, no mean of a block not yet over
  EXPECT_EQ(late[0].at_unix_ms(), 17000);
}

TEST(HostSeries, ASeriesIsGoneOnlyWhenBothTiersHaveNothingOfIt) {
  HostSeries s(SeriesOptions{.points = 2,
                             .probe_points = 2,
                             .coarse_every = 2,
                             .coarse_points = 3,
                             .probe_coarse_points = 3,
                             .max_series = 2});
  s.Begin(1000);
  s.Add("old", "cpu", 1);
  s.Add("old", "rss", 2);
  for (int t = 2; t <= 4; ++t) s.Begin(1000 * t);
  // Out of the fine window but still in the coarse one: no room for a third series.
  s.Add("new", "cpu", 7);
  EXPECT_EQ(s.dropped_series(), 1u);
  EXPECT_EQ(Get(s, "old", "cpu").size(), 1u);
  for (int t = 5; t <= 12; ++t) s.Begin(1000 * t);
  s.Add("new", "cpu", 7);
  EXPECT_EQ(s.dropped_series(), 1u);
  std::vector<herd::v1::Point> none;
  EXPECT_FALSE(s.Points("old", "cpu", 0, &none));
}

TEST(HostSeries, AProbeInItsFirstBlockIsNotDroppedToMakeRoom) {
  // Probes have no fine tier: in the host's first block, their only point is the block in
  // progress, and they must not be taken for series with nothing left.
  HostSeries s(SeriesOptions{.points = 5,
                             .probe_points = 0,
                             .coarse_every = 10,
                             .coarse_points = 5,
                             .probe_coarse_points = 5,
                             .max_series = 2});
  s.Begin(1000);
  s.Add("web", "probe:a", 1);
  s.Add("web", "probe:b", 2);
  s.Begin(2000);
  s.Add("web", "probe:a", 3);
  s.Add("web", "probe:b", 4);
  s.Add("web", "probe:c", 5);  // no room: refused and counted, a and b kept
  EXPECT_EQ(s.dropped_series(), 1u);
  auto a = Get(s, "web", "probe:a");
  ASSERT_EQ(a.size(), 1u);
  EXPECT_DOUBLE_EQ(a[0].value(), 2);
  EXPECT_EQ(a[0].at_unix_ms(), 2000);
  EXPECT_EQ(Get(s, "web", "probe:b").size(), 1u);
}

TEST(HostSeries, AnInfiniteValueDoesNotPoisonItsBlock) {
  HostSeries s(SeriesOptions{.points = 1,
                             .probe_points = 0,
                             .coarse_every = 2,
                             .coarse_points = 4,
                             .probe_coarse_points = 4,
                             .max_series = 10});
  s.Begin(1000);
  s.Add("web", "probe:x", std::numeric_limits<double>::infinity());
  s.Begin(2000);
  s.Add("web", "probe:x", 4);
  auto x = Get(s, "web", "probe:x");
  ASSERT_EQ(x.size(), 1u);
  EXPECT_DOUBLE_EQ(x[0].value(), 4);
}

TEST(HostSeries, AKeyLongerThanAnyNameIsNotRecorded) {
  HostSeries s;
  s.Begin(1000);
  s.Add("web", absl::StrCat("probe:", std::string(2000, 'x')), 1);
  EXPECT_EQ(s.dropped_series(), 1u);
  s.Add("web", "cpu", 1);
  EXPECT_EQ(s.dropped_series(), 1u);
}

// Hosts with the same series share one layout (keys and where each series' rings are), and
// keep their own values: a fleet of one kind holds the keys once.
TEST(HostSeries, HostsWithTheSameSeriesShareOneLayout) {
  SeriesOptions o{.points = 5, .probe_points = 0, .coarse_points = 3, .probe_coarse_points = 3,
                  .max_series = 100};
  HostSeries a(o), b(o), c(o);
  auto sample = [](HostSeries& s, int t, double v, bool reversed) {
    ASSERT_TRUE(s.Begin(1000 * t));
    std::vector<std::pair<std::string, std::string>> keys = {
        {"", "cpu"}, {"web", "cpu"}, {"web", "probe:hits"}, {"db", "rss"}};
    if (reversed) std::reverse(keys.begin(), keys.end());
    for (const auto& [unit, metric] : keys) s.Add(unit, metric, v);
  };
  sample(a, 1, 1, false);
  sample(b, 1, 100, true);  // the same series, first seen in another order
  EXPECT_EQ(a.SharedLayout(), nullptr);  // its own while its series changed
  const size_t drafting = a.MemoryBytes();
  for (int t = 2; t < 8; ++t) {
    sample(a, t, t, false);
    sample(b, t, 100 * t, true);
  }
  ASSERT_NE(a.SharedLayout(), nullptr);
  EXPECT_EQ(a.SharedLayout(), b.SharedLayout());
  EXPECT_LT(a.MemoryBytes(), drafting);
  auto cpu_a = Get(a, "web", "cpu"), cpu_b = Get(b, "web", "cpu");
  ASSERT_EQ(cpu_a.size(), 5u);
  ASSERT_EQ(cpu_b.size(), 5u);
  EXPECT_DOUBLE_EQ(cpu_a.back().value(), 7);
  EXPECT_DOUBLE_EQ(cpu_b.back().value(), 700);
  EXPECT_DOUBLE_EQ(Get(b, "db", "rss").back().value(), 700);

  // A host with one more series has a layout of its own, shared with the next like it; its
  // values survive the change.
  sample(c, 1, 5, false);
  ASSERT_TRUE(c.Begin(2000));
  c.Add("", "cpu", 6);
  c.Add("cache", "probe:size", 1);
  c.Add("web", "cpu", 6);
  ASSERT_TRUE(c.Begin(3000));
  ASSERT_NE(c.SharedLayout(), nullptr);
  EXPECT_NE(c.SharedLayout(), a.SharedLayout());
  auto web = Get(c, "web", "cpu");
  ASSERT_EQ(web.size(), 2u);
  EXPECT_DOUBLE_EQ(web[0].value(), 5);
  EXPECT_DOUBLE_EQ(web[1].value(), 6);
  EXPECT_EQ(Get(c, "db", "rss").size(), 1u);  // missed since: its one value
  EXPECT_EQ(a.SharedLayout(), b.SharedLayout());  // the others unchanged
}

// The budget behind bench/README.md's per-agent memory: a host with 10 modules of 10 probes
// (123 series) holds its whole history in under 16 KiB, its layout shared with hosts like it.
TEST(HostSeries, AFullHostFitsItsMemoryBudget) {
  HostSeries s;  // defaults: 60 points + 30 blocks of 10; probes 12 blocks of 10
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
  EXPECT_LT(s.MemoryBytes(), 16u * 1024) << s.MemoryBytes();
  // 5 minutes of memory: 24 blocks of 10 s (the ring's 30 less the 6 the fine window covers),
  // then the last 60 samples.
  auto rss = Get(s, "module-3", "rss");
  ASSERT_EQ(rss.size(), 84u);
  EXPECT_EQ(rss.back().at_unix_ms(), 399000);
  EXPECT_EQ(rss.front().at_unix_ms(), 109000);  // t = 100..109
  EXPECT_DOUBLE_EQ(rss.front().value(), 104.5);
  EXPECT_EQ(rss[24].at_unix_ms(), 340000);  // the first fine point
  for (size_t i = 1; i < rss.size(); ++i) EXPECT_LT(rss[i - 1].at_unix_ms(), rss[i].at_unix_ms());
  // 2 minutes of each probe, as blocks of 10 s.
  auto probe = Get(s, "module-3", "probe:probe_7");
  ASSERT_EQ(probe.size(), 12u);  // blocks 28..39 (the ring of times holds 30 blocks)
  EXPECT_EQ(probe.back().at_unix_ms(), 399000);
  EXPECT_DOUBLE_EQ(probe.back().value(), 394.5);
}

}  // namespace
}  // namespace herd::controlplane
