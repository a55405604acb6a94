// DevModeWatcher: restarts development-mode modules when their files change, PM2's `watch`.
//
// Each module installed from a directory has its tree watched (DirWatcher); a burst of
// changes (an editor's save, a `git checkout`) gives one call of `on_settled` once the tree
// has been quiet for `debounce`, measured on the Scheduler (the agent's EventLoop;
// FakeScheduler in tests). What a settled change does (reload package.json, restart the
// unit) is the registry's. Threading: the loop thread only.
#pragma once

#include <functional>
#include <map>
#include <memory>
#include <string>

#include "absl/time/time.h"
#include "agent/modules/dir_watcher.h"
#include "common/logging.h"
#include "common/scheduler.h"

namespace herd::agent {

class DevModeWatcher {
 public:
  using OnSettled = std::function<void(const std::string& module)>;

  DevModeWatcher(DirWatcher& watcher, Scheduler& scheduler, absl::Duration debounce,
                 OnSettled on_settled);
  ~DevModeWatcher();
  DevModeWatcher(const DevModeWatcher&) = delete;
  DevModeWatcher& operator=(const DevModeWatcher&) = delete;

  // Watches `dir` for `module` (replacing what was watched for it). A tree that cannot be
  // watched is logged; the module runs unwatched.
  void Start(const std::string& module, const std::string& dir);
  // Stops watching, and drops a restart not yet due.
  void Stop(const std::string& module);
  bool watching(const std::string& module) const { return entries_.count(module) > 0; }

 private:
  struct Entry {
    DirWatcher::Handle watch = 0;
    Scheduler::Handle debounce = 0;
  };
  void OnChange(const std::string& module);

  DirWatcher& watcher_;
  Scheduler& scheduler_;
  const absl::Duration debounce_;
  const OnSettled on_settled_;
  std::shared_ptr<spdlog::logger> log_;
  std::map<std::string, Entry> entries_;
};

}  // namespace herd::agent
