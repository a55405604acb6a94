#include "agent/supervisor/spawner.h"

#include <errno.h>
#include <fcntl.h>
#include <linux/sched.h>
#include <signal.h>
#include <spawn.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <mutex>
#include <set>

#include "absl/cleanup/cleanup.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"

namespace herd::agent {
namespace {

// Where a clone3 child failed before exec, sent back on a close-on-exec pipe.
struct ChildFailure {
  int stage;  // 0: chdir, 1: execve, 2: setsid, 3: joining a cgroup (join_fds)
  int err;
};

// argv[0] found on the agent's PATH as posix_spawnp does, before forking (the child may
// only make async-signal-safe calls).
std::string ResolveProgram(const std::string& file) {
  if (file.find('/') != std::string::npos) return file;
  const char* path = getenv("PATH");
  for (absl::string_view dir : absl::StrSplit(path ? path : "/bin:/usr/bin", ':')) {
    std::string candidate = absl::StrCat(dir.empty() ? "." : dir, "/", file);
    struct stat st;
    if (access(candidate.c_str(), X_OK) == 0 && stat(candidate.c_str(), &st) == 0 &&
        S_ISREG(st.st_mode)) {
      return candidate;
    }
  }
  return file;  // execve says ENOENT
}

void CloseFrom(int first, int last) {
  if (first > last) return;
  if (syscall(SYS_close_range, first, last, 0) == 0) return;
  for (int fd = first; fd <= std::min(last, 65535); ++fd) close(fd);
}

// The child of clone3: async-signal-safe calls only, then exec. Never returns.
[[noreturn]] void ExecChild(const char* exe, char* const* argv, char* const* envp, const char* cwd,
                            int out_fd, int err_fd, int channel_fd, int devnull, int report,
                            const int* join_fds, size_t joins) {
  // First, before any dup2 could cover one: "0" is the writing process itself.
  for (size_t i = 0; i < joins; ++i) {
    if (write(join_fds[i], "0", 1) != 1) {
      ChildFailure f{3, errno};
      ssize_t ignored = write(report, &f, sizeof(f));
      (void)ignored;
      _exit(127);
    }
  }
  struct sigaction dfl {};
  dfl.sa_handler = SIG_DFL;
  for (int sig = 1; sig < NSIG; ++sig) sigaction(sig, &dfl, nullptr);
  sigset_t empty;
  sigemptyset(&empty);
  sigprocmask(SIG_SETMASK, &empty, nullptr);
  // Sources above the targets first, so that no dup2 overwrites one still needed.
  auto high = [](int fd) { return fd < 0 ? -1 : fcntl(fd, F_DUPFD_CLOEXEC, 10); };
  const int null_hi = high(devnull), out_hi = high(out_fd), err_hi = high(err_fd);
  const int chan_hi = high(channel_fd), report_hi = high(report);
  dup2(null_hi, 0);
  dup2(out_hi >= 0 ? out_hi : null_hi, 1);
  dup2(err_hi >= 0 ? err_hi : null_hi, 2);
  if (chan_hi >= 0) dup2(chan_hi, 3);
  const int first = chan_hi >= 0 ? 4 : 3;
  CloseFrom(first, report_hi - 1);
  CloseFrom(report_hi + 1, ~0U >> 1);
  ChildFailure f{};
  if (cwd != nullptr && chdir(cwd) != 0) {
    f = {0, errno};
  } else if (setsid() < 0) {
    f = {2, errno};
  } else {
    execve(exe, argv, envp);
    f = {1, errno};
  }
  ssize_t ignored = write(report_hi, &f, sizeof(f));
  (void)ignored;
  _exit(127);
}

std::vector<char*> CStrings(const std::vector<std::string>& v) {
  std::vector<char*> out;
  out.reserve(v.size() + 1);
  for (const auto& s : v) out.push_back(const_cast<char*>(s.c_str()));
  out.push_back(nullptr);
  return out;
}

// posix_spawn cannot start a child in a cgroup (glibc 2.36 has no
// posix_spawnattr_setcgroup_np): clone3, then exec.
absl::StatusOr<SpawnedProcess> SpawnIntoCgroup(const SpawnRequest& req) {
  const std::string exe = ResolveProgram(req.argv[0]);
  std::vector<char*> argv = CStrings(req.argv), envp = CStrings(req.env);
  int pipefd[2];
  if (pipe2(pipefd, O_CLOEXEC) != 0) return absl::InternalError(absl::StrCat("pipe2: ", strerror(errno)));
  const int devnull = open("/dev/null", O_RDWR | O_CLOEXEC);
  absl::Cleanup close_fds = [&] {
    close(pipefd[0]);
    if (pipefd[1] >= 0) close(pipefd[1]);
    if (devnull >= 0) close(devnull);
  };
  int pidfd = -1;
  clone_args args{};
  args.flags = CLONE_PIDFD | (req.cgroup_fd >= 0 ? CLONE_INTO_CGROUP : 0);
  args.pidfd = reinterpret_cast<uint64_t>(&pidfd);
  args.exit_signal = SIGCHLD;
  args.cgroup = static_cast<uint64_t>(req.cgroup_fd);
  const long pid = syscall(SYS_clone3, &args, sizeof(args));
  if (pid < 0) return absl::UnavailableError(absl::StrCat("clone3: ", strerror(errno)));
  if (pid == 0) {
    ExecChild(exe.c_str(), argv.data(), envp.data(), req.cwd.empty() ? nullptr : req.cwd.c_str(),
              req.stdout_fd, req.stderr_fd, req.channel_fd, devnull, pipefd[1],
              req.join_fds.data(), req.join_fds.size());
  }
  close(pipefd[1]);
  pipefd[1] = -1;
  ChildFailure f{};
  ssize_t n;
  do {
    n = read(pipefd[0], &f, sizeof(f));
  } while (n < 0 && errno == EINTR);
  if (n != static_cast<ssize_t>(sizeof(f))) return SpawnedProcess{static_cast<pid_t>(pid), pidfd};
  waitpid(static_cast<pid_t>(pid), nullptr, 0);
  close(pidfd);
  if (f.stage == 0) {
    return absl::FailedPreconditionError(absl::StrCat(
        "cannot change to working directory ", req.cwd, ": ", strerror(f.err)));
  }
  if (f.stage == 3) {
    return absl::FailedPreconditionError(
        absl::StrCat("cannot enter the unit's limits cgroup: ", strerror(f.err)));
  }
  return absl::FailedPreconditionError(absl::StrCat(
      f.stage == 2 ? "cannot start a session for " : "cannot execute ", req.argv[0], ": ",
      strerror(f.err)));
}

// The children Spawn started and their owners have not reaped yet.
struct ChildRegistry {
  std::mutex mu;
  std::set<pid_t> pids;
};
ChildRegistry& Children() {
  static ChildRegistry* r = new ChildRegistry;  // never destroyed: used until exit
  return *r;
}

// posix_spawn(p) into a new session with the request's descriptors, signals and directory.
absl::StatusOr<SpawnedProcess> PosixSpawn(const SpawnRequest& req) {
  posix_spawn_file_actions_t fa;
  posix_spawnattr_t attr;
  posix_spawn_file_actions_init(&fa);
  posix_spawnattr_init(&attr);
  absl::Cleanup cleanup = [&] {
    posix_spawn_file_actions_destroy(&fa);
    posix_spawnattr_destroy(&attr);
  };

  posix_spawn_file_actions_addopen(&fa, 0, "/dev/null", O_RDONLY, 0);
  if (req.stdout_fd >= 0) {
    posix_spawn_file_actions_adddup2(&fa, req.stdout_fd, 1);
  } else {
    posix_spawn_file_actions_addopen(&fa, 1, "/dev/null", O_WRONLY, 0);
  }
  if (req.stderr_fd >= 0) {
    posix_spawn_file_actions_adddup2(&fa, req.stderr_fd, 2);
  } else {
    posix_spawn_file_actions_addopen(&fa, 2, "/dev/null", O_WRONLY, 0);
  }
  // The module channel becomes fd 3. dup2 onto itself would keep FD_CLOEXEC, so a source
  // that already is fd 3 is moved first.
  int channel_src = req.channel_fd;
  int moved = -1;
  if (channel_src == 3) {
    moved = fcntl(channel_src, F_DUPFD_CLOEXEC, 10);
    if (moved < 0) return absl::InternalError(absl::StrCat("fcntl: ", strerror(errno)));
    channel_src = moved;
  }
  absl::Cleanup close_moved = [moved] {
    if (moved >= 0) close(moved);
  };
  if (channel_src >= 0) posix_spawn_file_actions_adddup2(&fa, channel_src, 3);
  // Whatever the agent opened without O_CLOEXEC (libraries do) stays out of the child.
  posix_spawn_file_actions_addclosefrom_np(&fa, channel_src >= 0 ? 4 : 3);
  if (!req.cwd.empty()) posix_spawn_file_actions_addchdir_np(&fa, req.cwd.c_str());

  sigset_t empty, all;
  sigemptyset(&empty);
  sigfillset(&all);
  posix_spawnattr_setsigmask(&attr, &empty);
  posix_spawnattr_setsigdefault(&attr, &all);
  posix_spawnattr_setflags(&attr, POSIX_SPAWN_SETSID | POSIX_SPAWN_SETSIGMASK |
                                      POSIX_SPAWN_SETSIGDEF | POSIX_SPAWN_USEVFORK);

  std::vector<char*> argv;
  argv.reserve(req.argv.size() + 1);
  for (const auto& a : req.argv) argv.push_back(const_cast<char*>(a.c_str()));
  argv.push_back(nullptr);
  std::vector<char*> envp;
  envp.reserve(req.env.size() + 1);
  for (const auto& e : req.env) envp.push_back(const_cast<char*>(e.c_str()));
  envp.push_back(nullptr);

  pid_t pid = 0;
  int rc = posix_spawnp(&pid, argv[0], &fa, &attr, argv.data(), envp.data());
  if (rc != 0) {
    std::string what = absl::StrCat("cannot execute ", req.argv[0], ": ", strerror(rc));
    if (rc == ENOENT && !req.cwd.empty() && access(req.cwd.c_str(), X_OK) != 0) {
      what = absl::StrCat("cannot change to working directory ", req.cwd, ": ",
                          strerror(errno));
    }
    return absl::FailedPreconditionError(what);
  }
  int pidfd = OpenPidfd(pid);
  if (pidfd < 0) {
    int err = errno;
    kill(pid, SIGKILL);
    waitpid(pid, nullptr, 0);
    return absl::InternalError(absl::StrCat("pidfd_open(", pid, "): ", strerror(err),
                                            " (Linux 5.3 or later is required)"));
  }
  return SpawnedProcess{pid, pidfd};
}

// Moves `pid` into each v1 cgroup.procs; false (errno set) if one refuses.
bool JoinProcs(const std::vector<int>& join_fds, pid_t pid) {
  const std::string text = absl::StrCat(pid);
  for (int fd : join_fds) {
    if (write(fd, text.data(), text.size()) != static_cast<ssize_t>(text.size())) return false;
  }
  return true;
}

// Moves `pid` into the cgroup (an O_DIRECTORY fd); best effort.
void JoinCgroup(int cgroup_fd, pid_t pid) {
  int fd = openat(cgroup_fd, "cgroup.procs", O_WRONLY | O_CLOEXEC);
  if (fd < 0) return;
  std::string text = absl::StrCat(pid);
  ssize_t ignored = write(fd, text.data(), text.size());
  (void)ignored;
  close(fd);
}

}  // namespace

int OpenPidfd(pid_t pid) { return static_cast<int>(syscall(SYS_pidfd_open, pid, 0)); }

bool IsSpawnedChild(pid_t pid) {
  std::lock_guard<std::mutex> l(Children().mu);
  return Children().pids.count(pid) > 0;
}

void ForgetChild(pid_t pid) {
  std::lock_guard<std::mutex> l(Children().mu);
  Children().pids.erase(pid);
}

absl::StatusOr<SpawnedProcess> PosixSpawner::Spawn(const SpawnRequest& req) {
  // Held across the spawn: a child that exits at once is never a zombie not yet recorded.
  std::lock_guard<std::mutex> l(Children().mu);
  auto spawned = SpawnUnrecorded(req);
  if (spawned.ok()) Children().pids.insert(spawned->pid);
  return spawned;
}

absl::StatusOr<SpawnedProcess> PosixSpawner::SpawnUnrecorded(const SpawnRequest& req) {
  if (req.argv.empty()) return absl::InvalidArgumentError("nothing to execute (empty argv)");
  if (req.cgroup_fd >= 0 || !req.join_fds.empty()) {
    auto spawned = SpawnIntoCgroup(req);
    if (spawned.ok() || !absl::IsUnavailable(spawned.status())) return spawned;
    // No clone3 here: posix_spawn, then the child joins the cgroups (what it forks before
    // that stays outside: the only window this fallback has).
    auto p = PosixSpawn(req);  // which looks at neither cgroup_fd nor join_fds
    if (!p.ok()) return p;
    if (req.cgroup_fd >= 0) JoinCgroup(req.cgroup_fd, p->pid);
    if (!JoinProcs(req.join_fds, p->pid)) {
      const int err = errno;
      kill(p->pid, SIGKILL);
      waitpid(p->pid, nullptr, 0);
      close(p->pidfd);
      return absl::FailedPreconditionError(
          absl::StrCat("cannot enter the unit's limits cgroup: ", strerror(err)));
    }
    return p;
  }
  return PosixSpawn(req);
}

}  // namespace herd::agent
