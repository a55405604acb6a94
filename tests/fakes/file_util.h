// File reading for tests: the whole of a file as a string, "" when it is missing or
// unreadable (tests then fail on what they expected to find, which names the file better
// than an exception would). Binary-safe; reads /proc files too (they report size 0), as it
// reads until the end rather than by size. Code outside tests uses common/atomic_file.h's
// ReadFileToString, which reports why a read failed.
#pragma once

#include <string>

#include "common/atomic_file.h"

namespace herd::testing {

inline std::string ReadFile(const std::string& path) {
  auto content = ReadFileToString(path);
  return content.ok() ? *std::move(content) : std::string();
}

}  // namespace herd::testing
