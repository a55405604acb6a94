// Placeholder until the parser lands (being written in this session).
#include "absl/strings/string_view.h"
#include "agent/supervisor/cron_schedule.h"

namespace herd::agent {
absl::StatusOr<CronSchedule> CronSchedule::Parse(absl::string_view) {
  return absl::UnimplementedError("cron_restart is not supported yet");
}
std::optional<absl::Time> CronSchedule::Next(absl::Time, absl::TimeZone) const { return std::nullopt; }
}  // namespace herd::agent
