// InotifyDirWatcher: the DirWatcher on inotify, read on the agent's EventLoop. One inotify
// instance per watched tree, a watch per directory (at most 4096 per tree; directories made
// later are added as they appear). Threading: the loop thread only.
#pragma once

#include <map>
#include <memory>
#include <string>

#include "agent/loop/event_loop.h"
#include "absl/strings/string_view.h"
#include "agent/modules/dir_watcher.h"
#include "common/logging.h"

namespace herd::agent {

class InotifyDirWatcher final : public DirWatcher {
 public:
  explicit InotifyDirWatcher(EventLoop& loop);
  ~InotifyDirWatcher() override;
  InotifyDirWatcher(const InotifyDirWatcher&) = delete;
  InotifyDirWatcher& operator=(const InotifyDirWatcher&) = delete;

  absl::StatusOr<Handle> Watch(const std::string& dir, std::function<void()> on_change) override;
  void Unwatch(Handle handle) override;

 private:
  struct Tree {
    int fd = -1;
    EventLoop::Handle watch = 0;
    std::map<int, std::string> dirs;  // inotify watch descriptor → directory
    std::function<void()> on_change;
  };
  void AddTree(Tree& tree, const std::string& dir);
  void OnReadable(Handle handle);
  void Close(Tree& tree);

  EventLoop& loop_;
  std::shared_ptr<spdlog::logger> log_;
  Handle next_ = 1;
  std::map<Handle, std::unique_ptr<Tree>> trees_;
};

// Whether a change to `name` (a file or directory name) is ignored.
bool IgnoredInWatch(absl::string_view name);

}  // namespace herd::agent
