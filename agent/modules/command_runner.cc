#include "agent/modules/command_runner.h"

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>

#include "absl/cleanup/cleanup.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/strip.h"

extern char** environ;

namespace herd::agent {
namespace {

constexpr size_t kKeptOutput = 64 << 10;

class SystemOps final : public ChildWaitOps {
 public:
  int Poll(pollfd* fds, nfds_t count, int timeout_ms) override {
    return poll(fds, count, timeout_ms);
  }
  void KillGroup(pid_t pgid) override { kill(-pgid, SIGKILL); }
  int Reap(pid_t pid) override {
    int status = 0;
    while (waitpid(pid, &status, 0) < 0 && errno == EINTR) {
    }
    ForgetChild(pid);
    return status;
  }
};

// PosixSpawner says "cannot execute PROGRAM: why"; installs have always said "cannot run".
absl::Status SpawnError(const std::string& program, const absl::Status& s) {
  absl::string_view why = s.message();
  absl::ConsumePrefix(&why, absl::StrCat("cannot execute ", program, ": "));
  return absl::Status(s.code(), absl::StrCat("cannot run ", program, ": ", why));
}

}  // namespace

ChildWaitOps& SystemChildWaitOps() {
  static SystemOps ops;
  return ops;
}

struct SpawnerCommandRunner::Outcome {
  static Outcome TimedOut() { return Outcome{true, ""}; }
  static Outcome Failed(std::string why) { return Outcome{false, std::move(why)}; }
  bool finished() const { return !timed_out && wait_error.empty(); }
  bool timed_out = false;
  std::string wait_error;  // why waiting failed, "" when it did not
};

SpawnerCommandRunner::SpawnerCommandRunner(Spawner& spawner, const Clock& clock,
                                           ChildWaitOps& ops)
    : spawner_(spawner), clock_(clock), ops_(ops) {}

absl::StatusOr<CommandResult> SpawnerCommandRunner::Run(const CommandRequest& req) {
  if (req.argv.empty()) return absl::InvalidArgumentError("empty command");
  int pipefd[2];
  if (pipe2(pipefd, O_CLOEXEC) != 0) {
    return absl::InternalError(absl::StrCat("pipe: ", strerror(errno)));
  }
  absl::Cleanup close_read = [&] { close(pipefd[0]); };
  SpawnRequest spawn;
  spawn.argv = req.argv;
  spawn.cwd = req.cwd;
  for (char** e = environ; *e != nullptr; ++e) spawn.env.emplace_back(*e);
  spawn.env.insert(spawn.env.end(), req.extra_env.begin(), req.extra_env.end());
  spawn.stdout_fd = pipefd[1];
  spawn.stderr_fd = pipefd[1];
  auto child = spawner_.Spawn(spawn);
  close(pipefd[1]);  // the child's copy is the only writer left: EOF when it is gone
  if (!child.ok()) return SpawnError(req.argv[0], child.status());
  absl::Cleanup close_pidfd = [&] {
    if (child->pidfd >= 0) close(child->pidfd);
  };

  CommandResult result;
  const Outcome outcome =
      Wait(pipefd[0], child->pidfd, clock_.Monotonic() + req.timeout, &result.output);
  // Never reap blind: a child we stopped watching is killed first, so Reap cannot block.
  if (!outcome.finished()) ops_.KillGroup(child->pid);
  const int status = ops_.Reap(child->pid);
  if (outcome.timed_out) {
    return absl::DeadlineExceededError(absl::StrCat(
        absl::StrJoin(req.argv, " "), " did not finish within ",
        absl::FormatDuration(req.timeout), "; output:\n", LastLines(result.output, 20)));
  }
  if (!outcome.wait_error.empty()) {
    return absl::InternalError(absl::StrCat(
        "cannot wait for ", absl::StrJoin(req.argv, " "), " (", outcome.wait_error,
        "), so it was killed; output:\n", LastLines(result.output, 20)));
  }
  result.exit_code = WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
  return result;
}

// Reads the output until EOF and waits for the pidfd to say the child ended, both by the
// deadline. Without a pidfd, EOF stands for the end.
SpawnerCommandRunner::Outcome SpawnerCommandRunner::Wait(int out_fd, int pidfd,
                                                         absl::Time deadline,
                                                         std::string* output) {
  bool reading = true, exited = pidfd < 0;
  char buf[8192];
  while (reading || !exited) {
    const absl::Duration left = deadline - clock_.Monotonic();
    if (left <= absl::ZeroDuration()) return Outcome::TimedOut();
    pollfd fds[2];
    nfds_t count = 0;
    if (reading) fds[count++] = pollfd{out_fd, POLLIN, 0};
    if (!exited) fds[count++] = pollfd{pidfd, POLLIN, 0};
    const int wait_ms =
        static_cast<int>(std::clamp<int64_t>(absl::ToInt64Milliseconds(left), 1, 1000));
    if (ops_.Poll(fds, count, wait_ms) < 0) {
      if (errno == EINTR) continue;
      return Outcome::Failed(absl::StrCat("poll: ", strerror(errno)));
    }
    for (nfds_t i = 0; i < count; ++i) {
      if (fds[i].revents == 0) continue;
      if (fds[i].fd == pidfd) {
        exited = true;
        continue;
      }
      const ssize_t got = read(out_fd, buf, sizeof buf);
      if (got < 0 && errno == EINTR) continue;
      if (got <= 0) {
        reading = false;  // EOF: every writer is gone
        continue;
      }
      output->append(buf, static_cast<size_t>(got));
      if (output->size() > kKeptOutput) output->erase(0, output->size() - kKeptOutput);
    }
  }
  return Outcome{};
}

std::string LastLines(const std::string& text, size_t lines) {
  size_t pos = text.size();
  if (pos > 0 && text[pos - 1] == '\n') --pos;
  size_t count = 0;
  while (pos > 0) {
    size_t nl = text.rfind('\n', pos - 1);
    if (nl == std::string::npos) return text;
    if (++count == lines) return text.substr(nl + 1);
    pos = nl;
  }
  return text;
}

}  // namespace herd::agent
