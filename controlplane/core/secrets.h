// Secrets: random tokens and their hashes. Only hashes are stored; comparisons of hashes are
// constant-time.
#pragma once

#include <string>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"

namespace herd::controlplane {

// A new random secret: `prefix` + 32 random bytes as lowercase hex (e.g. "hj_3f9a…").
absl::StatusOr<std::string> NewSecret(absl::string_view prefix);
// SHA-256 of `data` as lowercase hex.
std::string Sha256Hex(absl::string_view data);
// Equality that takes the same time wherever the first difference is.
bool ConstantTimeEquals(absl::string_view a, absl::string_view b);

}  // namespace herd::controlplane
