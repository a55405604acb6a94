#include "cli/args.h"

#include <cstdio>

namespace herd::cli {

bool SplitModuleKey(const std::string& target, std::string* module, std::string* key) {
  size_t colon = target.find(':');
  if (colon == std::string::npos || colon == 0 || colon + 1 == target.size()) {
    fprintf(stderr, "agentctl: \"%s\" is not MODULE:KEY (e.g. pm2-server-monit:interval)\n",
            target.c_str());
    return false;
  }
  *module = target.substr(0, colon);
  *key = target.substr(colon + 1);
  return true;
}

bool ParseParams(const std::vector<std::string>& params,
                 google::protobuf::Map<std::string, std::string>* out) {
  for (const auto& p : params) {
    size_t eq = p.find('=');
    if (eq == std::string::npos || eq == 0) {
      fprintf(stderr, "agentctl: --param \"%s\" is not KEY=VALUE\n", p.c_str());
      return false;
    }
    (*out)[p.substr(0, eq)] = p.substr(eq + 1);
  }
  return true;
}

}  // namespace herd::cli
