// FakeDirWatcher: a DirWatcher (agent/modules/dir_watcher.h) whose changes the test fires:
//
//   FakeDirWatcher watcher;
//   DevModeWatcher dev(watcher, scheduler, absl::Milliseconds(500), on_settled);
//   dev.Start("m", "/srv/m");
//   watcher.Fire("/srv/m");   // what inotify reports when a file there changes
//
// Callbacks run on the test's thread, inside Fire. Not thread-safe (the loop thread's seam).
#pragma once

#include <functional>
#include <map>
#include <string>
#include <utility>

#include "absl/status/statusor.h"
#include "agent/modules/dir_watcher.h"

namespace herd::testing {

class FakeDirWatcher final : public agent::DirWatcher {
 public:
  absl::StatusOr<Handle> Watch(const std::string& dir, std::function<void()> on_change) override {
    if (!fail_next_.ok()) return std::exchange(fail_next_, absl::OkStatus());
    const Handle h = next_++;
    watches_[h] = {dir, std::move(on_change)};
    return h;
  }
  void Unwatch(Handle handle) override { watches_.erase(handle); }

  // A change in the tree watched at `dir`: calls its callbacks; returns how many.
  size_t Fire(const std::string& dir) {
    std::vector<std::function<void()>> due;
    for (const auto& [h, w] : watches_) {
      if (w.first == dir) due.push_back(w.second);
    }
    for (auto& f : due) f();
    return due.size();
  }
  // The next Watch fails with `s` (inotify out of instances...).
  void FailNextWatch(absl::Status s) { fail_next_ = std::move(s); }
  size_t watching() const { return watches_.size(); }

 private:
  Handle next_ = 1;
  std::map<Handle, std::pair<std::string, std::function<void()>>> watches_;
  absl::Status fail_next_;
};

}  // namespace herd::testing
