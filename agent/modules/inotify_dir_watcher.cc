#include "agent/modules/inotify_dir_watcher.h"

#include <errno.h>
#include <string.h>
#include <sys/inotify.h>
#include <unistd.h>

#include <filesystem>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"

namespace herd::agent {

namespace fs = std::filesystem;

bool IgnoredInWatch(absl::string_view name) {
  return name.empty() || name[0] == '.' || name == "node_modules" || name == "logs" ||
         absl::EndsWith(name, "~") || absl::EndsWith(name, ".swp") ||
         absl::EndsWith(name, ".log");
}

InotifyDirWatcher::InotifyDirWatcher(EventLoop& loop)
    : loop_(loop), log_(herd::Logger("modules")) {}

InotifyDirWatcher::~InotifyDirWatcher() {
  for (auto& [handle, tree] : trees_) Close(*tree);
}

absl::StatusOr<DirWatcher::Handle> InotifyDirWatcher::Watch(const std::string& dir,
                                                            std::function<void()> on_change) {
  auto tree = std::make_unique<Tree>();
  tree->fd = inotify_init1(IN_NONBLOCK | IN_CLOEXEC);
  if (tree->fd < 0) return absl::InternalError(absl::StrCat("inotify_init1: ", strerror(errno)));
  tree->on_change = std::move(on_change);
  AddTree(*tree, dir);
  const Handle handle = next_++;
  auto w = loop_.WatchFd(tree->fd, EPOLLIN, [this, handle](uint32_t) { OnReadable(handle); });
  if (w.ok()) tree->watch = *w;
  log_->debug("event=watch_tree dir={} dirs={}", dir, tree->dirs.size());
  trees_[handle] = std::move(tree);
  return handle;
}

void InotifyDirWatcher::Unwatch(Handle handle) {
  auto it = trees_.find(handle);
  if (it == trees_.end()) return;
  Close(*it->second);
  trees_.erase(it);
}

void InotifyDirWatcher::Close(Tree& tree) {
  if (tree.watch) loop_.UnwatchFd(tree.watch);
  tree.watch = 0;
  if (tree.fd >= 0) close(tree.fd);
  tree.fd = -1;
  tree.dirs.clear();
}

void InotifyDirWatcher::AddTree(Tree& tree, const std::string& dir) {
  if (tree.dirs.size() >= 4096) return;
  int wd = inotify_add_watch(tree.fd, dir.c_str(),
                             IN_CLOSE_WRITE | IN_CREATE | IN_DELETE | IN_MOVED_FROM |
                                 IN_MOVED_TO | IN_ONLYDIR);
  if (wd < 0) return;
  tree.dirs[wd] = dir;
  std::error_code ec;
  for (const auto& e : fs::directory_iterator(dir, ec)) {
    if (e.is_directory(ec) && !e.is_symlink(ec) &&
        !IgnoredInWatch(e.path().filename().string())) {
      AddTree(tree, e.path().string());
    }
  }
}

void InotifyDirWatcher::OnReadable(Handle handle) {
  auto it = trees_.find(handle);
  if (it == trees_.end()) return;
  Tree& tree = *it->second;
  alignas(inotify_event) char buf[16384];
  bool relevant = false;
  while (true) {
    ssize_t n = read(tree.fd, buf, sizeof buf);
    if (n <= 0) break;
    for (char* p = buf; p < buf + n;) {
      auto* ev = reinterpret_cast<inotify_event*>(p);
      p += sizeof(inotify_event) + ev->len;
      std::string file = ev->len > 0 ? std::string(ev->name) : "";
      if (IgnoredInWatch(file)) continue;
      relevant = true;
      if ((ev->mask & IN_ISDIR) && (ev->mask & (IN_CREATE | IN_MOVED_TO))) {
        auto dir = tree.dirs.find(ev->wd);
        if (dir != tree.dirs.end()) AddTree(tree, dir->second + "/" + file);
      }
    }
  }
  // Copied: the callback may unwatch this tree.
  if (relevant) std::function<void()>(tree.on_change)();
}

}  // namespace herd::agent
