// A module's manifest: PM2's package.json (name, version, description, `config` defaults of
// any JSON, `apps[0]` for how to run it, else `bin` or `main` as PM2 does), with `//` and
// `/* */` comments accepted as PM2's docs show them. Errors name the file, the line and
// column, and what was expected.
#pragma once

#include <string>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "herd/v1/types.pb.h"
#include "nlohmann/json.hpp"

namespace herd::agent {

struct Manifest {
  std::string name;         // the module's name: package name without an npm @scope/
  std::string package;      // the package name as written (may be @scope/name)
  std::string version;
  std::string description;
  nlohmann::json config = nlohmann::json::object();  // defaults: key -> any JSON
  nlohmann::json app = nlohmann::json::object();     // apps[0], as written
  bool is_node = false;     // runs under node (so gets NODE_CHANNEL_FD)
  bool has_dependencies = false;
};

// Replaces comments outside strings with spaces (newlines kept), so that positions in the
// result are positions in the original text.
std::string StripJsonComments(absl::string_view text);

// Parses package.json text; `path` is used in error messages.
absl::StatusOr<Manifest> ParseManifest(absl::string_view text, const std::string& path);
// Reads DIR/package.json.
absl::StatusOr<Manifest> LoadManifest(const std::string& dir);

// A module name: what ValidateUnitName accepts (no '/', no "..", no leading '.').
absl::Status ValidateModuleName(absl::string_view name);

// The unit spec that runs the module: apps[0] with the module's name, its directory as cwd
// and base for relative paths. Node scripts (.js/.cjs/.mjs, or interpreter node) are marked
// so the supervisor gives them NODE_CHANNEL_FD.
absl::StatusOr<herd::v1::AppSpec> ModuleAppSpec(const Manifest& m, const std::string& dir,
                                                const std::string& search_path);

}  // namespace herd::agent
