// Runs an external program (tar, npm) to completion from a worker thread, capturing its
// combined output; used by module installation, never on the agent's loop thread.
#pragma once

#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/time/time.h"

namespace herd::agent {

struct CommandResult {
  int exit_code = -1;   // 128+signal when killed by a signal
  std::string output;   // stdout and stderr interleaved, last 64 KiB
};

// argv[0] is looked up on PATH. Fails (not an exit code) when the program cannot be started
// or does not finish within `timeout` (it is then killed with its process group).
absl::StatusOr<CommandResult> RunCommand(const std::vector<std::string>& argv,
                                         const std::string& cwd, absl::Duration timeout,
                                         const std::vector<std::string>& extra_env = {});

// The last `lines` lines of `text`, for error messages.
std::string LastLines(const std::string& text, size_t lines);

}  // namespace herd::agent
