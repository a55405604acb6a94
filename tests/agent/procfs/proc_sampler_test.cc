// ProcSampler on a fake /proc tree (clk_tck 100, page 4096), plus one check on the real /proc.
#include "agent/procfs/proc_sampler.h"

#include <stdlib.h>
#include <time.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/time/time.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/fakes/temp_dir.h"

namespace herd::agent {
namespace {

namespace fs = std::filesystem;
using ::testing::ElementsAre;
using ::testing::UnorderedElementsAre;

constexpr long kClkTck = 100;
constexpr long kPage = 4096;

// One /proc/PID/stat line with the fields the sampler reads (proc(5) numbering).
std::string StatLine(pid_t pid, absl::string_view comm, pid_t ppid, uint64_t utime,
                     uint64_t stime, uint32_t threads, uint64_t start, int64_t rss_pages) {
  return absl::StrCat(pid, " (", comm, ") S ", ppid, " ", pid, " ", pid,
                      " 0 -1 4194560 100 0 0 0 ", utime, " ", stime, " 0 0 20 0 ", threads,
                      " 0 ", start, " 123456789 ", rss_pages,
                      " 18446744073709551615 1 1 0 0 0 0 0 0 0 0 0 0 17 1 0 0 0 0 0\n");
}

class FakeProc : public ::testing::Test {
 protected:
  // Rewrites in place (same inode), as the kernel's files change under an open fd.
  void Write(const std::string& rel, const std::string& content) { dir_.WriteFile(rel, content); }
  void SetProc(pid_t pid, pid_t ppid, uint64_t utime, uint64_t stime, uint32_t threads = 1,
               int64_t rss_pages = 256, uint64_t start = 1000) {
    Write(absl::StrCat(pid, "/stat"),
          StatLine(pid, "worker", ppid, utime, stime, threads, start, rss_pages));
  }
  void SetChildren(pid_t pid, const std::vector<pid_t>& children) {
    Write(absl::StrCat(pid, "/task/", pid, "/children"),
          children.empty() ? "" : absl::StrCat(absl::StrJoin(children, " "), " "));
  }

