// ParseProcStat and ParseBootTime on canned /proc text: the agent's sampler and the control
// plane's process metrics both read through them.
#include "common/proc_stat.h"

#include <string>

#include "absl/strings/str_cat.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace herd {
namespace {

using ::testing::HasSubstr;

// A whole /proc/PID/stat line (52 fields) with the fields Herd reads set.
std::string Line(absl::string_view comm, absl::string_view utime = "150",
                 absl::string_view rss = "2560") {
  return absl::StrCat("4242 (", comm, ") S 7 4242 4242 0 -1 4194560 100 0 0 0 ", utime,
                      " 50 0 0 20 0 12 0 9999 104857600 ", rss,
                      " 18446744073709551615 1 1 0 0 0 0 0 0 0 0 0 0 17 1 0 0 0 0 0 0 0 0 0 0 "
                      "0 0 0 0 0\n");
}

TEST(ParseProcStat, ReadsTheFieldsHerdUses) {
  auto s = ParseProcStat(Line("node"));
  ASSERT_TRUE(s.ok()) << s.status();
  EXPECT_EQ(s->state, 'S');
  EXPECT_EQ(s->ppid, 7);
  EXPECT_EQ(s->utime_ticks, 150u);
  EXPECT_EQ(s->stime_ticks, 50u);
  EXPECT_EQ(s->cpu_ticks(), 200u);
  EXPECT_EQ(s->threads, 12u);
  EXPECT_EQ(s->start_ticks, 9999u);
  EXPECT_EQ(s->vsize_bytes, 104857600u);
  EXPECT_EQ(s->rss_pages, 2560u);
}

TEST(ParseProcStat, CountsFieldsFromTheLastParenthesisOfACommandWithSpacesAndParentheses) {
  for (const char* comm : {"a b", "x) S 1 2 (y", "((", "))", ") 9 9 9 9 9 9 9 9 9 9 9 9 ("}) {
    auto s = ParseProcStat(Line(comm));
    ASSERT_TRUE(s.ok()) << comm << ": " << s.status();
    EXPECT_EQ(s->ppid, 7) << comm;
    EXPECT_EQ(s->rss_pages, 2560u) << comm;
  }
}

TEST(ParseProcStat, StopsAtRssSoATruncatedTailIsFine) {
  // Everything after field 24 missing, no newline: still complete for Herd.
  auto s = ParseProcStat("1 (x) R 0 1 1 0 -1 0 0 0 0 0 3 4 0 0 20 0 1 0 5 6 7");
  ASSERT_TRUE(s.ok()) << s.status();
  EXPECT_EQ(s->rss_pages, 7u);
  EXPECT_EQ(s->vsize_bytes, 6u);
}

TEST(ParseProcStat, RefusesTruncatedLinesNamingWhereTheyEnd) {
  const std::string full = Line("node");
  // Cut inside the fields Herd reads (field 24 ends well before the middle of the line).
  for (size_t cut : {size_t{0}, size_t{5}, size_t{12}, size_t{20}, size_t{40}}) {
    auto s = ParseProcStat(full.substr(0, cut));
    EXPECT_FALSE(s.ok()) << "cut at " << cut;
  }
  auto s = ParseProcStat("12 (x) S 1 2 3");
  ASSERT_FALSE(s.ok());
  EXPECT_EQ(s.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(std::string(s.status().message()), HasSubstr("ends at field 6"));
  EXPECT_THAT(std::string(s.status().message()), HasSubstr("truncated"));
}

TEST(ParseProcStat, RefusesTextWithoutACommand) {
  for (const char* text : {"", "\n", "no parenthesis at all", "1 x) S", "1 )x( S"}) {
    auto s = ParseProcStat(text);
    ASSERT_FALSE(s.ok()) << text;
    EXPECT_THAT(std::string(s.status().message()), HasSubstr("(command)")) << text;
  }
}

TEST(ParseProcStat, HugeNumbersParseUpToTheirTypeAndAreRefusedPastIt) {
  auto max = ParseProcStat(Line("x", "18446744073709551615"));
  ASSERT_TRUE(max.ok()) << max.status();
  EXPECT_EQ(max->utime_ticks, 18446744073709551615u);
  EXPECT_EQ(max->cpu_ticks(), 18446744073709551615u);  // saturates, does not wrap

  auto over = ParseProcStat(Line("x", "18446744073709551616"));
  ASSERT_FALSE(over.ok());
  EXPECT_THAT(std::string(over.status().message()), HasSubstr("field 14 (utime)"));

  auto long_digits = ParseProcStat(Line("x", std::string(5000, '9')));
  ASSERT_FALSE(long_digits.ok());
  // The message quotes a bounded prefix of the value, not all of it.
  EXPECT_LT(long_digits.status().message().size(), 200u);
}

TEST(ParseProcStat, RefusesNonNumbersNamingTheField) {
  auto s = ParseProcStat("1 (x) S one 1 1 0 -1 4194560 100 0 0 0 1 1 0 0 20 0 1 0 5 6 7");
  ASSERT_FALSE(s.ok());
  EXPECT_THAT(std::string(s.status().message()), HasSubstr("field 4 (ppid)"));
  auto state = ParseProcStat("1 (x) 42 1 1 1 0 -1 4194560 100 0 0 0 1 1 0 0 20 0 1 0 5 6 7");
  ASSERT_FALSE(state.ok());
  EXPECT_THAT(std::string(state.status().message()), HasSubstr("field 3 (state)"));
}

TEST(ParseProcStat, ANegativeRssReadsAsZero) {
  auto s = ParseProcStat(Line("x", "1", "-3"));
  ASSERT_TRUE(s.ok()) << s.status();
  EXPECT_EQ(s->rss_pages, 0u);
}

TEST(ParseProcStat, RefusesTextLongerThanAnyStatLine) {
  std::string huge = Line("x");
  huge.append(kMaxProcStatBytes, ' ');
  auto s = ParseProcStat(huge);
  ASSERT_FALSE(s.ok());
  EXPECT_THAT(std::string(s.status().message()), HasSubstr("not a /proc/PID/stat"));
}

TEST(ParseBootTime, FindsTheBtimeLine) {
  auto b = ParseBootTime("cpu  1 2 3 4\nintr 5\nbtime 1700000000\nprocesses 9\n");
  ASSERT_TRUE(b.ok()) << b.status();
  EXPECT_EQ(*b, 1700000000u);
  auto last = ParseBootTime("btime 42");  // no trailing newline
  ASSERT_TRUE(last.ok()) << last.status();
  EXPECT_EQ(*last, 42u);
}

TEST(ParseBootTime, RefusesAMissingOrMalformedBtime) {
  for (const char* text : {"", "cpu 1 2\n", "xbtime 5\n", "btime\n", "btime 0\n", "btime -1\n",
                           "btime 99999999999999999999999\n"}) {
    auto b = ParseBootTime(text);
    ASSERT_FALSE(b.ok()) << text;
    EXPECT_THAT(std::string(b.status().message()), HasSubstr("btime")) << text;
  }
}

}  // namespace
}  // namespace herd
