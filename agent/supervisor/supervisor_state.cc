// Supervisor: the state file: restoring units (and stopping orphans) at start, saving
// what should run.
#include "agent/supervisor/supervisor.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/strip.h"
#include "agent/supervisor/app_spec.h"
#include "agent/supervisor/supervisor_internal.h"
#include "common/atomic_file.h"
#include "common/units.h"
#include "common/utf8.h"

namespace herd::agent {

using herd::v1::AppSpec;
using herd::v1::UnitState;
using herd::v1::UnitStatus;
using supervisor_internal::ReadStartTicks;
using supervisor_internal::UnixMs;

// ---------------------------------------------------------------------------------------
// Restore

absl::Status Supervisor::Restore() {
  // With a state file, after its orphans had their SIGTERM and kill_timeout.
  if (state_ == nullptr) KillPreviousRun();
  if (state_ != nullptr) {
    auto persisted = state_->Load();
    if (!persisted.ok()) return persisted.status();

    // Processes left behind by an agent that died without stopping them: stop them first,
    // or a resurrected unit would run twice (two servers on one port...).
    struct Stale {
      std::string name;
      pid_t pid;
      int pidfd;
      absl::Duration kill_timeout;
    };
    std::vector<Stale> stale;
    for (const auto& p : *persisted) {
      if (p.pid > 0 && p.start_ticks != 0 && ReadStartTicks(p.pid) == p.start_ticks) {
        int fd = OpenPidfd(p.pid);
        stale.push_back({p.spec.name(), p.pid, fd, absl::Milliseconds(p.spec.kill_timeout_ms())});
        log_->warn("event=orphan_found unit={} pid={} action=stopping", p.spec.name(), p.pid);
        KillGroup(p.pid, SIGTERM);
      }
    }
    for (auto& s : stale) {
      bool exited = false;
      if (s.pidfd >= 0) {
        pollfd pfd{s.pidfd, POLLIN, 0};
        exited = poll(&pfd, 1, static_cast<int>(absl::ToInt64Milliseconds(s.kill_timeout))) > 0;
      }
      if (!exited) {
        log_->warn("event=orphan_kill unit={} pid={}", s.name, s.pid);
        KillGroup(s.pid, SIGKILL);
        if (s.pidfd >= 0) {
          pollfd pfd{s.pidfd, POLLIN, 0};
          poll(&pfd, 1, 1000);
        }
      }
      if (s.pidfd >= 0) close(s.pidfd);
    }

    KillPreviousRun();
    for (const auto& p : *persisted) {
      if (units_.count(p.spec.name())) continue;
      Unit& u = AddUnit(p.spec);
      u.desired_running = p.desired_running;
      if (u.desired_running) {
        AddEvent(u, "resurrected", "started again after agent restart");
        Spawn(u);
      }
    }
    log_->info("event=restored units={} running={} orphans_stopped={}", persisted->size(),
               std::count_if(persisted->begin(), persisted->end(),
                             [](const PersistedUnit& p) { return p.desired_running; }),
               stale.size());
    Persist();
  }
  sample_timer_ = loop_.RunAfter(options_.sample_interval, [this] { Sample(); });
  return absl::OkStatus();
}

void Supervisor::Persist() {
  if (state_ == nullptr || shutting_down_ || persist_queued_) return;
  persist_queued_ = true;
  loop_.Post([this, alive = alive_] {
    if (*alive) PersistNow();
  });
}

void Supervisor::PersistNow() {
  persist_queued_ = false;
  if (state_ == nullptr || shutting_down_) return;
  std::vector<PersistedUnit> units;
  units.reserve(units_.size());
  for (const auto& [name, u] : units_) {
    units.push_back(PersistedUnit{u->spec, u->desired_running, u->pid, u->start_ticks});
  }
  state_->Save(SerializeState(units));
}

}  // namespace herd::agent
