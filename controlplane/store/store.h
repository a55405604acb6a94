// The control plane's durable state behind one interface: hosts, configuration overrides,
// rollouts, API tokens and the audit log (metrics are not here: they live in memory and in
// Prometheus). Backends: SqliteStore (embedded, the default); any other backend must pass
// tests/controlplane/store_contract_test.cc.
//
// Every method is thread-safe and either applies whole or not at all. Errors are
// absl::Status: NotFound for a missing record, InvalidArgument for a bad request, Unavailable
// / DataLoss / ResourceExhausted (disk full) for storage failures, with a message that names
// the file and what to do.
#pragma once

#include <cstdint>
#include <initializer_list>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "herd/v1/fleet.pb.h"

namespace herd::controlplane {

// The modules a host reported, in its order: immutable, and shared by every host that
// reported the same list (a fleet runs few combinations of module versions), so that 10,000
// hosts of one kind hold one copy, not 10,000 (bench/README.md, "Fleet scale"). Reads like a
// const vector; a change is a new list (assignment interns it).
class ModuleList {
 public:
  using value_type = herd::v1::ModuleInventory;
  using Vector = std::vector<herd::v1::ModuleInventory>;
  using const_iterator = Vector::const_iterator;

  ModuleList() = default;
  ModuleList(Vector modules);  // NOLINT(google-explicit-constructor): a list is its modules
  ModuleList(std::initializer_list<herd::v1::ModuleInventory> modules)
      : ModuleList(Vector(modules)) {}

  const Vector& vector() const { return list_ ? *list_ : Empty(); }
  const_iterator begin() const { return vector().begin(); }
  const_iterator end() const { return vector().end(); }
  size_t size() const { return vector().size(); }
  bool empty() const { return vector().empty(); }
  const herd::v1::ModuleInventory& operator[](size_t i) const { return vector()[i]; }
  // True when both hold the same shared list (then they are equal).
  bool SameList(const ModuleList& other) const { return list_ == other.list_; }

  // Distinct lists held at the moment, and entries in the table that finds them (those of
  // lists gone included, until swept), for tests and benchmarks.
  static size_t InternedLists();
  static size_t TableSize();

 private:
  static const Vector& Empty();
  std::shared_ptr<const Vector> list_;
};

// A registered host. Identity and credential are kept; what it reports (usage, units) is not.
struct HostRecord {
  std::string host_id;
  std::string hostname;
  std::map<std::string, std::string> labels;
  // SHA-256 (hex) of the per-host credential issued at registration.
  std::string credential_sha256;
  std::string agent_version;
  std::string boot_id;
  int64_t registered_at_unix_ms = 0;
  int64_t last_seen_unix_ms = 0;
  // The last config version the host acknowledged.
  uint64_t acked_config_version = 0;
  // Installed modules as last reported (serialized herd.v1.ModuleInventory list, JSON array
  // of {name, version, source, defaults_json}), so config can be validated while it is away.
  ModuleList modules;

  // Field-wise, modules compared as messages (protobuf messages have no operator==, so this
  // cannot be defaulted).
  bool operator==(const HostRecord& other) const;
};

// What changes with every message of a connected host: written without its labels and
// modules (PutHostStatus).
struct HostStatus {
  std::string host_id;
  int64_t last_seen_unix_ms = 0;
  uint64_t acked_config_version = 0;
};

enum class Role { kViewer, kOperator };

struct ApiToken {
  // Unique, human-chosen ("ci", "alice"); appears in the audit log.
  std::string name;
  Role role = Role::kViewer;
  // SHA-256 (hex) of the secret; the secret itself is never stored.
  std::string secret_sha256;
  int64_t created_at_unix_ms = 0;
};

// What a configuration change did.
struct ConfigWrite {
  // The config revision after the call (unchanged when nothing changed).
  uint64_t revision = 0;
  // False for an unset of an override that did not exist, or a set to the same value.
  bool changed = false;
};

class Store {
 public:
  virtual ~Store() = default;

