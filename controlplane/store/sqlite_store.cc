// SqliteStore: the embedded control plane store. One connection, serialized by a mutex;
// WAL journal so readers on other connections (backups, sqlite3 CLI) do not block it.
// Every value goes through bound parameters; every multi-statement change runs in
// BEGIN IMMEDIATE ... COMMIT.
#include <fcntl.h>
#include <sqlite3.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/string_view.h"
#include "common/status_macros.h"
#include "controlplane/store/sqlite_conn.h"
#include "controlplane/store/sqlite_schema.h"
#include "controlplane/store/sqlite_store.h"
#include "controlplane/store/store.h"

namespace herd::controlplane {
namespace {

using sqlite::CheckIdentity;
using sqlite::CheckSchemaVersion;
using sqlite::Conn;
using sqlite::CreateSchema;
using sqlite::DbPtr;
using sqlite::FromDb;
using sqlite::kConfigRevisionKey;
using sqlite::LimitToDb;
using sqlite::Query;
using sqlite::ToDb;
using sqlite::Txn;

const char* RoleText(Role role) { return role == Role::kOperator ? "operator" : "viewer"; }

// (kind, value) of a scope as stored; InvalidArgument for an unusable one.
absl::StatusOr<std::pair<int64_t, std::string>> ScopeKey(const herd::v1::Scope& scope) {
  switch (scope.what_case()) {
    case herd::v1::Scope::kGlobal:
      if (!scope.global()) {
        return absl::InvalidArgumentError("scope.global must be true when it is the scope");
      }
      return std::make_pair(int64_t{0}, std::string());
    case herd::v1::Scope::kSelector:
      if (scope.selector().empty()) {
        return absl::InvalidArgumentError("scope.selector must not be empty");
      }
      return std::make_pair(int64_t{1}, scope.selector());
    case herd::v1::Scope::kHostId:
      if (scope.host_id().empty()) {
        return absl::InvalidArgumentError("scope.host_id must not be empty");
      }
      return std::make_pair(int64_t{2}, scope.host_id());
    case herd::v1::Scope::WHAT_NOT_SET:
      break;
  }
  return absl::InvalidArgumentError(
      "the override has no scope: set one of global, selector or host_id");
}

herd::v1::Scope ScopeFromDb(int64_t kind, const std::string& value) {
  herd::v1::Scope scope;
  switch (kind) {
    case 1:
      scope.set_selector(value);
      break;
    case 2:
      scope.set_host_id(value);
      break;
    default:
      scope.set_global(true);
      break;
  }
  return scope;
}

absl::Status CheckModuleKey(const std::string& module, const std::string& key) {
  if (module.empty()) return absl::InvalidArgumentError("the override's module must not be empty");
  if (key.empty()) return absl::InvalidArgumentError("the override's key must not be empty");
  return absl::OkStatus();
}

// ---------------------------------------------------------------------------------------

class SqliteStore final : public Store {
 public:
  explicit SqliteStore(std::unique_ptr<Conn> conn) : conn_(std::move(conn)) {}

  // --- hosts

  absl::Status PutHost(const HostRecord& host) override { return PutHosts({host}); }

  absl::Status PutHosts(const std::vector<HostRecord>& hosts) override {
    // Checked and serialized before the transaction, so a bad record writes nothing.
    std::vector<std::vector<std::string>> modules(hosts.size());
    for (size_t h = 0; h < hosts.size(); ++h) {
      const HostRecord& host = hosts[h];
      if (host.host_id.empty()) return absl::InvalidArgumentError("the host's host_id is empty");
      modules[h].reserve(host.modules.size());
      for (const auto& m : host.modules) {
        std::string blob;
        if (!m.SerializeToString(&blob)) {
          return absl::InvalidArgumentError(absl::StrCat("host ", host.host_id, ": module ",
                                                         m.name(), " cannot be serialized"));
        }
        modules[h].push_back(std::move(blob));
      }
    }
    if (hosts.empty()) return absl::OkStatus();

    std::lock_guard lock(mu_);
    Txn txn(*conn_);
    HERD_RETURN_IF_ERROR(txn.Begin());
    for (size_t h = 0; h < hosts.size(); ++h) {
      HERD_RETURN_IF_ERROR(WriteHost(hosts[h], modules[h]));
    }
    return txn.Commit();
  }

