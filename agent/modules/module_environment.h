// What a module process finds in its environment besides the unit's own variables: the
// channel's fd (NODE_CHANNEL_FD for Node, HERD_CHANNEL_FD otherwise), its configuration
// (PM2's process.env[<name>] and HERD_MODULE_CONFIG), its name and directory, and for Node
// the preload that initialises @pm2/io 2.x the way PM2's process container does.
#pragma once

#include <string>
#include <vector>

#include "absl/status/status.h"
#include "agent/modules/module_config.h"
#include "herd/v1/types.pb.h"

namespace herd::agent {

// $HERD_HOME/lib/herd-node-preload.js.
std::string NodePreloadPath(const std::string& home);
// Writes it (at every start: an upgraded agentd brings its own).
absl::Status WriteNodePreload(const std::string& home);

// Sets (replacing) the module's variables in `env`, the unit's environment.
void SetModuleEnvironment(const herd::v1::AppSpec& spec, const std::string& module,
                          const std::string& dir, const ConfigEnvironment& config,
                          const std::string& preload_path, std::vector<std::string>* env);

}  // namespace herd::agent
