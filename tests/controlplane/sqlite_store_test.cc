// What only the SQLite backend promises: its file format, refusal of foreign files, WAL,
// file mode. The behaviour every backend shares is in store_contract_test.cc.
#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <sqlite3.h>
#include <sys/stat.h>

#include <chrono>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/str_cat.h"
#include "controlplane/store/sqlite_store.h"
#include "controlplane/store/store.h"
#include "tests/controlplane/store_contract_test.h"
#include "tests/fakes/file_util.h"

namespace herd::controlplane::testing {
namespace {

using ::herd::testing::ReadFile;
using ::testing::HasSubstr;

// A second, independent connection, as an operator's sqlite3 shell would have.
class RawDb {
 public:
  explicit RawDb(const std::string& path) {
    if (sqlite3_open_v2(path.c_str(), &db_, SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE,
                        nullptr) != SQLITE_OK) {
      ADD_FAILURE() << "sqlite3_open " << path << ": " << sqlite3_errmsg(db_);
    }
    sqlite3_busy_timeout(db_, 5000);
  }
  ~RawDb() { sqlite3_close_v2(db_); }
  RawDb(const RawDb&) = delete;
  RawDb& operator=(const RawDb&) = delete;

  void Exec(const std::string& sql) {
    char* err = nullptr;
    if (sqlite3_exec(db_, sql.c_str(), nullptr, nullptr, &err) != SQLITE_OK) {
      ADD_FAILURE() << sql << ": " << (err ? err : "?");
    }
    sqlite3_free(err);
  }
  // First column of the first row, as text ("" when none).
  std::string One(const std::string& sql) {
    sqlite3_stmt* stmt = nullptr;
    std::string out;
    if (sqlite3_prepare_v2(db_, sql.c_str(), -1, &stmt, nullptr) != SQLITE_OK) {
      ADD_FAILURE() << sql << ": " << sqlite3_errmsg(db_);
      return out;
    }
    if (sqlite3_step(stmt) == SQLITE_ROW && sqlite3_column_text(stmt, 0) != nullptr) {
      out = reinterpret_cast<const char*>(sqlite3_column_text(stmt, 0));
    }
    sqlite3_finalize(stmt);
    return out;
  }

