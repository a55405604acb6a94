// Whole-file reads and crash-safe writes for small state files (state.json, caches): a write
// goes to a temporary file in the same directory, is fsync'ed, then renamed over the target,
// so a crash or a full disk leaves either the old or the new content, never a torn file.
#pragma once

#include <string>
#include "absl/strings/string_view.h"

#include "absl/status/status.h"
#include "absl/status/statusor.h"

namespace herd {

absl::StatusOr<std::string> ReadFileToString(const std::string& path);

// mode applies to a newly created file.
absl::Status WriteFileAtomically(const std::string& path, absl::string_view content,
                                 int mode = 0644);

}  // namespace herd
