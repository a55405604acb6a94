// The SQLite connection under SqliteStore and the three small types every store operation is
// written with: Conn (error mapping and a cache of prepared statements), Query (one use of a
// cached statement: bind, step, read columns, reset) and Txn (BEGIN IMMEDIATE / DEFERRED,
// ROLLBACK unless committed). Internal to controlplane/store: only the SQLite backend's files
// include it. Not thread-safe: SqliteStore serializes every use behind its mutex.
#pragma once

#include <sqlite3.h>

#include <cstdint>
#include <limits>
#include <memory>
#include <string>
#include <unordered_map>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/string_view.h"
#include "common/status_macros.h"

namespace herd::controlplane::sqlite {

struct DbCloser {
  void operator()(sqlite3* db) const { sqlite3_close_v2(db); }
};
using DbPtr = std::unique_ptr<sqlite3, DbCloser>;

struct StmtFinalizer {
  void operator()(sqlite3_stmt* s) const { sqlite3_finalize(s); }
};
using StmtPtr = std::unique_ptr<sqlite3_stmt, StmtFinalizer>;

// ---------------------------------------------------------------------------------------
// The connection: error mapping and a cache of prepared statements. Not thread-safe by
// itself; SqliteStore serializes every use.

class Conn {
 public:
  Conn(std::string path, DbPtr db) : path_(std::move(path)), db_(std::move(db)) {}
  ~Conn() {
    cache_.clear();  // finalize statements before the connection closes
  }
  Conn(const Conn&) = delete;
  Conn& operator=(const Conn&) = delete;

  const std::string& path() const { return path_; }
  sqlite3* db() const { return db_.get(); }

  // Maps an SQLite result code to a Status naming the file, what was being done and the
  // way out.
  absl::Status Error(int rc, absl::string_view what) const {
    std::string detail = absl::StrCat("sqlite: ", sqlite3_errmsg(db_.get()));
    if (sqlite3_errcode(db_.get()) != rc) detail = absl::StrCat("sqlite: ", sqlite3_errstr(rc));
    switch (rc & 0xff) {
      case SQLITE_FULL:
        return absl::ResourceExhaustedError(
            absl::StrCat("control plane store ", path_, ": disk full while ", what, " (",
                         detail, "); free space, the change was not applied"));
      case SQLITE_BUSY:
      case SQLITE_LOCKED:
        return absl::UnavailableError(absl::StrCat(
            "control plane store ", path_, " is locked by another connection while ", what,
            " (", detail, "); retry, and make sure only one controlplane uses this file"));
      case SQLITE_CORRUPT:
      case SQLITE_NOTADB:
        return absl::DataLossError(absl::StrCat("control plane store ", path_,
                                                " is corrupt: ", what, " failed (", detail,
                                                "); restore the file from a backup"));
      default:
        return absl::InternalError(
            absl::StrCat("control plane store ", path_, ": ", what, " failed (", detail, ")"));
    }
  }

  absl::StatusOr<sqlite3_stmt*> Prepare(const std::string& sql) {
    auto it = cache_.find(sql);
    if (it != cache_.end()) return it->second.get();
    sqlite3_stmt* raw = nullptr;
    int rc = sqlite3_prepare_v3(db_.get(), sql.c_str(), static_cast<int>(sql.size()) + 1,
                                SQLITE_PREPARE_PERSISTENT, &raw, nullptr);
    StmtPtr stmt(raw);
    if (rc != SQLITE_OK) return Error(rc, absl::StrCat("preparing \"", sql, "\""));
    sqlite3_stmt* out = stmt.get();
    cache_.emplace(sql, std::move(stmt));
    return out;
  }

  // For DDL and pragmas without values.
  absl::Status Exec(const char* sql, absl::string_view what) {
    int rc = sqlite3_exec(db_.get(), sql, nullptr, nullptr, nullptr);
    if (rc != SQLITE_OK) return Error(rc, what);
    return absl::OkStatus();
  }

 private:
  std::string path_;
  DbPtr db_;
  // Keyed by the SQL text.
  std::unordered_map<std::string, StmtPtr> cache_;
};

// One use of a cached statement: binds parameters in order, steps, reads columns, and
// resets the statement when it goes out of scope.
class Query {
 public:
  Query(Conn& conn, sqlite3_stmt* stmt, absl::string_view what)
      : conn_(conn), stmt_(stmt), what_(what) {}
  ~Query() {
    sqlite3_reset(stmt_);
    sqlite3_clear_bindings(stmt_);
  }
  Query(const Query&) = delete;
  Query& operator=(const Query&) = delete;

