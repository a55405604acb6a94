#include "controlplane/store/sqlite_schema.h"

#include <sqlite3.h>

#include <utility>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "common/status_macros.h"
#include "controlplane/store/sqlite_store.h"

namespace herd::controlplane::sqlite {
namespace {

// ---------------------------------------------------------------------------------------
// Schema (version 1). Text sorts with the BINARY collation (bytewise), like std::string.

constexpr const char* kSchemaV1[] = {
    R"sql(CREATE TABLE meta (
      key TEXT PRIMARY KEY,
      value INTEGER NOT NULL
    ) WITHOUT ROWID)sql",
    R"sql(CREATE TABLE hosts (
      host_id TEXT PRIMARY KEY,
      hostname TEXT NOT NULL,
      credential_sha256 TEXT NOT NULL,
      agent_version TEXT NOT NULL,
      boot_id TEXT NOT NULL,
      registered_at INTEGER NOT NULL,
      last_seen INTEGER NOT NULL,
      acked_config_version INTEGER NOT NULL
    ))sql",
    R"sql(CREATE TABLE host_labels (
      host_id TEXT NOT NULL REFERENCES hosts(host_id) ON DELETE CASCADE,
      key TEXT NOT NULL,
      value TEXT NOT NULL,
      PRIMARY KEY (host_id, key)
    ) WITHOUT ROWID)sql",
    // One serialized herd.v1.ModuleInventory per row, in reported order.
    R"sql(CREATE TABLE host_modules (
      host_id TEXT NOT NULL REFERENCES hosts(host_id) ON DELETE CASCADE,
      idx INTEGER NOT NULL,
      inventory BLOB NOT NULL,
      PRIMARY KEY (host_id, idx)
    ) WITHOUT ROWID)sql",
    // scope_kind: 0 global (scope_value ''), 1 selector, 2 host; that is the listing order.
    R"sql(CREATE TABLE overrides (
      scope_kind INTEGER NOT NULL CHECK (scope_kind IN (0, 1, 2)),
      scope_value TEXT NOT NULL,
      module TEXT NOT NULL,
      key TEXT NOT NULL,
      value TEXT NOT NULL,
      updated_at INTEGER NOT NULL,
      updated_by TEXT NOT NULL,
      PRIMARY KEY (scope_kind, scope_value, module, key)
    ) WITHOUT ROWID)sql",
    R"sql(CREATE INDEX overrides_by_module
      ON overrides (module, scope_kind, scope_value, key))sql",
    // Serialized herd.v1.Rollout; created_at copied out for ordering.
    R"sql(CREATE TABLE rollouts (
      id TEXT PRIMARY KEY,
      created_at INTEGER NOT NULL,
      rollout BLOB NOT NULL
    ))sql",
    R"sql(CREATE INDEX rollouts_by_created ON rollouts (created_at))sql",
    R"sql(CREATE TABLE tokens (
      name TEXT PRIMARY KEY,
      role TEXT NOT NULL CHECK (role IN ('viewer', 'operator')),
      secret_sha256 TEXT NOT NULL UNIQUE,
      created_at INTEGER NOT NULL
    ))sql",
    R"sql(CREATE TABLE audit (
      id INTEGER PRIMARY KEY AUTOINCREMENT,
      at INTEGER NOT NULL,
      actor TEXT NOT NULL,
      action TEXT NOT NULL,
      detail_json TEXT NOT NULL
    ))sql",
    R"sql(CREATE INDEX audit_by_time ON audit (at, id))sql",
    R"sql(CREATE TABLE settings (
      key TEXT PRIMARY KEY,
      value TEXT NOT NULL
    ) WITHOUT ROWID)sql",
};

absl::Status NotHerd(const std::string& path, absl::string_view why) {
  return absl::FailedPreconditionError(
      absl::StrCat(path, " is not a Herd control plane store (", why,
                   "); move it away or point the controlplane at another file"));
}

// The single integer a pragma or query returns.
absl::StatusOr<int64_t> QueryInt(Conn& conn, const char* sql, absl::string_view what) {
  HERD_ASSIGN_OR_RETURN(sqlite3_stmt * stmt, conn.Prepare(sql));
  Query q(conn, stmt, what);
  HERD_ASSIGN_OR_RETURN(bool row, q.Step());
  if (!row) return conn.Error(SQLITE_ERROR, what);
  return q.ColInt(0);
}

}  // namespace

absl::StatusOr<bool> CheckIdentity(Conn& conn) {
  auto app_id = QueryInt(conn, "PRAGMA application_id", "reading the application id");
  if (!app_id.ok()) {
    int rc = sqlite3_errcode(conn.db());
    if (rc == SQLITE_NOTADB) return NotHerd(conn.path(), "not an SQLite database");
    return app_id.status();
  }
  HERD_ASSIGN_OR_RETURN(
      int64_t objects, QueryInt(conn, "SELECT count(*) FROM sqlite_schema",
                                "reading the schema"));
  if (*app_id == kSqliteApplicationId) return objects == 0;
  if (*app_id != 0) {
    return NotHerd(conn.path(),
                   absl::StrFormat("an SQLite database of another application, id 0x%08x",
                                   static_cast<uint32_t>(*app_id)));
  }
  if (objects != 0) return NotHerd(conn.path(), "an SQLite database of another application");
  return true;
}

absl::Status CreateSchema(Conn& conn) {
  for (const char* ddl : kSchemaV1) {
    HERD_RETURN_IF_ERROR(conn.Exec(ddl, "creating the schema"));
  }
  // Constants, not values from outside: a pragma cannot take bound parameters.
  HERD_RETURN_IF_ERROR(
      conn.Exec(absl::StrCat("PRAGMA application_id = ", kSqliteApplicationId).c_str(),
                "setting the application id"));
  HERD_ASSIGN_OR_RETURN(sqlite3_stmt * stmt,
                        conn.Prepare("INSERT INTO meta (key, value) VALUES (?, ?)"));
  for (auto [key, value] : {std::pair{kSchemaVersionKey, kSqliteSchemaVersion},
                            std::pair{kConfigRevisionKey, int64_t{0}}}) {
    Query q(conn, stmt, "creating the schema");
    q.Text(key).Int(value);
    HERD_RETURN_IF_ERROR(q.Run());
  }
  return absl::OkStatus();
}

absl::Status CheckSchemaVersion(Conn& conn) {
  HERD_ASSIGN_OR_RETURN(sqlite3_stmt * stmt,
                        conn.Prepare("SELECT value FROM meta WHERE key = ?"));
  Query q(conn, stmt, "reading the schema version");
  q.Text(kSchemaVersionKey);
  auto row = q.Step();
  if (!row.ok() || !*row) {
    return absl::DataLossError(absl::StrCat(conn.path(),
                                            " is a Herd control plane store without a schema "
                                            "version; restore the file from a backup"));
  }
  int64_t version = q.ColInt(0);
  if (version > kSqliteSchemaVersion) {
    return absl::FailedPreconditionError(absl::StrCat(
        conn.path(), " was written by a newer controlplane (schema version ", version,
        ", this one knows up to ", kSqliteSchemaVersion,
        "); upgrade the controlplane or restore an older backup"));
  }
  if (version < 1) {
    return absl::DataLossError(absl::StrCat(conn.path(), " has an invalid schema version ",
                                            version, "; restore the file from a backup"));
  }
  // Version 1 is the first: nothing to migrate yet. Later versions migrate here, inside
  // the caller's transaction.
  return absl::OkStatus();
}

}  // namespace herd::controlplane::sqlite
