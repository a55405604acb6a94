// Supervisor: units, their spawns and the operations on them (start, stop, restart, delete),
// and what they report. Exits and stops are in supervisor_exit.cc, output and followers in
// supervisor_output.cc, sampling in supervisor_sampling.cc, restore and persistence in
// supervisor_state.cc.
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

Supervisor::Supervisor(EventLoop& loop, Spawner& spawner, ProcSampler& sampler, LogWriter& logs,
                       StateFile* state, SupervisorOptions options)
    : loop_(loop),
      spawner_(spawner),
      sampler_(sampler),
      logs_(logs),
      state_(state),
      options_(std::move(options)),
      log_(herd::Logger("supervisor")) {}

Supervisor::~Supervisor() {
  *alive_ = false;
  if (sample_timer_) loop_.CancelTimer(sample_timer_);
  for (auto& [name, u] : units_) {
    for (auto* t : {&u->restart_timer, &u->kill_timer, &u->cron_timer}) {
      if (*t) loop_.CancelTimer(*t);
    }
    if (u->pidfd_watch) loop_.UnwatchFd(u->pidfd_watch);
    if (u->pidfd >= 0) close(u->pidfd);
    CloseOutput(*u);
  }
}

// ---------------------------------------------------------------------------------------
// Units

Supervisor::Unit& Supervisor::AddUnit(const AppSpec& spec) {
  auto owned = std::make_unique<Unit>(spec);
  Unit& u = *owned;
  units_[spec.name()] = std::move(owned);
  OpenOutput(u);
  ConfigureUnit(u);
  return u;
}

void Supervisor::ConfigureUnit(Unit& u) {
  const AppSpec& spec = u.spec;
  u.policy = RestartPolicy(spec);
  // A schedule armed for the previous spec must not fire; Spawn arms the new one.
  if (u.cron_timer) {
    loop_.CancelTimer(u.cron_timer);
    u.cron_timer = 0;
  }
  u.cron.reset();
  if (!spec.cron_restart().empty()) {
    auto cron = CronSchedule::Parse(spec.cron_restart());
    if (cron.ok()) u.cron = std::move(*cron);
  }
  u.timestamp.reset();
  if (!spec.log_date_format().empty()) {
    auto ts = TimestampFormat::Parse(spec.log_date_format());
    if (ts.ok()) u.timestamp = std::move(*ts);
  }
  // Log sinks follow the spec's paths; reopen when they changed.
  std::string out_path = spec.out_file().empty()
                             ? absl::StrCat(options_.logs_dir, "/", spec.name(), "-out.log")
                             : spec.out_file();
  std::string err_path = spec.merge_logs() ? out_path
                         : spec.error_file().empty()
                             ? absl::StrCat(options_.logs_dir, "/", spec.name(), "-err.log")
                             : spec.error_file();
  if (out_path != u.out_path || err_path != u.err_path || u.out.sink == 0) {
    if (u.out.sink) logs_.Close(u.out.sink);
    if (u.err.sink) logs_.Close(u.err.sink);
    LogSinkOptions o;
    o.max_bytes = spec.log_max_size_bytes() ? spec.log_max_size_bytes() : options_.log_max_bytes;
    o.retain = spec.log_retain() ? spec.log_retain() : options_.log_retain;
    o.path = out_path;
    u.out.sink = logs_.Open(o);
    o.path = err_path;
    u.err.sink = logs_.Open(o);
    u.out_path = out_path;
    u.err_path = err_path;
  }
  std::vector<std::string> argv = ExecArgv(spec);
  u.exec_path = argv.empty() ? "" : argv[0];
}

