// FakeSpawner: a Spawner (agent/supervisor/spawner.h) that starts nothing. Each Spawn plays
// the next scripted child: it writes the child's output into the request's stdout fd and
// returns a made-up pid with a "pidfd" (the read end of a pipe) that becomes readable when
// the child "exits": at once, or, for a child that hangs, only when the test (or
// FakeChildWaitOps, standing for SIGKILL) kills it. A hanging child also keeps its output
// open, as a real one does.
//
// FakeChildWaitOps: the ChildWaitOps of agent/modules/command_runner.h for a FakeSpawner's
// children: Poll looks at the real fds without waiting and, when nothing is ready, moves the
// FakeClock by the poll's timeout instead of sleeping; a poll can be made to fail; KillGroup
// kills the fake child; Reap returns its wait status. Not thread-safe.
#pragma once

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <unistd.h>

#include <deque>
#include <map>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "agent/modules/command_runner.h"
#include "agent/supervisor/spawner.h"
#include "common/clock.h"

namespace herd::testing {

class FakeSpawner final : public agent::Spawner {
 public:
  struct Child {
    std::string output;   // written to stdout before Spawn returns (keep it under 64 KiB)
    bool hangs = false;   // never exits on its own
    int exit_code = 0;
  };

  ~FakeSpawner() override {
    for (auto& [pid, c] : running_) Close(c);
  }

  // The next Spawn plays `child` (a child that exits with 0 and says nothing when none is
  // queued); or fails with `error`.
  void Next(Child child) { queue_.push_back(std::move(child)); }
  void FailNext(absl::Status error) { fail_next_ = std::move(error); }

  absl::StatusOr<agent::SpawnedProcess> Spawn(const agent::SpawnRequest& request) override {
    requests_.push_back(request);
    if (!fail_next_.ok()) return std::exchange(fail_next_, absl::OkStatus());
    Child child;
    if (!queue_.empty()) {
      child = std::move(queue_.front());
      queue_.pop_front();
    }
    if (!child.output.empty() && request.stdout_fd >= 0) {
      if (write(request.stdout_fd, child.output.data(), child.output.size()) < 0) {
        return absl::InternalError("FakeSpawner: cannot write the child's output");
      }
    }
    int exit_pipe[2];
    if (pipe2(exit_pipe, O_CLOEXEC) != 0) return absl::InternalError("FakeSpawner: pipe2");
    Running r;
    r.exit_write = exit_pipe[1];
    r.status = child.exit_code << 8;
    if (child.hangs) {
      r.output = request.stdout_fd >= 0 ? fcntl(request.stdout_fd, F_DUPFD_CLOEXEC, 3) : -1;
    } else {
      Close(r);
    }
    const pid_t pid = next_pid_++;
    running_[pid] = r;
    return agent::SpawnedProcess{pid, exit_pipe[0]};
  }

  // What SIGKILL does to the child: it ends (status: killed by SIGKILL), its output closes.
  void Kill(pid_t pid) {
    auto it = running_.find(pid);
    if (it == running_.end()) return;
    if (it->second.exit_write >= 0) it->second.status = SIGKILL;
    Close(it->second);
  }
  // The wait status of a child (0 for an unknown pid).
  int status(pid_t pid) const {
    auto it = running_.find(pid);
    return it == running_.end() ? 0 : it->second.status;
  }
  bool exited(pid_t pid) const {
    auto it = running_.find(pid);
    return it != running_.end() && it->second.exit_write < 0;
  }
  const std::vector<agent::SpawnRequest>& requests() const { return requests_; }

 private:
  struct Running {
    int exit_write = -1;  // open while the child runs
    int output = -1;      // a hanging child's copy of its stdout
    int status = 0;
  };
  static void Close(Running& r) {
    if (r.exit_write >= 0) close(r.exit_write);
    if (r.output >= 0) close(r.output);
    r.exit_write = r.output = -1;
  }

  std::deque<Child> queue_;
  absl::Status fail_next_;
  pid_t next_pid_ = 4000;
  std::map<pid_t, Running> running_;
  std::vector<agent::SpawnRequest> requests_;
};

class FakeChildWaitOps final : public agent::ChildWaitOps {
 public:
  FakeChildWaitOps(FakeSpawner& spawner, FakeClock& clock) : spawner_(spawner), clock_(clock) {}

  int Poll(pollfd* fds, nfds_t count, int timeout_ms) override {
    ++polls_;
    if (fail_polls_with_ != 0 && failures_left_ != 0) {
      if (failures_left_ > 0) --failures_left_;
      errno = fail_polls_with_;
      return -1;
    }
    const int ready = poll(fds, count, 0);
    if (ready == 0) clock_.Advance(absl::Milliseconds(timeout_ms));
    return ready;
  }
  void KillGroup(pid_t pgid) override {
    events_.push_back("kill " + std::to_string(pgid));
    spawner_.Kill(pgid);
  }
  int Reap(pid_t pid) override {
    // A real waitpid on a child still running would block: the test would hang, so say so.
    events_.push_back((spawner_.exited(pid) ? "reap " : "reap-would-block ") + std::to_string(pid));
    return spawner_.status(pid);
  }

  // The next `times` Polls (-1: every one) fail with errno `err`.
  void FailPollsWith(int err, int times = -1) {
    fail_polls_with_ = err;
    failures_left_ = times;
  }
  // "kill PID" and "reap PID" (or "reap-would-block PID"), in order.
  const std::vector<std::string>& events() const { return events_; }
  int polls() const { return polls_; }

 private:
  FakeSpawner& spawner_;
  FakeClock& clock_;
  int fail_polls_with_ = 0;
  int failures_left_ = 0;
  int polls_ = 0;
  std::vector<std::string> events_;
};

}  // namespace herd::testing
