#include "agent/supervisor/spawner.h"

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <spawn.h>
#include <string.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include "absl/cleanup/cleanup.h"
#include "absl/strings/str_cat.h"

namespace herd::agent {

int OpenPidfd(pid_t pid) { return static_cast<int>(syscall(SYS_pidfd_open, pid, 0)); }

absl::StatusOr<SpawnedProcess> PosixSpawner::Spawn(const SpawnRequest& req) {
  if (req.argv.empty()) return absl::InvalidArgumentError("nothing to execute (empty argv)");

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

}  // namespace herd::agent
