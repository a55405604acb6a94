#include "agent/daemon/agent_daemon.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/signalfd.h>
#include <sys/stat.h>
#include <unistd.h>

#include <functional>
#include <memory>

#include "absl/cleanup/cleanup.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/time/clock.h"
#include "absl/strings/strip.h"
#include "agent/api/agent_service.h"
#include "agent/daemon/local_api.h"
#include "agent/daemon/pm2_backend.h"
#include "agent/modules/module_manager.h"
#include "agent/logs/log_writer.h"
#include "agent/loop/event_loop.h"
#include "agent/pm2/pm2_daemon.h"
#include "agent/procfs/proc_sampler.h"
#include "agent/supervisor/spawner.h"
#include "agent/supervisor/state_file.h"
#include "agent/supervisor/supervisor.h"
#include "agent/uplink/controlplane_link.h"
#include "common/atomic_file.h"
#include "common/clock.h"
#include "common/logging.h"

extern char** environ;

namespace herd::agent {
namespace {

absl::Status MakeDir(const std::string& path, mode_t mode) {
  if (mkdir(path.c_str(), mode) == 0 || errno == EEXIST) {
    struct stat st{};
    if (stat(path.c_str(), &st) == 0 && S_ISDIR(st.st_mode)) return absl::OkStatus();
    return absl::FailedPreconditionError(absl::StrCat(path, " exists and is not a directory"));
  }
  return absl::PermissionDeniedError(absl::StrCat(
      "cannot create ", path, ": ", strerror(errno),
      "; choose a writable home with --home or HERD_HOME"));
}

// Like sshd's StrictModes: agentd (often root) writes its pid, log, state and units' logs
// in the home and in logs/, and hands units' output to files there. If another user could
// write to either directory, they could plant links there that agentd would then write
// through. `dir` must be owned by agentd's user (or root) and writable by nobody else;
// logs/ must be a directory itself, not a link to one.
absl::Status CheckPrivateDir(const std::string& dir, bool allow_link) {
  struct stat st{};
  if ((allow_link ? stat(dir.c_str(), &st) : lstat(dir.c_str(), &st)) != 0) {
    return absl::FailedPreconditionError(
        absl::StrCat("cannot read ", dir, ": ", strerror(errno)));
  }
  if (S_ISLNK(st.st_mode)) {
    return absl::FailedPreconditionError(absl::StrCat(
        dir, " is a symbolic link: agentd keeps its files in a real directory there (remove "
             "the link; agentd creates the directory)"));
  }
  if (!S_ISDIR(st.st_mode)) {
    return absl::FailedPreconditionError(absl::StrCat(dir, " exists and is not a directory"));
  }
  const uid_t me = geteuid();
  if (st.st_uid != me && st.st_uid != 0) {
    return absl::FailedPreconditionError(absl::StrCat(
        dir, " belongs to uid ", st.st_uid, ", not to agentd's user (uid ", me,
        "): another user could replace agentd's files there; `chown ", me, " ", dir,
        "` or choose another --home"));
  }
  if (st.st_mode & (S_IWGRP | S_IWOTH)) {
    return absl::FailedPreconditionError(absl::StrFormat(
        "%s is writable by %s (mode %04o): another user could plant links there that agentd "
        "would write through; `chmod go-w %s`",
        dir, (st.st_mode & S_IWOTH) ? "every user" : "its group", st.st_mode & 07777, dir));
  }
  return absl::OkStatus();
}

// The directories above the home matter as much as the home: whoever can rename an entry of
// one of them can swap the whole home for theirs after it was checked. Each must belong to
// root or to agentd's user, and be writable by nobody else unless it has the sticky bit (as
// /tmp, where others cannot rename what is not theirs), as sshd checks a user's home.
absl::Status CheckParents(const std::string& home) {
  char resolved[PATH_MAX];
  if (realpath(home.c_str(), resolved) == nullptr) {
    return absl::FailedPreconditionError(
        absl::StrCat("cannot resolve ", home, ": ", strerror(errno)));
  }
  std::string dir = resolved;
  const uid_t me = geteuid();
  while (dir != "/") {
    const size_t slash = dir.rfind('/');
    dir = slash == 0 ? "/" : dir.substr(0, slash);
    struct stat st{};
    if (stat(dir.c_str(), &st) != 0) {
      return absl::FailedPreconditionError(
          absl::StrCat("cannot read ", dir, ": ", strerror(errno)));
    }
    if (st.st_uid != me && st.st_uid != 0) {
      return absl::FailedPreconditionError(absl::StrCat(
          dir, " (above the home ", home, ") belongs to uid ", st.st_uid,
          ", who could replace the home: choose a --home whose parents belong to root or to "
          "agentd's user"));
    }
    if ((st.st_mode & (S_IWGRP | S_IWOTH)) && !(st.st_mode & S_ISVTX)) {
      return absl::FailedPreconditionError(absl::StrFormat(
          "%s (above the home %s) is writable by others (mode %04o) without the sticky bit, "
          "so they could replace the home: `chmod go-w %s` or choose another --home",
          dir, home, st.st_mode & 07777, dir));
    }
  }
  return absl::OkStatus();
}

// Holds an exclusive flock on $HERD_HOME/agentd.pid for agentd's lifetime, so that two
// agents never supervise the same home (they would run every unit twice).
absl::StatusOr<int> LockHome(const std::string& home) {
  const std::string path = absl::StrCat(home, "/agentd.pid");
  int fd = open(path.c_str(), O_RDWR | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0644);
  if (fd < 0) {
    return absl::PermissionDeniedError(absl::StrCat(
        "cannot open ", path, ": ",
        errno == ELOOP ? "it is a symbolic link (remove it)" : strerror(errno)));
  }
  if (flock(fd, LOCK_EX | LOCK_NB) != 0) {
    auto other = ReadFileToString(path);
    close(fd);
    return absl::AlreadyExistsError(absl::StrCat(
        "agentd is already running for ", home, " (pid ",
        other.ok() ? std::string(absl::StripAsciiWhitespace(*other)) : "?",
        "): stop it with `agentctl --home ", home, " kill` or use another --home"));
  }
  std::string pid = absl::StrCat(getpid(), "\n");
  if (ftruncate(fd, 0) != 0 || pwrite(fd, pid.data(), pid.size(), 0) < 0) {
    // Only informative; the lock is what matters.
  }
  return fd;
}

// The signals agentd reads from its signalfd: SIGTERM and SIGINT shut it down, SIGHUP is
// only logged.
sigset_t AgentSignals() {
  sigset_t mask;
  sigemptyset(&mask);
  sigaddset(&mask, SIGTERM);
  sigaddset(&mask, SIGINT);
  sigaddset(&mask, SIGHUP);
  return mask;
}

std::vector<std::string> CurrentEnvironment() {
  std::vector<std::string> env;
  for (char** e = environ; e && *e; ++e) env.emplace_back(*e);
  return env;
}

// Signals arrive through a signalfd on the loop; block them for every thread (threads
// created from here on inherit the mask; children get a clean mask from the spawner).
absl::StatusOr<int> OpenSignalFd() {
  BlockAgentSignals();
  signal(SIGPIPE, SIG_IGN);
  const sigset_t mask = AgentSignals();
  int sigfd = signalfd(-1, &mask, SFD_CLOEXEC | SFD_NONBLOCK);
  if (sigfd < 0) return absl::InternalError(absl::StrCat("signalfd: ", strerror(errno)));
  return sigfd;
}

std::string SearchPath() {
  const char* path_env = getenv("PATH");
  return path_env ? path_env : "/usr/local/bin:/usr/bin:/bin";
}

SupervisorOptions MakeSupervisorOptions(const AgentOptions& options) {
  SupervisorOptions sopts;
  sopts.logs_dir = absl::StrCat(options.home, "/logs");
  sopts.sample_interval = options.sample_interval;
  sopts.smaps_interval = options.smaps_interval;
  sopts.log_max_bytes = options.log_max_bytes;
  sopts.log_retain = options.log_retain;
  sopts.base_env = CurrentEnvironment();
  // PM2's API for the units is agentd's (agent/pm2): `require('pm2')` finds it through
  // PM2_HOME instead of starting a PM2 daemon of its own.
  std::erase_if(sopts.base_env,
                [](const std::string& kv) { return absl::StartsWith(kv, "PM2_HOME="); });
  sopts.base_env.push_back(absl::StrCat("PM2_HOME=", Pm2Home(options.home)));
  return sopts;
}

// PM2's bus fed from the units: their events as process:event, and while someone listens,
// every line they write as log:out / log:err (followed only then: no line is turned into a
// bus message for nobody).
class Pm2Bus {
 public:
  Pm2Bus(Supervisor& supervisor, UnitsAsPm2& units) : supervisor_(supervisor), units_(units) {}
  ~Pm2Bus() { Detach(); }

