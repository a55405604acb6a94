// Parsing and formatting of the human units operators type and read: sizes ("200M", "1G")
// and durations ("1500", "1.5s", "2m"). Parsers return a message that names the accepted
// forms, so callers only prefix the field name.
#pragma once

#include <cstdint>
#include <string>
#include "absl/strings/string_view.h"

#include "absl/status/statusor.h"
#include "absl/time/time.h"

namespace herd {

// Bytes from "1048576", "512K", "200M", "1G", "1.5G" (binary units; case-insensitive; an
// optional trailing "B" as in "200MB"). PM2's max_memory_restart forms.
absl::StatusOr<uint64_t> ParseSize(absl::string_view text);

// Milliseconds from a bare number of milliseconds ("1500") or a number with a unit:
// "250ms", "1.5s", "2m", "1h".
absl::StatusOr<uint64_t> ParseDurationMs(absl::string_view text);

// "0B", "812B", "12.3K", "45.0M", "1.2G" (binary units), the way PM2 shows memory.
std::string FormatBytes(uint64_t bytes);

// Compact uptime: "42s", "5m", "3h", "2D" (PM2's style).
std::string FormatUptime(absl::Duration d);

}  // namespace herd
