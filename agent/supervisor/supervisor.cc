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
#include "common/atomic_file.h"
#include "common/units.h"
#include "common/utf8.h"

namespace herd::agent {
namespace {

using herd::v1::AppSpec;
using herd::v1::UnitState;
using herd::v1::UnitStatus;

constexpr size_t kMaxLineBytes = 64 << 10;     // a longer "line" is cut here
constexpr size_t kMaxReadPerWakeup = 256 << 10; // fairness between units
constexpr int kPipeBytes = 1 << 20;             // room for bursts while the loop is busy

int64_t UnixMs(absl::Time t) { return absl::ToUnixMillis(t); }

uint64_t ReadStartTicks(pid_t pid) {
  auto content = ReadFileToString(absl::StrCat("/proc/", pid, "/stat"));
  StatFields f;
  if (!content.ok() || !ParseStat(*content, &f)) return 0;
  return f.start_ticks;
}

bool GroupAlive(pid_t pgid) { return pgid > 0 && kill(-pgid, 0) == 0; }

// CPU time of the calling thread, nanoseconds.
uint64_t ThreadCpuNs() {
  timespec ts{};
  clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
  return static_cast<uint64_t>(ts.tv_sec) * 1000000000u + static_cast<uint64_t>(ts.tv_nsec);
}

}  // namespace

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
// Restore

absl::Status Supervisor::Restore() {
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

// ---------------------------------------------------------------------------------------
// Units

Supervisor::Unit& Supervisor::AddUnit(const AppSpec& spec) {
  auto owned = std::make_unique<Unit>(spec);
  Unit& u = *owned;
  units_[spec.name()] = std::move(owned);
  u.out.name = "out";
  u.err.name = "err";
  for (OutputStream* s : {&u.out, &u.err}) {
    int fds[2];
    if (pipe2(fds, O_CLOEXEC | O_NONBLOCK) != 0) {
      log_->error("event=pipe_failed unit={} error=\"{}\"", spec.name(), strerror(errno));
      continue;
    }
    // The child's end must block (programs do not expect EAGAIN on stdout).
    fcntl(fds[1], F_SETFL, fcntl(fds[1], F_GETFL) & ~O_NONBLOCK);
    fcntl(fds[0], F_SETPIPE_SZ, kPipeBytes);
    s->read_fd = fds[0];
    s->write_fd = fds[1];
    const std::string name = spec.name();
    auto watch = loop_.WatchFd(s->read_fd, EPOLLIN, [this, name, s](uint32_t) {
      auto it = units_.find(name);
      if (it != units_.end()) OnOutput(*it->second, *s);
    });
    if (watch.ok()) s->watch = *watch;
  }
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

void Supervisor::CloseOutput(Unit& u) {
  for (OutputStream* s : {&u.out, &u.err}) {
    if (s->watch) loop_.UnwatchFd(s->watch);
    if (s->read_fd >= 0) close(s->read_fd);
    if (s->write_fd >= 0) close(s->write_fd);
    if (s->sink) logs_.Close(s->sink);
    *s = OutputStream{};
  }
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

  auto spawned = ready.ok() ? spawner_.Spawn(req) : absl::StatusOr<SpawnedProcess>(ready);
  if (hooked) hooks_->AfterSpawn(u.spec.name(), spawned.ok() ? spawned->pid : 0);
  if (!spawned.ok()) {
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

void Supervisor::OnExit(Unit& u) {
  int status = 0;
  pid_t r = waitpid(u.pid, &status, WNOHANG);
  if (r == 0) return;  // spurious wakeup: still running
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
  const pid_t old_pid = u.pid;
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

  const std::string how = DescribeExit(exit);
  const bool group_left = GroupAlive(old_pid);
  if (u.intent != Intent::kNone) {
    if (u.kill_timer && !group_left) {
      loop_.CancelTimer(u.kill_timer);
      u.kill_timer = 0;
    }
    // The timer, if still armed, SIGKILLs what is left of the old group; it no longer
    // belongs to the unit's lifecycle.
    u.kill_timer = 0;
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
  AddEvent(u, "exited", absl::StrCat(how, " after ", FormatUptime(exit.uptime)));
  RestartDecision d = u.policy.OnExit(exit);
  switch (d.action) {
    case RestartDecision::Action::kRestart: {
      ++u.restarts;
      log_->info("event=exited unit={} pid={} how=\"{}\" uptime_ms={} restart_in_ms={}",
                 u.spec.name(), old_pid, how, absl::ToInt64Milliseconds(exit.uptime),
                 absl::ToInt64Milliseconds(d.delay));
      if (d.delay <= absl::ZeroDuration()) {
        Spawn(u);
        return;
      }
      u.state = herd::v1::UNIT_STATE_WAITING_RESTART;
      u.reason = absl::StrCat(how, "; restarting in ", absl::FormatDuration(d.delay));
      u.next_restart_wall = loop_.clock().Now() + d.delay;
      AddEvent(u, "restart-scheduled", u.reason);
      const std::string name = u.spec.name();
      u.restart_timer = loop_.RunAfter(d.delay, [this, name] {
        auto it = units_.find(name);
        if (it == units_.end()) return;
        it->second->restart_timer = 0;
        Spawn(*it->second);
      });
      break;
    }
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

void Supervisor::OnOutput(Unit& u, OutputStream& s) {
  if (s.read_fd < 0) return;
  char buf[64 << 10];
  size_t total = 0;
  while (total < kMaxReadPerWakeup) {
    ssize_t n = read(s.read_fd, buf, sizeof buf);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) break;
    total += static_cast<size_t>(n);
    EmitLines(u, s, absl::string_view(buf, static_cast<size_t>(n)), false);
  }
}

void Supervisor::EmitLines(Unit& u, OutputStream& s, absl::string_view data, bool flush_partial) {
  std::string batch;
  std::string prefix;
  if (u.timestamp) {
    prefix = absl::StrCat(u.timestamp->Format(loop_.clock().Now(), options_.time_zone), ": ");
  }
  auto emit = [&](absl::string_view line) {
    batch.append(prefix);
    batch.append(line.data(), line.size());
    batch.push_back('\n');
    if (!followers_.empty()) {
      herd::v1::LogLine l;
      l.set_stream(s.name);
      l.set_unit(u.spec.name());
      // Output is bytes; a protobuf string must be UTF-8 or the peer cannot read the message
      // (a unit printing 0xFF would end the control plane's stream of this agent).
      l.set_text(ToValidUtf8(absl::StrCat(prefix, line)));
      for (auto& [id, f] : followers_) {
        if (f.unit == u.spec.name()) f.sink(l);
      }
    }
  };
  while (!data.empty()) {
    size_t nl = data.find('\n');
    if (nl == absl::string_view::npos) {
      s.partial.append(data.data(), data.size());
      break;
    }
    if (s.partial.empty()) {
      emit(data.substr(0, nl));
    } else {
      s.partial.append(data.data(), nl);
      emit(s.partial);
      s.partial.clear();
    }
    data.remove_prefix(nl + 1);
  }
  if (s.partial.size() >= kMaxLineBytes || (flush_partial && !s.partial.empty())) {
    emit(s.partial);
    s.partial.clear();
  }
  if (!batch.empty()) logs_.Write(s.sink, std::move(batch));
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
  AddEvent(u, "stopping", absl::StrCat("SIGTERM to process group ", u.pid));
  KillGroup(u.pid, SIGTERM);
  const std::string name = u.spec.name();
  const pid_t pid = u.pid;
  u.kill_timer = loop_.RunAfter(absl::Milliseconds(u.spec.kill_timeout_ms()), [this, name, pid] {
    auto it = units_.find(name);
    if (it != units_.end() && it->second->pid == pid) {
      it->second->kill_timer = 0;
      AddEvent(*it->second, "killed",
               absl::StrCat("still running ", it->second->spec.kill_timeout_ms(),
                            " ms after SIGTERM (kill_timeout): SIGKILL"));
      log_->warn("event=kill_timeout unit={} pid={} action=SIGKILL", name, pid);
    }
    KillGroup(pid, SIGKILL);
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
// Cron, sampling, memory limit

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

std::vector<pid_t> Supervisor::PidFileRoots(const Unit& u) const {
  std::vector<pid_t> pids;
  for (const auto& path : u.spec.pid_files()) {
    auto content = ReadFileToString(path);
    int64_t pid = 0;
    if (content.ok() && absl::SimpleAtoi(absl::StripAsciiWhitespace(*content), &pid) &&
        pid > 0 && pid < (int64_t{1} << 22)) {
      pids.push_back(static_cast<pid_t>(pid));
    }
  }
  return pids;
}

void Supervisor::Sample() {
  // Real elapsed time, whatever clock the loop runs on (tests may give it a fake one), and
  // the loop thread's CPU time.
  const auto tick_start = std::chrono::steady_clock::now();
  const uint64_t cpu_start = ThreadCpuNs();
  sample_timer_ = loop_.RunAfter(options_.sample_interval, [this] { Sample(); });
  const absl::Time mono = loop_.clock().Monotonic();
  const bool smaps = last_smaps_ == absl::Time() || mono - last_smaps_ >= options_.smaps_interval;
  if (smaps) last_smaps_ = mono;

  std::vector<SampleTarget> targets;
  std::vector<Unit*> order;
  targets.reserve(units_.size() + 1);
  for (auto& [name, u] : units_) {
    if (u->pid == 0) continue;
    SampleTarget t;
    t.key = name;
    if (u->spec.pid_files_size() > 0) {
      t.roots = PidFileRoots(*u);
      if (u->spec.pid_files_join() || t.roots.empty()) t.roots.push_back(u->pid);
    } else {
      t.roots.push_back(u->pid);
    }
    if (hooks_ != nullptr && u->spec.channel() != herd::v1::CHANNEL_KIND_NONE) {
      // A module's announced pid (initModule's `pid`) replaces its own process, as in PM2,
      // or joins it when the module asked for that (`pid_join`).
      bool join = false;
      std::vector<pid_t> announced = hooks_->SampleRoots(name, &join);
      if (!announced.empty()) {
        if (!join) t.roots.clear();
        for (pid_t p : announced) {
          if (std::find(t.roots.begin(), t.roots.end(), p) == t.roots.end()) t.roots.push_back(p);
        }
      }
    }
    targets.push_back(std::move(t));
    order.push_back(u.get());
  }
  targets.push_back(SampleTarget{"", {getpid()}, false});
  std::vector<TreeUsage> usage = sampler_.Sample(mono, targets, smaps);
  const int64_t now_ms = UnixMs(loop_.clock().Now());
  uint32_t processes = 0;
  for (size_t i = 0; i < usage.size(); ++i) {
    const TreeUsage& t = usage[i];
    processes += static_cast<uint32_t>(t.pids.size());
    herd::v1::ResourceUsage* r = i < order.size() ? &order[i]->usage : &self_usage_;
    const uint64_t pss = r->pss_bytes(), uss = r->uss_bytes();
    *r = herd::v1::ResourceUsage();
    r->set_cpu_percent(t.cpu_percent);
    r->set_rss_bytes(t.rss_bytes);
    r->set_pss_bytes(t.smaps_read ? t.pss_bytes : pss);
    r->set_uss_bytes(t.smaps_read ? t.uss_bytes : uss);
    r->set_threads(t.threads);
    r->set_processes(static_cast<uint32_t>(t.pids.size()));
    r->set_sampled_at_unix_ms(now_ms);
    if (i < order.size()) {
      order[i]->sampled_pids = t.pids;
      CheckMemory(*order[i]);
    }
  }
  const uint64_t ns = static_cast<uint64_t>(std::chrono::duration_cast<std::chrono::nanoseconds>(
                                                std::chrono::steady_clock::now() - tick_start)
                                                .count());
  const uint64_t cpu_ns = ThreadCpuNs() - cpu_start;
  sampler_stats_.set_ticks(sampler_stats_.ticks() + 1);
  sampler_stats_.set_last_tick_ns(ns);
  sampler_stats_.set_last_tick_smaps(smaps);
  sampler_stats_.set_last_tick_processes(processes);
  sampler_stats_.set_total_tick_ns(sampler_stats_.total_tick_ns() + ns);
  sampler_stats_.set_max_tick_ns(std::max(sampler_stats_.max_tick_ns(), ns));
  sampler_stats_.set_last_tick_cpu_ns(cpu_ns);
  sampler_stats_.set_total_tick_cpu_ns(sampler_stats_.total_tick_cpu_ns() + cpu_ns);
}

void Supervisor::CheckMemory(Unit& u) {
  const uint64_t limit = u.spec.max_memory_restart_bytes();
  if (limit == 0 || u.state != herd::v1::UNIT_STATE_ONLINE) return;
  if (u.usage.rss_bytes() <= limit) return;
  std::string detail = absl::StrCat("memory ", FormatBytes(u.usage.rss_bytes()),
                                    " over max_memory_restart ", FormatBytes(limit));
  AddEvent(u, "memory-limit", detail);
  log_->warn("event=memory_limit unit={} pid={} rss={} limit={} action=restart", u.spec.name(),
             u.pid, u.usage.rss_bytes(), limit);
  RequestStop(u, Intent::kRestart, nullptr);
}

// ---------------------------------------------------------------------------------------
// Reading state

void Supervisor::AddEvent(Unit& u, const std::string& kind, const std::string& detail) {
  herd::v1::UnitEvent e;
  e.set_at_unix_ms(UnixMs(loop_.clock().Now()));
  e.set_kind(kind);
  e.set_detail(detail);
  if (event_listener_) event_listener_(u.spec.name(), e);
  u.events.push_back(std::move(e));
  while (u.events.size() > options_.events_kept) u.events.pop_front();
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

absl::StatusOr<uint64_t> Supervisor::Follow(const std::string& name, LineSink sink) {
  if (!units_.count(name)) {
    return absl::NotFoundError(absl::StrCat("no unit named \"", name,
                                            "\": `agentctl list` shows the units on this host"));
  }
  uint64_t id = next_follow_id_++;
  followers_[id] = Follower{name, std::move(sink)};
  return id;
}

void Supervisor::Unfollow(uint64_t id) { followers_.erase(id); }

}  // namespace herd::agent