  // Starts `api` and feeds it; not fatal when it cannot listen (a home too long for a socket
  // path): units run, and a module that needs PM2's API says it cannot reach it.
  void Start(pm2::Pm2Daemon& api, spdlog::logger& log) {
    if (auto st = api.Start(); !st.ok()) {
      log.warn("event=pm2_api_unavailable error=\"{}\"", st.message());
      return;
    }
    api_ = &api;
    events_ = supervisor_.AddEventListener(
        [this](const std::string& unit, const herd::v1::UnitEvent& e) { OnEvent(unit, e); });
  }
  // Modules' channel messages onto the bus (while it has listeners).
  void FeedFrom(ModuleManager& modules) {
    modules.set_on_channel_message(
        [this](const std::string& unit, const std::string& type, const nlohmann::json& data) {
          OnMessage(unit, type, data);
        });
  }
  // The daemon's on_listeners.
  void Listen(bool on) {
    if (on && follow_ == 0 && api_ != nullptr) {
      follow_ = supervisor_.FollowAll([this](const herd::v1::LogLine& l) { OnLine(l); });
    } else if (!on && follow_ != 0) {
      supervisor_.Unfollow(follow_);
      follow_ = 0;
    }
  }
  // Before the daemon goes.
  void Detach() {
    Listen(false);
    if (events_) supervisor_.RemoveEventListener(events_);
    events_ = 0;
    api_ = nullptr;
  }

