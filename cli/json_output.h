// agentctl's `-o json` and `-o yaml`: a reply as people and jq want it, not protobuf's JSON
// mapping. Field names are the proto's (snake_case) and unset scalars print their zero, as
// before; but
//   - 64-bit integers are numbers, not strings ("rss_bytes": 5242880);
//   - an enum is the lowercase words the tables show ("state": "online", "waiting restart");
//   - a field that holds JSON text (`reply_json`, `effective_json`, `data_json`...) is that
//     JSON value under the name without the suffix ("reply": {"cleared": 2}); an empty one is
//     null, and text that is not JSON (never sent by Herd) stays a string under its own name.
#pragma once

#include <string>

#include "google/protobuf/message.h"
#include "nlohmann/json.hpp"

namespace herd::cli {

nlohmann::json FriendlyJson(const google::protobuf::Message& m);

// The enum value's word: its name without the enum's own prefix (UnitState's UNIT_STATE_),
// lowercase, '_' as ' '.
std::string EnumWord(const google::protobuf::EnumValueDescriptor& v);

// Block-style YAML of a JSON value; strings that YAML would read as something else ("true",
// "123", "null", "") are quoted, so a reader gets back exactly the JSON.
std::string ToYaml(const nlohmann::json& v);

}  // namespace herd::cli
