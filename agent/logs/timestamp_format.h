// TimestampFormat: PM2's `log_date_format`, which takes moment.js tokens
// ("YYYY-MM-DD HH:mm:ss.SSS Z"), turned into a formatter for log line prefixes.
// Supported tokens: YYYY YY MM M DD D HH H hh h mm m ss s SSS A a Z ZZ X x, and [literal]
// text in brackets; every other character is copied, as moment.js does (so the "T" of
// "YYYY-MM-DDTHH:mm:ss" is literal). Parse() fails only on an unclosed '['.
#pragma once

#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/time/time.h"

namespace herd::agent {

class TimestampFormat {
 public:
  static absl::StatusOr<TimestampFormat> Parse(absl::string_view moment_format);
  std::string Format(absl::Time t, const absl::TimeZone& tz) const;

 private:
  enum class Token {
    kLiteral, kYear4, kYear2, kMonth2, kMonth, kDay2, kDay, kHour24_2, kHour24, kHour12_2,
    kHour12, kMinute2, kMinute, kSecond2, kSecond, kMillis, kAmPmUpper, kAmPmLower,
    kOffsetColon, kOffset, kUnixSeconds, kUnixMillis
  };
  struct Piece {
    Token token;
    std::string literal;
  };
  std::vector<Piece> pieces_;
};

}  // namespace herd::agent
