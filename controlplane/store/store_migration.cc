#include "controlplane/store/store_migration.h"

#include <sqlite3.h>
#include <sys/stat.h>

#include <algorithm>
#include <limits>
#include <utility>
#include <vector>

#include "absl/strings/str_cat.h"
#include "common/status_macros.h"
#include "controlplane/store/etcd_audit.h"
#include "controlplane/store/etcd_layout.h"
#include "controlplane/store/etcd_ops.h"

namespace herd::controlplane {
namespace {

constexpr size_t kAll = std::numeric_limits<size_t>::max();

// Every (key, value) of the SQLite store's settings table (store.h has no listing of them).
absl::StatusOr<std::vector<std::pair<std::string, std::string>>> ReadSettings(
    const std::string& path) {
  sqlite3* db = nullptr;
  if (sqlite3_open_v2(path.c_str(), &db, SQLITE_OPEN_READONLY, nullptr) != SQLITE_OK) {
    std::string err = db ? sqlite3_errmsg(db) : "cannot open";
    sqlite3_close(db);
    return absl::UnavailableError(absl::StrCat("cannot read the settings of ", path, ": ", err));
  }
  std::vector<std::pair<std::string, std::string>> out;
  sqlite3_stmt* stmt = nullptr;
  int rc = sqlite3_prepare_v2(db, "SELECT key, value FROM settings ORDER BY key", -1, &stmt,
                              nullptr);
  while (rc == SQLITE_OK && sqlite3_step(stmt) == SQLITE_ROW) {
    auto text = [&](int col) {
      const auto* p = reinterpret_cast<const char*>(sqlite3_column_text(stmt, col));
      return std::string(p ? p : "", static_cast<size_t>(sqlite3_column_bytes(stmt, col)));
    };
    out.emplace_back(text(0), text(1));
  }
  const std::string err = rc == SQLITE_OK ? "" : sqlite3_errmsg(db);
  sqlite3_finalize(stmt);
  sqlite3_close(db);
  if (!err.empty()) {
    return absl::DataLossError(absl::StrCat("cannot read the settings of ", path, ": ", err));
  }
  return out;
}

// Refuses a prefix that holds store keys, or (force) deletes them; the keys deleted.
absl::StatusOr<int64_t> ClearTarget(etcd::Client& to, const EtcdKeys& keys, bool force) {
  int64_t deleted = 0;
  for (int i = 0; i < EtcdKeys::kStoreDirs; ++i) {
    const std::string dir = keys.StoreDirs(i);
    etcd::RangeOptions count;
    count.range_end = etcd::PrefixEnd(dir);
    count.count_only = true;
    HERD_ASSIGN_OR_RETURN(etcd::RangeResult r, to.Range(dir, count));
    if (r.count == 0) continue;
    if (!force) {
      return absl::FailedPreconditionError(absl::StrCat(
          "etcd prefix ", keys.prefix(), " already holds a store (", r.count, " keys under ",
          dir, "); migrate to another --etcd-prefix, or pass --force to delete what it holds "
          "and write this store over it"));
    }
    HERD_ASSIGN_OR_RETURN(int64_t n, to.Delete(dir, etcd::PrefixEnd(dir)));
    deleted += n;
  }
  return deleted;
}

// Overrides under their keys and the revision as it was (not SetOverride: each would count).
absl::Status CopyOverrides(Store& from, etcd::Client& to, const EtcdKeys& keys,
                           const EtcdStoreOptions& options, MigrationReport& report) {
  HERD_ASSIGN_OR_RETURN(auto overrides, from.ListOverrides(""));
  HERD_ASSIGN_OR_RETURN(report.config_revision, from.ConfigRevision());
  std::vector<etcd::Op> ops;
  std::vector<size_t> bytes;
  for (const auto& o : overrides) {
    HERD_ASSIGN_OR_RETURN(std::string key, keys.Override(o.scope(), o.module(), o.key()));
    ops.push_back(etcd::Op::Put(std::move(key), o.SerializeAsString()));
    bytes.push_back(ops.back().key.size() + ops.back().value.size());
  }
  for (auto [begin, end] : CutIntoTxns(bytes, options.max_txn_ops, options.max_txn_bytes)) {
    std::vector<etcd::Op> chunk(ops.begin() + begin, ops.begin() + end);
    HERD_RETURN_IF_ERROR(to.Txn({}, chunk).status());
  }
  report.overrides = overrides.size();
  return to.Put(keys.ConfigRevision(), absl::StrCat(report.config_revision)).status();
}

absl::Status CopyRest(Store& from, Store& target, MigrationReport& report) {
  HERD_ASSIGN_OR_RETURN(auto hosts, from.ListHosts());
  HERD_RETURN_IF_ERROR(target.PutHosts(hosts));
  report.hosts = hosts.size();
  HERD_ASSIGN_OR_RETURN(auto tokens, from.ListTokens());
  for (const ApiToken& t : tokens) HERD_RETURN_IF_ERROR(target.AddToken(t));
  report.tokens = tokens.size();
  HERD_ASSIGN_OR_RETURN(auto rollouts, from.ListRollouts(kAll));
  // Oldest first: etcd's create revisions then keep the listing order of ties.
  for (auto it = rollouts.rbegin(); it != rollouts.rend(); ++it) {
    HERD_RETURN_IF_ERROR(target.PutRollout(*it));
  }
  report.rollouts = rollouts.size();
  return absl::OkStatus();
}

}  // namespace

std::string DescribeMigration(const MigrationReport& r) {
  return absl::StrCat(r.hosts, " hosts, ", r.overrides, " config overrides (config revision ",
                      r.config_revision, "), ", r.tokens, " API tokens, ", r.rollouts,
                      " rollouts, ", r.audit, " audit entries, ", r.settings, " settings",
                      r.keys_replaced > 0 ? absl::StrCat(" (", r.keys_replaced,
                                                         " keys deleted first: --force)")
                                          : "");
}

absl::StatusOr<MigrationReport> MigrateToEtcd(Store& from, const std::string& sqlite_path,
                                              etcd::Client& to, const std::string& prefix,
                                              bool force, const EtcdStoreOptions& options) {
  MigrationReport report;
  HERD_ASSIGN_OR_RETURN(std::unique_ptr<Store> target, OpenEtcdStore(to, prefix, options));
  const EtcdKeys keys(prefix);
  HERD_ASSIGN_OR_RETURN(report.keys_replaced, ClearTarget(to, keys, force));
  HERD_RETURN_IF_ERROR(CopyOverrides(from, to, keys, options, report));
  HERD_RETURN_IF_ERROR(CopyRest(from, *target, report));
  HERD_ASSIGN_OR_RETURN(auto audit, from.ListAudit(kAll));
  std::reverse(audit.begin(), audit.end());
  HERD_RETURN_IF_ERROR(EtcdAuditLog(to, keys, options).Import(audit));
  report.audit = audit.size();
  HERD_ASSIGN_OR_RETURN(auto settings, ReadSettings(sqlite_path));
  for (const auto& [k, v] : settings) HERD_RETURN_IF_ERROR(target->PutSetting(k, v));
  report.settings = settings.size();
  return report;
}

absl::StatusOr<MigrationReport> MigrateSqliteDirToEtcd(const std::string& from_dir,
                                                       const StoreLocation& to, bool force) {
  const std::string path = absl::StrCat(from_dir, "/herd.db");
  struct stat st {};
  if (stat(path.c_str(), &st) != 0) {
    return absl::NotFoundError(absl::StrCat(
        "no store at ", path, ": --from takes the --data directory of the control plane to "
        "migrate (stop it first)"));
  }
  HERD_ASSIGN_OR_RETURN(std::unique_ptr<Store> from, OpenSqliteStore(path));
  HERD_ASSIGN_OR_RETURN(etcd::Options options, EtcdClientOptions(to));
  HERD_ASSIGN_OR_RETURN(std::unique_ptr<etcd::Client> client, etcd::Client::Connect(options));
  return MigrateToEtcd(*from, path, *client, to.etcd_prefix, force, to.etcd);
}

}  // namespace herd::controlplane
