// Backend-independent helpers declared in store.h.
#include <google/protobuf/io/coded_stream.h>
#include <google/protobuf/io/zero_copy_stream_impl_lite.h>
#include <google/protobuf/util/message_differencer.h>

#include "absl/container/flat_hash_map.h"
#include "absl/synchronization/mutex.h"
#include "controlplane/store/store.h"

namespace herd::controlplane {
namespace {

// Every list held, by its modules' deterministic serialization. Entries whose list is gone
// are swept when the table has doubled since the last sweep, so it stays within twice the
// lists alive (plus 64).
struct InternTable {
  absl::Mutex mu;
  absl::flat_hash_map<std::string, std::weak_ptr<const ModuleList::Vector>> lists
      ABSL_GUARDED_BY(mu);
  size_t next_sweep ABSL_GUARDED_BY(mu) = 64;
};

InternTable& Table() {
  static auto* table = new InternTable;  // never destroyed: lists may outlive main()
  return *table;
}

std::string InternKey(const ModuleList::Vector& modules) {
  std::string key;
  {
    google::protobuf::io::StringOutputStream out(&key);
    google::protobuf::io::CodedOutputStream coded(&out);
    coded.SetSerializationDeterministic(true);
    for (const auto& m : modules) {
      // Length-prefixed, so no two lists share a key.
      coded.WriteVarint64(m.ByteSizeLong());
      m.SerializeWithCachedSizes(&coded);
    }
  }
  return key;
}

}  // namespace

ModuleList::ModuleList(Vector modules) {
  if (modules.empty()) return;
  std::string key = InternKey(modules);
  InternTable& t = Table();
  absl::MutexLock l(&t.mu);
  auto& slot = t.lists[key];
  if (auto held = slot.lock()) {
    list_ = std::move(held);
    return;
  }
  list_ = std::make_shared<const Vector>(std::move(modules));
  slot = list_;
  if (t.lists.size() >= t.next_sweep) {
    absl::erase_if(t.lists, [](const auto& kv) { return kv.second.expired(); });
    t.next_sweep = std::max<size_t>(64, 2 * t.lists.size());
  }
}

const ModuleList::Vector& ModuleList::Empty() {
  static const auto* empty = new Vector;
  return *empty;
}

size_t ModuleList::TableSize() {
  InternTable& t = Table();
  absl::MutexLock l(&t.mu);
  return t.lists.size();
}

size_t ModuleList::InternedLists() {
  InternTable& t = Table();
  absl::MutexLock l(&t.mu);
  size_t n = 0;
  for (const auto& [key, list] : t.lists) n += list.expired() ? 0 : 1;
  return n;
}

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
