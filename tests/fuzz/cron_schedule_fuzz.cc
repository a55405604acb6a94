// cron_restart expressions (ecosystem files, agentctl start --cron): CronSchedule::Parse,
// then the next few times in UTC and in a zone with DST.
#include <cstddef>
#include <cstdint>
#include <string>

#include "absl/time/time.h"
#include "agent/supervisor/cron_schedule.h"
#include "tests/fuzz/fuzz_util.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string text(reinterpret_cast<const char*>(data), size);
  auto cron = herd::agent::CronSchedule::Parse(text);
  if (!cron.ok()) return 0;
  static const absl::TimeZone kZones[] = {absl::UTCTimeZone(), absl::FixedTimeZone(-3 * 3600)};
  for (const absl::TimeZone& tz : kZones) {
    absl::Time t = absl::FromUnixSeconds(1'700'000'000);
    for (int i = 0; i < 3; ++i) {
      auto next = cron->Next(t, tz);
      if (!next.has_value()) break;
      HERD_FUZZ_CHECK(*next > t);
      t = *next;
    }
  }
  return 0;
}