  Query& Text(absl::string_view v) {
    // A null data pointer would bind NULL, not ''.
    Check(sqlite3_bind_text64(stmt_, ++index_, v.data() != nullptr ? v.data() : "", v.size(),
                              SQLITE_TRANSIENT, SQLITE_UTF8));
    return *this;
  }
  Query& Blob(absl::string_view v) {
    Check(sqlite3_bind_blob64(stmt_, ++index_, v.data() != nullptr ? v.data() : "", v.size(),
                              SQLITE_TRANSIENT));
    return *this;
  }
  Query& Int(int64_t v) {
    Check(sqlite3_bind_int64(stmt_, ++index_, v));
    return *this;
  }

  // True when a row is available, false when done.
  absl::StatusOr<bool> Step() {
    if (bind_rc_ != SQLITE_OK) return conn_.Error(bind_rc_, what_);
    int rc = sqlite3_step(stmt_);
    if (rc == SQLITE_ROW) return true;
    if (rc == SQLITE_DONE) return false;
    return conn_.Error(rc, what_);
  }
  // Runs a statement that returns no rows.
  absl::Status Run() {
    HERD_ASSIGN_OR_RETURN(bool row, Step());
    (void)row;
    return absl::OkStatus();
  }
  // Only meaningful after Step() returned false/Run() for INSERT/UPDATE/DELETE.
  int Changes() const { return sqlite3_changes(conn_.db()); }

  std::string ColText(int col) const {
    const unsigned char* p = sqlite3_column_text(stmt_, col);
    int n = sqlite3_column_bytes(stmt_, col);
    if (p == nullptr || n <= 0) return std::string();
    return std::string(reinterpret_cast<const char*>(p), static_cast<size_t>(n));
  }
  std::string ColBlob(int col) const {
    const void* p = sqlite3_column_blob(stmt_, col);
    int n = sqlite3_column_bytes(stmt_, col);
    if (p == nullptr || n <= 0) return std::string();
    return std::string(static_cast<const char*>(p), static_cast<size_t>(n));
  }
  int64_t ColInt(int col) const { return sqlite3_column_int64(stmt_, col); }

 private:
  void Check(int rc) {
    if (rc != SQLITE_OK && bind_rc_ == SQLITE_OK) bind_rc_ = rc;
  }

  Conn& conn_;
  sqlite3_stmt* stmt_;
  absl::string_view what_;
  int index_ = 0;
  int bind_rc_ = SQLITE_OK;
};

// Begin() (BEGIN IMMEDIATE: takes the write lock up front, so a writer never fails half-way
// on a lock upgrade) or BeginRead() (a consistent snapshot, no write lock); ROLLBACK on
// destruction unless committed.
class Txn {
 public:
  explicit Txn(Conn& conn) : conn_(conn) {}
  ~Txn() {
    if (open_ && !sqlite3_get_autocommit(conn_.db())) {
      sqlite3_exec(conn_.db(), "ROLLBACK", nullptr, nullptr, nullptr);
    }
  }
  Txn(const Txn&) = delete;
  Txn& operator=(const Txn&) = delete;

  absl::Status Begin() {
    HERD_RETURN_IF_ERROR(conn_.Exec("BEGIN IMMEDIATE", "starting a transaction"));
    open_ = true;
    return absl::OkStatus();
  }
  absl::Status BeginRead() {
    HERD_RETURN_IF_ERROR(conn_.Exec("BEGIN DEFERRED", "starting a read"));
    open_ = true;
    return absl::OkStatus();
  }
  absl::Status Commit() {
    absl::Status st = conn_.Exec("COMMIT", "committing");
    if (st.ok()) open_ = false;
    return st;
  }

 private:
  Conn& conn_;
  bool open_ = false;
};

inline int64_t ToDb(uint64_t v) { return static_cast<int64_t>(v); }
inline uint64_t FromDb(int64_t v) { return static_cast<uint64_t>(v); }
inline int64_t LimitToDb(size_t limit) {
  constexpr size_t kMax = static_cast<size_t>(std::numeric_limits<int64_t>::max());
  return static_cast<int64_t>(limit > kMax ? kMax : limit);
}

}  // namespace herd::controlplane::sqlite
