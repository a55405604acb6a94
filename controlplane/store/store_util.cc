// Backend-independent helpers declared in store.h.
#include <google/protobuf/util/message_differencer.h>

#include "controlplane/store/store.h"

namespace herd::controlplane {

bool HostRecord::operator==(const HostRecord& other) const {
  if (host_id != other.host_id || hostname != other.hostname || labels != other.labels ||
      credential_sha256 != other.credential_sha256 || agent_version != other.agent_version ||
      boot_id != other.boot_id || registered_at_unix_ms != other.registered_at_unix_ms ||
      last_seen_unix_ms != other.last_seen_unix_ms ||
      acked_config_version != other.acked_config_version ||
      modules.size() != other.modules.size()) {
    return false;
  }
  for (size_t i = 0; i < modules.size(); ++i) {
    if (!google::protobuf::util::MessageDifferencer::Equals(modules[i], other.modules[i])) {
      return false;
    }
  }
  return true;
}

std::string ScopeText(const herd::v1::Scope& scope) {
  switch (scope.what_case()) {
    case herd::v1::Scope::kGlobal:
      return "global";
    case herd::v1::Scope::kSelector:
      return "selector:" + scope.selector();
    case herd::v1::Scope::kHostId:
      return "host:" + scope.host_id();
    case herd::v1::Scope::WHAT_NOT_SET:
      break;
  }
  return "(no scope)";
}

}  // namespace herd::controlplane
