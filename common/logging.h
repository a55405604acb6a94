// Logging setup: one named spdlog logger per component ("supervisor", "sampler", "api"...),
// all writing through the same sinks, in key=value text. Components call Logger("name") once
// and keep the pointer; debug statements are cheap when the level is above debug.
#pragma once

#include <memory>
#include <string>
#include <string_view>

#include "absl/status/status.h"
#include "spdlog/spdlog.h"

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
std::shared_ptr<spdlog::logger> Logger(std::string_view component);

}  // namespace herd
