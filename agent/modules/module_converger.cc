#include "agent/modules/module_converger.h"

#include <algorithm>

#include "absl/strings/str_cat.h"

namespace herd::agent {

ModuleConverger::ModuleConverger(Scheduler& scheduler, ConvergerModules& modules,
                                 Options options)
    : scheduler_(scheduler),
      modules_(modules),
      options_(options),
      log_(herd::Logger("converger")) {
  LoadKept();
}

ModuleConverger::~ModuleConverger() {
  *alive_ = false;
  if (retry_timer_) scheduler_.Cancel(retry_timer_);
}

absl::Duration ModuleConverger::Backoff(uint32_t attempts) const {
  absl::Duration d = options_.first_retry;
  for (uint32_t i = 1; i < attempts && d < options_.max_retry; ++i) d *= 2;
  return std::min(d, options_.max_retry);
}

void ModuleConverger::SetDesired(
    const google::protobuf::Map<std::string, herd::v1::DesiredModule>& desired) {
  std::map<std::string, const herd::v1::DesiredModule*> sorted;
  for (const auto& [name, want] : desired) sorted[name] = &want;
  if (sorted.size() > kMaxDesired) {
    log_->warn("event=desired_modules_cut wanted={} kept={}", sorted.size(), kMaxDesired);
    sorted.erase(std::next(sorted.begin(), kMaxDesired), sorted.end());
  }
  std::map<std::string, Item> next;
  for (const auto& [name, want_ptr] : sorted) {
    const herd::v1::DesiredModule& want = *want_ptr;
    Item item;
    auto old = items_.find(name);
    const bool same = old != items_.end() && old->second.want.source() == want.source() &&
                      old->second.want.version() == want.version();
    if (same) item = old->second;  // keeps its state, attempts and backoff
    item.want = want;
    item.status.set_name(name);
    item.status.set_desired_version(want.version());
    item.status.set_source(want.source());
    if (!same) SetState(item, "pending");
    next[name] = std::move(item);
    removing_.erase(name);
  }
  for (const std::string& name : modules_.Managed()) {
    if (next.count(name) || removing_.count(name)) continue;
    Item item;
    item.status.set_name(name);
    SetState(item, "removing");
    removing_[name] = std::move(item);
  }
  if (next.size() != items_.size() ||
      !std::equal(next.begin(), next.end(), items_.begin(), [](const auto& a, const auto& b) {
        return a.first == b.first && a.second.want.SerializeAsString() ==
                                         b.second.want.SerializeAsString();
      })) {
    log_->info("event=desired_modules count={} removing={}", next.size(), removing_.size());
  }
  items_ = std::move(next);
  Changed();
  Next();
}

std::vector<herd::v1::DeploymentStatus> ModuleConverger::Status() const {
  std::vector<herd::v1::DeploymentStatus> out;
  for (const auto& [name, item] : items_) out.push_back(item.status);
  for (const auto& [name, item] : removing_) out.push_back(item.status);
  return out;
}

bool ModuleConverger::Converged(const std::string& name,
                                const herd::v1::DesiredModule& want) const {
  auto m = modules_.Installed(name);
  return m && !m->installing && (want.version().empty() || m->version == want.version());
}

void ModuleConverger::SetState(Item& item, const std::string& state, const std::string& error) {
  if (item.status.state() == state && item.status.error() == error) return;
  item.status.set_state(state);
  item.status.set_error(error);
  item.status.set_since_unix_ms(absl::ToUnixMillis(scheduler_.clock().Now()));
}

void ModuleConverger::Changed() {
  if (on_change_) on_change_();
}

void ModuleConverger::Next() {
  if (busy_) return;
  const absl::Time now = Now();
  absl::Time wake = absl::InfiniteFuture();
  bool changed = false;
  for (auto& [name, item] : items_) {
    if (Converged(name, item.want)) {
      if (item.status.state() != "converged") {
        modules_.SetManaged(name, true);  // a hand-installed copy at the wanted version
        item.status.set_attempts(0);
        SetState(item, "converged");
        changed = true;
      }
      continue;
    }
    if (item.retry_at > now) {
      wake = std::min(wake, item.retry_at);
      continue;
    }
    std::optional<std::string> source = InstallSource(name, item);
    if (!source) {
      if (busy_) return;  // fetching it
      changed = true;     // it failed: its retry is planned
      wake = std::min(wake, item.retry_at);
      continue;
    }
    busy_ = true;
    SetState(item, "installing");
    Changed();
    log_->info("event=deploy_install module={} source=\"{}\" version={}", name,
               item.want.source(), item.want.version().empty() ? "any" : item.want.version());
    modules_.Install(*source,
                     [this, alive = alive_, name, want = item.want](
                         absl::StatusOr<herd::v1::ModuleInfo> info) {
                       if (*alive) Installed(name, want, info);
                     });
    return;
  }
  for (auto& [name, item] : removing_) {
    if (item.retry_at > now) {
      wake = std::min(wake, item.retry_at);
      continue;
    }
    busy_ = true;
    log_->info("event=deploy_uninstall module={} reason=no_longer_wanted", name);
    modules_.Uninstall(name, [this, alive = alive_, name](absl::Status s) {
      if (*alive) Removed(name, s);
    });
    return;
  }
  if (changed) Changed();
  if (retry_timer_) scheduler_.Cancel(retry_timer_);
  retry_timer_ = 0;
  if (wake != absl::InfiniteFuture()) {
    retry_timer_ = scheduler_.RunAfter(std::max(wake - now, absl::Milliseconds(10)),
                                  [this, alive = alive_] {
                                    if (!*alive) return;
                                    retry_timer_ = 0;
                                    Next();
                                  });
  }
}

void ModuleConverger::Installed(const std::string& name, const herd::v1::DesiredModule& asked,
                                const absl::StatusOr<herd::v1::ModuleInfo>& info) {
  busy_ = false;
  if (auto it = items_.find(name); it != items_.end() &&
                                   (it->second.want.source() != asked.source() ||
                                    it->second.want.version() != asked.version())) {
    // Wanted otherwise meanwhile: what this install gave is no failure; the next pass
    // installs what is wanted now.
    if (info.ok() && info->name() == name) modules_.SetManaged(name, true);
    return Next();
  }
  auto it = items_.find(name);
  if (it == items_.end()) {
    // No longer wanted meanwhile: it is removed on the next pass if it got installed.
    if (info.ok() && info->name() == name) {
      modules_.SetManaged(name, true);
      Item item;
      item.status.set_name(name);
      SetState(item, "removing");
      removing_[name] = std::move(item);
    }
    return Next();
  }
  Item& item = it->second;
  if (!info.ok()) {
    Failed(item, std::string(info.status().message()));
  } else if (info->name() != name) {
    // The source holds another module: it stays (installed by hand, in effect), unmanaged.
    Failed(item, absl::StrCat(item.want.source(), " holds the module \"", info->name(),
                              "\", not \"", name, "\": deploy it under its own name"));
  } else if (!item.want.version().empty() && info->version() != item.want.version()) {
    modules_.SetManaged(name, true);
    Failed(item, absl::StrCat(item.want.source(), " gave version ", info->version(),
                              ", not the wanted ", item.want.version()));
  } else {
    modules_.SetManaged(name, true);
    item.status.set_attempts(0);
    item.retry_at = absl::InfinitePast();
    SetState(item, "converged");
    log_->info("event=deploy_converged module={} version={}", name, info->version());
    if (std::string digest = ArtifactDigest(asked.source()); !digest.empty()) {
      Remember(name, digest);
    }
  }
  Changed();
  Next();
}

void ModuleConverger::Removed(const std::string& name, const absl::Status& s) {
  busy_ = false;
  auto it = removing_.find(name);
  if (it != removing_.end()) {
    if (s.ok() || absl::IsNotFound(s)) {
      removing_.erase(it);
      Forget(name);
    } else {
      Failed(it->second, std::string(s.message()));
    }
  }
  Changed();
  Next();
}

void ModuleConverger::Failed(Item& item, const std::string& error, absl::Duration wait) {
  item.status.set_attempts(item.status.attempts() + 1);
  if (wait == absl::ZeroDuration()) wait = Backoff(item.status.attempts());
  item.retry_at = Now() + wait;
  SetState(item, "failed", error);
  log_->warn("event=deploy_failed module={} attempts={} retry_in_s={} error=\"{}\"",
             item.status.name(), item.status.attempts(), absl::ToInt64Seconds(wait), error);
}

}  // namespace herd::agent