  absl::Status PutHostStatus(const std::vector<HostStatus>& status) override {
    for (const auto& st : status) {
      if (st.host_id.empty()) return absl::InvalidArgumentError("the host's host_id is empty");
    }
    if (status.empty()) return absl::OkStatus();
    std::lock_guard lock(mu_);
    Txn txn(*conn_);
    HERD_RETURN_IF_ERROR(txn.Begin());
    for (const auto& st : status) {
      HERD_ASSIGN_OR_RETURN(
          auto q, Q("UPDATE hosts SET last_seen = ?, acked_config_version = ? WHERE host_id = ?",
                    "saving a host's status"));
      q->Int(st.last_seen_unix_ms).Int(ToDb(st.acked_config_version)).Text(st.host_id);
      HERD_RETURN_IF_ERROR(q->Run());
    }
    return txn.Commit();
  }

  absl::StatusOr<HostRecord> GetHost(const std::string& host_id) override {
    std::lock_guard lock(mu_);
    // One read transaction so the host and its children are consistent.
    Txn txn(*conn_);
    HERD_RETURN_IF_ERROR(txn.BeginRead());
    HERD_ASSIGN_OR_RETURN(auto hosts, ReadHosts(&host_id));
    HERD_RETURN_IF_ERROR(txn.Commit());
    if (hosts.empty()) return absl::NotFoundError(absl::StrCat("no host ", host_id));
    return std::move(hosts.front());
  }

  absl::StatusOr<std::vector<HostRecord>> ListHosts() override {
    std::lock_guard lock(mu_);
    Txn txn(*conn_);
    HERD_RETURN_IF_ERROR(txn.BeginRead());
    HERD_ASSIGN_OR_RETURN(auto hosts, ReadHosts(nullptr));
    HERD_RETURN_IF_ERROR(txn.Commit());
    return hosts;
  }

  absl::Status DeleteHost(const std::string& host_id) override {
    std::lock_guard lock(mu_);
    // Children go with ON DELETE CASCADE; one statement, atomic by itself.
    HERD_ASSIGN_OR_RETURN(auto q, Q("DELETE FROM hosts WHERE host_id = ?",
                                    "deleting a host"));
    q->Text(host_id);
    HERD_RETURN_IF_ERROR(q->Run());
    if (q->Changes() == 0) return absl::NotFoundError(absl::StrCat("no host ", host_id));
    return absl::OkStatus();
  }

  // --- overrides

  absl::StatusOr<uint64_t> ConfigRevision() override {
    std::lock_guard lock(mu_);
    return ReadRevision();
  }

  absl::StatusOr<ConfigWrite> SetOverride(const herd::v1::Override& override) override {
    HERD_ASSIGN_OR_RETURN(auto scope, ScopeKey(override.scope()));
    HERD_RETURN_IF_ERROR(CheckModuleKey(override.module(), override.key()));

    std::lock_guard lock(mu_);
    Txn txn(*conn_);
    HERD_RETURN_IF_ERROR(txn.Begin());
    HERD_ASSIGN_OR_RETURN(uint64_t revision, ReadRevision());
    {
      HERD_ASSIGN_OR_RETURN(auto q, Q(R"sql(
          SELECT value FROM overrides
          WHERE scope_kind = ? AND scope_value = ? AND module = ? AND key = ?)sql",
                                            "reading an override"));
      q->Int(scope.first).Text(scope.second).Text(override.module()).Text(override.key());
      HERD_ASSIGN_OR_RETURN(bool found, q->Step());
      if (found && q->ColText(0) == override.value()) {
        // Same value: not a change (who/when of the original set are kept).
        HERD_RETURN_IF_ERROR(txn.Commit());
        return ConfigWrite{revision, false};
      }
    }
    {
      HERD_ASSIGN_OR_RETURN(auto q, Q(R"sql(
          INSERT INTO overrides (scope_kind, scope_value, module, key, value, updated_at,
                                 updated_by)
          VALUES (?, ?, ?, ?, ?, ?, ?)
          ON CONFLICT (scope_kind, scope_value, module, key) DO UPDATE SET
            value = excluded.value,
            updated_at = excluded.updated_at,
            updated_by = excluded.updated_by)sql",
                                            "saving an override"));
      q->Int(scope.first)
          .Text(scope.second)
          .Text(override.module())
          .Text(override.key())
          .Text(override.value())
          .Int(override.updated_at_unix_ms())
          .Text(override.updated_by());
      HERD_RETURN_IF_ERROR(q->Run());
    }
    HERD_RETURN_IF_ERROR(WriteRevision(revision + 1));
    HERD_RETURN_IF_ERROR(txn.Commit());
    return ConfigWrite{revision + 1, true};
  }

