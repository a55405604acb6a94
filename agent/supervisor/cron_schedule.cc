#include "agent/supervisor/cron_schedule.h"

#include <algorithm>
#include <array>
#include <cstdint>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/time/civil_time.h"
#include "absl/types/span.h"

namespace herd::agent {
namespace {

constexpr absl::string_view kAcceptedForms =
    "each field takes *, a number, a range a-b, a step */n or a-b/n, or a list a,b";

// Far enough for every Feb 29 (except across 2100) and short enough to bound a search for
// an expression that can never match.
constexpr absl::Duration kHorizon = absl::Hours(24 * (5 * 365 + 2));

constexpr std::array<absl::string_view, 12> kMonthNames = {
    "jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec"};
constexpr std::array<absl::string_view, 7> kWeekdayNames = {"sun", "mon", "tue", "wed",
                                                            "thu", "fri", "sat"};

struct Macro {
  absl::string_view name;
  absl::string_view expansion;
};
constexpr std::array<Macro, 7> kMacros = {{
    {"@yearly", "0 0 1 1 *"},
    {"@annually", "0 0 1 1 *"},
    {"@monthly", "0 0 1 * *"},
    {"@weekly", "0 0 * * 0"},
    {"@daily", "0 0 * * *"},
    {"@midnight", "0 0 * * *"},
    {"@hourly", "0 * * * *"},
}};

// How one field is spelled: its accepted numbers, its names (names[i] stands for
// first_named_value + i) and whether `?` may stand for `*`.
struct FieldSyntax {
  absl::string_view name;
  int min;
  int max;
  absl::Span<const absl::string_view> names;
  int first_named_value;
  bool day_field;  // day-of-month and day-of-week take `?`
  absl::string_view extra_help;
};

const FieldSyntax kSecond{"second", 0, 59, {}, 0, false, ""};
const FieldSyntax kMinute{"minute", 0, 59, {}, 0, false, ""};
const FieldSyntax kHour{"hour", 0, 23, {}, 0, false, ""};
const FieldSyntax kDayOfMonth{"day-of-month", 1, 31, {}, 0, true, "; ? means *"};
const FieldSyntax kMonth{"month", 1, 12, kMonthNames, 1, false, "; months also take JAN-DEC"};
// 7 is accepted and folded onto 0: both mean Sunday.
const FieldSyntax kDayOfWeek{"day-of-week", 0, 7, kWeekdayNames, 0, true,
                             "; days also take SUN-SAT, 0 and 7 are Sunday, ? means *"};

bool IsDigits(absl::string_view s) {
  return !s.empty() && std::all_of(s.begin(), s.end(), absl::ascii_isdigit);
}

std::string Quoted(absl::string_view s) { return absl::StrCat("\"", s, "\""); }

// The errors below carry only the detail; ParseField adds the expression and field name.
absl::StatusOr<int> ParseValue(absl::string_view token, const FieldSyntax& field) {
  if (IsDigits(token)) {
    int value = 0;
    if (token.size() > 9 || !absl::SimpleAtoi(token, &value) || value < field.min ||
        value > field.max) {
      return absl::InvalidArgumentError(
          absl::StrCat(token, " is out of range ", field.min, "-", field.max));
    }
    return value;
  }
  for (size_t i = 0; i < field.names.size(); ++i) {
    if (absl::EqualsIgnoreCase(token, field.names[i])) {
      return field.first_named_value + static_cast<int>(i);
    }
  }
  if (field.names.empty()) {
    return absl::InvalidArgumentError(absl::StrCat(Quoted(token), " is not a number"));
  }
  return absl::InvalidArgumentError(absl::StrCat(
      Quoted(token), " is not a number or a name ", absl::AsciiStrToUpper(field.names.front()),
      "-", absl::AsciiStrToUpper(field.names.back())));
}

// One list item: `*`, `n`, `a-b`, each optionally followed by `/step`.
absl::Status ParseItem(absl::string_view item, const FieldSyntax& field, uint64_t& bits) {
  std::vector<absl::string_view> parts = absl::StrSplit(item, '/');
  if (parts.size() > 2) {
    return absl::InvalidArgumentError(absl::StrCat(Quoted(item), " has more than one step"));
  }
  int step = 1;
  const bool has_step = parts.size() == 2;
  if (has_step) {
    if (!IsDigits(parts[1]) || parts[1].size() > 9 || !absl::SimpleAtoi(parts[1], &step)) {
      return absl::InvalidArgumentError(
          absl::StrCat("step ", Quoted(parts[1]), " in ", Quoted(item), " is not a number"));
    }
    if (step == 0) {
      return absl::InvalidArgumentError(
          absl::StrCat("step 0 in ", Quoted(item), " must be at least 1"));
    }
  }

  const absl::string_view base = parts[0];
  int low = 0;
  int high = 0;
  if (base == "*" || base == "?") {
    if (base == "?" && !field.day_field) {
      return absl::InvalidArgumentError(
          "\"?\" is only accepted in day-of-month and day-of-week");
    }
    low = field.min;
    high = field.max;
  } else if (size_t dash = base.find('-'); dash != absl::string_view::npos) {
    const absl::string_view first = base.substr(0, dash);
    const absl::string_view last = base.substr(dash + 1);
    if (first.empty() || last.empty()) {
      return absl::InvalidArgumentError(absl::StrCat(Quoted(base), " is not a valid range"));
    }
    absl::StatusOr<int> from = ParseValue(first, field);
    if (!from.ok()) return from.status();
    absl::StatusOr<int> to = ParseValue(last, field);
    if (!to.ok()) return to.status();
    low = *from;
    high = *to;
    // FRI-SUN reads naturally as Friday through Sunday, though SUN is 0.
    if (&field == &kDayOfWeek && high == 0 && low > 0) high = 7;
    if (low > high) {
      return absl::InvalidArgumentError(absl::StrCat(
          "range ", Quoted(base), " is reversed; write the smaller value first"));
    }
  } else {
    absl::StatusOr<int> value = ParseValue(base, field);
    if (!value.ok()) return value.status();
    low = *value;
    // `a/n` runs from a to the end of the field.
    high = has_step ? field.max : low;
  }
  for (int v = low; v <= high; v += step) bits |= uint64_t{1} << v;
  return absl::OkStatus();
}

// Returns bit v set for every value v the field matches, or an error naming the field.
absl::StatusOr<uint64_t> ParseField(absl::string_view expression, absl::string_view text,
                                    const FieldSyntax& field) {
  uint64_t bits = 0;
  absl::Status status;
  for (absl::string_view item : absl::StrSplit(text, ',')) {
    if (item.empty()) {
      status = absl::InvalidArgumentError(absl::StrCat("empty item in list ", Quoted(text)));
    } else {
      status = ParseItem(item, field, bits);
    }
    if (!status.ok()) {
      return absl::InvalidArgumentError(absl::StrCat("cron expression ", Quoted(expression),
                                                     ": ", field.name, ": ", status.message(),
                                                     "; ", kAcceptedForms, field.extra_help));
    }
  }
  return bits;
}

bool IsWildcard(absl::string_view text) { return text == "*" || text == "?"; }

// Sunday = 0, as in cron.
int CronWeekday(absl::CivilDay day) {
  return (static_cast<int>(absl::GetWeekday(day)) + 1) % 7;  // absl counts from Monday = 0
}

}  // namespace

absl::StatusOr<CronSchedule> CronSchedule::Parse(absl::string_view expression) {
  const absl::string_view text = absl::StripAsciiWhitespace(expression);
  absl::string_view fields_text = text;
  if (absl::StartsWith(text, "@")) {
    auto macro = std::find_if(kMacros.begin(), kMacros.end(), [&](const Macro& m) {
      return absl::EqualsIgnoreCase(m.name, text);
    });
    if (macro == kMacros.end()) {
      return absl::InvalidArgumentError(absl::StrCat(
          "cron expression ", Quoted(text), ": unknown macro; expected one of @yearly, "
          "@annually, @monthly, @weekly, @daily, @midnight, @hourly"));
    }
    fields_text = macro->expansion;
  }

  std::vector<absl::string_view> fields =
      absl::StrSplit(fields_text, absl::ByAnyChar(" \t\r\n\f\v"), absl::SkipEmpty());
  if (fields.size() != 5 && fields.size() != 6) {
    return absl::InvalidArgumentError(absl::StrCat(
        "cron expression ", Quoted(text), ": expected 5 fields (minute hour day-of-month month "
        "day-of-week) or 6 with a leading second, got ", fields.size(),
        "; e.g. \"0 3 * * *\" for 03:00 every day"));
  }

  CronSchedule schedule;
  schedule.expression_ = std::string(text);
  size_t next = 0;
  if (fields.size() == 6) {
    absl::StatusOr<uint64_t> seconds = ParseField(text, fields[next++], kSecond);
    if (!seconds.ok()) return seconds.status();
    schedule.seconds_ = std::bitset<60>(*seconds);
  } else {
    schedule.seconds_.set(0);
  }
  absl::StatusOr<uint64_t> minutes = ParseField(text, fields[next++], kMinute);
  if (!minutes.ok()) return minutes.status();
  absl::StatusOr<uint64_t> hours = ParseField(text, fields[next++], kHour);
  if (!hours.ok()) return hours.status();
  const absl::string_view dom_text = fields[next++];
  absl::StatusOr<uint64_t> days_of_month = ParseField(text, dom_text, kDayOfMonth);
  if (!days_of_month.ok()) return days_of_month.status();
  absl::StatusOr<uint64_t> months = ParseField(text, fields[next++], kMonth);
  if (!months.ok()) return months.status();
  const absl::string_view dow_text = fields[next++];
  absl::StatusOr<uint64_t> days_of_week = ParseField(text, dow_text, kDayOfWeek);
  if (!days_of_week.ok()) return days_of_week.status();

  schedule.minutes_ = std::bitset<60>(*minutes);
  schedule.hours_ = std::bitset<24>(*hours);
  schedule.days_of_month_ = std::bitset<32>(*days_of_month);
  schedule.months_ = std::bitset<13>(*months);
  schedule.days_of_week_ = std::bitset<7>((*days_of_week | (*days_of_week >> 7)) & 0x7f);
  // Like croner, only a bare `*` (or `?`) leaves a day field unrestricted; `*/2` restricts it.
  schedule.dom_restricted_ = !IsWildcard(dom_text);
  schedule.dow_restricted_ = !IsWildcard(dow_text);
  return schedule;
}

std::optional<absl::Time> CronSchedule::Next(absl::Time after, absl::TimeZone tz) const {
  if (after == absl::InfiniteFuture() || after == absl::InfinitePast()) return std::nullopt;

  auto day_matches = [this](absl::CivilDay day) {
    const bool dom = days_of_month_[day.day()];
    const bool dow = days_of_week_[CronWeekday(day)];
    return dom_restricted_ && dow_restricted_ ? dom || dow : dom && dow;
  };
  // The first matching civil second in [from, end), skipping whole months, days, hours and
  // minutes that cannot match.
  auto first_match = [&](absl::CivilSecond from,
                         absl::CivilSecond end) -> std::optional<absl::CivilSecond> {
    absl::CivilSecond c = from;
    while (c < end) {
      if (!months_[c.month()]) {
        c = absl::CivilSecond(absl::CivilMonth(c) + 1);
      } else if (!day_matches(absl::CivilDay(c))) {
        c = absl::CivilSecond(absl::CivilDay(c) + 1);
      } else if (!hours_[c.hour()]) {
        c = absl::CivilSecond(absl::CivilHour(c) + 1);
      } else if (!minutes_[c.minute()]) {
        c = absl::CivilSecond(absl::CivilMinute(c) + 1);
      } else if (!seconds_[c.second()]) {
        c += 1;
      } else {
        return c;
      }
    }
    return std::nullopt;
  };

  // Time is walked in spans of constant UTC offset (between the zone's transitions). Within
  // a span civil time and absolute time advance together, so searching the span's civil
  // range in order finds the earliest instant, local times skipped by a spring-forward gap
  // are never produced (no span contains them), and the hour repeated at fall-back is
  // visited twice, once in each span.
  absl::Time t = absl::FromUnixSeconds(absl::ToUnixSeconds(after)) + absl::Seconds(1);
  const absl::Time limit = t + kHorizon;
  const bool every_hour = hours_.all();
  while (t < limit) {
    const absl::TimeZone span_zone = absl::FixedTimeZone(tz.At(t).offset);
    absl::Time span_end = limit;
    absl::TimeZone::CivilTransition transition;
    if (tz.NextTransition(t, &transition)) {
      span_end = std::clamp(tz.At(transition.to).trans, t + absl::Seconds(1), limit);
    }
    const absl::CivilSecond civil_end = absl::ToCivilSecond(span_end, span_zone);
    for (auto c = first_match(absl::ToCivilSecond(t, span_zone), civil_end); c.has_value();
         c = first_match(*c + 1, civil_end)) {
      const absl::Time instant = absl::FromCivil(*c, span_zone);
      // As in Vixie cron, a job pinned to an hour runs once when the clock falls back;
      // only jobs that run every hour also run in the repeated hour.
      if (!every_hour) {
        const absl::TimeZone::TimeInfo info = tz.At(*c);
        if (info.kind == absl::TimeZone::TimeInfo::REPEATED && instant != info.pre) continue;
      }
      return instant;
    }
    t = span_end;
  }
  return std::nullopt;
}

}  // namespace herd::agent
