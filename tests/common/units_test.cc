#include "common/units.h"

#include <cstdint>
#include <string>

#include "absl/status/status.h"
#include "absl/time/time.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace herd {
namespace {

using ::testing::AllOf;
using ::testing::HasSubstr;

constexpr uint64_t kKiB = 1024;
constexpr uint64_t kMiB = 1024 * kKiB;
constexpr uint64_t kGiB = 1024 * kMiB;

// The error message of a size that must not parse.
std::string SizeError(absl::string_view text) {
  absl::StatusOr<uint64_t> size = ParseSize(text);
  if (size.ok()) {
    ADD_FAILURE() << "\"" << text << "\" parsed as " << *size << " but should not";
    return "";
  }
  EXPECT_EQ(size.status().code(), absl::StatusCode::kInvalidArgument);
  return std::string(size.status().message());
}

std::string DurationError(absl::string_view text) {
  absl::StatusOr<uint64_t> ms = ParseDurationMs(text);
  if (ms.ok()) {
    ADD_FAILURE() << "\"" << text << "\" parsed as " << *ms << " but should not";
    return "";
  }
  EXPECT_EQ(ms.status().code(), absl::StatusCode::kInvalidArgument);
  return std::string(ms.status().message());
}

// --- ParseSize ---------------------------------------------------------------------------

TEST(ParseSize, BareNumberIsBytes) {
  EXPECT_EQ(ParseSize("1048576").value(), 1048576u);
  EXPECT_EQ(ParseSize("0").value(), 0u);
}

TEST(ParseSize, KilobytesAreBinary) { EXPECT_EQ(ParseSize("512K").value(), 512 * kKiB); }

TEST(ParseSize, MegabytesAreBinary) { EXPECT_EQ(ParseSize("200M").value(), 200 * kMiB); }

TEST(ParseSize, GigabytesAreBinary) { EXPECT_EQ(ParseSize("1G").value(), kGiB); }

TEST(ParseSize, FractionalGigabytes) { EXPECT_EQ(ParseSize("1.5G").value(), kGiB + kGiB / 2); }

TEST(ParseSize, AcceptsTrailingB) {
  EXPECT_EQ(ParseSize("200MB").value(), 200 * kMiB);
  EXPECT_EQ(ParseSize("512KB").value(), 512 * kKiB);
  EXPECT_EQ(ParseSize("1GB").value(), kGiB);
  EXPECT_EQ(ParseSize("100B").value(), 100u);
}

TEST(ParseSize, IsCaseInsensitive) {
  EXPECT_EQ(ParseSize("200m").value(), 200 * kMiB);
  EXPECT_EQ(ParseSize("1gb").value(), kGiB);
  EXPECT_EQ(ParseSize("512kB").value(), 512 * kKiB);
}

TEST(ParseSize, ToleratesSurroundingWhitespace) {
  EXPECT_EQ(ParseSize("  200M ").value(), 200 * kMiB);
}

TEST(ParseSize, RejectsWordNamingTheTextAndAcceptedForms) {
  EXPECT_THAT(SizeError("lots"),
              AllOf(HasSubstr("\"lots\" is not a size"), HasSubstr("number of bytes"),
                    HasSubstr("K, M or G"), HasSubstr("200M"), HasSubstr("1G"),
                    HasSubstr("1.5G")));
}

TEST(ParseSize, RejectsEmpty) { EXPECT_THAT(SizeError(""), HasSubstr("\"\" is not a size")); }

TEST(ParseSize, RejectsNegative) {
  EXPECT_THAT(SizeError("-1"), HasSubstr("\"-1\" is not a size"));
}

TEST(ParseSize, RejectsUnknownUnit) {
  EXPECT_THAT(SizeError("5T"), HasSubstr("\"5T\" is not a size"));
  EXPECT_THAT(SizeError("5 bytes"), HasSubstr("is not a size"));
}

TEST(ParseSize, RejectsMalformedNumber) { EXPECT_THAT(SizeError("1.2.3M"), HasSubstr("1.2.3M")); }

TEST(ParseSize, RejectsOverflow) {
  EXPECT_THAT(SizeError("99999999999999G"), HasSubstr("is not a size"));
  EXPECT_THAT(SizeError("99999999999999999999"), HasSubstr("is not a size"));
}

TEST(ParseSize, LargeSizeBelowTheLimitIsExact) {
  // About 9.3 EiB: above INT64_MAX, still a valid uint64_t.
  EXPECT_EQ(ParseSize("10000000000G").value(), uint64_t{10000000000} * kGiB);
}

// --- ParseDurationMs ---------------------------------------------------------------------

TEST(ParseDurationMs, BareNumberIsMilliseconds) {
  EXPECT_EQ(ParseDurationMs("1500").value(), 1500u);
}

TEST(ParseDurationMs, MillisecondUnit) { EXPECT_EQ(ParseDurationMs("250ms").value(), 250u); }

TEST(ParseDurationMs, FractionalSeconds) { EXPECT_EQ(ParseDurationMs("1.5s").value(), 1500u); }

TEST(ParseDurationMs, Minutes) { EXPECT_EQ(ParseDurationMs("2m").value(), 120'000u); }

TEST(ParseDurationMs, Hours) { EXPECT_EQ(ParseDurationMs("1h").value(), 3'600'000u); }

TEST(ParseDurationMs, IsCaseInsensitive) { EXPECT_EQ(ParseDurationMs("3S").value(), 3000u); }

TEST(ParseDurationMs, RejectsWordNamingAcceptedUnits) {
  EXPECT_THAT(DurationError("soon"),
              AllOf(HasSubstr("\"soon\" is not a duration"), HasSubstr("ms, s, m or h"),
                    HasSubstr("1.5s")));
}

TEST(ParseDurationMs, RejectsUnknownUnit) {
  EXPECT_THAT(DurationError("2d"), HasSubstr("\"2d\" is not a duration"));
}

TEST(ParseDurationMs, RejectsEmptyAndNegative) {
  EXPECT_THAT(DurationError(""), HasSubstr("is not a duration"));
  EXPECT_THAT(DurationError("-5s"), HasSubstr("is not a duration"));
}

TEST(ParseDurationMs, RejectsOverflow) {
  EXPECT_THAT(DurationError("99999999999999h"), HasSubstr("is not a duration"));
}

// --- FormatBytes -------------------------------------------------------------------------

TEST(FormatBytes, SmallSizesInBytes) {
  EXPECT_EQ(FormatBytes(0), "0B");
  EXPECT_EQ(FormatBytes(812), "812B");
  EXPECT_EQ(FormatBytes(1023), "1023B");
}

TEST(FormatBytes, KilobytesWithOneDecimal) {
  EXPECT_EQ(FormatBytes(1024), "1.0K");
  EXPECT_EQ(FormatBytes(1536), "1.5K");
}

TEST(FormatBytes, MegabytesAndGigabytes) {
  EXPECT_EQ(FormatBytes(45 * kMiB), "45.0M");
  EXPECT_EQ(FormatBytes(kGiB + kGiB / 5), "1.2G");
}

TEST(FormatBytes, TerabytesIsTheLargestUnit) {
  EXPECT_EQ(FormatBytes(2048 * 1024 * kGiB), "2048.0T");
}

TEST(FormatBytes, RoundingUpMovesToTheNextUnit) {
  EXPECT_EQ(FormatBytes(kMiB - 1), "1.0M");
  EXPECT_EQ(FormatBytes(kGiB - 1), "1.0G");
}

// --- FormatUptime ------------------------------------------------------------------------

TEST(FormatUptime, SecondsBelowAMinute) {
  EXPECT_EQ(FormatUptime(absl::ZeroDuration()), "0s");
  EXPECT_EQ(FormatUptime(absl::Seconds(42)), "42s");
  EXPECT_EQ(FormatUptime(absl::Seconds(59)), "59s");
}

TEST(FormatUptime, MinutesBelowAnHour) {
  EXPECT_EQ(FormatUptime(absl::Seconds(60)), "1m");
  EXPECT_EQ(FormatUptime(absl::Minutes(5) + absl::Seconds(30)), "5m");
  EXPECT_EQ(FormatUptime(absl::Seconds(3599)), "59m");
}

TEST(FormatUptime, HoursBelowADay) {
  EXPECT_EQ(FormatUptime(absl::Hours(1)), "1h");
  EXPECT_EQ(FormatUptime(absl::Hours(23) + absl::Minutes(59)), "23h");
}

TEST(FormatUptime, DaysWithCapitalD) {
  EXPECT_EQ(FormatUptime(absl::Hours(24)), "1D");
  EXPECT_EQ(FormatUptime(absl::Hours(24 * 9 + 5)), "9D");
}

TEST(FormatUptime, NegativeIsZero) { EXPECT_EQ(FormatUptime(absl::Seconds(-5)), "0s"); }

}  // namespace
}  // namespace herd
