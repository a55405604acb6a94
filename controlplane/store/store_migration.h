// `controlplane migrate --from DIR --to etcd://...`: copies a single node's SQLite store into
// an etcd prefix, so that the fleet can move to replicas without agents registering again:
// hosts (their records and credentials), config overrides with the config revision as it was
// (the versions agents acked stay valid), API tokens, rollouts (oldest first, so listing order
// stays), the audit log (oldest first, no retention applied) and settings (the join token's
// hash).
#pragma once

#include <cstddef>
#include <string>

#include "absl/status/statusor.h"
#include "controlplane/etcd/etcd_client.h"
#include "controlplane/store/etcd_store.h"
#include "controlplane/store/store.h"
#include "controlplane/store/store_location.h"

namespace herd::controlplane {

struct MigrationReport {
  size_t hosts = 0, overrides = 0, tokens = 0, rollouts = 0, audit = 0, settings = 0;
  uint64_t config_revision = 0;
  // Keys deleted first (--force on a prefix that held a store).
  int64_t keys_replaced = 0;
};

// "12 hosts, 3 overrides (config revision 7), ..." for the command's output.
std::string DescribeMigration(const MigrationReport& report);

// Copies `from` (and the settings of the SQLite file `sqlite_path`) under `prefix`. A prefix
// that already holds store keys is refused (FAILED_PRECONDITION naming what it holds) unless
// `force`: then those keys are deleted first.
absl::StatusOr<MigrationReport> MigrateToEtcd(Store& from, const std::string& sqlite_path,
                                              etcd::Client& to, const std::string& prefix,
                                              bool force, const EtcdStoreOptions& options = {});

// The command: the SQLite store of `from_dir` (which must exist; it is only read) into the
// etcd store `to` names (its url, prefix, TLS and auth flags).
absl::StatusOr<MigrationReport> MigrateSqliteDirToEtcd(const std::string& from_dir,
                                                       const StoreLocation& to, bool force);

}  // namespace herd::controlplane