 private:
  void OnEvent(const std::string& unit, const herd::v1::UnitEvent& e) {
    if (!api_->has_listeners()) return;
    nlohmann::json process = {{"name", unit}};
    for (const auto& u : supervisor_.List()) {
      if (u.name() == unit) process = units_.Describe(u)["pm2_env"];
    }
    process["pm_id"] = api_->IdOf(unit);
    api_->Publish("process:event", {{"event", Pm2EventName(e.kind())},
                                    {"manually", false},
                                    {"process", std::move(process)},
                                    {"at", e.at_unix_ms()}});
  }
  // A module's channel message, as PM2's God re-emits what a process sends: on the bus
  // under its type (process:exception, process:msg, human:event, axm:*), with the process.
  void OnMessage(const std::string& unit, const std::string& type, const nlohmann::json& data) {
    if (api_ == nullptr || !api_->has_listeners()) return;
    api_->Publish(type, {{"process", {{"pm_id", api_->IdOf(unit)},
                                      {"name", unit},
                                      {"rev", nullptr},
                                      {"namespace", "default"}}},
                         {"at", absl::ToUnixMillis(absl::Now())},
                         {"data", data}});
  }
  void OnLine(const herd::v1::LogLine& l) {
    if (api_ == nullptr) return;
    api_->Publish(l.stream() == "err" ? "log:err" : "log:out",
                  {{"process", {{"pm_id", api_->IdOf(l.unit())},
                                {"name", l.unit()},
                                {"rev", nullptr},
                                {"namespace", "default"}}},
                   {"at", absl::ToUnixMillis(absl::Now())},
                   {"data", absl::StrCat(l.text(), "\n")}});
  }

