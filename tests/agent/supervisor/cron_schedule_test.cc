#include "agent/supervisor/cron_schedule.h"

#include <optional>
#include <vector>

#include "absl/status/status.h"
#include "absl/time/civil_time.h"
#include "absl/time/time.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace herd::agent {
namespace {

using ::testing::AllOf;
using ::testing::ElementsAre;
using ::testing::HasSubstr;

absl::Time Utc(int year, int month, int day, int hour, int minute, int second = 0) {
  return absl::FromCivil(absl::CivilSecond(year, month, day, hour, minute, second),
                         absl::UTCTimeZone());
}

// The next `count` firings of `expression` after `after`; empty if it does not parse.
std::vector<absl::Time> Firings(absl::string_view expression, absl::Time after, int count,
                                absl::TimeZone tz = absl::UTCTimeZone()) {
  absl::StatusOr<CronSchedule> schedule = CronSchedule::Parse(expression);
  if (!schedule.ok()) {
    ADD_FAILURE() << schedule.status();
    return {};
  }
  std::vector<absl::Time> firings;
  for (int i = 0; i < count; ++i) {
    std::optional<absl::Time> next = schedule->Next(after, tz);
    if (!next.has_value()) break;
    firings.push_back(*next);
    after = *next;
  }
  return firings;
}

std::optional<absl::Time> NextAfter(absl::string_view expression, absl::Time after,
                                    absl::TimeZone tz = absl::UTCTimeZone()) {
  absl::StatusOr<CronSchedule> schedule = CronSchedule::Parse(expression);
  if (!schedule.ok()) {
    ADD_FAILURE() << schedule.status();
    return std::nullopt;
  }
  return schedule->Next(after, tz);
}

std::string ParseError(absl::string_view expression) {
  absl::StatusOr<CronSchedule> schedule = CronSchedule::Parse(expression);
  if (schedule.ok()) {
    ADD_FAILURE() << "\"" << expression << "\" parsed but should not";
    return "";
  }
  EXPECT_EQ(schedule.status().code(), absl::StatusCode::kInvalidArgument);
  return std::string(schedule.status().message());
}

std::optional<absl::TimeZone> NewYork() {
  absl::TimeZone tz;
  if (!absl::LoadTimeZone("America/New_York", &tz)) return std::nullopt;
  return tz;
}

// --- Parsing -----------------------------------------------------------------------------

TEST(CronSchedule, KeepsTheExpressionText) {
  absl::StatusOr<CronSchedule> schedule = CronSchedule::Parse("*/5 * * * *");
  ASSERT_TRUE(schedule.ok()) << schedule.status();
  EXPECT_EQ(schedule->expression(), "*/5 * * * *");
}

TEST(CronSchedule, ToleratesExtraWhitespace) {
  EXPECT_THAT(Firings("  0   3\t*  *   * ", Utc(2024, 5, 1, 0, 0), 2),
              ElementsAre(Utc(2024, 5, 1, 3, 0), Utc(2024, 5, 2, 3, 0)));
}

TEST(CronSchedule, ListOfHours) {
  EXPECT_THAT(Firings("0 8,12,18 * * *", Utc(2024, 5, 1, 0, 0), 4),
              ElementsAre(Utc(2024, 5, 1, 8, 0), Utc(2024, 5, 1, 12, 0), Utc(2024, 5, 1, 18, 0),
                          Utc(2024, 5, 2, 8, 0)));
}

TEST(CronSchedule, RangeOfHours) {
  EXPECT_THAT(Firings("0 9-11 * * *", Utc(2024, 5, 1, 0, 0), 4),
              ElementsAre(Utc(2024, 5, 1, 9, 0), Utc(2024, 5, 1, 10, 0), Utc(2024, 5, 1, 11, 0),
                          Utc(2024, 5, 2, 9, 0)));
}

TEST(CronSchedule, StepEveryFifteenMinutes) {
  EXPECT_THAT(Firings("*/15 * * * *", Utc(2024, 5, 1, 10, 7), 4),
              ElementsAre(Utc(2024, 5, 1, 10, 15), Utc(2024, 5, 1, 10, 30),
                          Utc(2024, 5, 1, 10, 45), Utc(2024, 5, 1, 11, 0)));
}

TEST(CronSchedule, StepWithinRange) {
  EXPECT_THAT(Firings("0-30/10 * * * *", Utc(2024, 5, 1, 10, 0, 30), 5),
              ElementsAre(Utc(2024, 5, 1, 10, 10), Utc(2024, 5, 1, 10, 20),
                          Utc(2024, 5, 1, 10, 30), Utc(2024, 5, 1, 11, 0),
                          Utc(2024, 5, 1, 11, 10)));
}

TEST(CronSchedule, StepFromValueRunsToEndOfField) {
  EXPECT_THAT(Firings("50/5 * * * *", Utc(2024, 5, 1, 10, 0), 3),
              ElementsAre(Utc(2024, 5, 1, 10, 50), Utc(2024, 5, 1, 10, 55),
                          Utc(2024, 5, 1, 11, 50)));
}

TEST(CronSchedule, ListMixesValuesRangesAndSteps) {
  EXPECT_THAT(Firings("5,20-21,40/15 * * * *", Utc(2024, 5, 1, 10, 0), 6),
              ElementsAre(Utc(2024, 5, 1, 10, 5), Utc(2024, 5, 1, 10, 20),
                          Utc(2024, 5, 1, 10, 21), Utc(2024, 5, 1, 10, 40),
                          Utc(2024, 5, 1, 10, 55), Utc(2024, 5, 1, 11, 5)));
}

TEST(CronSchedule, MonthNamesAreCaseInsensitive) {
  EXPECT_THAT(Firings("0 0 1 jan,Jul *", Utc(2024, 2, 1, 0, 0), 3),
              ElementsAre(Utc(2024, 7, 1, 0, 0), Utc(2025, 1, 1, 0, 0), Utc(2025, 7, 1, 0, 0)));
}

TEST(CronSchedule, MonthNameRange) {
  EXPECT_THAT(Firings("0 0 1 MAR-MAY *", Utc(2024, 1, 15, 0, 0), 4),
              ElementsAre(Utc(2024, 3, 1, 0, 0), Utc(2024, 4, 1, 0, 0), Utc(2024, 5, 1, 0, 0),
                          Utc(2025, 3, 1, 0, 0)));
}

TEST(CronSchedule, WeekdayNameRangeSkipsTheWeekend) {
  // 2024-10-04 is a Friday.
  EXPECT_THAT(Firings("0 9 * * mon-FRI", Utc(2024, 10, 4, 10, 0), 2),
              ElementsAre(Utc(2024, 10, 7, 9, 0), Utc(2024, 10, 8, 9, 0)));
}

TEST(CronSchedule, WeekdayRangeMayEndOnSunday) {
  // 2024-10-01 is a Tuesday.
  EXPECT_THAT(Firings("0 0 * * FRI-SUN", Utc(2024, 10, 1, 0, 0), 4),
              ElementsAre(Utc(2024, 10, 4, 0, 0), Utc(2024, 10, 5, 0, 0), Utc(2024, 10, 6, 0, 0),
                          Utc(2024, 10, 11, 0, 0)));
}

TEST(CronSchedule, SundayIsZeroAndSeven) {
  // 2024-10-06 is a Sunday.
  EXPECT_EQ(NextAfter("0 0 * * 0", Utc(2024, 10, 1, 0, 0)), Utc(2024, 10, 6, 0, 0));
  EXPECT_EQ(NextAfter("0 0 * * 7", Utc(2024, 10, 1, 0, 0)), Utc(2024, 10, 6, 0, 0));
  EXPECT_EQ(NextAfter("0 0 * * SUN", Utc(2024, 10, 1, 0, 0)), Utc(2024, 10, 6, 0, 0));
}

TEST(CronSchedule, QuestionMarkIsWildcardInDayFields) {
  EXPECT_THAT(Firings("0 0 ? * ?", Utc(2024, 5, 1, 12, 0), 2),
              ElementsAre(Utc(2024, 5, 2, 0, 0), Utc(2024, 5, 3, 0, 0)));
}

TEST(CronSchedule, MacrosMatchTheirExpansions) {
  const std::vector<std::pair<absl::string_view, absl::string_view>> macros = {
      {"@yearly", "0 0 1 1 *"}, {"@annually", "0 0 1 1 *"}, {"@monthly", "0 0 1 * *"},
      {"@weekly", "0 0 * * 0"}, {"@daily", "0 0 * * *"},    {"@midnight", "0 0 * * *"},
      {"@hourly", "0 * * * *"},
  };
  for (const auto& [macro, expansion] : macros) {
    SCOPED_TRACE(macro);
    EXPECT_EQ(Firings(macro, Utc(2024, 5, 17, 13, 45), 3),
              Firings(expansion, Utc(2024, 5, 17, 13, 45), 3));
  }
}

TEST(CronSchedule, MacrosAreCaseInsensitive) {
  EXPECT_EQ(NextAfter(" @Daily ", Utc(2024, 5, 1, 12, 0)), Utc(2024, 5, 2, 0, 0));
}

TEST(CronSchedule, SixFieldsLeadWithSeconds) {
  EXPECT_THAT(Firings("*/20 * * * * *", Utc(2024, 5, 1, 10, 0, 5), 3),
              ElementsAre(Utc(2024, 5, 1, 10, 0, 20), Utc(2024, 5, 1, 10, 0, 40),
                          Utc(2024, 5, 1, 10, 1, 0)));
}

TEST(CronSchedule, SpecificSecondOfSpecificMinute) {
  EXPECT_THAT(Firings("30 15 10 * * *", Utc(2024, 5, 1, 10, 15, 30), 1),
              ElementsAre(Utc(2024, 5, 2, 10, 15, 30)));
}

TEST(CronSchedule, FiveFieldsFireAtSecondZero) {
  EXPECT_EQ(NextAfter("* * * * *", Utc(2024, 5, 1, 10, 0, 0)), Utc(2024, 5, 1, 10, 1, 0));
}

// --- Errors ------------------------------------------------------------------------------

TEST(CronSchedule, ErrorNamesFieldTokenAndAcceptedForms) {
  EXPECT_EQ(ParseError("0 25 * * *"),
            "cron expression \"0 25 * * *\": hour: 25 is out of range 0-23; each field takes "
            "*, a number, a range a-b, a step */n or a-b/n, or a list a,b");
}

TEST(CronSchedule, RejectsTooFewFields) {
  EXPECT_THAT(ParseError("* * * *"),
              AllOf(HasSubstr("expected 5 fields"), HasSubstr("or 6"), HasSubstr("got 4"),
                    HasSubstr("e.g. \"0 3 * * *\"")));
}

TEST(CronSchedule, RejectsTooManyFields) {
  EXPECT_THAT(ParseError("0 0 0 * * * 2024"), HasSubstr("got 7"));
}

TEST(CronSchedule, RejectsEmptyExpression) {
  EXPECT_THAT(ParseError("   "), HasSubstr("got 0"));
}

TEST(CronSchedule, RejectsUnknownMacro) {
  EXPECT_THAT(ParseError("@fortnightly"),
              AllOf(HasSubstr("@fortnightly"), HasSubstr("unknown macro"), HasSubstr("@daily")));
}

TEST(CronSchedule, RejectsOutOfRangeValueInEachField) {
  EXPECT_THAT(ParseError("60 * * * * *"), HasSubstr("second: 60 is out of range 0-59"));
  EXPECT_THAT(ParseError("60 * * * *"), HasSubstr("minute: 60 is out of range 0-59"));
  EXPECT_THAT(ParseError("0 0 0 * *"), HasSubstr("day-of-month: 0 is out of range 1-31"));
  EXPECT_THAT(ParseError("0 0 32 * *"), HasSubstr("day-of-month: 32 is out of range 1-31"));
  EXPECT_THAT(ParseError("0 0 * 13 *"), HasSubstr("month: 13 is out of range 1-12"));
  EXPECT_THAT(ParseError("0 0 * * 8"), HasSubstr("day-of-week: 8 is out of range 0-7"));
}

TEST(CronSchedule, RejectsHugeNumber) {
  EXPECT_THAT(ParseError("99999999999999999999 * * * *"),
              HasSubstr("minute: 99999999999999999999 is out of range 0-59"));
}

TEST(CronSchedule, RejectsStepZero) {
  EXPECT_THAT(ParseError("*/0 * * * *"), HasSubstr("minute: step 0 in \"*/0\" must be at least 1"));
}

TEST(CronSchedule, RejectsNonNumericStep) {
  EXPECT_THAT(ParseError("0 */x * * *"), HasSubstr("hour: step \"x\" in \"*/x\" is not a number"));
}

TEST(CronSchedule, RejectsDoubleStep) {
  EXPECT_THAT(ParseError("*/2/3 * * * *"), HasSubstr("minute: \"*/2/3\" has more than one step"));
}

TEST(CronSchedule, RejectsBadToken) {
  EXPECT_THAT(ParseError("0 abc * * *"), HasSubstr("hour: \"abc\" is not a number"));
}

TEST(CronSchedule, RejectsNameInWrongField) {
  EXPECT_THAT(ParseError("0 0 * * JAN"),
              HasSubstr("day-of-week: \"JAN\" is not a number or a name SUN-SAT"));
  EXPECT_THAT(ParseError("0 0 * MON *"),
              HasSubstr("month: \"MON\" is not a number or a name JAN-DEC"));
}

TEST(CronSchedule, RejectsReversedRange) {
  EXPECT_THAT(ParseError("30-10 * * * *"),
              AllOf(HasSubstr("minute: range \"30-10\" is reversed"),
                    HasSubstr("each field takes")));
}

TEST(CronSchedule, RejectsNegativeNumber) {
  EXPECT_THAT(ParseError("-5 * * * *"), HasSubstr("minute: \"-5\" is not a valid range"));
}

TEST(CronSchedule, RejectsEmptyListItem) {
  EXPECT_THAT(ParseError("1,,2 * * * *"), HasSubstr("minute: empty item in list \"1,,2\""));
}

TEST(CronSchedule, RejectsQuestionMarkOutsideDayFields) {
  EXPECT_THAT(ParseError("? * * * *"), HasSubstr("minute: \"?\" is only accepted"));
}

TEST(CronSchedule, MonthErrorMentionsNames) {
  EXPECT_THAT(ParseError("0 0 1 FOO *"), HasSubstr("months also take JAN-DEC"));
}

// --- Next() ------------------------------------------------------------------------------

TEST(CronSchedule, EveryMinute) {
  EXPECT_THAT(Firings("* * * * *", Utc(2024, 5, 1, 10, 0, 30), 3),
              ElementsAre(Utc(2024, 5, 1, 10, 1), Utc(2024, 5, 1, 10, 2), Utc(2024, 5, 1, 10, 3)));
}

TEST(CronSchedule, NextIsStrictlyAfterAMatchingInstant) {
  EXPECT_EQ(NextAfter("0 * * * *", Utc(2024, 5, 1, 10, 0)), Utc(2024, 5, 1, 11, 0));
}

TEST(CronSchedule, NextIsStrictlyAfterAFractionalInstant) {
  const absl::Time ten = Utc(2024, 5, 1, 10, 0);
  EXPECT_EQ(NextAfter("0 * * * *", ten - absl::Milliseconds(500)), ten);
  EXPECT_EQ(NextAfter("0 * * * *", ten + absl::Milliseconds(500)), Utc(2024, 5, 1, 11, 0));
}

TEST(CronSchedule, DailyTimeRollsOverMidnight) {
  EXPECT_EQ(NextAfter("30 2 * * *", Utc(2024, 5, 1, 23, 0)), Utc(2024, 5, 2, 2, 30));
}

TEST(CronSchedule, DayOfMonthRollsIntoNextMonth) {
  EXPECT_EQ(NextAfter("0 12 5 * *", Utc(2024, 5, 20, 0, 0)), Utc(2024, 6, 5, 12, 0));
}

TEST(CronSchedule, ThirtyFirstSkipsShortMonths) {
  EXPECT_THAT(Firings("0 0 31 * *", Utc(2024, 1, 31, 12, 0), 2),
              ElementsAre(Utc(2024, 3, 31, 0, 0), Utc(2024, 5, 31, 0, 0)));
}

TEST(CronSchedule, YearRollsOver) {
  EXPECT_EQ(NextAfter("0 0 1 1 *", Utc(2024, 6, 1, 0, 0)), Utc(2025, 1, 1, 0, 0));
}

TEST(CronSchedule, LeapDayWaitsForLeapYear) {
  EXPECT_EQ(NextAfter("0 0 29 2 *", Utc(2024, 1, 1, 0, 0)), Utc(2024, 2, 29, 0, 0));
  EXPECT_EQ(NextAfter("0 0 29 2 *", Utc(2024, 3, 1, 0, 0)), Utc(2028, 2, 29, 0, 0));
}

TEST(CronSchedule, ImpossibleDateNeverMatches) {
  EXPECT_EQ(NextAfter("0 0 30 2 *", Utc(2024, 1, 1, 0, 0)), std::nullopt);
}

TEST(CronSchedule, RestrictedDayOfMonthOrDayOfWeekMatches) {
  // October 2024: Fridays are the 4th, 11th and 18th; the 13th is a Sunday.
  EXPECT_THAT(Firings("0 0 13 * FRI", Utc(2024, 10, 1, 0, 0), 4),
              ElementsAre(Utc(2024, 10, 4, 0, 0), Utc(2024, 10, 11, 0, 0),
                          Utc(2024, 10, 13, 0, 0), Utc(2024, 10, 18, 0, 0)));
}

TEST(CronSchedule, WildcardDayOfMonthLeavesDayOfWeekInCharge) {
  EXPECT_THAT(Firings("0 0 * * FRI", Utc(2024, 10, 1, 0, 0), 2),
              ElementsAre(Utc(2024, 10, 4, 0, 0), Utc(2024, 10, 11, 0, 0)));
}

TEST(CronSchedule, WildcardDayOfWeekLeavesDayOfMonthInCharge) {
  EXPECT_THAT(Firings("0 0 13 * *", Utc(2024, 10, 1, 0, 0), 2),
              ElementsAre(Utc(2024, 10, 13, 0, 0), Utc(2024, 11, 13, 0, 0)));
}

TEST(CronSchedule, DayOfWeekAndMonthMustBothMatch) {
  // Mondays in February 2025: the 3rd, 10th, 17th and 24th.
  EXPECT_THAT(Firings("0 0 * FEB MON", Utc(2025, 1, 1, 0, 0), 2),
              ElementsAre(Utc(2025, 2, 3, 0, 0), Utc(2025, 2, 10, 0, 0)));
}

TEST(CronSchedule, NextInFixedOffsetZone) {
  const absl::TimeZone plus_two = absl::FixedTimeZone(2 * 60 * 60);
  EXPECT_EQ(NextAfter("0 9 * * *", Utc(2024, 5, 1, 8, 0), plus_two), Utc(2024, 5, 2, 7, 0));
}

TEST(CronSchedule, InfiniteFutureHasNoNext) {
  EXPECT_EQ(NextAfter("* * * * *", absl::InfiniteFuture()), std::nullopt);
}

TEST(CronSchedule, DstGapSkipsNonexistentTime) {
  std::optional<absl::TimeZone> ny = NewYork();
  if (!ny.has_value()) GTEST_SKIP() << "America/New_York is not available";
  // 2024-03-10 02:00 EST jumps to 03:00 EDT, so 02:30 does not exist that day.
  const absl::Time after = absl::FromCivil(absl::CivilSecond(2024, 3, 10, 0, 0, 0), *ny);
  EXPECT_EQ(NextAfter("30 2 * * *", after, *ny),
            absl::FromCivil(absl::CivilSecond(2024, 3, 11, 2, 30, 0), *ny));
}

TEST(CronSchedule, DstGapEveryMinuteContinuesAfterJump) {
  std::optional<absl::TimeZone> ny = NewYork();
  if (!ny.has_value()) GTEST_SKIP() << "America/New_York is not available";
  // 01:59 EST is 06:59 UTC; the next minute reads 03:00 EDT, 07:00 UTC.
  EXPECT_EQ(NextAfter("* * * * *", Utc(2024, 3, 10, 6, 59), *ny), Utc(2024, 3, 10, 7, 0));
}

TEST(CronSchedule, DstFallBackRunsHourPinnedJobOnce) {
  std::optional<absl::TimeZone> ny = NewYork();
  if (!ny.has_value()) GTEST_SKIP() << "America/New_York is not available";
  // 2024-11-03 02:00 EDT falls back to 01:00 EST: 01:30 happens at 05:30 and 06:30 UTC.
  const absl::Time after = absl::FromCivil(absl::CivilSecond(2024, 11, 3, 0, 0, 0), *ny);
  EXPECT_THAT(Firings("30 1 * * *", after, 2, *ny),
              ElementsAre(Utc(2024, 11, 3, 5, 30), Utc(2024, 11, 4, 6, 30)));
}

TEST(CronSchedule, DstFallBackRunsEveryHourJobInRepeatedHour) {
  std::optional<absl::TimeZone> ny = NewYork();
  if (!ny.has_value()) GTEST_SKIP() << "America/New_York is not available";
  // After 01:30 EDT (05:30 UTC) comes 01:00 EST (06:00 UTC), not 02:00 EST.
  EXPECT_THAT(Firings("*/30 * * * *", Utc(2024, 11, 3, 5, 0), 4, *ny),
              ElementsAre(Utc(2024, 11, 3, 5, 30), Utc(2024, 11, 3, 6, 0), Utc(2024, 11, 3, 6, 30),
                          Utc(2024, 11, 3, 7, 0)));
}

TEST(CronSchedule, DstFallBackFromSecondOccurrenceStaysInIt) {
  std::optional<absl::TimeZone> ny = NewYork();
  if (!ny.has_value()) GTEST_SKIP() << "America/New_York is not available";
  // 01:10 EST is 06:10 UTC; the next minute is 01:11 EST, not 01:11 EDT an hour earlier.
  EXPECT_EQ(NextAfter("* * * * *", Utc(2024, 11, 3, 6, 10), *ny), Utc(2024, 11, 3, 6, 11));
}

}  // namespace
}  // namespace herd::agent
