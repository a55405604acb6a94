// ScopedTempDir: a fresh directory for one test (or one fixture), removed with everything in
// it when the object goes. Created under $TMPDIR (/tmp when unset), named
// "<prefix>-XXXXXX" so a leftover (a test killed mid-way) says which test left it.
//
//   ScopedTempDir dir("herd-store");
//   const std::string db = dir.Path("controlplane.db");
//   dir.WriteFile("conf/app.json", R"({"name": "web"})");   // parents created
//
// A directory that cannot be made is a test failure (ADD_FAILURE, with the reason) and
// path() is then empty; the destructor removes nothing in that case. Header-only; not
// thread-safe (one owner). Not named TempDir: inside namespace herd, `testing::TempDir()`
// must keep meaning gtest's function.
#pragma once

#include <stdlib.h>

#include <cerrno>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <string>
#include <system_error>

#include "absl/strings/str_cat.h"
#include "absl/strings/string_view.h"
#include "gtest/gtest.h"

namespace herd::testing {

class ScopedTempDir {
 public:
  explicit ScopedTempDir(absl::string_view prefix = "herd-test") {
    const char* base = getenv("TMPDIR");
    std::string tmpl =
        absl::StrCat(base != nullptr && *base != '\0' ? base : "/tmp", "/", prefix, "-XXXXXX");
    if (mkdtemp(tmpl.data()) == nullptr) {
      ADD_FAILURE() << "cannot create a temporary directory " << tmpl << ": "
                    << std::strerror(errno) << " (set TMPDIR to a writable directory)";
      return;
    }
    path_ = std::move(tmpl);
  }
  ~ScopedTempDir() {
    std::error_code ec;
    if (!path_.empty()) std::filesystem::remove_all(path_, ec);
  }
  ScopedTempDir(const ScopedTempDir&) = delete;
  ScopedTempDir& operator=(const ScopedTempDir&) = delete;

  // The directory, without a trailing slash.
  const std::string& path() const { return path_; }
  // path()/relative.
  std::string Path(absl::string_view relative) const { return absl::StrCat(path_, "/", relative); }

  // Writes `content` to path()/relative, creating its parent directories, and returns the
  // file's path. An existing file is truncated and rewritten in place (same inode, as the
  // kernel's /proc files change under an open descriptor), not replaced. A file that cannot
  // be written is a test failure.
  std::string WriteFile(absl::string_view relative, absl::string_view content) const {
    const std::string path = Path(relative);
    std::error_code ec;
    std::filesystem::create_directories(std::filesystem::path(path).parent_path(), ec);
    std::ofstream out(path, std::ios::binary | std::ios::trunc);
    out.write(content.data(), static_cast<std::streamsize>(content.size()));
    out.close();
    if (!out) ADD_FAILURE() << "cannot write " << path;
    return path;
  }

 private:
  std::string path_;
};

}  // namespace herd::testing
