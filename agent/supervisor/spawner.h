// Spawner: the seam between the supervisor and the kernel for starting processes. The real
// implementation uses posix_spawn (vfork-speed, exec errors reported synchronously; clone3
// when the child must start in a cgroup) and puts
// each child in a new session, so that the child's whole process group can be signalled on
// stop; it returns a pidfd so that the exit is an epoll event, never a poll.
//
// Invariants: the child starts with an empty signal mask and default dispositions (the
// agent blocks signals for its signalfd; children must not inherit that), with stdin on
// /dev/null, and with no descriptors of the agent's other than those named in the request.
#pragma once

#include <sys/types.h>

#include <string>
#include <vector>

#include "absl/status/statusor.h"

namespace herd::agent {

struct SpawnRequest {
  std::vector<std::string> argv;  // argv[0] is the program (absolute path or found on PATH)
  std::string cwd;                // empty = the agent's
  std::vector<std::string> env;   // complete environment, "KEY=VALUE"
  int stdout_fd = -1;             // becomes fd 1 (-1 = /dev/null)
  int stderr_fd = -1;             // becomes fd 2 (-1 = /dev/null)
  int channel_fd = -1;            // becomes fd 3 (a module's channel), if set
  // The cgroup (an O_DIRECTORY fd) the child starts in, if set: from its first instruction
  // (clone3 with CLONE_INTO_CGROUP), so nothing it forks can be outside it. A kernel without
  // clone3 (before 5.7, or a seccomp filter refusing it) gets the child moved right after
  // posix_spawn instead.
  int cgroup_fd = -1;
  // cgroup.procs files of cgroup v1 hierarchies (limits: unit_limits.h), open for writing:
  // the child writes itself into each before exec (after posix_spawn, where there is no
  // clone3). A failure fails the spawn.
  std::vector<int> join_fds;
};

struct SpawnedProcess {
  pid_t pid = 0;
  int pidfd = -1;  // owned by the caller; readable once the process has exited
};

class Spawner {
 public:
  virtual ~Spawner() = default;
  virtual absl::StatusOr<SpawnedProcess> Spawn(const SpawnRequest& request) = 0;
};

class PosixSpawner final : public Spawner {
 public:
  absl::StatusOr<SpawnedProcess> Spawn(const SpawnRequest& request) override;

 private:
  static absl::StatusOr<SpawnedProcess> SpawnUnrecorded(const SpawnRequest& request);
};

// The processes PosixSpawner started whose owner has not reaped them yet (it calls
// ForgetChild once it has). A subreaper reaps only the other children: the orphans it
// adopted. Thread-safe.
bool IsSpawnedChild(pid_t pid);
void ForgetChild(pid_t pid);

// pidfd_open(2); -1 with errno set on failure.
int OpenPidfd(pid_t pid);

}  // namespace herd::agent
