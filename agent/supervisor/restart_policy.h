// RestartPolicy: PM2's decision, after a unit's process exits, whether and when to start it
// again. Pure state machine (no clock, no I/O): the supervisor feeds it exits with their
// uptime and acts on the decision, so every rule is unit-tested with made-up times.
//
// Rules (PM2 semantics, README "Restart policy"):
//  - autorestart=false, or an exit code listed in stop_exit_codes  -> stop.
//  - a run shorter than min_uptime is unstable; a run at least that long resets the count.
//  - when the consecutive unstable count reaches max_restarts      -> errored.
//  - otherwise restart after restart_delay, or, when exp_backoff_restart_delay is set, after
//    a delay starting there and growing x1.5 per consecutive restart, capped at 15 s, and
//    reset once the process has stayed up 30 s.
#pragma once

#include <cstdint>
#include <string>

#include "absl/time/time.h"
#include "herd/v1/types.pb.h"

namespace herd::agent {

struct ExitInfo {
  int exit_code = 0;  // valid when signal == 0
  int signal = 0;     // signal that killed the process, 0 if it exited
  absl::Duration uptime;
};

struct RestartDecision {
  enum class Action { kRestart, kStop, kErrored };
  Action action = Action::kRestart;
  absl::Duration delay;  // for kRestart
  std::string reason;    // human-readable, for kStop / kErrored and the event log
};

class RestartPolicy {
 public:
  static constexpr absl::Duration kMaxBackoff = absl::Seconds(15);
  static constexpr absl::Duration kBackoffReset = absl::Seconds(30);

  explicit RestartPolicy(const herd::v1::AppSpec& spec) : spec_(spec) {}

  // An exit the operator did not ask for.
  RestartDecision OnExit(const ExitInfo& exit);
  // The operator started or restarted the unit: counters start afresh.
  void Reset();

  uint32_t unstable_restarts() const { return unstable_; }
  absl::Duration current_backoff() const { return backoff_; }

 private:
  herd::v1::AppSpec spec_;
  uint32_t unstable_ = 0;
  absl::Duration backoff_ = absl::ZeroDuration();
};

// "exited with code 3", "killed by signal 9 (Killed)".
std::string DescribeExit(const ExitInfo& exit);

}  // namespace herd::agent
