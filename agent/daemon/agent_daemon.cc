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

#include <thread>

#include "absl/cleanup/cleanup.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/strip.h"
#include "absl/cleanup/cleanup.h"
#include "agent/api/agent_service.h"
#include "agent/modules/module_manager.h"
#include "agent/logs/log_writer.h"
#include "agent/loop/event_loop.h"
#include "agent/procfs/proc_sampler.h"
#include "agent/supervisor/spawner.h"
#include "agent/supervisor/state_file.h"
#include "agent/supervisor/supervisor.h"
#include "agent/uplink/controlplane_link.h"
#include "common/atomic_file.h"
#include "common/clock.h"
#include "common/logging.h"
#include "grpcpp/grpcpp.h"

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

}  // namespace

std::string AgentSocketPath(const std::string& home) { return absl::StrCat(home, "/agent.sock"); }

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
  const std::string logs_dir = absl::StrCat(home, "/logs");
  auto lock_fd = LockHome(home);
  if (!lock_fd.ok()) return lock_fd.status();
  absl::Cleanup unlock = [fd = *lock_fd] { close(fd); };

  // Signals arrive through a signalfd on the loop; block them for every thread (threads
  // created from here on inherit the mask; children get a clean mask from the spawner).
  BlockAgentSignals();
  signal(SIGPIPE, SIG_IGN);
  const sigset_t mask = AgentSignals();
  int sigfd = signalfd(-1, &mask, SFD_CLOEXEC | SFD_NONBLOCK);
  if (sigfd < 0) return absl::InternalError(absl::StrCat("signalfd: ", strerror(errno)));
  absl::Cleanup close_sigfd = [sigfd] { close(sigfd); };

  const Clock& clock = SystemClock::Get();
  auto loop = EventLoop::Create(clock);
  if (!loop.ok()) return loop.status();
  PosixSpawner spawner;
  ProcSampler sampler(options.proc_root);
  LogWriter logs;
  StateFile state(absl::StrCat(home, "/state.json"));

  SupervisorOptions sopts;
  sopts.logs_dir = logs_dir;
  sopts.sample_interval = options.sample_interval;
  sopts.smaps_interval = options.smaps_interval;
  sopts.log_max_bytes = options.log_max_bytes;
  sopts.log_retain = options.log_retain;
  sopts.base_env = CurrentEnvironment();
  Supervisor supervisor(**loop, spawner, sampler, logs, &state, sopts);
  const char* path_env = getenv("PATH");
  const std::string search_path = path_env ? path_env : "/usr/local/bin:/usr/bin:/bin";
  ModuleManagerOptions mopts;
  mopts.home = home;
  mopts.search_path = search_path;
  mopts.archive_limits.max_unpacked_bytes = options.module_max_unpacked;
  mopts.archive_limits.max_files = options.module_max_files;
  ModuleManager modules(**loop, supervisor, mopts);
  supervisor.set_hooks(&modules);
  absl::Cleanup unhook = [&] { supervisor.set_hooks(nullptr); };
  if (auto st = modules.Load(); !st.ok()) return st;

  // Linked to a control plane: its configuration (cached) replaces module_conf.json before
  // any module starts.
  std::unique_ptr<ControlPlaneLink> link;
  if (!options.controlplane.empty()) {
    UplinkOptions uo;
    uo.address = options.controlplane;
    uo.join_token_file = options.join_token_file;
    uo.labels = options.labels;
    uo.home = home;
    uo.tls_ca = options.tls_ca;
    uo.tls_cert = options.tls_cert;
    uo.tls_key = options.tls_key;
    uo.buffer_batches = options.metrics_buffer;
    link = std::make_unique<ControlPlaneLink>(**loop, supervisor, modules, std::move(uo));
    if (auto st = link->Start(); !st.ok()) return st;
  }
  absl::Cleanup stop_link = [&] {
    if (link) link->Stop();
  };

  std::unique_ptr<grpc::Server> server;
  std::thread server_stopper;
  bool shutting_down = false;
  auto shutdown = [&] {
    if (shutting_down) return;
    shutting_down = true;
    log->info("event=shutdown_begin units={}", supervisor.unit_count());
    if (link) link->Stop();
    supervisor.StopAll([&] {
      log->info("event=units_stopped");
      // Server shutdown waits for in-flight calls, which may need the loop: do it from
      // another thread while the loop keeps running, then stop the loop.
      server_stopper = std::thread([&] {
        if (server) server->Shutdown(absl::ToChronoTime(absl::Now() + absl::Seconds(2)));
        (*loop)->Stop();
      });
    });
  };

  auto sigwatch = (*loop)->WatchFd(sigfd, EPOLLIN, [&](uint32_t) {
    signalfd_siginfo si{};
    while (read(sigfd, &si, sizeof si) == sizeof si) {
      log->info("event=signal signal={}", strsignal(static_cast<int>(si.ssi_signo)));
      if (si.ssi_signo != SIGHUP) shutdown();
    }
  });
  if (!sigwatch.ok()) return sigwatch.status();

  if (auto st = supervisor.Restore(); !st.ok()) return st;

  AgentServiceOptions aopts;
  aopts.home = home;
  aopts.search_path = search_path;
  aopts.started_at = clock.Now();
  aopts.sample_interval_ms = static_cast<uint64_t>(absl::ToInt64Milliseconds(options.sample_interval));
  aopts.on_shutdown = shutdown;
  if (link) aopts.fill_info = [&](herd::v1::AgentInfo* info) { link->FillInfo(info); };
  AgentService service(**loop, supervisor, modules, logs, aopts);

  const std::string sock = AgentSocketPath(home);
  unlink(sock.c_str());  // we hold the home lock: any socket file here is stale
  grpc::ServerBuilder builder;
  builder.AddListeningPort(absl::StrCat("unix:", sock), grpc::InsecureServerCredentials());
  builder.RegisterService(&service);
  builder.SetMaxReceiveMessageSize(4 << 20);
  server = builder.BuildAndStart();
  if (!server) {
    (*loop)->Post([&] { supervisor.StopAll([&] { (*loop)->Stop(); }); });
    (*loop)->Run();
    return absl::UnavailableError(absl::StrCat("cannot listen on ", sock,
                                               ": check that the directory is writable"));
  }
  chmod(sock.c_str(), 0660);
  log->info("event=ready version={} pid={} home={} socket={} units={}", HERD_VERSION, getpid(),
            home, sock, supervisor.unit_count());
  if (options.ready_fd >= 0) {
    char ok = 1;
    (void)!write(options.ready_fd, &ok, 1);
    close(options.ready_fd);
  }

  (*loop)->Run();
  if (server_stopper.joinable()) server_stopper.join();
  server.reset();
  unlink(sock.c_str());
  logs.Flush();
  if (auto st = state.Flush(); !st.ok()) {
    log->error("event=state_not_saved error=\"{}\"", st.message());
  }
  log->info("event=stopped");
  return absl::OkStatus();
}

}  // namespace herd::agent
