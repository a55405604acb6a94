#include "agent/modules/dev_mode_watcher.h"

namespace herd::agent {

DevModeWatcher::DevModeWatcher(DirWatcher& watcher, Scheduler& scheduler,
                               absl::Duration debounce, OnSettled on_settled)
    : watcher_(watcher),
      scheduler_(scheduler),
      debounce_(debounce),
      on_settled_(std::move(on_settled)),
      log_(herd::Logger("modules")) {}

DevModeWatcher::~DevModeWatcher() {
  for (auto& [module, e] : entries_) {
    if (e.debounce) scheduler_.Cancel(e.debounce);
    watcher_.Unwatch(e.watch);
  }
}

void DevModeWatcher::Start(const std::string& module, const std::string& dir) {
  Stop(module);
  auto watch = watcher_.Watch(dir, [this, module] { OnChange(module); });
  if (!watch.ok()) {
    log_->error("event=inotify_failed module={} error=\"{}\"", module, watch.status().message());
    return;
  }
  entries_[module].watch = *watch;
  log_->info("event=watching module={} dir={}", module, dir);
}

void DevModeWatcher::Stop(const std::string& module) {
  auto it = entries_.find(module);
  if (it == entries_.end()) return;
  if (it->second.debounce) scheduler_.Cancel(it->second.debounce);
  watcher_.Unwatch(it->second.watch);
  entries_.erase(it);
}

void DevModeWatcher::OnChange(const std::string& module) {
  auto it = entries_.find(module);
  if (it == entries_.end()) return;
  // Each change moves the restart back: one restart once the tree is quiet.
  if (it->second.debounce) scheduler_.Cancel(it->second.debounce);
  it->second.debounce = scheduler_.RunAfter(debounce_, [this, module] {
    auto it = entries_.find(module);
    if (it == entries_.end()) return;
    it->second.debounce = 0;
    on_settled_(module);
  });
}

}  // namespace herd::agent
