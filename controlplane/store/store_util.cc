// Backend-independent helpers declared in store.h.
#include <google/protobuf/io/coded_stream.h>
#include <google/protobuf/io/zero_copy_stream_impl_lite.h>
#include <google/protobuf/util/message_differencer.h>

#include "absl/strings/str_cat.h"
#include "common/interner.h"
#include "controlplane/store/store.h"

namespace herd::controlplane {
namespace {

Interner<ModuleList::Vector>& Lists() {
  // Never destroyed: lists may outlive main().
  static auto* lists = new Interner<ModuleList::Vector>;
  return *lists;
}

std::string InternKey(const ModuleList::Vector& modules) {
  std::string key;
  for (const auto& m : modules) {
    // Length-prefixed, so no two lists share a key.
    const std::string bytes = DeterministicBytes(m);
    absl::StrAppend(&key, bytes.size(), ":", bytes);
  }
  return key;
}

}  // namespace

ModuleList::ModuleList(Vector modules) {
  if (modules.empty()) return;
  std::string key = InternKey(modules);
  list_ = Lists().Intern(std::move(key), std::move(modules));
}

std::string DeterministicBytes(const google::protobuf::Message& m) {
  std::string bytes;
  {
    google::protobuf::io::StringOutputStream out(&bytes);
    google::protobuf::io::CodedOutputStream coded(&out);
    coded.SetSerializationDeterministic(true);
    m.SerializeToCodedStream(&coded);
  }
  return bytes;
}

const ModuleList::Vector& ModuleList::Empty() {
  static const auto* empty = new Vector;
  return *empty;
}

size_t ModuleList::TableSize() { return Lists().TableSize(); }

size_t ModuleList::InternedLists() { return Lists().Alive(); }

bool HostRecord::operator==(const HostRecord& other) const {
  if (host_id != other.host_id || hostname != other.hostname || labels != other.labels ||
      credential_sha256 != other.credential_sha256 || agent_version != other.agent_version ||
      boot_id != other.boot_id || registered_at_unix_ms != other.registered_at_unix_ms ||
      last_seen_unix_ms != other.last_seen_unix_ms ||
      acked_config_version != other.acked_config_version ||
      modules.size() != other.modules.size()) {
    return false;
  }
  if (modules.SameList(other.modules)) return true;
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