  // --- hosts
  // Inserts or replaces the record with this host_id.
  virtual absl::Status PutHost(const HostRecord& host) = 0;
  // PutHost for each, in one transaction: all are written or none (a group commit).
  virtual absl::Status PutHosts(const std::vector<HostRecord>& hosts) = 0;
  // Updates last_seen and acked_config_version of existing hosts, in one transaction; a
  // host that is not stored is skipped (its full record is written with PutHosts).
  virtual absl::Status PutHostStatus(const std::vector<HostStatus>& status) = 0;
  virtual absl::StatusOr<HostRecord> GetHost(const std::string& host_id) = 0;
  // Sorted by host_id.
  virtual absl::StatusOr<std::vector<HostRecord>> ListHosts() = 0;
  // NotFound if absent.
  virtual absl::Status DeleteHost(const std::string& host_id) = 0;

  // --- configuration overrides (scope, module, key) → value
  // The revision starts at 0 for an empty store and increases by one with every change that
  // changed something; it never goes back, even across restarts and deletes.
  virtual absl::StatusOr<uint64_t> ConfigRevision() = 0;
  // `override.scope` must have one of its fields set; module and key must be non-empty.
  // updated_at_unix_ms and updated_by are stored as given.
  virtual absl::StatusOr<ConfigWrite> SetOverride(const herd::v1::Override& override) = 0;
  virtual absl::StatusOr<ConfigWrite> UnsetOverride(const herd::v1::Scope& scope,
                                                    const std::string& module,
                                                    const std::string& key) = 0;
  // Every override, or those of one module; ordered by module, then scope (global, then
  // selectors by text, then hosts by id), then key.
  virtual absl::StatusOr<std::vector<herd::v1::Override>> ListOverrides(
      const std::string& module = "") = 0;

  // --- rollouts (stored whole; id unique)
  virtual absl::Status PutRollout(const herd::v1::Rollout& rollout) = 0;
  virtual absl::StatusOr<herd::v1::Rollout> GetRollout(const std::string& id) = 0;
  // Most recently created first, at most `limit`.
  virtual absl::StatusOr<std::vector<herd::v1::Rollout>> ListRollouts(size_t limit) = 0;

  // --- API tokens
  // AlreadyExists if the name is taken.
  virtual absl::Status AddToken(const ApiToken& token) = 0;
  virtual absl::StatusOr<ApiToken> FindTokenBySecretHash(const std::string& secret_sha256) = 0;
  // Sorted by name.
  virtual absl::StatusOr<std::vector<ApiToken>> ListTokens() = 0;
  // NotFound if absent.
  virtual absl::Status DeleteToken(const std::string& name) = 0;

  // --- audit log (append only)
  virtual absl::Status AppendAudit(const herd::v1::AuditEntry& entry) = 0;
  // Several entries, in order (the first failure is returned; those before it are kept). A
  // store that writes them together overrides it (etcd: one Txn for them all).
  virtual absl::Status AppendAudits(const std::vector<herd::v1::AuditEntry>& entries) {
    for (const auto& e : entries) {
      if (absl::Status s = AppendAudit(e); !s.ok()) return s;
    }
    return absl::OkStatus();
  }
  // Most recent first (by time, then by insertion), at most `limit`.
  virtual absl::StatusOr<std::vector<herd::v1::AuditEntry>> ListAudit(size_t limit) = 0;

  // --- small settings (the join token's hash, the store's schema version...)
  virtual absl::Status PutSetting(const std::string& key, const std::string& value) = 0;
  // nullopt when unset.
  virtual absl::StatusOr<std::optional<std::string>> GetSetting(const std::string& key) = 0;
};

// Opens (creating if needed) the SQLite store at `path`: WAL mode, synchronous=NORMAL,
// foreign keys on, a busy timeout, schema created or migrated. A file that is not a Herd
// store, or one from a newer schema, is refused with a message naming the file.
absl::StatusOr<std::unique_ptr<Store>> OpenSqliteStore(const std::string& path);

// Text forms used in messages and sorting: "global", "selector:env=prod", "host:<id>".
std::string ScopeText(const herd::v1::Scope& scope);

// A message's bytes with maps in a stable order: equal messages give equal bytes (a key for
// Interner).
std::string DeterministicBytes(const google::protobuf::Message& m);

}  // namespace herd::controlplane