absl::StatusOr<std::vector<Supervisor::Unit*>> Supervisor::Select(const std::string& selector) {
  std::vector<Unit*> out;
  if (selector == "all") {
    // Every app, not the modules (units with a module channel), as PM2's `all` leaves them
    // out: a module is stopped or restarted by its name, and removed with `uninstall`.
    for (auto& [name, u] : units_) {
      if (u->spec.channel() == herd::v1::CHANNEL_KIND_NONE) out.push_back(u.get());
    }
    return out;
  }
  auto it = units_.find(selector);
  if (it == units_.end()) {
    return absl::NotFoundError(absl::StrCat("no unit named \"", selector,
                                            "\": `agentctl list` shows the units on this host"));
  }
  out.push_back(it->second.get());
  return out;
}

void Supervisor::Spawn(Unit& u) {
  if (u.restart_timer) {
    loop_.CancelTimer(u.restart_timer);
    u.restart_timer = 0;
  }
  SpawnRequest req;
  req.argv = ExecArgv(u.spec);
  req.cwd = u.spec.cwd();
  req.stdout_fd = u.out.write_fd;
  req.stderr_fd = u.spec.merge_logs() ? u.out.write_fd : u.err.write_fd;
  req.env.reserve(options_.base_env.size() + u.spec.env_size() + 1);
  for (const auto& e : options_.base_env) {
    absl::string_view key = absl::string_view(e).substr(0, e.find('='));
    if (!u.spec.env().contains(std::string(key)) && key != "HERD_UNIT") req.env.push_back(e);
  }
  for (const auto& [k, v] : u.spec.env()) req.env.push_back(absl::StrCat(k, "=", v));
  req.env.push_back(absl::StrCat("HERD_UNIT=", u.spec.name()));
  const bool hooked = hooks_ != nullptr && u.spec.channel() != herd::v1::CHANNEL_KIND_NONE;
  absl::Status ready = absl::OkStatus();
  if (hooked) ready = hooks_->BeforeSpawn(u.spec, &req.env, &req.channel_fd);

  req.cgroup_fd = ready.ok() ? PrepareCgroup(u) : -1;
  if (ready.ok()) req.join_fds = PrepareLimits(u);
  auto spawned = ready.ok() ? spawner_.Spawn(req) : absl::StatusOr<SpawnedProcess>(ready);
  if (req.cgroup_fd >= 0) close(req.cgroup_fd);
  for (int fd : req.join_fds) close(fd);
  if (hooked) hooks_->AfterSpawn(u.spec.name(), spawned.ok() ? spawned->pid : 0);
  if (!spawned.ok()) {
    if (!u.cgroup.empty()) draining_cgroups_.push_back(std::exchange(u.cgroup, ""));
    u.state = herd::v1::UNIT_STATE_ERRORED;
    u.reason = std::string(spawned.status().message());
    AddEvent(u, "spawn-failed", u.reason);
    log_->error("event=spawn_failed unit={} error=\"{}\"", u.spec.name(), u.reason);
    Persist();
    return;
  }
  u.pid = spawned->pid;
  u.pidfd = spawned->pidfd;
  u.start_ticks = ReadStartTicks(u.pid);
  u.started_mono = loop_.clock().Monotonic();
  u.started_wall = loop_.clock().Now();
  u.state = herd::v1::UNIT_STATE_ONLINE;
  u.reason.clear();
  u.usage = herd::v1::ResourceUsage();
  u.sampled_pids.clear();
  const std::string name = u.spec.name();
  auto watch = loop_.WatchFd(u.pidfd, EPOLLIN, [this, name](uint32_t) {
    auto it = units_.find(name);
    if (it != units_.end()) OnExit(*it->second);
  });
  if (watch.ok()) {
    u.pidfd_watch = *watch;
  } else {
    log_->error("event=watch_failed unit={} error=\"{}\"", name, watch.status().message());
  }
  AddEvent(u, "started", absl::StrCat("pid ", u.pid));
  log_->info("event=started unit={} pid={} exec={}", name, u.pid, u.exec_path);
  if (u.cron && !u.cron_timer) ScheduleCron(u);
  Persist();
}

// ---------------------------------------------------------------------------------------
// Operations

namespace {
// Calls `done` with the units' statuses once `pending` callbacks have run.
struct Barrier {
  int pending = 0;
  std::function<void()> done;
  void Arrive() {
    if (--pending == 0) done();
  }
};
}  // namespace

