#include "absl/strings/string_view.h"
#include "common/units.h"

#include <cmath>
#include <cstdlib>

#include "absl/strings/ascii.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"

namespace herd {
namespace {

// Splits "12.5Mb" into number "12.5" and suffix "mb" (lower-cased). False if no number.
bool SplitNumberSuffix(absl::string_view text, double* number, std::string* suffix) {
  text = absl::StripAsciiWhitespace(text);
  size_t i = 0;
  while (i < text.size() && (absl::ascii_isdigit(text[i]) || text[i] == '.')) ++i;
  if (i == 0) return false;
  if (!absl::SimpleAtod(text.substr(0, i), number) || !std::isfinite(*number) || *number < 0) {
    return false;
  }
  *suffix = absl::AsciiStrToLower(absl::StripAsciiWhitespace(text.substr(i)));
  return true;
}

}  // namespace

absl::StatusOr<uint64_t> ParseSize(absl::string_view text) {
  double n = 0;
  std::string suffix;
  auto bad = [&] {
    return absl::InvalidArgumentError(absl::StrCat(
        "\"", text,
        "\" is not a size: use a number of bytes, or a number followed by K, M or G "
        "(e.g. 200M, 1G, 1.5G)"));
  };
  if (!SplitNumberSuffix(text, &n, &suffix)) return bad();
  double mult = 0;
  if (suffix.empty() || suffix == "b") {
    mult = 1;
  } else if (suffix == "k" || suffix == "kb") {
    mult = 1024.0;
  } else if (suffix == "m" || suffix == "mb") {
    mult = 1024.0 * 1024;
  } else if (suffix == "g" || suffix == "gb") {
    mult = 1024.0 * 1024 * 1024;
  } else {
    return bad();
  }
  // 2^64 bytes and more do not fit; below that, round in double (llround would overflow
  // past INT64_MAX).
  double bytes = std::round(n * mult);
  if (bytes >= 18446744073709551616.0) return bad();
  return static_cast<uint64_t>(bytes);
}

absl::StatusOr<uint64_t> ParseDurationMs(absl::string_view text) {
  double n = 0;
  std::string suffix;
  auto bad = [&] {
    return absl::InvalidArgumentError(absl::StrCat(
        "\"", text,
        "\" is not a duration: use milliseconds (e.g. 1500) or a number with a unit ms, s, m "
        "or h (e.g. 250ms, 1.5s, 2m)"));
  };
  if (!SplitNumberSuffix(text, &n, &suffix)) return bad();
  double mult = 0;
  if (suffix.empty() || suffix == "ms") {
    mult = 1;
  } else if (suffix == "s") {
    mult = 1000;
  } else if (suffix == "m") {
    mult = 60'000;
  } else if (suffix == "h") {
    mult = 3'600'000;
  } else {
    return bad();
  }
  double ms = n * mult;
  if (ms >= 1e15) return bad();
  return static_cast<uint64_t>(std::llround(ms));
}

std::string FormatBytes(uint64_t bytes) {
  if (bytes < 1024) return absl::StrCat(bytes, "B");
  const char* units[] = {"K", "M", "G", "T"};
  double v = static_cast<double>(bytes) / 1024;
  int u = 0;
  // Move up a unit when one decimal would round to 1024.0 ("1.0M", not "1024.0K").
  while (v >= 1023.95 && u < 3) {
    v /= 1024;
    ++u;
  }
  return absl::StrFormat("%.1f%s", v, units[u]);
}

std::string FormatUptime(absl::Duration d) {
  int64_t s = absl::ToInt64Seconds(d);
  if (s < 0) s = 0;
  if (s < 60) return absl::StrCat(s, "s");
  if (s < 3600) return absl::StrCat(s / 60, "m");
  if (s < 86400) return absl::StrCat(s / 3600, "h");
  return absl::StrCat(s / 86400, "D");
}

}  // namespace herd
