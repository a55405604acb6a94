// `agentctl completion bash|zsh|fish`: a script for the shell that completes agentctl's
// commands (and PM2's names for them), its global flags' values, and the names that exist on
// the agent: units, modules, MODULE:KEY config keys. The names come from agentd when the
// user presses Tab, through the hidden `agentctl __complete units|modules|keys`.
#pragma once

#include <string>
#include <vector>

#include "absl/status/statusor.h"

namespace herd::cli {

// The script for `shell`; `commands` are the command names and aliases to complete.
absl::StatusOr<std::string> CompletionScript(const std::string& shell,
                                             const std::vector<std::string>& commands);

}  // namespace herd::cli
