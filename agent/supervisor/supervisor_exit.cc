// Supervisor: a unit's process exits (restart decisions), and the stops asked for.
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

namespace {

bool GroupAlive(pid_t pgid) { return pgid > 0 && kill(-pgid, 0) == 0; }

}  // namespace

// ---------------------------------------------------------------------------------------
// Exits

void Supervisor::OnExit(Unit& u) {
  const pid_t old_pid = u.pid;
  std::optional<ExitInfo> exit = Reap(u);
  if (!exit) return;  // spurious wakeup: still running
  const std::string how = DescribeExit(*exit);
  const bool group_left = GroupAlive(old_pid);
  NoteOomKills(u);
  if (u.intent != Intent::kNone) {
    if (u.kill_timer && !group_left) {
      loop_.CancelTimer(u.kill_timer);
      u.kill_timer = 0;
    }
    // The timer, if still armed, SIGKILLs what is left of the old group; it no longer
    // belongs to the unit's lifecycle.
    u.kill_timer = 0;
    StopLeftovers(u, /*asked=*/true);
    u.state = herd::v1::UNIT_STATE_STOPPED;
    AddEvent(u, "stopped", how);
    log_->info("event=stopped unit={} pid={} how=\"{}\"", u.spec.name(), old_pid, how);
    AfterStopped(u);
    return;
  }

  // An exit nobody asked for. Children the process left in its group go too, as PM2's
  // tree-kill does, or they would hold ports and files against the next start.
  if (group_left) {
    KillGroup(old_pid, SIGTERM);
    loop_.RunAfter(absl::Milliseconds(u.spec.kill_timeout_ms()),
                   [this, old_pid] { KillGroup(old_pid, SIGKILL); });
  }
  StopLeftovers(u, /*asked=*/false);
  AddEvent(u, "exited", absl::StrCat(how, " after ", FormatUptime(exit->uptime)));
  ApplyRestartPolicy(u, old_pid, how, *exit);
}

std::optional<ExitInfo> Supervisor::Reap(Unit& u) {
  int status = 0;
  pid_t r = waitpid(u.pid, &status, WNOHANG);
  if (r == 0) return std::nullopt;
  ForgetChild(u.pid);
  ExitInfo exit;
  if (r == u.pid && WIFEXITED(status)) {
    exit.exit_code = WEXITSTATUS(status);
  } else if (r == u.pid && WIFSIGNALED(status)) {
    exit.signal = WTERMSIG(status);
    exit.exit_code = -1;
  } else {
    exit.exit_code = -1;
  }
  exit.uptime = loop_.clock().Monotonic() - u.started_mono;
  loop_.UnwatchFd(u.pidfd_watch);
  u.pidfd_watch = 0;
  close(u.pidfd);
  u.pidfd = -1;
  u.pid = 0;
  u.start_ticks = 0;
  u.last_exit_code = exit.exit_code;
  u.last_signal = exit.signal;
  u.usage = herd::v1::ResourceUsage();
  u.sampled_pids.clear();
  if (hooks_ != nullptr && u.spec.channel() != herd::v1::CHANNEL_KIND_NONE) {
    hooks_->AfterExit(u.spec.name());
  }
  // What the process wrote just before exiting is still in the pipe.
  OnOutput(u, u.out);
  OnOutput(u, u.err);
  for (OutputStream* s : {&u.out, &u.err}) {
    if (!s->partial.empty()) EmitLines(u, *s, "", /*flush_partial=*/true);
  }
  return exit;
}

void Supervisor::ApplyRestartPolicy(Unit& u, pid_t old_pid, const std::string& how,
                                    const ExitInfo& exit) {
  RestartDecision d = u.policy.OnExit(exit);
  switch (d.action) {
    case RestartDecision::Action::kRestart:
      ++u.restarts;
      log_->info("event=exited unit={} pid={} how=\"{}\" uptime_ms={} restart_in_ms={}",
                 u.spec.name(), old_pid, how, absl::ToInt64Milliseconds(exit.uptime),
                 absl::ToInt64Milliseconds(d.delay));
      if (d.delay <= absl::ZeroDuration()) {
        Spawn(u);
        return;  // a cron schedule stays armed for the new process
      }
      ScheduleRestart(u, how, d.delay);
      break;
    case RestartDecision::Action::kStop:
      u.state = herd::v1::UNIT_STATE_STOPPED;
      u.reason = d.reason;
      u.desired_running = false;
      AddEvent(u, "stopped", d.reason);
      log_->info("event=exited unit={} pid={} how=\"{}\" action=stop reason=\"{}\"",
                 u.spec.name(), old_pid, how, d.reason);
      Persist();
      break;
    case RestartDecision::Action::kErrored:
      u.state = herd::v1::UNIT_STATE_ERRORED;
      u.reason = d.reason;
      AddEvent(u, "errored", d.reason);
      log_->error("event=errored unit={} pid={} how=\"{}\" reason=\"{}\"", u.spec.name(),
                  old_pid, how, d.reason);
      break;
  }
  if (u.cron_timer && u.state != herd::v1::UNIT_STATE_WAITING_RESTART) {
    loop_.CancelTimer(u.cron_timer);
    u.cron_timer = 0;
  }
}

