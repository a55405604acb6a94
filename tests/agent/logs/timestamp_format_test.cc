#include "agent/logs/timestamp_format.h"

#include "gtest/gtest.h"

namespace herd::agent {
namespace {

// 2026-03-04 05:06:07.089 UTC
const absl::Time kT = absl::FromUnixMillis(1772600767089);

std::string Fmt(const std::string& f, absl::TimeZone tz = absl::UTCTimeZone()) {
  auto p = TimestampFormat::Parse(f);
  EXPECT_TRUE(p.ok()) << p.status();
  return p.ok() ? p->Format(kT, tz) : "";
}

TEST(TimestampFormat, FormatsPm2DefaultStyle) {
  EXPECT_EQ(Fmt("YYYY-MM-DD HH:mm:ss"), "2026-03-04 05:06:07");
}

TEST(TimestampFormat, MillisecondsAndOffsets) {
  EXPECT_EQ(Fmt("HH:mm:ss.SSS Z"), "05:06:07.089 +00:00");
  EXPECT_EQ(Fmt("ZZ", absl::FixedTimeZone(-(5 * 3600 + 30 * 60))), "-0530");
}

TEST(TimestampFormat, UnpaddedAndTwelveHourTokens) {
  EXPECT_EQ(Fmt("D/M/YY h:m:s a"), "4/3/26 5:6:7 am");
  EXPECT_EQ(Fmt("hh A", absl::FixedTimeZone(12 * 3600)), "05 PM");
}

TEST(TimestampFormat, UnixSecondsAndMillis) {
  EXPECT_EQ(Fmt("X"), "1772600767");
  EXPECT_EQ(Fmt("x"), "1772600767089");
}

TEST(TimestampFormat, LettersThatAreNotTokensAreLiteral) {
  EXPECT_EQ(Fmt("YYYY-MM-DDTHH:mm:ss"), "2026-03-04T05:06:07");
}

TEST(TimestampFormat, BracketsEscapeTokens) {
  EXPECT_EQ(Fmt("[at] HH[h]"), "at 05h");
}

TEST(TimestampFormat, UsesTheGivenTimeZone) {
  EXPECT_EQ(Fmt("HH:mm Z", absl::FixedTimeZone(2 * 3600)), "07:06 +02:00");
}

TEST(TimestampFormat, RefusesUnclosedBracket) {
  auto p = TimestampFormat::Parse("YYYY [oops");
  ASSERT_FALSE(p.ok());
  EXPECT_NE(p.status().message().find("never closed"), std::string::npos);
}

}  // namespace
}  // namespace herd::agent
