// Argument forms shared by the local and fleet commands, with the errors they print.
#pragma once

#include <string>
#include <vector>

#include "google/protobuf/map.h"

namespace herd::cli {

// "MODULE:KEY" → module, key; prints what is wrong and returns false otherwise.
bool SplitModuleKey(const std::string& target, std::string* module, std::string* key);
// ["k=v", ...] → map; prints the first bad one and returns false.
bool ParseParams(const std::vector<std::string>& params,
                 google::protobuf::Map<std::string, std::string>* out);

}  // namespace herd::cli
