#include "agent/supervisor/restart_policy.h"

#include <signal.h>

#include <string>

#include "absl/time/time.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "herd/v1/types.pb.h"

namespace herd::agent {
namespace {

using ::testing::AllOf;
using ::testing::HasSubstr;
using Action = RestartDecision::Action;

// A spec with PM2's defaults, the way ParseEcosystem fills them in.
herd::v1::AppSpec Pm2Defaults() {
  herd::v1::AppSpec spec;
  spec.set_name("api");
  spec.set_script("/srv/api/server.js");
  spec.set_autorestart(true);
  spec.set_max_restarts(16);
  spec.set_min_uptime_ms(1000);
  spec.set_kill_timeout_ms(1600);
  return spec;
}

ExitInfo Crash(absl::Duration uptime, int code = 1) {
  ExitInfo e;
  e.exit_code = code;
  e.uptime = uptime;
  return e;
}

ExitInfo Killed(int signal, absl::Duration uptime) {
  ExitInfo e;
  e.signal = signal;
  e.uptime = uptime;
  return e;
}

const absl::Duration kShort = absl::Milliseconds(100);  // below the 1000 ms min_uptime
const absl::Duration kStable = absl::Seconds(5);        // above min_uptime, below 30 s
const absl::Duration kLong = absl::Seconds(31);         // above the backoff reset

// --- Stop ----------------------------------------------------------------------------------

TEST(RestartPolicy, AutorestartOffStops) {
  herd::v1::AppSpec spec = Pm2Defaults();
  spec.set_autorestart(false);
  RestartPolicy policy(spec);
  RestartDecision d = policy.OnExit(Crash(kStable, 2));
  EXPECT_EQ(d.action, Action::kStop);
  EXPECT_EQ(d.reason, "exited with code 2; autorestart is off");
}

TEST(RestartPolicy, AutorestartOffStopsEvenAfterAStableRun) {
  herd::v1::AppSpec spec = Pm2Defaults();
  spec.set_autorestart(false);
  RestartPolicy policy(spec);
  EXPECT_EQ(policy.OnExit(Crash(kLong, 0)).action, Action::kStop);
}

TEST(RestartPolicy, ExitCodeInStopExitCodesStops) {
  herd::v1::AppSpec spec = Pm2Defaults();
  spec.add_stop_exit_codes(0);
  spec.add_stop_exit_codes(3);
  RestartPolicy policy(spec);
  RestartDecision d = policy.OnExit(Crash(kShort, 3));
  EXPECT_EQ(d.action, Action::kStop);
  EXPECT_EQ(d.reason, "exited with code 3, listed in stop_exit_codes");
}

TEST(RestartPolicy, ExitCodeNotInStopExitCodesRestarts) {
  herd::v1::AppSpec spec = Pm2Defaults();
  spec.add_stop_exit_codes(0);
  RestartPolicy policy(spec);
  EXPECT_EQ(policy.OnExit(Crash(kStable, 1)).action, Action::kRestart);
}

TEST(RestartPolicy, SignalIsNotMatchedAgainstStopExitCodes) {
  herd::v1::AppSpec spec = Pm2Defaults();
  spec.add_stop_exit_codes(9);
  spec.add_stop_exit_codes(0);
  RestartPolicy policy(spec);
  // A SIGKILL has exit_code 0 and signal 9: neither may match.
  EXPECT_EQ(policy.OnExit(Killed(SIGKILL, kStable)).action, Action::kRestart);
}

TEST(RestartPolicy, StopDoesNotCountAsUnstable) {
  herd::v1::AppSpec spec = Pm2Defaults();
  spec.add_stop_exit_codes(0);
  RestartPolicy policy(spec);
  policy.OnExit(Crash(kShort, 0));
  EXPECT_EQ(policy.unstable_restarts(), 0u);
}

// --- Unstable restarts -----------------------------------------------------------------------

TEST(RestartPolicy, ExitBeforeMinUptimeCountsAsUnstable) {
  RestartPolicy policy(Pm2Defaults());
  EXPECT_EQ(policy.OnExit(Crash(kShort)).action, Action::kRestart);
  EXPECT_EQ(policy.OnExit(Crash(kShort)).action, Action::kRestart);
  EXPECT_EQ(policy.unstable_restarts(), 2u);
}

TEST(RestartPolicy, ExitAtExactlyMinUptimeIsStable) {
  RestartPolicy policy(Pm2Defaults());
  policy.OnExit(Crash(absl::Milliseconds(1000)));
  EXPECT_EQ(policy.unstable_restarts(), 0u);
}

TEST(RestartPolicy, ExitJustBeforeMinUptimeIsUnstable) {
  RestartPolicy policy(Pm2Defaults());
  policy.OnExit(Crash(absl::Milliseconds(999)));
  EXPECT_EQ(policy.unstable_restarts(), 1u);
}

TEST(RestartPolicy, ErroredWhenUnstableCountReachesMaxRestarts) {
  herd::v1::AppSpec spec = Pm2Defaults();
  spec.set_max_restarts(3);
  RestartPolicy policy(spec);
  EXPECT_EQ(policy.OnExit(Crash(kShort)).action, Action::kRestart);
  EXPECT_EQ(policy.OnExit(Crash(kShort)).action, Action::kRestart);
  RestartDecision d = policy.OnExit(Crash(kShort));
  EXPECT_EQ(d.action, Action::kErrored);
  EXPECT_EQ(policy.unstable_restarts(), 3u);
}

TEST(RestartPolicy, ErroredReasonNamesCountsAndLimits) {
  RestartPolicy policy(Pm2Defaults());
  RestartDecision d;
  for (int i = 0; i < 16; ++i) d = policy.OnExit(Crash(kShort, 1));
  ASSERT_EQ(d.action, Action::kErrored);
  EXPECT_EQ(d.reason,
            "exited with code 1; too many unstable restarts (16 in a row, each up less than "
            "min_uptime 1000 ms; max_restarts is 16)");
}

TEST(RestartPolicy, PmTwoDefaultsAllowFifteenUnstableRestarts) {
  RestartPolicy policy(Pm2Defaults());
  for (int i = 0; i < 15; ++i) {
    ASSERT_EQ(policy.OnExit(Crash(kShort)).action, Action::kRestart) << "exit " << i + 1;
  }
  EXPECT_EQ(policy.OnExit(Crash(kShort)).action, Action::kErrored);
}

TEST(RestartPolicy, StableRunResetsTheUnstableCount) {
  herd::v1::AppSpec spec = Pm2Defaults();
  spec.set_max_restarts(3);
  RestartPolicy policy(spec);
  policy.OnExit(Crash(kShort));
  policy.OnExit(Crash(kShort));
  EXPECT_EQ(policy.OnExit(Crash(kStable)).action, Action::kRestart);
  EXPECT_EQ(policy.unstable_restarts(), 0u);
  // Two more unstable exits are again below the limit.
  EXPECT_EQ(policy.OnExit(Crash(kShort)).action, Action::kRestart);
  EXPECT_EQ(policy.OnExit(Crash(kShort)).action, Action::kRestart);
}

TEST(RestartPolicy, StableRunsNeverError) {
  herd::v1::AppSpec spec = Pm2Defaults();
  spec.set_max_restarts(1);
  RestartPolicy policy(spec);
  for (int i = 0; i < 50; ++i) {
    ASSERT_EQ(policy.OnExit(Crash(kStable)).action, Action::kRestart);
  }
}

TEST(RestartPolicy, ResetClearsTheUnstableCount) {
  herd::v1::AppSpec spec = Pm2Defaults();
  spec.set_max_restarts(2);
  RestartPolicy policy(spec);
  policy.OnExit(Crash(kShort));
  ASSERT_EQ(policy.OnExit(Crash(kShort)).action, Action::kErrored);
  policy.Reset();
  EXPECT_EQ(policy.unstable_restarts(), 0u);
  EXPECT_EQ(policy.OnExit(Crash(kShort)).action, Action::kRestart);
}

TEST(RestartPolicy, SignalDeathBeforeMinUptimeIsUnstable) {
  RestartPolicy policy(Pm2Defaults());
  policy.OnExit(Killed(SIGSEGV, kShort));
  EXPECT_EQ(policy.unstable_restarts(), 1u);
}

// --- Delays --------------------------------------------------------------------------------

TEST(RestartPolicy, RestartsAtOnceByDefault) {
  RestartPolicy policy(Pm2Defaults());
  RestartDecision d = policy.OnExit(Crash(kStable));
  EXPECT_EQ(d.action, Action::kRestart);
  EXPECT_EQ(d.delay, absl::ZeroDuration());
}

TEST(RestartPolicy, RestartDelayIsFixed) {
  herd::v1::AppSpec spec = Pm2Defaults();
  spec.set_restart_delay_ms(2500);
  RestartPolicy policy(spec);
  EXPECT_EQ(policy.OnExit(Crash(kShort)).delay, absl::Milliseconds(2500));
  EXPECT_EQ(policy.OnExit(Crash(kShort)).delay, absl::Milliseconds(2500));
  EXPECT_EQ(policy.OnExit(Crash(kStable)).delay, absl::Milliseconds(2500));
}

TEST(RestartPolicy, RestartReasonNamesTheExitAndTheDelay) {
  herd::v1::AppSpec spec = Pm2Defaults();
  spec.set_restart_delay_ms(2500);
  RestartPolicy policy(spec);
  EXPECT_EQ(policy.OnExit(Crash(kStable, 7)).reason, "exited with code 7; restarting in 2.5s");
}

TEST(RestartPolicy, BacksOffExponentiallyAfterUnstableExit) {
  herd::v1::AppSpec spec = Pm2Defaults();
  spec.set_exp_backoff_restart_delay_ms(100);
  RestartPolicy policy(spec);
  EXPECT_EQ(policy.OnExit(Crash(kShort)).delay, absl::Milliseconds(100));
  EXPECT_EQ(policy.OnExit(Crash(kShort)).delay, absl::Milliseconds(150));
  EXPECT_EQ(policy.OnExit(Crash(kShort)).delay, absl::Milliseconds(225));
  EXPECT_EQ(policy.OnExit(Crash(kShort)).delay, absl::Microseconds(337500));
  EXPECT_EQ(policy.current_backoff(), absl::Microseconds(337500));
}

TEST(RestartPolicy, ExpBackoffTakesPrecedenceOverRestartDelay) {
  herd::v1::AppSpec spec = Pm2Defaults();
  spec.set_restart_delay_ms(5000);
  spec.set_exp_backoff_restart_delay_ms(100);
  RestartPolicy policy(spec);
  EXPECT_EQ(policy.OnExit(Crash(kShort)).delay, absl::Milliseconds(100));
}

TEST(RestartPolicy, BackoffIsCappedAtFifteenSeconds) {
  herd::v1::AppSpec spec = Pm2Defaults();
  spec.set_exp_backoff_restart_delay_ms(10'000);
  spec.set_max_restarts(100);
  RestartPolicy policy(spec);
  EXPECT_EQ(policy.OnExit(Crash(kShort)).delay, absl::Seconds(10));
  EXPECT_EQ(policy.OnExit(Crash(kShort)).delay, absl::Seconds(15));
  EXPECT_EQ(policy.OnExit(Crash(kShort)).delay, absl::Seconds(15));
  EXPECT_EQ(RestartPolicy::kMaxBackoff, absl::Seconds(15));
}

TEST(RestartPolicy, BackoffKeepsGrowingAfterAStableRunShorterThanThirtySeconds) {
  herd::v1::AppSpec spec = Pm2Defaults();
  spec.set_exp_backoff_restart_delay_ms(100);
  RestartPolicy policy(spec);
  policy.OnExit(Crash(kShort));
  EXPECT_EQ(policy.OnExit(Crash(kStable)).delay, absl::Milliseconds(150));
}

TEST(RestartPolicy, BackoffResetsAfterThirtySecondsOfUptime) {
  herd::v1::AppSpec spec = Pm2Defaults();
  spec.set_exp_backoff_restart_delay_ms(100);
  RestartPolicy policy(spec);
  policy.OnExit(Crash(kShort));
  policy.OnExit(Crash(kShort));
  policy.OnExit(Crash(kShort));
  EXPECT_EQ(policy.OnExit(Crash(RestartPolicy::kBackoffReset)).delay, absl::Milliseconds(100));
  EXPECT_EQ(policy.OnExit(Crash(kShort)).delay, absl::Milliseconds(150));
}

TEST(RestartPolicy, ResetClearsTheBackoff) {
  herd::v1::AppSpec spec = Pm2Defaults();
  spec.set_exp_backoff_restart_delay_ms(100);
  RestartPolicy policy(spec);
  policy.OnExit(Crash(kShort));
  policy.OnExit(Crash(kShort));
  policy.Reset();
  EXPECT_EQ(policy.current_backoff(), absl::ZeroDuration());
  EXPECT_EQ(policy.OnExit(Crash(kShort)).delay, absl::Milliseconds(100));
}

TEST(RestartPolicy, ErroredExitDoesNotAdvanceTheBackoff) {
  herd::v1::AppSpec spec = Pm2Defaults();
  spec.set_exp_backoff_restart_delay_ms(100);
  spec.set_max_restarts(2);
  RestartPolicy policy(spec);
  policy.OnExit(Crash(kShort));
  ASSERT_EQ(policy.OnExit(Crash(kShort)).action, Action::kErrored);
  EXPECT_EQ(policy.current_backoff(), absl::Milliseconds(100));
}

// --- DescribeExit --------------------------------------------------------------------------

TEST(DescribeExit, ExitCode) {
  ExitInfo e;
  e.exit_code = 3;
  EXPECT_EQ(DescribeExit(e), "exited with code 3");
}

TEST(DescribeExit, CleanExit) { EXPECT_EQ(DescribeExit(ExitInfo{}), "exited with code 0"); }

TEST(DescribeExit, SignalWithItsName) {
  EXPECT_EQ(DescribeExit(Killed(SIGKILL, kShort)), "killed by signal 9 (Killed)");
}

TEST(DescribeExit, SignalTakesPrecedenceOverExitCode) {
  ExitInfo e = Killed(SIGTERM, kShort);
  e.exit_code = 1;
  EXPECT_THAT(DescribeExit(e), AllOf(HasSubstr("killed by signal 15"), HasSubstr("Terminated")));
}

}  // namespace
}  // namespace herd::agent