  ::herd::testing::ScopedTempDir dir_{"herd-fakeproc"};
  const std::string root_ = dir_.path();
  absl::Time t0_ = absl::FromUnixSeconds(1'000'000);
};

TEST(ParseStat, ReadsFieldsAfterTheLastParenthesis) {
  StatFields f;
  ASSERT_TRUE(ParseStat(StatLine(42, "we ird) (name", 7, 150, 50, 3, 999, 10), &f));
  EXPECT_EQ(f.ppid, 7);
  EXPECT_EQ(f.cpu_ticks, 200u);
  EXPECT_EQ(f.threads, 3u);
  EXPECT_EQ(f.start_ticks, 999u);
  EXPECT_EQ(f.rss_pages, 10u);
}

TEST(ParseStat, RefusesTruncatedOrGarbage) {
  StatFields f;
  EXPECT_FALSE(ParseStat("", &f));
  EXPECT_FALSE(ParseStat("12 (x) S 1 2 3", &f));
  EXPECT_FALSE(ParseStat("no parenthesis at all", &f));
  EXPECT_FALSE(ParseStat(
      "1 (x) S one 1 1 0 -1 4194560 100 0 0 0 1 1 0 0 20 0 1 0 5 6 7", &f));
}

TEST(ParseSmapsRollup, SumsPrivateForUss) {
  SmapsRollup s;
  ASSERT_TRUE(ParseSmapsRollup(
      "55d0-7ffd ---p 00000000 00:00 0 [rollup]\nRss:  900 kB\nPss:  500 kB\n"
      "Pss_Anon: 300 kB\nShared_Clean: 100 kB\nPrivate_Clean: 40 kB\nPrivate_Dirty: 260 kB\n",
      &s));
  EXPECT_EQ(s.pss_bytes, 500u * 1024);
  EXPECT_EQ(s.uss_bytes, 300u * 1024);
  EXPECT_FALSE(ParseSmapsRollup("Rss: 1 kB\n", &s));
}

TEST_F(FakeProc, FirstSightIsZeroThenCpuFromTwoTicks) {
  SetProc(100, 1, 10, 5, 4, 256);
  ProcSampler sampler(root_, kClkTck, kPage);
  auto r1 = sampler.Sample(t0_, {{"app", {100}, true}}, false);
  ASSERT_EQ(r1.size(), 1u);
  EXPECT_EQ(r1[0].key, "app");
  EXPECT_DOUBLE_EQ(r1[0].cpu_percent, 0);
  EXPECT_EQ(r1[0].rss_bytes, 256u * kPage);
  EXPECT_EQ(r1[0].threads, 4u);
  EXPECT_THAT(r1[0].pids, ElementsAre(100));

  // 50 ticks (0.5 s of CPU at 100 Hz) over 2 s of wall time = 25 % of one core.
  SetProc(100, 1, 40, 25, 4, 512);
  auto r2 = sampler.Sample(t0_ + absl::Seconds(2), {{"app", {100}, true}}, false);
  EXPECT_DOUBLE_EQ(r2[0].cpu_percent, 25.0);
  EXPECT_EQ(r2[0].rss_bytes, 512u * kPage);

  // Over one core: 150 ticks in 1 s = 150 % (PM2's convention, not capped).
  SetProc(100, 1, 140, 75, 4, 512);
  auto r3 = sampler.Sample(t0_ + absl::Seconds(3), {{"app", {100}, true}}, false);
  EXPECT_DOUBLE_EQ(r3[0].cpu_percent, 150.0);
}

TEST_F(FakeProc, DescendantsAreAggregatedIntoTheUnit) {
  // 100 -> 101 -> 102, and 100 -> 103.
  SetProc(100, 1, 0, 0, 2, 100);
  SetProc(101, 100, 0, 0, 1, 10);
  SetProc(102, 101, 0, 0, 3, 20);
  SetProc(103, 100, 0, 0, 1, 30);
  SetChildren(100, {101, 103});
  SetChildren(101, {102});
  SetChildren(102, {});
  SetChildren(103, {});
  ProcSampler sampler(root_, kClkTck, kPage);
  auto r1 = sampler.Sample(t0_, {{"app", {100}, true}}, false);
  EXPECT_THAT(r1[0].pids, UnorderedElementsAre(100, 101, 102, 103));
  EXPECT_EQ(r1[0].rss_bytes, 160u * kPage);
  EXPECT_EQ(r1[0].threads, 7u);
  EXPECT_EQ(sampler.tracked(), 4u);

  SetProc(100, 1, 10, 0, 2, 100);   // +10 ticks
  SetProc(102, 101, 20, 10, 3, 20); // +30 ticks
  auto r2 = sampler.Sample(t0_ + absl::Seconds(1), {{"app", {100}, true}}, false);
  // 40 ticks in 1 s at 100 Hz = 40 %.
  EXPECT_DOUBLE_EQ(r2[0].cpu_percent, 40.0);
}

TEST_F(FakeProc, WithoutDescendantsOnlyTheRootsCount) {
  SetProc(100, 1, 0, 0, 1, 100);
  SetProc(101, 100, 0, 0, 1, 10);
  SetChildren(100, {101});
  SetChildren(101, {});
  ProcSampler sampler(root_, kClkTck, kPage);
  auto r = sampler.Sample(t0_, {{"app", {100}, false}}, false);
  EXPECT_THAT(r[0].pids, ElementsAre(100));
  EXPECT_EQ(r[0].rss_bytes, 100u * kPage);
  EXPECT_EQ(sampler.tracked(), 1u);
}

TEST_F(FakeProc, SeveralRootsFromPidFilesAreSummed) {
  SetProc(200, 1, 0, 0, 1, 50);
  SetProc(300, 1, 0, 0, 1, 70);
  ProcSampler sampler(root_, kClkTck, kPage);
  auto r = sampler.Sample(t0_, {{"app", {200, 300, 200}, true}}, false);
  EXPECT_THAT(r[0].pids, UnorderedElementsAre(200, 300));  // 200 counted once
  EXPECT_EQ(r[0].rss_bytes, 120u * kPage);
}

TEST_F(FakeProc, MissingPidsContributeNothing) {
  SetProc(100, 1, 0, 0, 1, 50);
  ProcSampler sampler(root_, kClkTck, kPage);
  auto r = sampler.Sample(t0_, {{"gone", {4242}, true}, {"app", {100}, true}}, false);
  ASSERT_EQ(r.size(), 2u);
  EXPECT_EQ(r[0].key, "gone");
  EXPECT_TRUE(r[0].pids.empty());
  EXPECT_EQ(r[0].rss_bytes, 0u);
  EXPECT_EQ(r[1].key, "app");
  EXPECT_EQ(r[1].rss_bytes, 50u * kPage);
  EXPECT_EQ(sampler.tracked(), 1u);
}

TEST_F(FakeProc, VanishedChildIsForgottenAndItsFdClosed) {
  SetProc(100, 1, 0, 0, 1, 100);
  SetProc(101, 100, 0, 0, 1, 10);
  SetChildren(100, {101});
  SetChildren(101, {});
  ProcSampler sampler(root_, kClkTck, kPage);
  sampler.Sample(t0_, {{"app", {100}, true}}, false);
  ASSERT_EQ(sampler.tracked(), 2u);

  // The child exits: the parent's children list no longer names it.
  SetChildren(100, {});
  fs::remove_all(fs::path(root_) / "101");
  auto r = sampler.Sample(t0_ + absl::Seconds(1), {{"app", {100}, true}}, false);
  EXPECT_THAT(r[0].pids, ElementsAre(100));
  EXPECT_EQ(r[0].rss_bytes, 100u * kPage);
  EXPECT_EQ(sampler.tracked(), 1u);
}

TEST_F(FakeProc, DeadRootReadsAsGoneAndIsForgotten) {
  SetProc(100, 1, 0, 0, 1, 100);
  ProcSampler sampler(root_, kClkTck, kPage);
  sampler.Sample(t0_, {{"app", {100}, true}}, false);
  ASSERT_EQ(sampler.tracked(), 1u);
  // A dead process's stat reads fail (ESRCH) on the real /proc; empty content is treated
  // the same way.
  Write("100/stat", "");
  auto r = sampler.Sample(t0_ + absl::Seconds(1), {{"app", {100}, true}}, false);
  EXPECT_TRUE(r[0].pids.empty());
  EXPECT_EQ(r[0].rss_bytes, 0u);
  EXPECT_EQ(sampler.tracked(), 0u);
}

TEST_F(FakeProc, ReusedPidStartsAfreshInsteadOfReportingBogusCpu) {
  SetProc(100, 1, 5000, 0, 1, 100, /*start=*/1000);
  ProcSampler sampler(root_, kClkTck, kPage);
  sampler.Sample(t0_, {{"app", {100}, true}}, false);
  // Another process now has PID 100: lower CPU counter, different start time.
  SetProc(100, 1, 3, 0, 1, 100, /*start=*/9000);
  auto r2 = sampler.Sample(t0_ + absl::Seconds(1), {{"app", {100}, true}}, false);
  EXPECT_DOUBLE_EQ(r2[0].cpu_percent, 0);
  SetProc(100, 1, 53, 0, 1, 100, /*start=*/9000);
  auto r3 = sampler.Sample(t0_ + absl::Seconds(2), {{"app", {100}, true}}, false);
  EXPECT_DOUBLE_EQ(r3[0].cpu_percent, 50.0);
}

TEST_F(FakeProc, UnitNoLongerSampledIsForgotten) {
  SetProc(100, 1, 0, 0, 1, 100);
  SetProc(200, 1, 0, 0, 1, 100);
  ProcSampler sampler(root_, kClkTck, kPage);
  sampler.Sample(t0_, {{"a", {100}, true}, {"b", {200}, true}}, false);
  EXPECT_EQ(sampler.tracked(), 2u);
  sampler.Sample(t0_ + absl::Seconds(1), {{"a", {100}, true}}, false);
  EXPECT_EQ(sampler.tracked(), 1u);
}

TEST_F(FakeProc, SharedProcessCpuGoesToTheFirstUnitOnly) {
  SetProc(100, 1, 0, 0, 1, 100);
  SetProc(101, 100, 0, 0, 1, 10);
  SetChildren(100, {101});
  SetChildren(101, {});
  ProcSampler sampler(root_, kClkTck, kPage);
  std::vector<SampleTarget> targets = {{"parent", {100}, true}, {"watcher", {101}, true}};
  sampler.Sample(t0_, targets, false);
  SetProc(101, 100, 20, 0, 1, 10);
  auto r = sampler.Sample(t0_ + absl::Seconds(1), targets, false);
  EXPECT_DOUBLE_EQ(r[0].cpu_percent, 20.0);
  EXPECT_DOUBLE_EQ(r[1].cpu_percent, 0.0);
  EXPECT_EQ(r[1].rss_bytes, 10u * kPage);  // memory shows in both
}

TEST_F(FakeProc, SmapsIsReadOnlyWhenAskedAndKeptBetween) {
  SetProc(100, 1, 0, 0, 1, 100);
  Write("100/smaps_rollup",
        "0-1 ---p 0 00:00 0 [rollup]\nRss: 400 kB\nPss: 300 kB\n"
        "Private_Clean: 8 kB\nPrivate_Dirty: 200 kB\n");
  ProcSampler sampler(root_, kClkTck, kPage);
  auto r1 = sampler.Sample(t0_, {{"app", {100}, true}}, false);
  EXPECT_FALSE(r1[0].smaps_read);
  EXPECT_EQ(r1[0].pss_bytes, 0u);

  auto r2 = sampler.Sample(t0_ + absl::Seconds(1), {{"app", {100}, true}}, true);
  EXPECT_TRUE(r2[0].smaps_read);
  EXPECT_EQ(r2[0].pss_bytes, 300u * 1024);
  EXPECT_EQ(r2[0].uss_bytes, 208u * 1024);

  // Changed on disk but not re-read on a fast tick: the last smaps values are reported.
  Write("100/smaps_rollup", "0-1 ---p 0 00:00 0 [rollup]\nPss: 1 kB\n");
  auto r3 = sampler.Sample(t0_ + absl::Seconds(2), {{"app", {100}, true}}, false);
  EXPECT_EQ(r3[0].pss_bytes, 300u * 1024);
  auto r4 = sampler.Sample(t0_ + absl::Seconds(3), {{"app", {100}, true}}, true);
  EXPECT_EQ(r4[0].pss_bytes, 1024u);
}

TEST_F(FakeProc, FilesStayOpenAcrossTicks) {
  SetProc(100, 1, 0, 0, 1, 100);
  ProcSampler sampler(root_, kClkTck, kPage);
  sampler.Sample(t0_, {{"app", {100}, true}}, false);
  // Replace the directory entry with a new file: an open fd still reads the old inode, so a
  // sampler that re-opened each tick would see 999 pages.
  fs::path stat = fs::path(root_) / "100/stat";
  std::string old = stat.string() + ".old";
  fs::rename(stat, old);
  Write("100/stat", StatLine(100, "worker", 1, 0, 0, 1, 1000, 999));
  std::ofstream(old, std::ios::trunc) << StatLine(100, "worker", 1, 0, 0, 1, 1000, 123);
  auto r = sampler.Sample(t0_ + absl::Seconds(1), {{"app", {100}, true}}, false);
  EXPECT_EQ(r[0].rss_bytes, 123u * kPage);
}

TEST(RealProc, SamplesThisProcessWithCpuAndMemory) {
  ProcSampler sampler;
  pid_t self = getpid();
  auto r1 = sampler.Sample(absl::Now(), {{"self", {self}, true}}, true);
  ASSERT_THAT(r1[0].pids, ElementsAre(self));
  EXPECT_GT(r1[0].rss_bytes, 0u);
  EXPECT_GE(r1[0].threads, 1u);
  // Burn 200 ms of CPU time, then the second tick must see some of it.
  timespec start{}, now{};
  clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &start);
  volatile uint64_t sink = 0;
  do {
    for (int i = 0; i < 100000; ++i) sink = sink + static_cast<uint64_t>(i);
    clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &now);
  } while ((now.tv_sec - start.tv_sec) * 1000 + (now.tv_nsec - start.tv_nsec) / 1000000 < 200);
  auto r2 = sampler.Sample(absl::Now(), {{"self", {self}, true}}, false);
  EXPECT_GT(r2[0].cpu_percent, 0.0);
}

}  // namespace
}  // namespace herd::agent
