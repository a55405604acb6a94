#include "agent/modules/module_environment.h"

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "common/atomic_file.h"

namespace herd::agent {
namespace {

// Loaded into every Node module with `node --require` (through NODE_OPTIONS). PM2's process
// container initialises its own @pm2/io before a module runs, and @pm2/io 2.x modules rely on
// that for their metrics timer; this does the same with the module's own copy (see
// ../shared/reference/pm2-ipc-protocol.md, "A trap"). Errors are swallowed: a module without
// @pm2/io must run exactly as it would without us.
constexpr char kNodePreload[] = R"JS(// Written by agentd: initialises a module's @pm2/io 2.x before the module loads.
'use strict';
try {
  const path = require('path');
  const dir = process.env.HERD_MODULE_DIR || process.cwd();
  const main = require.resolve('@pm2/io', { paths: [dir] });
  let pkgDir = path.dirname(main);
  let version = '';
  for (let i = 0; i < 5 && !version; i++) {
    try {
      const pkg = require(path.join(pkgDir, 'package.json'));
      if (pkg.name === '@pm2/io') version = pkg.version || '';
    } catch (e) {}
    pkgDir = path.dirname(pkgDir);
  }
  const major = parseInt(version.split('.')[0], 10);
  if (major > 0 && major < 4) {
    const io = require(main);
    if (io && typeof io.init === 'function') io.init();
  }
} catch (e) {}
)JS";

}  // namespace

std::string NodePreloadPath(const std::string& home) {
  return home + "/lib/herd-node-preload.js";
}

absl::Status WriteNodePreload(const std::string& home) {
  return WriteFileAtomically(NodePreloadPath(home), kNodePreload, 0644);
}

void SetModuleEnvironment(const herd::v1::AppSpec& spec, const std::string& module,
                          const std::string& dir, const ConfigEnvironment& config,
                          const std::string& preload_path, std::vector<std::string>* env) {
  auto set = [env](const std::string& key, const std::string& value) {
    std::string prefix = key + "=";
    for (auto& e : *env) {
      if (absl::StartsWith(e, prefix)) {
        e = prefix + value;
        return;
      }
    }
    env->push_back(prefix + value);
  };
  const bool node = spec.channel() == herd::v1::CHANNEL_KIND_NODE;
  set(node ? "NODE_CHANNEL_FD" : "HERD_CHANNEL_FD", "3");
  if (node) {
    set("NODE_CHANNEL_SERIALIZATION_MODE", "json");
    std::string node_options = absl::StrCat("--require ", preload_path);
    for (const auto& e : *env) {
      if (absl::StartsWith(e, "NODE_OPTIONS=")) {
        node_options = absl::StrCat(e.substr(13), " ", node_options);
      }
    }
    set("NODE_OPTIONS", node_options);
  }
  set(module, config.overrides);  // PM2: process.env[<module name>], strings
  set("HERD_MODULE_NAME", module);
  set("HERD_MODULE_DIR", dir);
  set("HERD_MODULE_CONFIG", config.effective);
}

}  // namespace herd::agent
