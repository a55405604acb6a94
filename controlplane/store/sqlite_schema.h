// The SQLite store's schema and the checks made when a file is opened: that it is a Herd
// store (PRAGMA application_id), which schema version it holds, and creating version 1 in an
// empty file. Migrations to later versions go in CheckSchemaVersion, inside the opening
// transaction. Internal to controlplane/store.
#pragma once

#include <cstdint>
#include <string>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "controlplane/store/sqlite_conn.h"

namespace herd::controlplane::sqlite {

// Keys of the meta table.
inline constexpr absl::string_view kSchemaVersionKey = "schema_version";
inline constexpr absl::string_view kConfigRevisionKey = "config_revision";

// Refuses files that are not ours (FailedPrecondition naming the file and the way out);
// true when the database is still empty.
absl::StatusOr<bool> CheckIdentity(Conn& conn);

// Creates schema version 1, the application id and the meta rows, in the caller's
// transaction.
absl::Status CreateSchema(Conn& conn);

// Refuses a store written by a newer controlplane or without a valid version.
absl::Status CheckSchemaVersion(Conn& conn);

}  // namespace herd::controlplane::sqlite
