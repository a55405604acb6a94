#include "agent/supervisor/restart_policy.h"

#include <string.h>

#include <algorithm>

#include "absl/strings/str_cat.h"

namespace herd::agent {

std::string DescribeExit(const ExitInfo& exit) {
  if (exit.signal != 0) {
    return absl::StrCat("killed by signal ", exit.signal, " (", strsignal(exit.signal), ")");
  }
  return absl::StrCat("exited with code ", exit.exit_code);
}

void RestartPolicy::Reset() {
  unstable_ = 0;
  backoff_ = absl::ZeroDuration();
}

RestartDecision RestartPolicy::OnExit(const ExitInfo& exit) {
  RestartDecision d;
  std::string how = DescribeExit(exit);
  if (!spec_.autorestart()) {
    d.action = RestartDecision::Action::kStop;
    d.reason = absl::StrCat(how, "; autorestart is off");
    return d;
  }
  if (exit.signal == 0) {
    for (int code : spec_.stop_exit_codes()) {
      if (code == exit.exit_code) {
        d.action = RestartDecision::Action::kStop;
        d.reason = absl::StrCat(how, ", listed in stop_exit_codes");
        return d;
      }
    }
  }
  absl::Duration min_uptime = absl::Milliseconds(spec_.min_uptime_ms());
  if (exit.uptime < min_uptime) {
    ++unstable_;
  } else {
    unstable_ = 0;
  }
  if (unstable_ > 0 && unstable_ >= spec_.max_restarts()) {
    d.action = RestartDecision::Action::kErrored;
    d.reason = absl::StrCat(how, "; too many unstable restarts (", unstable_,
                            " in a row, each up less than min_uptime ", spec_.min_uptime_ms(),
                            " ms; max_restarts is ", spec_.max_restarts(), ")");
    return d;
  }
  d.action = RestartDecision::Action::kRestart;
  if (spec_.exp_backoff_restart_delay_ms() > 0) {
    if (exit.uptime >= kBackoffReset) backoff_ = absl::ZeroDuration();
    backoff_ = backoff_ == absl::ZeroDuration()
                   ? absl::Milliseconds(spec_.exp_backoff_restart_delay_ms())
                   : std::min(kMaxBackoff, backoff_ * 1.5);
    d.delay = backoff_;
  } else {
    d.delay = absl::Milliseconds(spec_.restart_delay_ms());
  }
  d.reason = absl::StrCat(how, "; restarting in ", absl::FormatDuration(d.delay));
  return d;
}

}  // namespace herd::agent
