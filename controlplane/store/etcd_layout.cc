#include "controlplane/store/etcd_layout.h"

#include <utility>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "herd/v1/store.pb.h"

namespace herd::controlplane {
namespace {

int HexValue(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  return -1;
}

}  // namespace

std::string EscapeSegment(absl::string_view name) {
  std::string out;
  out.reserve(name.size());
  for (char ch : name) {
    const auto c = static_cast<unsigned char>(ch);
    if (c == '%' || c == '/' || c < '!' || c > '~') {
      absl::StrAppendFormat(&out, "%%%02X", c);
    } else {
      out.push_back(ch);
    }
  }
  return out;
}

absl::StatusOr<std::string> UnescapeSegment(absl::string_view segment) {
  std::string out;
  out.reserve(segment.size());
  for (size_t i = 0; i < segment.size(); ++i) {
    if (segment[i] != '%') {
      out.push_back(segment[i]);
      continue;
    }
    const int hi = i + 2 < segment.size() ? HexValue(segment[i + 1]) : -1;
    const int lo = hi >= 0 ? HexValue(segment[i + 2]) : -1;
    if (lo < 0) {
      return absl::InvalidArgumentError(
          absl::StrCat("bad %-escape in the etcd key segment \"", segment, "\""));
    }
    out.push_back(static_cast<char>(hi * 16 + lo));
    i += 2;
  }
  return out;
}

EtcdKeys::EtcdKeys(std::string prefix) : p_(std::move(prefix)) {
  while (!p_.empty() && p_.back() == '/') p_.pop_back();
}

std::string EtcdKeys::OverridesOfModule(absl::string_view module) const {
  return absl::StrCat(OverridesDir(), EscapeSegment(module), "/");
}

absl::StatusOr<std::string> EtcdKeys::Override(const herd::v1::Scope& scope,
                                               absl::string_view module,
                                               absl::string_view key) const {
  std::string scope_part;
  switch (scope.what_case()) {
    case herd::v1::Scope::kGlobal:
      if (!scope.global()) {
        return absl::InvalidArgumentError("scope.global must be true when it is the scope");
      }
      scope_part = "global";
      break;
    case herd::v1::Scope::kSelector:
      if (scope.selector().empty()) {
        return absl::InvalidArgumentError("scope.selector must not be empty");
      }
      scope_part = absl::StrCat("selector/", EscapeSegment(scope.selector()));
      break;
    case herd::v1::Scope::kHostId:
      if (scope.host_id().empty()) {
        return absl::InvalidArgumentError("scope.host_id must not be empty");
      }
      scope_part = absl::StrCat("host/", EscapeSegment(scope.host_id()));
      break;
    case herd::v1::Scope::WHAT_NOT_SET:
      return absl::InvalidArgumentError(
          "the override has no scope: set one of global, selector or host_id");
  }
  return absl::StrCat(OverridesOfModule(module), scope_part, "/", EscapeSegment(key));
}

std::string EtcdKeys::Host(absl::string_view host_id) const {
  return absl::StrCat(HostsDir(), EscapeSegment(host_id));
}

std::string EtcdKeys::Rollout(absl::string_view id) const {
  return absl::StrCat(RolloutsDir(), EscapeSegment(id));
}

std::string EtcdKeys::TokenByName(absl::string_view name) const {
  return absl::StrCat(TokensByNameDir(), EscapeSegment(name));
}

std::string EtcdKeys::TokenBySecret(absl::string_view secret_sha256) const {
  return absl::StrCat(TokensDir(), "secret/", EscapeSegment(secret_sha256));
}

std::string EtcdKeys::AuditEntry(int64_t at_unix_ms, uint64_t seq) const {
  // Offset so that negative times sort before positive ones as text.
  const uint64_t at = static_cast<uint64_t>(at_unix_ms) ^ (uint64_t{1} << 63);
  return absl::StrFormat("%s%020u.%020u", AuditEntriesDir(), at, seq);
}

std::string EtcdKeys::Setting(absl::string_view key) const {
  return absl::StrCat(SettingsDir(), EscapeSegment(key));
}

std::string EtcdKeys::StoreDirs(int i) const {
  switch (i) {
    case 0:
      return ConfigDir();
    case 1:
      return HostsDir();
    case 2:
      return RolloutsDir();
    case 3:
      return TokensDir();
    case 4:
      return AuditDir();
    default:
      return SettingsDir();
  }
}

std::optional<HostKey> ParseHostKey(const EtcdKeys& keys, absl::string_view key) {
  const std::string dir = keys.HostsDir();
  if (key.substr(0, dir.size()) != dir) return std::nullopt;
  absl::string_view rest = key.substr(dir.size());
  HostKey out;
  const size_t slash = rest.find('/');
  if (slash != absl::string_view::npos) {
    if (rest.substr(slash) != "/status") return std::nullopt;
    out.status = true;
    rest = rest.substr(0, slash);
  }
  auto id = UnescapeSegment(rest);
  if (!id.ok() || id->empty()) return std::nullopt;
  out.host_id = std::move(*id);
  return out;
}

std::string EncodeHostRecord(const HostRecord& host) {
  herd::v1::StoredHost s;
  s.set_host_id(host.host_id);
  s.set_hostname(host.hostname);
  s.mutable_labels()->insert(host.labels.begin(), host.labels.end());
  s.set_credential_sha256(host.credential_sha256);
  s.set_agent_version(host.agent_version);
  s.set_boot_id(host.boot_id);
  s.set_registered_at_unix_ms(host.registered_at_unix_ms);
  s.set_last_seen_unix_ms(host.last_seen_unix_ms);
  s.set_acked_config_version(host.acked_config_version);
  for (const auto& m : host.modules) *s.add_modules() = m;
  return DeterministicBytes(s);
}

std::string EncodeHostStatus(const HostStatus& status) {
  herd::v1::StoredHostStatus s;
  s.set_last_seen_unix_ms(status.last_seen_unix_ms);
  s.set_acked_config_version(status.acked_config_version);
  return s.SerializeAsString();
}

absl::StatusOr<HostRecord> DecodeHostRecord(absl::string_view key, absl::string_view value) {
  herd::v1::StoredHost s;
  if (!s.ParseFromArray(value.data(), static_cast<int>(value.size())) || s.host_id().empty()) {
    return absl::DataLossError(absl::StrCat(
        "etcd key ", key, " is not a host record; delete it (etcdctl del) and let the host "
        "register again"));
  }
  HostRecord h;
  h.host_id = s.host_id();
  h.hostname = s.hostname();
  h.labels.insert(s.labels().begin(), s.labels().end());
  h.credential_sha256 = s.credential_sha256();
  h.agent_version = s.agent_version();
  h.boot_id = s.boot_id();
  h.registered_at_unix_ms = s.registered_at_unix_ms();
  h.last_seen_unix_ms = s.last_seen_unix_ms();
  h.acked_config_version = s.acked_config_version();
  ModuleList::Vector modules(s.modules().begin(), s.modules().end());
  h.modules = std::move(modules);
  return h;
}

absl::StatusOr<HostStatus> DecodeHostStatus(absl::string_view key, absl::string_view host_id,
                                            absl::string_view value) {
  herd::v1::StoredHostStatus s;
  if (!s.ParseFromArray(value.data(), static_cast<int>(value.size()))) {
    return absl::DataLossError(absl::StrCat("etcd key ", key,
                                            " is not a host status; delete it (etcdctl del)"));
  }
  return HostStatus{std::string(host_id), s.last_seen_unix_ms(), s.acked_config_version()};
}

void MergeHostStatus(HostRecord& record, int64_t record_mod_revision,
                     const std::optional<HostStatus>& status, int64_t status_mod_revision) {
  if (!status || status_mod_revision <= record_mod_revision) return;
  record.last_seen_unix_ms = status->last_seen_unix_ms;
  record.acked_config_version = status->acked_config_version;
}

}  // namespace herd::controlplane
