// Module config values: an operator's text converted to the type of the manifest default.
// Shared by agentd (which applies values) and the control plane (which checks them when they
// are set), so both accept and refuse exactly the same values.
#pragma once

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "nlohmann/json.hpp"

namespace herd {

// Converts `text` to the JSON type of `def`: integer, floating point, boolean (true/false,
// yes/no, on/off, 1/0), string, or an array or object given as a JSON literal (any elements:
// PM2 passes any JSON). With no default (null), the value is autocast as PM2 does:
// "true"/"false", numbers, else string; a text that is a JSON array or object is that value. The error names the key, the value, the type wanted
// and the default.
absl::StatusOr<nlohmann::json> ConvertConfigValue(const nlohmann::json& def,
                                                  absl::string_view key,
                                                  absl::string_view text);

}  // namespace herd
