// A fresh SQLite store whose join token is set (kept as its hash, as the control plane keeps
// it): what the tests' hubs register hosts against.
#pragma once

#include <memory>
#include <string>

#include "absl/status/statusor.h"
#include "controlplane/core/secrets.h"
#include "controlplane/store/store.h"

namespace herd::testing {

inline absl::StatusOr<std::unique_ptr<controlplane::Store>> OpenStoreWithJoinToken(
    const std::string& path, const std::string& join_token) {
  auto store = controlplane::OpenSqliteStore(path);
  if (!store.ok()) return store.status();
  auto set = (*store)->PutSetting("join_token_sha256", controlplane::Sha256Hex(join_token));
  if (!set.ok()) return set;
  return store;
}

}  // namespace herd::testing
