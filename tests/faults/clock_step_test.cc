// The wall clock stepped by an hour, forward and back, under a running control plane and
// agent: both run under libfaketime (LD_PRELOAD, FAKETIME_TIMESTAMP_FILE re-read on every
// call with FAKETIME_NO_CACHE=1, FAKETIME_DONT_FAKE_MONOTONIC=1 so that only CLOCK_REALTIME
// moves), and the test rewrites the offset in that file: +1 h, back to 0, then −1 h.
//
// Each step happens while relayed requests are pending (a module action that takes 6 s, a
// restart behind a 6 s health gate) and while streams are open (the agent's stream,
// `agentctl watch`, a followed log relayed from the host). Asserted: every request completes
// with its answer, no stream ends or is replaced, metrics keep flowing. Intervals and
// deadlines must run on the monotonic clock. See tests/faults/README.md.
#include <glob.h>
#include <signal.h>
#include <stdlib.h>
#include <sys/wait.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <future>
#include <string>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/fakes/temp_dir.h"
#include "tests/faults/fault_env.h"
#include "tests/integration/agent_harness.h"

namespace herd::testing {
namespace {

using ::testing::HasSubstr;
using json = nlohmann::json;

// An action that answers after `seconds` (on the module's monotonic sleep), and a line on
// stdout every half second for the followed log.
constexpr char kSlowAction[] = R"(import threading
import time


@mod.action("slow")
def slow(params, reply):
    time.sleep(float(params.get("seconds") or 6))
    reply("slept")


def chatter():
    n = 0
    while True:
        n += 1
        print("chatter %d" % n, flush=True)
        time.sleep(0.5)


threading.Thread(target=chatter, daemon=True).start()
)";

std::string FindLibFaketime() {
  glob_t g{};
  std::string found;
  if (glob("/usr/lib/*/faketime/libfaketime.so.1", 0, nullptr, &g) == 0 && g.gl_pathc > 0) {
    found = g.gl_pathv[0];
  }
  globfree(&g);
  return found;
}

// A background process (a stream's client), stopped at the end.
struct Background {
  pid_t pid = 0;
  std::string out;
  ~Background() { Stop(); }
  bool Running() {
    if (pid <= 0) return false;
    int status = 0;
    return waitpid(pid, &status, WNOHANG) == 0;
  }
  void Stop() {
    if (pid <= 0) return;
    kill(pid, SIGKILL);
    int status = 0;
    waitpid(pid, &status, 0);
    pid = 0;
  }
};

class FaultClock : public ::testing::Test {
 protected:
  void SetUp() override {
    const std::string lib = FindLibFaketime();
    ASSERT_FALSE(lib.empty()) << "libfaketime is not installed: the clock-step test needs the "
                                 "Debian package libfaketime (scripts/install-deps.sh installs it)";
    ASSERT_FALSE(dir_.empty());
    offset_file_ = dir_ + "/faketime";
    Step("+0");
    // ASan wants to come first among the preloaded libraries; libfaketime only wraps time
    // calls, which ASan does not intercept.
    std::string asan = getenv("ASAN_OPTIONS") != nullptr ? getenv("ASAN_OPTIONS") : "";
    // The shim first: it keeps absl's timed waits on the kernel's clock (see its header).
    prefix_ = {"/usr/bin/env",
               absl::StrCat("LD_PRELOAD=", HERD_FAULT_FUTEX_SHIM, ":", lib),
               "FAKETIME_TIMESTAMP_FILE=" + offset_file_,
               "FAKETIME_NO_CACHE=1",
               "FAKETIME_DONT_FAKE_MONOTONIC=1",
               "ASAN_OPTIONS=" + asan + (asan.empty() ? "" : ":") + "verify_asan_link_order=0"};
  }
  // Replaces the offset the faked processes see from their next clock reading on.
  void Step(const std::string& offset) {
    const std::string tmp = offset_file_ + ".new";
    std::ofstream(tmp, std::ios::trunc) << offset << "\n";
    ASSERT_EQ(rename(tmp.c_str(), offset_file_.c_str()), 0);
  }
  // Starts a control plane and an agent under libfaketime, opens the streams, puts the
  // requests in flight, steps the wall clock to `offset` and checks what survived it;
  // `skew` is where the processes' wall clocks should then read.
  // With `then_silence`, agentd is then stopped (SIGSTOP): the control plane must still
  // close its silent stream within --silent-timeout, measured on the monotonic clock.
  void StepOnce(const std::string& offset, absl::Duration skew, bool then_silence = false);