void Supervisor::Start(std::vector<AppSpec> specs, UnitsDone done) {
  std::vector<std::string> names;
  auto barrier = std::make_shared<Barrier>();
  barrier->pending = 1;
  for (auto& spec : specs) {
    names.push_back(spec.name());
    auto it = units_.find(spec.name());
    Unit* u;
    if (it == units_.end()) {
      u = &AddUnit(spec);
    } else {
      u = it->second.get();
      u->spec = spec;
      ConfigureUnit(*u);
    }
    u->desired_running = true;
    u->policy.Reset();
    if (u->pid != 0) {
      ++barrier->pending;
      AddEvent(*u, "restart-requested", "started again with a new spec");
      RequestStop(*u, Intent::kRestart, [barrier] { barrier->Arrive(); });
    } else {
      Spawn(*u);
    }
  }
  Persist();
  barrier->done = [this, names, done] {
    std::vector<UnitStatus> out;
    for (const auto& n : names) {
      auto it = units_.find(n);
      if (it != units_.end()) out.push_back(StatusOf(*it->second));
    }
    done(out);
  };
  barrier->Arrive();
}

void Supervisor::StartExisting(const std::string& selector, UnitsDone done) {
  auto units = Select(selector);
  if (!units.ok()) return done(units.status());
  for (Unit* u : *units) {
    u->desired_running = true;
    if (u->pid == 0) {
      u->policy.Reset();
      Spawn(*u);
    }
  }
  Persist();
  done(StatusOf(*units));
}

void Supervisor::Stop(const std::string& selector, UnitsDone done) {
  auto units = Select(selector);
  if (!units.ok()) return done(units.status());
  std::vector<std::string> names;
  auto barrier = std::make_shared<Barrier>();
  barrier->pending = 1;
  for (Unit* u : *units) {
    names.push_back(u->spec.name());
    u->desired_running = false;
    ++barrier->pending;
    RequestStop(*u, Intent::kStop, [barrier] { barrier->Arrive(); });
  }
  Persist();
  barrier->done = [this, names, done] {
    std::vector<UnitStatus> out;
    for (const auto& n : names) {
      auto it = units_.find(n);
      if (it != units_.end()) out.push_back(StatusOf(*it->second));
    }
    done(out);
  };
  barrier->Arrive();
}

void Supervisor::Restart(const std::string& selector, UnitsDone done) {
  auto units = Select(selector);
  if (!units.ok()) return done(units.status());
  std::vector<std::string> names;
  auto barrier = std::make_shared<Barrier>();
  barrier->pending = 1;
  for (Unit* u : *units) {
    names.push_back(u->spec.name());
    u->desired_running = true;
    AddEvent(*u, "restart-requested", "by operator");
    if (u->pid == 0) {
      ++u->restarts;
      u->policy.Reset();
      Spawn(*u);
    } else {
      ++barrier->pending;
      RequestStop(*u, Intent::kRestart, [barrier] { barrier->Arrive(); });
    }
  }
  Persist();
  barrier->done = [this, names, done] {
    std::vector<UnitStatus> out;
    for (const auto& n : names) {
      auto it = units_.find(n);
      if (it != units_.end()) out.push_back(StatusOf(*it->second));
    }
    done(out);
  };
  barrier->Arrive();
}

void Supervisor::Delete(const std::string& selector, UnitsDone done) {
  auto units = Select(selector);
  if (!units.ok()) return done(units.status());
  auto out = std::make_shared<std::vector<UnitStatus>>();
  auto barrier = std::make_shared<Barrier>();
  barrier->pending = 1;
  for (Unit* u : *units) {
    u->desired_running = false;
    ++barrier->pending;
    const std::string name = u->spec.name();
    RequestStop(*u, Intent::kDelete, [this, name, out, barrier] {
      auto it = units_.find(name);
      if (it != units_.end()) out->push_back(StatusOf(*it->second));
      barrier->Arrive();
    });
  }
  barrier->done = [out, done] { done(*out); };
  barrier->Arrive();
}