 private:
  sqlite3* db_ = nullptr;
};

class SqliteStoreTest : public ::testing::Test {
 protected:
  std::string Path(const std::string& name = "controlplane.db") const {
    return dir_.path() + "/" + name;
  }
  TempDir dir_;
};

TEST_F(SqliteStoreTest, UsesWalAndMarksTheFileAsHerd) {
  auto store = Must(OpenSqliteStore(Path()));
  HERD_ASSERT_OK(store->PutSetting("k", "v"));
  EXPECT_TRUE(std::filesystem::exists(Path() + "-wal"));
  RawDb raw(Path());
  EXPECT_EQ(raw.One("PRAGMA journal_mode"), "wal");
  EXPECT_EQ(raw.One("PRAGMA application_id"), std::to_string(kSqliteApplicationId));
  EXPECT_EQ(raw.One("SELECT value FROM meta WHERE key = 'schema_version'"),
            std::to_string(kSqliteSchemaVersion));
  EXPECT_EQ(raw.One("PRAGMA integrity_check"), "ok");
  EXPECT_EQ(raw.One("PRAGMA foreign_key_check"), "");
}

TEST_F(SqliteStoreTest, NewStoreIsPrivateToItsUser) {
  auto store = Must(OpenSqliteStore(Path()));
  HERD_ASSERT_OK(store->PutSetting("k", "v"));
  for (const std::string& f : {Path(), Path() + "-wal", Path() + "-shm"}) {
    struct stat st {};
    ASSERT_EQ(::stat(f.c_str(), &st), 0) << f;
    EXPECT_EQ(st.st_mode & 0777, 0600u) << f;
  }
}

TEST_F(SqliteStoreTest, GarbageFileRefusedAndLeftAlone) {
  const std::string garbage(4096, 'x');
  { std::ofstream(Path(), std::ios::binary) << garbage; }
  auto store = OpenSqliteStore(Path());
  ASSERT_FALSE(store.ok());
  EXPECT_EQ(store.status().code(), absl::StatusCode::kFailedPrecondition) << store.status();
  EXPECT_THAT(std::string(store.status().message()), HasSubstr(Path()));
  EXPECT_THAT(std::string(store.status().message()),
              HasSubstr("is not a Herd control plane store"));
  EXPECT_EQ(ReadFile(Path()), garbage);
  EXPECT_FALSE(std::filesystem::exists(Path() + "-wal"));
}

TEST_F(SqliteStoreTest, ShortGarbageFileRefused) {
  { std::ofstream(Path(), std::ios::binary) << "hello"; }
  auto store = OpenSqliteStore(Path());
  ASSERT_FALSE(store.ok());
  EXPECT_THAT(std::string(store.status().message()), HasSubstr(Path()));
  EXPECT_EQ(ReadFile(Path()), "hello");
}

TEST_F(SqliteStoreTest, OtherApplicationsDatabaseRefused) {
  {
    RawDb raw(Path());
    raw.Exec("CREATE TABLE recipes (name TEXT); INSERT INTO recipes VALUES ('soup')");
  }
  auto store = OpenSqliteStore(Path());
  ASSERT_FALSE(store.ok());
  EXPECT_EQ(store.status().code(), absl::StatusCode::kFailedPrecondition) << store.status();
  EXPECT_THAT(std::string(store.status().message()), HasSubstr(Path()));
  EXPECT_THAT(std::string(store.status().message()),
              HasSubstr("is not a Herd control plane store"));
  RawDb raw(Path());
  EXPECT_EQ(raw.One("SELECT name FROM recipes"), "soup");
  EXPECT_EQ(raw.One("PRAGMA journal_mode"), "delete") << "the foreign file was changed";
}

TEST_F(SqliteStoreTest, OtherApplicationIdRefused) {
  { RawDb(Path()).Exec("PRAGMA application_id = 1234"); }
  auto store = OpenSqliteStore(Path());
  ASSERT_FALSE(store.ok());
  EXPECT_THAT(std::string(store.status().message()),
              HasSubstr("is not a Herd control plane store"));
}

TEST_F(SqliteStoreTest, EmptySqliteDatabaseIsAdopted) {
  { RawDb(Path()).Exec("PRAGMA user_version = 0"); }
  auto store = Must(OpenSqliteStore(Path()));
  EXPECT_EQ(Must(store->ConfigRevision()), 0u);
}

TEST_F(SqliteStoreTest, NewerSchemaRefused) {
  {
    auto store = Must(OpenSqliteStore(Path()));
    Must(store->SetOverride([] {
      herd::v1::Override o;
      o.mutable_scope()->set_global(true);
      o.set_module("m");
      o.set_key("k");
      o.set_value("v");
      return o;
    }()));
  }
  RawDb(Path()).Exec(absl::StrCat("UPDATE meta SET value = ", kSqliteSchemaVersion + 1,
                                  " WHERE key = 'schema_version'"));
  auto store = OpenSqliteStore(Path());
  ASSERT_FALSE(store.ok());
  EXPECT_EQ(store.status().code(), absl::StatusCode::kFailedPrecondition) << store.status();
  EXPECT_THAT(std::string(store.status().message()), HasSubstr(Path()));
  EXPECT_THAT(std::string(store.status().message()),
              HasSubstr("written by a newer controlplane"));
  // Refusing did not touch the data.
  RawDb raw(Path());
  EXPECT_EQ(raw.One("SELECT value FROM overrides"), "v");
}

TEST_F(SqliteStoreTest, MissingDirectoryNamesThePath) {
  const std::string path = dir_.path() + "/no/such/dir/controlplane.db";
  auto store = OpenSqliteStore(path);
  ASSERT_FALSE(store.ok());
  EXPECT_THAT(std::string(store.status().message()), HasSubstr(path));
}

TEST_F(SqliteStoreTest, ReaderOnAnotherConnectionDoesNotBlockWrites) {
  auto store = Must(OpenSqliteStore(Path()));
  HERD_ASSERT_OK(store->PutSetting("k", "1"));
  RawDb raw(Path());
  raw.Exec("BEGIN");
  EXPECT_EQ(raw.One("SELECT value FROM settings WHERE key = 'k'"), "1");
  // With WAL the open read transaction does not stop the writer...
  HERD_ASSERT_OK(store->PutSetting("k", "2"));
  // ...and keeps seeing its snapshot.
  EXPECT_EQ(raw.One("SELECT value FROM settings WHERE key = 'k'"), "1");
  raw.Exec("COMMIT");
  EXPECT_EQ(raw.One("SELECT value FROM settings WHERE key = 'k'"), "2");
}

TEST_F(SqliteStoreTest, WaitsForAWriterOnAnotherConnection) {
  auto store = Must(OpenSqliteStore(Path()));
  RawDb raw(Path());
  raw.Exec("PRAGMA busy_timeout = 0");
  raw.Exec("BEGIN IMMEDIATE");
  std::thread release([&] {
    std::this_thread::sleep_for(std::chrono::milliseconds(200));
    raw.Exec("COMMIT");
  });
  // Waits (busy timeout) for the other writer instead of failing at once.
  herd::v1::Override o;
  o.mutable_scope()->set_global(true);
  o.set_module("m");
  o.set_key("k");
  o.set_value("v");
  auto w = store->SetOverride(o);
  release.join();
  ASSERT_TRUE(w.ok()) << w.status();
  EXPECT_EQ(w->revision, 1u);
}

TEST_F(SqliteStoreTest, TwoStoresOnOneFileShareTheRevision) {
  auto a = Must(OpenSqliteStore(Path()));
  auto b = Must(OpenSqliteStore(Path()));
  std::vector<std::thread> threads;
  for (Store* s : {a.get(), b.get()}) {
    threads.emplace_back([s, tag = s == a.get() ? "a" : "b"] {
      for (int i = 0; i < 20; ++i) {
        herd::v1::Override o;
        o.mutable_scope()->set_host_id(tag);
        o.set_module("m");
        o.set_key(absl::StrCat("k", i));
        o.set_value("v");
        auto w = s->SetOverride(o);
        EXPECT_TRUE(w.ok()) << w.status();
      }
    });
  }
  for (auto& t : threads) t.join();
  EXPECT_EQ(Must(a->ConfigRevision()), 40u);
  EXPECT_EQ(Must(b->ConfigRevision()), 40u);
  EXPECT_EQ(Must(b->ListOverrides()).size(), 40u);
}

TEST(ScopeTextTest, Forms) {
  herd::v1::Scope s;
  EXPECT_EQ(ScopeText(s), "(no scope)");
  s.set_global(true);
  EXPECT_EQ(ScopeText(s), "global");
  s.set_selector("env=prod");
  EXPECT_EQ(ScopeText(s), "selector:env=prod");
  s.set_host_id("abc");
  EXPECT_EQ(ScopeText(s), "host:abc");
}

}  // namespace
}  // namespace herd::controlplane::testing