void Supervisor::ScheduleRestart(Unit& u, const std::string& how, absl::Duration delay) {
  u.state = herd::v1::UNIT_STATE_WAITING_RESTART;
  u.reason = absl::StrCat(how, "; restarting in ", absl::FormatDuration(delay));
  u.next_restart_wall = loop_.clock().Now() + delay;
  AddEvent(u, "restart-scheduled", u.reason);
  const std::string name = u.spec.name();
  u.restart_timer = loop_.RunAfter(delay, [this, name] {
    auto it = units_.find(name);
    if (it == units_.end()) return;
    it->second->restart_timer = 0;
    Spawn(*it->second);
  });
}

// ---------------------------------------------------------------------------------------
// Stopping

void Supervisor::KillGroup(pid_t pgid, int sig) {
  if (pgid <= 0) return;
  // The group, and the process itself in case it left its group.
  kill(-pgid, sig);
  kill(pgid, sig);
}

void Supervisor::RequestStop(Unit& u, Intent intent, std::function<void()> on_stopped) {
  if (u.restart_timer) {
    loop_.CancelTimer(u.restart_timer);
    u.restart_timer = 0;
  }
  if (intent != Intent::kRestart && u.cron_timer) {
    loop_.CancelTimer(u.cron_timer);
    u.cron_timer = 0;
  }
  if (on_stopped) u.on_stopped.push_back(std::move(on_stopped));
  // The strongest wish wins: delete > stop > restart.
  u.intent = std::max(u.intent, intent);
  if (u.pid == 0) {
    if (u.intent != Intent::kRestart) {
      u.state = herd::v1::UNIT_STATE_STOPPED;
    }
    AfterStopped(u);
    return;
  }
  if (u.state == herd::v1::UNIT_STATE_STOPPING) return;  // already on its way down
  u.state = herd::v1::UNIT_STATE_STOPPING;
  AddEvent(u, "stopping", absl::StrCat("SIGTERM to process group ", u.pid,
                                       u.cgroup.empty() ? "" : " and to its cgroup"));
  KillUnit(u, u.pid, SIGTERM);
  const std::string name = u.spec.name();
  const pid_t pid = u.pid;
  u.kill_timer = loop_.RunAfter(absl::Milliseconds(u.spec.kill_timeout_ms()),
                                [this, name, pid, cg = u.cgroup] {
    auto it = units_.find(name);
    if (it != units_.end() && it->second->pid == pid) {
      it->second->kill_timer = 0;
      AddEvent(*it->second, "killed",
               absl::StrCat("still running ", it->second->spec.kill_timeout_ms(),
                            " ms after SIGTERM (kill_timeout): SIGKILL"));
      log_->warn("event=kill_timeout unit={} pid={} action=SIGKILL", name, pid);
    }
    KillGroup(pid, SIGKILL);
    if (cgroups_ != nullptr && !cg.empty()) cgroups_->Signal(cg, SIGKILL);
  });
}

void Supervisor::AfterStopped(Unit& u) {
  Intent intent = u.intent;
  u.intent = Intent::kNone;
  std::vector<std::function<void()>> callbacks;
  callbacks.swap(u.on_stopped);
  const std::string name = u.spec.name();
  if (intent == Intent::kRestart && !shutting_down_) {
    ++u.restarts;
    u.policy.Reset();
    Spawn(u);
  }
  for (auto& cb : callbacks) cb();  // may look the unit up; it still exists
  if (intent == Intent::kDelete) RemoveUnit(name);
}

void Supervisor::RemoveUnit(const std::string& name) {
  auto it = units_.find(name);
  if (it == units_.end()) return;
  Unit& u = *it->second;
  for (auto* t : {&u.restart_timer, &u.kill_timer, &u.cron_timer}) {
    if (*t) loop_.CancelTimer(*t);
  }
  CloseOutput(u);
  units_.erase(it);
  for (auto f = followers_.begin(); f != followers_.end();) {
    f = f->second.unit == name ? followers_.erase(f) : std::next(f);
  }
  log_->info("event=deleted unit={}", name);
  Persist();
}

// ---------------------------------------------------------------------------------------
// Cron

void Supervisor::ScheduleCron(Unit& u) {
  if (!u.cron) return;
  absl::Time now = loop_.clock().Now();
  // From the previous target when the timer fired a little early (timers run on the
  // monotonic clock), so one cron instant never restarts twice.
  auto next = u.cron->Next(std::max(now, u.cron_last), options_.time_zone);
  if (!next) return;
  u.cron_last = *next;
  const std::string name = u.spec.name();
  u.cron_timer = loop_.RunAfter(*next - now, [this, name] {
    auto it = units_.find(name);
    if (it == units_.end()) return;
    Unit& unit = *it->second;
    unit.cron_timer = 0;
    if (unit.pid != 0 && unit.state == herd::v1::UNIT_STATE_ONLINE) {
      AddEvent(unit, "cron-restart", absl::StrCat("cron_restart \"", unit.spec.cron_restart(), "\""));
      log_->info("event=cron_restart unit={}", name);
      RequestStop(unit, Intent::kRestart, nullptr);
    }
    if (unit.desired_running) ScheduleCron(unit);
  });
}

}  // namespace herd::agent
