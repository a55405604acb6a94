// DirWatcher: tells when files change in a directory tree. Development-mode modules are
// restarted when their source changes (DevModeWatcher debounces); this is the seam between
// that and the kernel's inotify (InotifyDirWatcher), faked in tests by FakeDirWatcher
// (tests/fakes/fake_dir_watcher.h), which fires changes on demand.
#pragma once

#include <cstdint>
#include <functional>
#include <string>

#include "absl/status/statusor.h"

namespace herd::agent {

class DirWatcher {
 public:
  using Handle = uint64_t;  // 0 is never a valid handle
  virtual ~DirWatcher() = default;
  // Watches `dir` and the directories below it, new ones included, except node_modules/,
  // logs/ and hidden ones; `on_change` runs (on the loop thread) when a file there is
  // written, created, removed or renamed, except editor backups (~, .swp), logs (.log) and
  // hidden files. Changes that arrive together may make one call.
  virtual absl::StatusOr<Handle> Watch(const std::string& dir, std::function<void()> on_change) = 0;
  // No call after this returns. 0, or a handle already unwatched, is a no-op.
  virtual void Unwatch(Handle handle) = 0;
};

}  // namespace herd::agent
