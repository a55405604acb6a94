// CommandRunner: runs an external program (tar, npm) to completion, capturing its combined
// output. Module installation uses it from its worker thread, never on the agent's loop
// thread. The seam lets the installer's tests script what each command does
// (tests/fakes/fake_command_runner.h) instead of running npm.
//
// SpawnerCommandRunner is the real one. It starts the program through the Spawner seam
// (PosixSpawner: posix_spawn, a new session so that the whole process group can be killed,
// and a pidfd), reads its output until EOF and waits for its exit on the pidfd, all within
// the timeout on the monotonic clock. Whatever ends the wait early, the deadline or a wait
// that fails, the process group is killed before the child is reaped, so a run never blocks
// on a child it can no longer watch.
#pragma once

#include <poll.h>
#include <sys/types.h>

#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "agent/supervisor/spawner.h"
#include "common/clock.h"

namespace herd::agent {

struct CommandRequest {
  std::vector<std::string> argv;       // argv[0] is looked up on agentd's PATH
  std::string cwd;                     // empty = agentd's
  absl::Duration timeout = absl::Minutes(5);
  std::vector<std::string> extra_env;  // "KEY=VALUE", added after agentd's environment
};

struct CommandResult {
  int exit_code = -1;   // 128+signal when killed by a signal
  std::string output;   // stdout and stderr interleaved, last 64 KiB
};

class CommandRunner {
 public:
  virtual ~CommandRunner() = default;
  // Fails (not an exit code) when the program cannot be started, does not finish within
  // the timeout, or cannot be waited for; it is then killed with its process group.
  virtual absl::StatusOr<CommandResult> Run(const CommandRequest& request) = 0;
};

// What SpawnerCommandRunner does to a started child besides reading its output: the seam
// its tests use to make time pass in a poll, or a poll fail.
class ChildWaitOps {
 public:
  virtual ~ChildWaitOps() = default;
  // poll(2).
  virtual int Poll(pollfd* fds, nfds_t count, int timeout_ms) = 0;
  // SIGKILL to the child's process group (its pid: the Spawner starts a new session).
  virtual void KillGroup(pid_t pgid) = 0;
  // Waits for the child to end and returns its wait status (waitpid(2)).
  virtual int Reap(pid_t pid) = 0;
};

// The system's calls.
ChildWaitOps& SystemChildWaitOps();

class SpawnerCommandRunner final : public CommandRunner {
 public:
  SpawnerCommandRunner(Spawner& spawner, const Clock& clock,
                       ChildWaitOps& ops = SystemChildWaitOps());
  absl::StatusOr<CommandResult> Run(const CommandRequest& request) override;

 private:
  struct Outcome;
  Outcome Wait(int out_fd, int pidfd, absl::Time deadline, std::string* output);

  Spawner& spawner_;
  const Clock& clock_;
  ChildWaitOps& ops_;
};

// The last `lines` lines of `text`, for error messages.
std::string LastLines(const std::string& text, size_t lines);

}  // namespace herd::agent
