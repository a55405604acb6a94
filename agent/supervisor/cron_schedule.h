// CronSchedule: the cron expressions PM2 accepts in `cron_restart` (it uses the `croner`
// library): 5 fields (minute hour day-of-month month day-of-week) or 6 with a leading
// seconds field. Each field takes `*`, numbers, ranges `a-b`, steps `*/n` and `a-b/n`, lists
// `a,b`; months and weekdays also take names (JAN, MON); day-of-week 7 means Sunday; and the
// macros @yearly @annually @monthly @weekly @daily @midnight @hourly are expanded.
// As in Vixie cron, when both day-of-month and day-of-week are restricted, a day matches if
// either does.
//
// Next() is computed in a given time zone (the agent's local zone in production, UTC in
// tests), so daylight-saving gaps never produce a time that does not exist.
#pragma once

#include <bitset>
#include <optional>
#include <string>
#include "absl/strings/string_view.h"

#include "absl/status/statusor.h"
#include "absl/time/time.h"

namespace herd::agent {

class CronSchedule {
 public:
  // Parses an expression; the error names the field, the bad token and the accepted forms.
  static absl::StatusOr<CronSchedule> Parse(absl::string_view expression);

  // The first matching instant strictly after `after`, with second resolution (the seconds
  // field is 0 for 5-field expressions). nullopt if nothing matches within the next 5 years
  // (e.g. "0 0 30 2 *").
  std::optional<absl::Time> Next(absl::Time after, absl::TimeZone tz) const;

  const std::string& expression() const { return expression_; }

 private:
  CronSchedule() = default;

  std::string expression_;
  std::bitset<60> seconds_;
  std::bitset<60> minutes_;
  std::bitset<24> hours_;
  std::bitset<32> days_of_month_;  // 1..31
  std::bitset<13> months_;         // 1..12
  std::bitset<7> days_of_week_;    // 0 = Sunday
  bool dom_restricted_ = false;
  bool dow_restricted_ = false;
};

}  // namespace herd::agent
