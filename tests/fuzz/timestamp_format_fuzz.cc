// log_date_format (moment.js style, from ecosystem files): TimestampFormat::Parse, then
// Format at a few instants.
#include <cstddef>
#include <cstdint>
#include <string>

#include "absl/time/time.h"
#include "agent/logs/timestamp_format.h"
#include "tests/fuzz/fuzz_util.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string text(reinterpret_cast<const char*>(data), size);
  auto f = herd::agent::TimestampFormat::Parse(text);
  if (!f.ok()) return 0;
  for (int64_t s : {int64_t{0}, int64_t{1'700'000'000}, int64_t{4'102'444'800}}) {
    std::string out = f->Format(absl::FromUnixSeconds(s) + absl::Milliseconds(7),
                                absl::FixedTimeZone(5 * 3600 + 1800));
    // Every token expands to at most a few dozen bytes.
    HERD_FUZZ_CHECK(out.size() <= 64 * (text.size() + 1));
  }
  return 0;
}
