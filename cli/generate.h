// agentctl generate: writes a sample module that installs and runs as it is (PM2's
// `pm2 module:generate`), from templates embedded in agentctl at build time.
#pragma once

#include <string>
#include <vector>

#include "absl/status/statusor.h"

namespace herd::cli {

// The languages a module can be generated in ("cpp", "node", "python", "sh").
std::vector<std::string> GeneratorLanguages();

// Writes the sample module `name` in `lang` into `dir` (created; must not exist or be empty).
// Returns the files written, relative to dir.
absl::StatusOr<std::vector<std::string>> GenerateModule(const std::string& name,
                                                        const std::string& lang,
                                                        const std::string& dir);

}  // namespace herd::cli