  Supervisor& supervisor_;
  UnitsAsPm2& units_;
  pm2::Pm2Daemon* api_ = nullptr;
  uint64_t events_ = 0, follow_ = 0;
};

ModuleManagerOptions MakeModuleOptions(const AgentOptions& options, const std::string& search_path) {
  ModuleManagerOptions mopts;
  mopts.home = options.home;
  mopts.search_path = search_path;
  mopts.archive_limits.max_unpacked_bytes = options.module_max_unpacked;
  mopts.archive_limits.max_files = options.module_max_files;
  return mopts;
}

// The link to the control plane, when agentd has one (null: standalone).
std::unique_ptr<ControlPlaneLink> MakeLink(const AgentOptions& options, EventLoop& loop,
                                           Supervisor& supervisor, ModuleManager& modules) {
  if (options.controlplane.empty()) return nullptr;
  UplinkOptions uo;
  uo.addresses = options.controlplane;
  uo.join_token_file = options.join_token_file;
  uo.labels = options.labels;
  uo.home = options.home;
  uo.tls_ca = options.tls_ca;
  uo.tls_cert = options.tls_cert;
  uo.tls_key = options.tls_key;
  uo.buffer_batches = options.metrics_buffer;
  return std::make_unique<ControlPlaneLink>(loop, supervisor, modules, std::move(uo));
}

// agentd's shutdown, begun once (SIGTERM, SIGINT or the Shutdown RPC) on the loop: the link
// first, then every unit gracefully (SIGTERM, SIGKILL after kill_timeout); once they all
// exited, the local API on its own thread (LocalApi::ShutdownThen), then the loop.
class ShutdownSequence {
 public:
  ShutdownSequence(EventLoop& loop, Supervisor& supervisor, ControlPlaneLink* link, LocalApi& api)
      : loop_(loop), supervisor_(supervisor), link_(link), api_(api), log_(Logger("agentd")) {}

  // Runs first when the shutdown begins.
  void set_on_begin(std::function<void()> f) { on_begin_ = std::move(f); }

  void Begin() {
    if (begun_) return;
    begun_ = true;
    if (on_begin_) on_begin_();
    log_->info("event=shutdown_begin units={}", supervisor_.unit_count());
    if (link_) link_->Stop();
    supervisor_.StopAll([this] {
      log_->info("event=units_stopped");
      api_.ShutdownThen(absl::Seconds(2), [this] { loop_.Stop(); });
    });
  }

