// Module configuration: manifest `config` defaults overridden by the operator.
//
// Overrides are stored in PM2's layout in $HERD_HOME/module_conf.json:
//   {"<module>": {"<key>": "<value as a string>"}}
// except that a key whose value is an array or an object (a JSON literal when set) holds it
// as JSON. A hand edit of the file is read again at a module's next start.
// A module receives its overrides in the environment variable named after it (what pmx and
// @pm2/io read and autocast), and the effective config typed like the defaults in
// HERD_MODULE_CONFIG (what our SDKs read). A value that cannot be converted to the type of
// its default is refused when it is set, never at the module's start.
#pragma once

#include <sys/types.h>

#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "common/config_value.h"
#include "herd/v1/types.pb.h"
#include "nlohmann/json.hpp"

namespace herd::agent {

// Typed conversion of one value (shared with the control plane).
using herd::ConvertConfigValue;

// defaults ⊕ overrides, each override converted (an unconvertible one is skipped: it was
// checked at set time, so it can only come from a hand-edited file).
nlohmann::json EffectiveConfig(const nlohmann::json& defaults, const nlohmann::json& overrides);

// One entry per key of defaults ∪ overrides, sorted by key. `source` names where overrides
// come from ("local", or a control plane scope).
std::vector<herd::v1::ConfigEntry> ConfigEntries(const nlohmann::json& defaults,
                                                 const nlohmann::json& overrides,
                                                 const std::string& source);

// The kernel refuses an exec whose single environment string ("KEY=value" and its NUL) is
// longer than MAX_ARG_STRLEN (32 pages: 128 KiB): execve fails with E2BIG ("Argument list
// too long") and the module cannot start. A module's whole configuration travels in two
// such strings (PM2's process.env[<name>] and HERD_MODULE_CONFIG), so it is checked where a
// snapshot or a `set` can still be refused, rather than found at the next spawn.
inline constexpr size_t kMaxEnvString = 128 * 1024;

// What a module process gets of its configuration: its overrides (PM2's contract: strings)
// and the effective values typed like the defaults, as the JSON text of its two variables.
struct ConfigEnvironment {
  std::string overrides, effective;
  // Overrides left out because they do not convert to their default's type (only a hand
  // edit of module_conf.json can hold one), each as the reason: the default applies instead.
  std::vector<std::string> refused;
};

// Both texts, or why they would not fit in an environment variable.
absl::StatusOr<ConfigEnvironment> MakeConfigEnvironment(const std::string& module,
                                                        const nlohmann::json& defaults,
                                                        const nlohmann::json& overrides);

// module_conf.json, loaded once and rewritten atomically on every change.
class ModuleConfStore {
 public:
  explicit ModuleConfStore(std::string path) : path_(std::move(path)) {}

  // A missing file is an empty store; a corrupt one is an error naming the file and the
  // position (the agent refuses to start rather than lose the operator's settings).
  absl::Status Load();
  // Reads the file again if it changed since it was last read or written (a hand edit).
  // An edit that cannot be read keeps the values in force and is returned as the error, on
  // every call until the file is fixed.
  absl::Status Refresh();

  // The overrides of one module (an object of strings; empty object if none).
  nlohmann::json Overrides(const std::string& module) const;
  // `value`: a string (PM2's layout) or, for an array or object key, the JSON value.
  absl::Status Set(const std::string& module, const std::string& key, const nlohmann::json& value);
  // False when there was no such override.
  absl::StatusOr<bool> Unset(const std::string& module, const std::string& key);
  absl::Status Erase(const std::string& module);
  const std::string& path() const { return path_; }

 private:
  struct Stamp {
    bool exists = false;
    ino_t ino = 0;
    off_t size = 0;
    int64_t mtime_ns = 0;
    bool operator==(const Stamp&) const = default;
  };
  Stamp StatFile() const;
  absl::Status Save(const nlohmann::json& doc);
  // Parses module_conf.json's text (or none: empty) into doc_.
  absl::Status Read();
  std::string path_;
  nlohmann::json doc_ = nlohmann::json::object();
  Stamp stamp_;                // of the file as last read or written
  std::string refresh_error_;  // why the file as it is now could not be read
};

}  // namespace herd::agent