void Supervisor::StopAll(std::function<void()> done) {
  if (persist_queued_) PersistNow();  // the state before the shutdown is what comes back
  shutting_down_ = true;
  if (sample_timer_) {
    loop_.CancelTimer(sample_timer_);
    sample_timer_ = 0;
  }
  auto barrier = std::make_shared<Barrier>();
  barrier->pending = 1;
  barrier->done = std::move(done);
  for (auto& [name, u] : units_) {
    ++barrier->pending;
    RequestStop(*u, Intent::kStop, [barrier] { barrier->Arrive(); });
  }
  barrier->Arrive();
}

// ---------------------------------------------------------------------------------------
// Reading state

void Supervisor::AddEvent(Unit& u, const std::string& kind, const std::string& detail) {
  herd::v1::UnitEvent e;
  e.set_at_unix_ms(UnixMs(loop_.clock().Now()));
  e.set_kind(kind);
  e.set_detail(detail);
  // A listener may remove itself (or another): iterate over a copy of the ids.
  std::vector<uint64_t> ids;
  for (const auto& [id, f] : event_listeners_) ids.push_back(id);
  for (uint64_t id : ids) {
    auto it = event_listeners_.find(id);
    if (it != event_listeners_.end()) it->second(u.spec.name(), e);
  }
  u.events.push_back(std::move(e));
  while (u.events.size() > options_.events_kept) u.events.pop_front();
}

UnitStatus Supervisor::StatusOf(const Unit& u) const {
  UnitStatus s;
  s.set_name(u.spec.name());
  s.set_state(u.state);
  s.set_status_reason(u.reason);
  s.set_pid(u.pid);
  s.set_restarts(u.restarts);
  s.set_unstable_restarts(u.policy.unstable_restarts());
  if (u.pid != 0) s.set_started_at_unix_ms(UnixMs(u.started_wall));
  *s.mutable_usage() = u.usage;
  s.set_last_exit_code(u.last_exit_code);
  s.set_last_signal(u.last_signal);
  for (pid_t p : u.sampled_pids) s.add_sampled_pids(p);
  if (u.state == herd::v1::UNIT_STATE_WAITING_RESTART) {
    s.set_next_restart_at_unix_ms(UnixMs(u.next_restart_wall));
  }
  s.set_exec_path(u.exec_path);
  return s;
}

std::vector<UnitStatus> Supervisor::StatusOf(const std::vector<Unit*>& units) const {
  std::vector<UnitStatus> out;
  for (const Unit* u : units) out.push_back(StatusOf(*u));
  return out;
}

std::vector<UnitStatus> Supervisor::List() const {
  std::vector<UnitStatus> out;
  out.reserve(units_.size());
  for (const auto& [name, u] : units_) out.push_back(StatusOf(*u));
  return out;
}

absl::StatusOr<herd::v1::UnitDetail> Supervisor::Describe(const std::string& name) const {
  auto it = units_.find(name);
  if (it == units_.end()) {
    return absl::NotFoundError(absl::StrCat("no unit named \"", name,
                                            "\": `agentctl list` shows the units on this host"));
  }
  const Unit& u = *it->second;
  herd::v1::UnitDetail d;
  *d.mutable_spec() = u.spec;
  *d.mutable_status() = StatusOf(u);
  for (const auto& e : u.events) *d.add_events() = e;
  d.set_out_log_path(u.out_path);
  d.set_err_log_path(u.err_path);
  DescribeContainment(u, &d);
  return d;
}

absl::StatusOr<std::pair<std::string, std::string>> Supervisor::LogPaths(
    const std::string& name) const {
  auto it = units_.find(name);
  if (it == units_.end()) {
    return absl::NotFoundError(absl::StrCat("no unit named \"", name,
                                            "\": `agentctl list` shows the units on this host"));
  }
  return std::make_pair(it->second->out_path, it->second->err_path);
}

}  // namespace herd::agent
