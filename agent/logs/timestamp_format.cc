#include "agent/logs/timestamp_format.h"

#include <cstdlib>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"

namespace herd::agent {

absl::StatusOr<TimestampFormat> TimestampFormat::Parse(absl::string_view f) {
  struct Known {
    const char* text;
    Token token;
  };
  // Longest first, so "YYYY" wins over "YY" and "SSS" over nothing.
  static constexpr Known kTokens[] = {
      {"YYYY", Token::kYear4},    {"SSS", Token::kMillis},      {"YY", Token::kYear2},
      {"MM", Token::kMonth2},     {"DD", Token::kDay2},         {"HH", Token::kHour24_2},
      {"hh", Token::kHour12_2},   {"mm", Token::kMinute2},      {"ss", Token::kSecond2},
      {"ZZ", Token::kOffset},     {"M", Token::kMonth},         {"D", Token::kDay},
      {"H", Token::kHour24},      {"h", Token::kHour12},        {"m", Token::kMinute},
      {"s", Token::kSecond},      {"A", Token::kAmPmUpper},     {"a", Token::kAmPmLower},
      {"Z", Token::kOffsetColon}, {"X", Token::kUnixSeconds},   {"x", Token::kUnixMillis},
  };
  TimestampFormat out;
  auto add_literal = [&](absl::string_view s) {
    if (!out.pieces_.empty() && out.pieces_.back().token == Token::kLiteral) {
      out.pieces_.back().literal.append(s.data(), s.size());
    } else {
      out.pieces_.push_back({Token::kLiteral, std::string(s)});
    }
  };
  size_t i = 0;
  while (i < f.size()) {
    if (f[i] == '[') {
      size_t end = f.find(']', i);
      if (end == absl::string_view::npos) {
        return absl::InvalidArgumentError(
            absl::StrCat("\"", f, "\": '[' at position ", i, " is never closed with ']'"));
      }
      add_literal(f.substr(i + 1, end - i - 1));
      i = end + 1;
      continue;
    }
    bool matched = false;
    for (const auto& k : kTokens) {
      absl::string_view t(k.text);
      if (f.substr(i, t.size()) == t) {
        out.pieces_.push_back({k.token, ""});
        i += t.size();
        matched = true;
        break;
      }
    }
    if (matched) continue;
    add_literal(f.substr(i, 1));
    ++i;
  }
  return out;
}

std::string TimestampFormat::Format(absl::Time t, const absl::TimeZone& tz) const {
  const absl::TimeZone::CivilInfo ci = tz.At(t);
  const absl::CivilSecond cs = ci.cs;
  const int64_t ms = absl::ToUnixMillis(t);
  std::string out;
  out.reserve(32);
  auto offset = [&](bool colon) {
    int off = ci.offset / 60;
    char sign = off < 0 ? '-' : '+';
    off = std::abs(off);
    // Two calls, not one with a ?: format: clang checks absl formats at compile time and a
    // conditional is not a constant expression.
    if (colon) {
      absl::StrAppendFormat(&out, "%c%02d:%02d", sign, off / 60, off % 60);
    } else {
      absl::StrAppendFormat(&out, "%c%02d%02d", sign, off / 60, off % 60);
    }
  };
  for (const auto& p : pieces_) {
    switch (p.token) {
      case Token::kLiteral: out += p.literal; break;
      case Token::kYear4: absl::StrAppendFormat(&out, "%04d", cs.year()); break;
      case Token::kYear2: absl::StrAppendFormat(&out, "%02d", cs.year() % 100); break;
      case Token::kMonth2: absl::StrAppendFormat(&out, "%02d", cs.month()); break;
      case Token::kMonth: absl::StrAppend(&out, cs.month()); break;
      case Token::kDay2: absl::StrAppendFormat(&out, "%02d", cs.day()); break;
      case Token::kDay: absl::StrAppend(&out, cs.day()); break;
      case Token::kHour24_2: absl::StrAppendFormat(&out, "%02d", cs.hour()); break;
      case Token::kHour24: absl::StrAppend(&out, cs.hour()); break;
      case Token::kHour12_2:
        absl::StrAppendFormat(&out, "%02d", cs.hour() % 12 == 0 ? 12 : cs.hour() % 12);
        break;
      case Token::kHour12: absl::StrAppend(&out, cs.hour() % 12 == 0 ? 12 : cs.hour() % 12); break;
      case Token::kMinute2: absl::StrAppendFormat(&out, "%02d", cs.minute()); break;
      case Token::kMinute: absl::StrAppend(&out, cs.minute()); break;
      case Token::kSecond2: absl::StrAppendFormat(&out, "%02d", cs.second()); break;
      case Token::kSecond: absl::StrAppend(&out, cs.second()); break;
      case Token::kMillis: absl::StrAppendFormat(&out, "%03d", static_cast<int>(((ms % 1000) + 1000) % 1000)); break;
      case Token::kAmPmUpper: out += cs.hour() < 12 ? "AM" : "PM"; break;
      case Token::kAmPmLower: out += cs.hour() < 12 ? "am" : "pm"; break;
      case Token::kOffsetColon: offset(true); break;
      case Token::kOffset: offset(false); break;
      case Token::kUnixSeconds: absl::StrAppend(&out, absl::ToUnixSeconds(t)); break;
      case Token::kUnixMillis: absl::StrAppend(&out, ms); break;
    }
  }
  return out;
}

}  // namespace herd::agent