  ScopedTempDir tmp_{"herd-fault-clock"};
  const std::string dir_ = tmp_.path();
  std::string offset_file_;
  std::vector<std::string> prefix_;
};

void FaultClock::StepOnce(const std::string& offset, absl::Duration skew, bool then_silence) {
  Stopwatch took(absl::StrCat("FaultClock step to ", offset));
  ControlPlaneHarness cp;
  cp.set_command_prefix(prefix_);
  ASSERT_TRUE(cp.Start({"--lease", "2s", "--metrics-interval-ms", "200", "--silent-timeout",
                        "10s"}))
      << cp.last_error();
  AgentHarness agent;
  agent.set_command_prefix(prefix_);
  ASSERT_TRUE(agent.StartAgent(cp.AgentArgs("fault=clock"))) << agent.last_error();
  {
    // Only agentd's clock is faked: libfaketime 0.9.10 with FAKETIME_DONT_FAKE_MONOTONIC
    // makes clock_nanosleep(CLOCK_MONOTONIC, TIMER_ABSTIME) fail with EINVAL, which is
    // Python's time.sleep (the module would die of the injector, not of the step).
    const json env = {{"LD_PRELOAD", ""}};
    absl::Status s =
        InstallPythonModule(agent, "svc", agent.Path("src/svc"), kSlowAction, env);
    ASSERT_TRUE(s.ok()) << s.message();
    // Another module for the rollouts (restarting svc would end its pending action).
    s = InstallPythonModule(agent, "rolled", agent.Path("src/rolled"), "", env);
    ASSERT_TRUE(s.ok()) << s.message();
  }
  const std::string id = agent.CtlJson({"info"}).value("host_id", "");
  ASSERT_FALSE(id.empty()) << agent.last_error();
  auto host = [&] { return cp.Host(id); };
  ASSERT_TRUE(WaitFor([&] {
    json m = cp.CtlJson({"modules"});
    if (!m.is_object() || !m.contains("modules") || m["modules"].size() != 2u) return false;
    for (const auto& x : m["modules"]) {
      if (!x.value("online", false)) return false;
    }
    return true;
  }, absl::Seconds(30))) << cp.Ctl({"modules"}).out;
  // The slow action is registered (the module answers it locally).
  ASSERT_TRUE(WaitFor([&] {
    return agent.Ctl({"action", "svc", "slow", "--param", "seconds=0"}).exit_code == 0;
  }, absl::Seconds(20)));

  // Streams kept open across the steps.
  const std::string agentctl = AgentHarness::BinDir() + "/agentctl";
  const std::vector<std::string> fleet = {agentctl, "--home", dir_ + "/no-agent",
                                          "--controlplane", cp.address(), "--token-file",
                                          cp.OperatorTokenFile()};
  Background watch, follow;
  watch.out = dir_ + "/watch.out";
  follow.out = dir_ + "/follow.out";
  {
    std::vector<std::string> w = fleet;
    for (const char* a : {"-o", "json", "watch", "--all-hosts"}) w.push_back(a);
    watch.pid = SpawnLogged(w, watch.out);
    std::vector<std::string> f = fleet;
    for (const char* a : {"logs", "svc", "--follow", "--lines", "1", "--host"}) f.push_back(a);
    f.push_back(id);
    follow.pid = SpawnLogged(f, follow.out);
  }
  ASSERT_TRUE(WaitFor([&] { return CountInFile(watch.out, "\n") >= 3; }))
      << ReadFile(watch.out);
  ASSERT_TRUE(WaitFor([&] { return CountInFile(follow.out, "chatter") > 0; }))
      << "no log line followed: " << ReadFile(follow.out);
  const std::string agent_log = agent.output_path();
  const std::string cp_log = cp.output_path();
  const size_t connects = CountInFile(agent_log, "event=connected ");
  const int64_t connected_at = JsonInt(host(), "connected_at_unix_ms");

  // Two relayed requests pending: an action that answers in 6 s, and a rollout whose host
  // restarts a module and waits 6 s for it to stay healthy.
  auto action = std::async(std::launch::async, [&] {
    return cp.Ctl({"action", "svc", "slow", "--param", "seconds=6", "--host", id,
                   "--timeout", "30"});
  });
  json ro = cp.CtlJson(
      {"restart", "rolled", "--host", id, "--wait-healthy", "6s", "--no-wait"});
  const std::string rollout_id = JsonStr(ro, "id");
  ASSERT_FALSE(rollout_id.empty()) << cp.last_error();
  absl::SleepFor(absl::Seconds(2));
  const size_t watched = CountInFile(watch.out, "\n");
  const size_t followed = CountInFile(follow.out, "chatter");
  Step(offset);

  CmdResult a = action.get();
  EXPECT_EQ(a.exit_code, 0) << a.out << a.err;
  EXPECT_THAT(a.out, HasSubstr("slept")) << a.err;
  json r;
  EXPECT_TRUE(WaitFor([&] {
    r = cp.CtlJson({"rollout", rollout_id});
    return r.is_object() && r.value("state", "") != "running";
  }, absl::Seconds(30))) << cp.last_error();
  EXPECT_EQ(r.value("state", ""), "succeeded") << r.dump();
  fprintf(stderr, "[fault] step to %s: action %s; rollout %s\n", offset.c_str(),
          a.exit_code == 0 ? "answered" : a.err.c_str(), r.dump().c_str());
  // The step reached the control plane (its records carry its wall clock).
  const int64_t finished = JsonInt(r, "finished_at_unix_ms");
  EXPECT_NEAR(static_cast<double>(finished - absl::ToUnixMillis(absl::Now())),
              static_cast<double>(absl::ToInt64Milliseconds(skew)), 120000.0)
      << "libfaketime did not move the control plane's clock: the test injected nothing";

  // Past the control plane's silence check (every 5 s) and the lease: nothing has ended.
  absl::SleepFor(absl::Seconds(7));
  EXPECT_TRUE(watch.Running()) << "the watch stream ended: " << ReadFile(watch.out);
  EXPECT_GT(CountInFile(watch.out, "\n"), watched + 10) << "metrics stopped flowing";
  EXPECT_TRUE(follow.Running()) << "the followed log ended: " << ReadFile(follow.out);
  EXPECT_GT(CountInFile(follow.out, "chatter"), followed + 5) << "the followed log stalled";
  json h = host();
  EXPECT_TRUE(h.is_object() && h.value("online", false)) << cp.Ctl({"hosts"}).out;
  EXPECT_EQ(JsonInt(h, "connected_at_unix_ms"), connected_at)
      << "the agent's stream was replaced";
  EXPECT_EQ(CountInFile(agent_log, "event=connected "), connects)
      << "the agent reconnected:\n" << ReadFile(agent_log);
  EXPECT_EQ(CountInFile(cp_log, "event=stream_silent"), 0u)
      << "the control plane closed a stream as silent:\n" << ReadFile(cp_log);
  EXPECT_TRUE(agent.CtlJson({"info"}).value("controlplane_connected", false));
  // The agent's clock moved too (its events carry it): a start now reads an hour off.
  ASSERT_EQ(agent.Ctl({"restart", "rolled"}).exit_code, 0);
  json d = agent.CtlJson({"describe", "rolled"});
  ASSERT_TRUE(d.is_object() && d.contains("events") && !d["events"].empty()) << agent.last_error();
  const json& last = d["events"][d["events"].size() - 1];
  EXPECT_NEAR(static_cast<double>(JsonInt(last, "at_unix_ms") - absl::ToUnixMillis(absl::Now())),
              static_cast<double>(absl::ToInt64Milliseconds(skew)), 120000.0)
      << "libfaketime did not move agentd's clock: " << last.dump();

  if (!then_silence) return;
  // An agent that goes quiet after the step is still found out: its stream is closed once
  // --silent-timeout (10 s) has passed, not an hour later.
  ASSERT_EQ(kill(agent.agent_pid(), SIGSTOP), 0);
  const bool closed = WaitFor([&] { return CountInFile(cp_log, "event=stream_silent") > 0; },
                              absl::Seconds(30));
  kill(agent.agent_pid(), SIGCONT);
  EXPECT_TRUE(closed) << "a stopped agent's stream was not closed as silent within 30 s of a "
                         "--silent-timeout of 10 s, after the clock went back";
}


// Each test steps once, from processes started at the true time, so that what is pending
// and open when the clock moves was set up on the true clock. (libfaketime moves what the
// processes read, not the kernel's clock; futex_realtime_shim.cc keeps absl's absolute
// CLOCK_REALTIME waits right despite that.)
TEST_F(FaultClock, StepForwardAnHourExpiresNoRequestAndNoStream) {
  StepOnce("+1h", absl::Hours(1));
}

TEST_F(FaultClock, StepBackAnHourExpiresNoRequestAndNoStream) {
  StepOnce("-1h", -absl::Hours(1), /*then_silence=*/true);
}

}  // namespace
}  // namespace herd::testing