  absl::StatusOr<ConfigWrite> UnsetOverride(const herd::v1::Scope& scope_msg,
                                            const std::string& module,
                                            const std::string& key) override {
    HERD_ASSIGN_OR_RETURN(auto scope, ScopeKey(scope_msg));
    HERD_RETURN_IF_ERROR(CheckModuleKey(module, key));

    std::lock_guard lock(mu_);
    Txn txn(*conn_);
    HERD_RETURN_IF_ERROR(txn.Begin());
    HERD_ASSIGN_OR_RETURN(uint64_t revision, ReadRevision());
    int changes = 0;
    {
      HERD_ASSIGN_OR_RETURN(auto q, Q(R"sql(
          DELETE FROM overrides
          WHERE scope_kind = ? AND scope_value = ? AND module = ? AND key = ?)sql",
                                            "deleting an override"));
      q->Int(scope.first).Text(scope.second).Text(module).Text(key);
      HERD_RETURN_IF_ERROR(q->Run());
      changes = q->Changes();
    }
    if (changes == 0) {
      HERD_RETURN_IF_ERROR(txn.Commit());
      return ConfigWrite{revision, false};
    }
    HERD_RETURN_IF_ERROR(WriteRevision(revision + 1));
    HERD_RETURN_IF_ERROR(txn.Commit());
    return ConfigWrite{revision + 1, true};
  }

  absl::StatusOr<std::vector<herd::v1::Override>> ListOverrides(
      const std::string& module) override {
    std::lock_guard lock(mu_);
    HERD_ASSIGN_OR_RETURN(
        auto q, Q(module.empty() ? R"sql(
        SELECT scope_kind, scope_value, module, key, value, updated_at, updated_by
        FROM overrides
        ORDER BY module, scope_kind, scope_value, key)sql"
                                 : R"sql(
        SELECT scope_kind, scope_value, module, key, value, updated_at, updated_by
        FROM overrides WHERE module = ?
        ORDER BY module, scope_kind, scope_value, key)sql",
                  "listing overrides"));
    if (!module.empty()) q->Text(module);
    std::vector<herd::v1::Override> out;
    while (true) {
      HERD_ASSIGN_OR_RETURN(bool row, q->Step());
      if (!row) break;
      herd::v1::Override& o = out.emplace_back();
      *o.mutable_scope() = ScopeFromDb(q->ColInt(0), q->ColText(1));
      o.set_module(q->ColText(2));
      o.set_key(q->ColText(3));
      o.set_value(q->ColText(4));
      o.set_updated_at_unix_ms(q->ColInt(5));
      o.set_updated_by(q->ColText(6));
    }
    return out;
  }

  // --- rollouts

  absl::Status PutRollout(const herd::v1::Rollout& rollout) override {
    if (rollout.id().empty()) return absl::InvalidArgumentError("the rollout's id is empty");
    std::string blob;
    if (!rollout.SerializeToString(&blob)) {
      return absl::InvalidArgumentError(
          absl::StrCat("rollout ", rollout.id(), " cannot be serialized"));
    }
    std::lock_guard lock(mu_);
    HERD_ASSIGN_OR_RETURN(auto q, Q(R"sql(
        INSERT INTO rollouts (id, created_at, rollout) VALUES (?, ?, ?)
        ON CONFLICT (id) DO UPDATE SET
          created_at = excluded.created_at,
          rollout = excluded.rollout)sql",
                                          "saving a rollout"));
    q->Text(rollout.id()).Int(rollout.created_at_unix_ms()).Blob(blob);
    return q->Run();
  }

  absl::StatusOr<herd::v1::Rollout> GetRollout(const std::string& id) override {
    std::lock_guard lock(mu_);
    HERD_ASSIGN_OR_RETURN(auto q, Q("SELECT rollout FROM rollouts WHERE id = ?",
                                    "reading a rollout"));
    q->Text(id);
    HERD_ASSIGN_OR_RETURN(bool row, q->Step());
    if (!row) return absl::NotFoundError(absl::StrCat("no rollout ", id));
    return DecodeRollout(q->ColBlob(0), id);
  }

  absl::StatusOr<std::vector<herd::v1::Rollout>> ListRollouts(size_t limit) override {
    std::lock_guard lock(mu_);
    // Ties in created_at: the one inserted last first.
    HERD_ASSIGN_OR_RETURN(auto q, Q(R"sql(
        SELECT id, rollout FROM rollouts
        ORDER BY created_at DESC, rowid DESC
        LIMIT ?)sql",
                                          "listing rollouts"));
    q->Int(LimitToDb(limit));
    std::vector<herd::v1::Rollout> out;
    while (true) {
      HERD_ASSIGN_OR_RETURN(bool row, q->Step());
      if (!row) break;
      HERD_ASSIGN_OR_RETURN(auto r, DecodeRollout(q->ColBlob(1), q->ColText(0)));
      out.push_back(std::move(r));
    }
    return out;
  }

  // --- tokens

  absl::Status AddToken(const ApiToken& token) override {
    if (token.name.empty()) return absl::InvalidArgumentError("the token's name is empty");
    if (token.secret_sha256.empty()) {
      return absl::InvalidArgumentError(
          absl::StrCat("token ", token.name, ": the secret's hash is empty"));
    }
    std::lock_guard lock(mu_);
    Txn txn(*conn_);
    HERD_RETURN_IF_ERROR(txn.Begin());
    {
      HERD_ASSIGN_OR_RETURN(auto q, Q("SELECT 1 FROM tokens WHERE name = ?",
                                      "reading tokens"));
      q->Text(token.name);
      HERD_ASSIGN_OR_RETURN(bool taken, q->Step());
      if (taken) {
        return absl::AlreadyExistsError(
            absl::StrCat("a token named ", token.name, " already exists"));
      }
    }
    {
      HERD_ASSIGN_OR_RETURN(auto q, Q("SELECT 1 FROM tokens WHERE secret_sha256 = ?",
                                      "reading tokens"));
      q->Text(token.secret_sha256);
      HERD_ASSIGN_OR_RETURN(bool taken, q->Step());
      if (taken) {
        return absl::AlreadyExistsError(
            absl::StrCat("token ", token.name, ": another token already has this secret"));
      }
    }
    {
      HERD_ASSIGN_OR_RETURN(auto q, Q(R"sql(
          INSERT INTO tokens (name, role, secret_sha256, created_at) VALUES (?, ?, ?, ?))sql",
                                            "saving a token"));
      q->Text(token.name)
          .Text(RoleText(token.role))
          .Text(token.secret_sha256)
          .Int(token.created_at_unix_ms);
      HERD_RETURN_IF_ERROR(q->Run());
    }
    return txn.Commit();
  }

  absl::StatusOr<ApiToken> FindTokenBySecretHash(const std::string& secret_sha256) override {
    std::lock_guard lock(mu_);
    HERD_ASSIGN_OR_RETURN(auto q, Q(R"sql(
        SELECT name, role, secret_sha256, created_at FROM tokens
        WHERE secret_sha256 = ?)sql",
                                          "looking up a token"));
    q->Text(secret_sha256);
    HERD_ASSIGN_OR_RETURN(bool row, q->Step());
    // The hash is not echoed: it is a credential's fingerprint.
    if (!row) return absl::NotFoundError("no token has this secret");
    return TokenFromRow(*q);
  }

  absl::StatusOr<std::vector<ApiToken>> ListTokens() override {
    std::lock_guard lock(mu_);
    HERD_ASSIGN_OR_RETURN(auto q, Q(R"sql(
        SELECT name, role, secret_sha256, created_at FROM tokens ORDER BY name)sql",
                                          "listing tokens"));
    std::vector<ApiToken> out;
    while (true) {
      HERD_ASSIGN_OR_RETURN(bool row, q->Step());
      if (!row) break;
      out.push_back(TokenFromRow(*q));
    }
    return out;
  }

  absl::Status DeleteToken(const std::string& name) override {
    std::lock_guard lock(mu_);
    HERD_ASSIGN_OR_RETURN(auto q, Q("DELETE FROM tokens WHERE name = ?",
                                    "deleting a token"));
    q->Text(name);
    HERD_RETURN_IF_ERROR(q->Run());
    if (q->Changes() == 0) return absl::NotFoundError(absl::StrCat("no token named ", name));
    return absl::OkStatus();
  }

  // --- audit

  absl::Status AppendAudit(const herd::v1::AuditEntry& entry) override {
    std::lock_guard lock(mu_);
    HERD_ASSIGN_OR_RETURN(auto q, Q(R"sql(
        INSERT INTO audit (at, actor, action, detail_json) VALUES (?, ?, ?, ?))sql",
                                          "appending to the audit log"));
    q->Int(entry.at_unix_ms()).Text(entry.actor()).Text(entry.action()).Text(
        entry.detail_json());
    return q->Run();
  }

  absl::StatusOr<std::vector<herd::v1::AuditEntry>> ListAudit(size_t limit) override {
    std::lock_guard lock(mu_);
    HERD_ASSIGN_OR_RETURN(auto q, Q(R"sql(
        SELECT at, actor, action, detail_json FROM audit
        ORDER BY at DESC, id DESC
        LIMIT ?)sql",
                                          "reading the audit log"));
    q->Int(LimitToDb(limit));
    std::vector<herd::v1::AuditEntry> out;
    while (true) {
      HERD_ASSIGN_OR_RETURN(bool row, q->Step());
      if (!row) break;
      herd::v1::AuditEntry& e = out.emplace_back();
      e.set_at_unix_ms(q->ColInt(0));
      e.set_actor(q->ColText(1));
      e.set_action(q->ColText(2));
      e.set_detail_json(q->ColText(3));
    }
    return out;
  }

  // --- settings

  absl::Status PutSetting(const std::string& key, const std::string& value) override {
    if (key.empty()) return absl::InvalidArgumentError("the setting's key is empty");
    std::lock_guard lock(mu_);
    HERD_ASSIGN_OR_RETURN(auto q, Q(R"sql(
        INSERT INTO settings (key, value) VALUES (?, ?)
        ON CONFLICT (key) DO UPDATE SET value = excluded.value)sql",
                                          "saving a setting"));
    q->Text(key).Text(value);
    return q->Run();
  }

  absl::StatusOr<std::optional<std::string>> GetSetting(const std::string& key) override {
    std::lock_guard lock(mu_);
    HERD_ASSIGN_OR_RETURN(auto q, Q("SELECT value FROM settings WHERE key = ?",
                                    "reading a setting"));
    q->Text(key);
    HERD_ASSIGN_OR_RETURN(bool row, q->Step());
    if (!row) return std::optional<std::string>();
    return std::optional<std::string>(q->ColText(0));
  }

 private:
  // One host's rows (inside the caller's transaction; needs mu_).
  absl::Status WriteHost(const HostRecord& host, const std::vector<std::string>& modules) {
    {
      HERD_ASSIGN_OR_RETURN(auto q, Q(R"sql(
          INSERT INTO hosts (host_id, hostname, credential_sha256, agent_version, boot_id,
                             registered_at, last_seen, acked_config_version)
          VALUES (?, ?, ?, ?, ?, ?, ?, ?)
          ON CONFLICT (host_id) DO UPDATE SET
            hostname = excluded.hostname,
            credential_sha256 = excluded.credential_sha256,
            agent_version = excluded.agent_version,
            boot_id = excluded.boot_id,
            registered_at = excluded.registered_at,
            last_seen = excluded.last_seen,
            acked_config_version = excluded.acked_config_version)sql",
                                            "saving a host"));
      q->Text(host.host_id)
          .Text(host.hostname)
          .Text(host.credential_sha256)
          .Text(host.agent_version)
          .Text(host.boot_id)
          .Int(host.registered_at_unix_ms)
          .Int(host.last_seen_unix_ms)
          .Int(ToDb(host.acked_config_version));
      HERD_RETURN_IF_ERROR(q->Run());
    }
    for (const char* sql : {"DELETE FROM host_labels WHERE host_id = ?",
                            "DELETE FROM host_modules WHERE host_id = ?"}) {
      HERD_ASSIGN_OR_RETURN(auto q, Q(sql, "saving a host"));
      q->Text(host.host_id);
      HERD_RETURN_IF_ERROR(q->Run());
    }
    for (const auto& [k, v] : host.labels) {
      HERD_ASSIGN_OR_RETURN(
          auto q, Q("INSERT INTO host_labels (host_id, key, value) VALUES (?, ?, ?)",
                    "saving a host's labels"));
      q->Text(host.host_id).Text(k).Text(v);
      HERD_RETURN_IF_ERROR(q->Run());
    }
    for (size_t i = 0; i < modules.size(); ++i) {
      HERD_ASSIGN_OR_RETURN(
          auto q, Q("INSERT INTO host_modules (host_id, idx, inventory) VALUES (?, ?, ?)",
                    "saving a host's modules"));
      q->Text(host.host_id).Int(static_cast<int64_t>(i)).Blob(modules[i]);
      HERD_RETURN_IF_ERROR(q->Run());
    }
    return absl::OkStatus();
  }

  // A cached statement ready to bind; the lock must be held for its whole life.
  absl::StatusOr<std::unique_ptr<Query>> Q(const char* sql, absl::string_view what) {
    HERD_ASSIGN_OR_RETURN(sqlite3_stmt * stmt, conn_->Prepare(sql));
    return std::make_unique<Query>(*conn_, stmt, what);
  }

  absl::StatusOr<uint64_t> ReadRevision() {
    HERD_ASSIGN_OR_RETURN(auto q, Q("SELECT value FROM meta WHERE key = ?",
                                    "reading the config revision"));
    q->Text(kConfigRevisionKey);
    HERD_ASSIGN_OR_RETURN(bool row, q->Step());
    if (!row) {
      return absl::DataLossError(absl::StrCat("control plane store ", conn_->path(),
                                              " has no config revision; restore the file "
                                              "from a backup"));
    }
    return FromDb(q->ColInt(0));
  }

  absl::Status WriteRevision(uint64_t revision) {
    HERD_ASSIGN_OR_RETURN(auto q, Q("UPDATE meta SET value = ? WHERE key = ?",
                                    "saving the config revision"));
    q->Int(ToDb(revision)).Text(kConfigRevisionKey);
    return q->Run();
  }

  // Every host, or only `*host_id`; sorted by host_id. Call inside a transaction.
  absl::StatusOr<std::vector<HostRecord>> ReadHosts(const std::string* host_id) {
    const bool one = host_id != nullptr;
    std::vector<HostRecord> hosts;
    std::unordered_map<std::string, size_t> index;
    {
      HERD_ASSIGN_OR_RETURN(
          auto q, Q(one ? R"sql(
          SELECT host_id, hostname, credential_sha256, agent_version, boot_id,
                 registered_at, last_seen, acked_config_version
          FROM hosts WHERE host_id = ?)sql"
                        : R"sql(
          SELECT host_id, hostname, credential_sha256, agent_version, boot_id,
                 registered_at, last_seen, acked_config_version
          FROM hosts ORDER BY host_id)sql",
                    "reading hosts"));
      if (one) q->Text(*host_id);
      while (true) {
        HERD_ASSIGN_OR_RETURN(bool row, q->Step());
        if (!row) break;
        HostRecord& h = hosts.emplace_back();
        h.host_id = q->ColText(0);
        h.hostname = q->ColText(1);
        h.credential_sha256 = q->ColText(2);
        h.agent_version = q->ColText(3);
        h.boot_id = q->ColText(4);
        h.registered_at_unix_ms = q->ColInt(5);
        h.last_seen_unix_ms = q->ColInt(6);
        h.acked_config_version = FromDb(q->ColInt(7));
        index.emplace(h.host_id, hosts.size() - 1);
      }
    }
    if (hosts.empty()) return hosts;
    {
      HERD_ASSIGN_OR_RETURN(
          auto q, Q(one ? "SELECT host_id, key, value FROM host_labels WHERE host_id = ?"
                        : "SELECT host_id, key, value FROM host_labels",
                    "reading host labels"));
      if (one) q->Text(*host_id);
      while (true) {
        HERD_ASSIGN_OR_RETURN(bool row, q->Step());
        if (!row) break;
        auto it = index.find(q->ColText(0));
        if (it != index.end()) hosts[it->second].labels.emplace(q->ColText(1), q->ColText(2));
      }
    }
    {
      HERD_ASSIGN_OR_RETURN(
          auto q,
          Q(one ? "SELECT host_id, inventory FROM host_modules WHERE host_id = ? ORDER BY idx"
                : "SELECT host_id, inventory FROM host_modules ORDER BY host_id, idx",
            "reading host modules"));
      if (one) q->Text(*host_id);
      std::vector<ModuleList::Vector> modules(hosts.size());
      while (true) {
        HERD_ASSIGN_OR_RETURN(bool row, q->Step());
        if (!row) break;
        std::string id = q->ColText(0);
        auto it = index.find(id);
        if (it == index.end()) continue;
        herd::v1::ModuleInventory m;
        if (!m.ParseFromString(q->ColBlob(1))) {
          return absl::DataLossError(absl::StrCat(
              "control plane store ", conn_->path(), ": a module of host ", id,
              " cannot be decoded; restore the file from a backup"));
        }
        modules[it->second].push_back(std::move(m));
      }
      for (size_t i = 0; i < hosts.size(); ++i) hosts[i].modules = std::move(modules[i]);
    }
    return hosts;
  }

  absl::StatusOr<herd::v1::Rollout> DecodeRollout(const std::string& blob,
                                                  const std::string& id) const {
    herd::v1::Rollout r;
    if (!r.ParseFromString(blob)) {
      return absl::DataLossError(absl::StrCat("control plane store ", conn_->path(),
                                              ": rollout ", id,
                                              " cannot be decoded; restore the file from a "
                                              "backup"));
    }
    return r;
  }

  static ApiToken TokenFromRow(const Query& q) {
    ApiToken t;
    t.name = q.ColText(0);
    t.role = q.ColText(1) == "operator" ? Role::kOperator : Role::kViewer;
    t.secret_sha256 = q.ColText(2);
    t.created_at_unix_ms = q.ColInt(3);
    return t;
  }

  std::mutex mu_;
  std::unique_ptr<Conn> conn_;
};

}  // namespace

