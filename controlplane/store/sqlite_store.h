// Details of the SQLite backend that tests and tools may need; the store itself is opened
// with OpenSqliteStore (store.h).
#pragma once

#include <cstdint>

namespace herd::controlplane {

// `PRAGMA application_id` of every Herd control plane store ("HERD").
inline constexpr int32_t kSqliteApplicationId = 0x48455244;
// The schema this build writes (meta.schema_version); newer stores are refused.
inline constexpr int64_t kSqliteSchemaVersion = 1;

}  // namespace herd::controlplane