 private:
  EventLoop& loop_;
  Supervisor& supervisor_;
  ControlPlaneLink* const link_;
  LocalApi& api_;
  std::shared_ptr<spdlog::logger> log_;
  bool begun_ = false;
  std::function<void()> on_begin_;
};

// SIGTERM and SIGINT begin the shutdown; SIGHUP is only logged.
absl::StatusOr<EventLoop::Handle> WatchSignals(EventLoop& loop, int sigfd,
                                               ShutdownSequence& shutdown) {
  return loop.WatchFd(sigfd, EPOLLIN, [sigfd, &shutdown, log = Logger("agentd")](uint32_t) {
    signalfd_siginfo si{};
    while (read(sigfd, &si, sizeof si) == sizeof si) {
      log->info("event=signal signal={}", strsignal(static_cast<int>(si.ssi_signo)));
      if (si.ssi_signo != SIGHUP) shutdown.Begin();
    }
  });
}

AgentServiceOptions MakeServiceOptions(const AgentOptions& options, const std::string& search_path,
                                       const Clock& clock, ShutdownSequence& shutdown,
                                       ControlPlaneLink* link) {
  AgentServiceOptions aopts;
  aopts.home = options.home;
  aopts.search_path = search_path;
  aopts.started_at = clock.Now();
  aopts.sample_interval_ms = static_cast<uint64_t>(absl::ToInt64Milliseconds(options.sample_interval));
  aopts.on_shutdown = [&shutdown] { shutdown.Begin(); };
  if (link) aopts.fill_info = [link](herd::v1::AgentInfo* info) { link->FillInfo(info); };
  return aopts;
}

// Releases `agentd --daemon`'s parent: one byte 1 on the ready pipe.
void SignalReady(int ready_fd) {
  if (ready_fd < 0) return;
  char ok = 1;
  (void)!write(ready_fd, &ok, 1);
  close(ready_fd);
}

// The last thing a clean stop does, once the API is closed: what the units wrote, and the
// state file the next start resumes from.
void FlushOnStop(LogWriter& logs, StateFile& state, spdlog::logger& log) {
  logs.Flush();
  if (auto st = state.Flush(); !st.ok()) {
    log.error("event=state_not_saved error=\"{}\"", st.message());
  }
  log.info("event=stopped");
}

// Units kept whole: in their cgroups, or else with agentd as their subreaper.
void Contain(Supervisor& supervisor, UnitCgroups* cgroups, spdlog::logger& log) {
  supervisor.set_cgroups(cgroups);
  if (cgroups != nullptr) return;
  if (auto st = supervisor.BecomeSubreaper(); !st.ok()) {
    log.warn("event=subreaper_unavailable error=\"{}\"", st.message());
  }
}

// Where memory_max and pids_max can be enforced (unit_limits.h); null with --no-cgroups.
std::unique_ptr<UnitLimits> OpenLimits(const AgentOptions& options, const UnitCgroups* cgroups,
                                       spdlog::logger& log) {
  if (!options.cgroups) return nullptr;
  auto limits = UnitLimits::Open(UnitCgroups::TagOf(options.home),
                                 cgroups != nullptr ? cgroups->controllers()
                                                    : std::set<std::string>{});
  log.info("event=limits controllers=\"{}\" v2_note=\"{}\"", limits->Describe(),
           cgroups != nullptr ? cgroups->controllers_note() : "no cgroup v2");
  return limits;
}

// The units' cgroups (unit_cgroups.h), or null with the reason logged: units are then kept
// together by their process groups and the subreaper.
std::unique_ptr<UnitCgroups> OpenCgroups(const AgentOptions& options, spdlog::logger& log) {
  if (!options.cgroups) {
    log.info("event=cgroups_off reason=--no-cgroups");
    return nullptr;
  }
  auto cgroups = UnitCgroups::Open(UnitCgroups::TagOf(options.home));
  if (!cgroups.ok()) {
    log.warn("event=cgroups_unavailable error=\"{}\"", cgroups.status().message());
    return nullptr;
  }
  log.info("event=cgroups dir={}", (*cgroups)->base());
  return *std::move(cgroups);
}

}  // namespace

std::string AgentSocketPath(const std::string& home) { return absl::StrCat(home, "/agent.sock"); }
std::string Pm2Home(const std::string& home) { return absl::StrCat(home, "/pm2"); }

void BlockAgentSignals() {
  const sigset_t mask = AgentSignals();
  pthread_sigmask(SIG_BLOCK, &mask, nullptr);
}

absl::Status PrepareHome(const std::string& home) {
  if (home.empty() || home[0] != '/') {
    return absl::InvalidArgumentError(
        absl::StrCat("home \"", home, "\" must be an absolute path"));
  }
  if (auto st = MakeDir(home, 0750); !st.ok()) return st;
  if (auto st = CheckPrivateDir(home, /*allow_link=*/true); !st.ok()) return st;
  if (auto st = CheckParents(home); !st.ok()) return st;
  const std::string logs_dir = absl::StrCat(home, "/logs");
  if (auto st = MakeDir(logs_dir, 0750); !st.ok()) return st;
  return CheckPrivateDir(logs_dir, /*allow_link=*/false);
}

absl::Status RunAgent(const AgentOptions& options) {
  auto log = herd::Logger("agentd");
  const std::string& home = options.home;
  if (auto st = PrepareHome(home); !st.ok()) return st;
  auto lock_fd = LockHome(home);
  if (!lock_fd.ok()) return lock_fd.status();
  absl::Cleanup unlock = [fd = *lock_fd] { close(fd); };
  auto sigfd = OpenSignalFd();
  if (!sigfd.ok()) return sigfd.status();
  absl::Cleanup close_sigfd = [fd = *sigfd] { close(fd); };

  const Clock& clock = SystemClock::Get();
  auto created = EventLoop::Create(clock);
  if (!created.ok()) return created.status();
  EventLoop& loop = **created;
  PosixSpawner spawner;
  ProcSampler sampler(options.proc_root);
  LogWriter logs;
  StateFile state(absl::StrCat(home, "/state.json"));
  std::unique_ptr<UnitCgroups> cgroups = OpenCgroups(options, *log);  // outlives supervisor
  std::unique_ptr<UnitLimits> limits = OpenLimits(options, cgroups.get(), *log);  // as well
  Supervisor supervisor(loop, spawner, sampler, logs, &state, MakeSupervisorOptions(options));
  Contain(supervisor, cgroups.get(), *log);
  supervisor.set_limits(limits.get());
  const std::string search_path = SearchPath();
  UnitsAsPm2 pm2_units(supervisor, logs);
  Pm2Bus pm2_bus(supervisor, pm2_units);
  pm2::Pm2Daemon pm2_api(loop, pm2_units,
                         {.dir = Pm2Home(home), .on_listeners = [&](bool on) { pm2_bus.Listen(on); }});
  pm2_bus.Start(pm2_api, *log);
  absl::Cleanup pm2_detach = [&] { pm2_bus.Detach(); };
  ModuleManager modules(loop, supervisor, MakeModuleOptions(options, search_path));
  pm2_units.set_modules(&modules);
  pm2_bus.FeedFrom(modules);
  absl::Cleanup pm2_unmodule = [&] { pm2_units.set_modules(nullptr); };
  supervisor.set_hooks(&modules);
  absl::Cleanup unhook = [&] { supervisor.set_hooks(nullptr); };
  if (auto st = modules.Load(); !st.ok()) return st;

  // Linked to a control plane: its configuration (cached) replaces module_conf.json before
  // any module starts.
  std::unique_ptr<ControlPlaneLink> link = MakeLink(options, loop, supervisor, modules);
  if (link) {
    if (auto st = link->Start(); !st.ok()) return st;
  }
  absl::Cleanup stop_link = [&] {
    if (link) link->Stop();
  };

  LocalApi api(AgentSocketPath(home));
  ShutdownSequence shutdown(loop, supervisor, link.get(), api);
  shutdown.set_on_begin([&pm2_units] { pm2_units.RefuseStarts(); });
  auto sigwatch = WatchSignals(loop, *sigfd, shutdown);
  if (!sigwatch.ok()) return sigwatch.status();
  if (auto st = supervisor.Restore(); !st.ok()) return st;

  AgentService service(loop, supervisor, modules, logs,
                       MakeServiceOptions(options, search_path, clock, shutdown, link.get()));
  bool stopped_cleanly = false;
  // Guards run last-declared first: the API closes (and its socket goes), then a clean stop
  // flushes; the link stops after that, then everything is destroyed in reverse.
  absl::Cleanup flush = [&] {
    if (stopped_cleanly) FlushOnStop(logs, state, *log);
  };
  absl::Cleanup close_api = [&] { api.Close(); };
  if (auto st = api.Start(service); !st.ok()) {
    // The units the state file started go again before agentd exits.
    loop.Post([&] { supervisor.StopAll([&] { loop.Stop(); }); });
    loop.Run();
    return st;
  }
  log->info("event=ready version={} pid={} home={} socket={} units={}", HERD_VERSION, getpid(),
            home, api.socket_path(), supervisor.unit_count());
  SignalReady(options.ready_fd);
  loop.Run();
  stopped_cleanly = true;
  return absl::OkStatus();
}

}  // namespace herd::agent