absl::StatusOr<std::unique_ptr<Store>> OpenSqliteStore(const std::string& path) {
  if (path.empty()) return absl::InvalidArgumentError("the store's path is empty");

  // Create the file ourselves so that a new store (and its -wal/-shm files, which SQLite
  // gives the database's mode) is private to the controlplane's user.
  int fd = ::open(path.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0600);
  if (fd < 0) {
    int err = errno;
    return absl::UnavailableError(absl::StrCat("cannot open the control plane store ", path,
                                               ": ", std::strerror(err),
                                               "; check the directory exists and is writable"));
  }
  ::close(fd);

  sqlite3* raw = nullptr;
  int rc = sqlite3_open_v2(path.c_str(), &raw,
                           SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE | SQLITE_OPEN_NOMUTEX |
                               SQLITE_OPEN_EXRESCODE,
                           nullptr);
  DbPtr db(raw);
  if (rc != SQLITE_OK) {
    return absl::UnavailableError(absl::StrCat(
        "cannot open the control plane store ", path, ": ",
        raw != nullptr ? sqlite3_errmsg(raw) : sqlite3_errstr(rc)));
  }
  sqlite3_extended_result_codes(db.get(), 1);
  sqlite3_busy_timeout(db.get(), 5000);
  auto conn = std::make_unique<Conn>(path, std::move(db));

  HERD_RETURN_IF_ERROR(CheckIdentity(*conn).status());

  // Only now that the file is known to be ours (or empty) may it be changed.
  {
    HERD_ASSIGN_OR_RETURN(sqlite3_stmt * stmt, conn->Prepare("PRAGMA journal_mode = WAL"));
    Query q(*conn, stmt, "switching to WAL");
    HERD_ASSIGN_OR_RETURN(bool row, q.Step());
    if (!row || q.ColText(0) != "wal") {
      return absl::FailedPreconditionError(absl::StrCat(
          "control plane store ", path, ": cannot use the WAL journal (got ",
          row ? q.ColText(0) : std::string("nothing"),
          "); put the store on a local filesystem"));
    }
  }
  HERD_RETURN_IF_ERROR(conn->Exec("PRAGMA synchronous = NORMAL", "setting synchronous"));
  HERD_RETURN_IF_ERROR(conn->Exec("PRAGMA foreign_keys = ON", "enabling foreign keys"));

  {
    Txn txn(*conn);
    HERD_RETURN_IF_ERROR(txn.Begin());
    // Again under the write lock: another process may have created it meanwhile.
    HERD_ASSIGN_OR_RETURN(bool empty, CheckIdentity(*conn));
    if (empty) HERD_RETURN_IF_ERROR(CreateSchema(*conn));
    HERD_RETURN_IF_ERROR(CheckSchemaVersion(*conn));
    HERD_RETURN_IF_ERROR(txn.Commit());
  }
  return std::unique_ptr<Store>(std::make_unique<SqliteStore>(std::move(conn)));
}

}  // namespace herd::controlplane
