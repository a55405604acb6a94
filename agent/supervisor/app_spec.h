// AppSpec parsing: turns PM2-shaped app descriptions (an ecosystem document with an `apps`
// array, or one app object) into validated herd.v1.AppSpec messages with PM2's defaults
// applied and paths made absolute. Every field is documented in README.md ("App fields").
//
// Errors are refused whole: one bad app fails the document, and the message names the app,
// the field, the value and the accepted forms, e.g.
//   apps[0] ("api"): max_memory_restart: "lots" is not a size: use a number of bytes, ...
#pragma once

#include <string>
#include "absl/strings/string_view.h"
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "herd/v1/types.pb.h"

namespace herd::agent {

// PM2's defaults.
inline constexpr uint32_t kDefaultMaxRestarts = 16;
inline constexpr uint64_t kDefaultMinUptimeMs = 1000;
inline constexpr uint64_t kDefaultKillTimeoutMs = 1600;

// The longest durations accepted (README "App fields"). Past them a value is a mistake, not
// a wish (1e19 ms is 300 million years; 1e300 used to wrap to 0), and is refused naming the
// app and the field. kill_timeout: an hour is longer than any orderly shutdown (systemd's
// default is 90 s); min_uptime, restart_delay, exp_backoff_restart_delay: a day.
inline constexpr uint64_t kMaxKillTimeoutMs = 3'600'000;
inline constexpr uint64_t kMaxDelayMs = 86'400'000;

struct AppSpecContext {
  // Relative paths (script, cwd, log files, pid files) are resolved against this absolute
  // directory.
  std::string base_dir;
  // PATH used to find a script or interpreter given as a bare command name.
  std::string search_path;
};

// Parses an ecosystem document: {"apps": [...]} or a single app object.
absl::StatusOr<std::vector<herd::v1::AppSpec>> ParseEcosystem(absl::string_view json_text,
                                                              const AppSpecContext& ctx);

// A unit name: 1-64 of [A-Za-z0-9._-], not starting with '.' or '-', and not "all".
absl::Status ValidateUnitName(absl::string_view name);

// Checks a spec that arrived already typed (e.g. from state.json): name, paths absolute,
// cron expression valid.
absl::Status ValidateAppSpec(const herd::v1::AppSpec& spec);

// The argv to execute for a spec: [interpreter, interpreter_args..., script, args...] or
// [script, args...] when run directly.
std::vector<std::string> ExecArgv(const herd::v1::AppSpec& spec);

// Finds `name` in a colon-separated search path; empty if not found or not executable.
std::string FindInPath(absl::string_view name, absl::string_view search_path);

}  // namespace herd::agent
