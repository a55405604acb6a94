// Logging setup: one named spdlog logger per component ("supervisor", "sampler", "api"...),
// all writing through the same sinks, in key=value text. Components call Logger("name") once
// and keep the pointer; debug statements are cheap when the level is above debug.
#pragma once

#include <memory>
#include <string>
#include "absl/strings/string_view.h"

#include "absl/status/status.h"
#include "spdlog/spdlog.h"

// Lets spdlog/fmt format absl::string_view (Debian's Abseil has its own string_view type).
template <>
struct fmt::formatter<absl::string_view> : fmt::formatter<fmt::string_view> {
  template <typename Ctx>
  auto format(absl::string_view s, Ctx& ctx) const {
    return fmt::formatter<fmt::string_view>::format(fmt::string_view(s.data(), s.size()), ctx);
  }
};

namespace herd {

struct LogOptions {
  // trace, debug, info, warn, error, critical, off.
  std::string level = "info";
  // Also write to this file (appended). Empty = stderr only.
  std::string file;
  // Write to stderr.
  bool to_stderr = true;
};

// Configures the shared sinks and level; loggers created before and after pick them up.
absl::Status InitLogging(const LogOptions& options);

// The logger for a component, created on first use.
std::shared_ptr<spdlog::logger> Logger(absl::string_view component);

}  // namespace herd
