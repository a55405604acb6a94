// Nothing escapes a stop (issue 23 §2): a unit whose process double-forks a sleeper into a
// session of its own. The sleeper is shown as escaped, counted in the unit's processes, and
// gone after stop, restart and delete; with cgroups (each unit's process in a cgroup v2 of its
// own) and without (--no-cgroups: agentd as child subreaper finds it by its HERD_UNIT).
#include <signal.h>
#include <sys/types.h>

#include <algorithm>
#include <filesystem>
#include <string>
#include <vector>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/strip.h"
#include "absl/strings/match.h"
#include "agent/supervisor/unit_cgroups.h"
#include "agent/supervisor/unit_limits.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/fakes/file_util.h"
#include "tests/integration/agent_harness.h"

namespace herd::testing {
namespace {

using json = nlohmann::json;
using ::testing::Contains;
using ::testing::HasSubstr;

// Forks a subshell that starts `sleep` in a new session (setsid) and exits: the sleeper is
// re-parented away from the unit's process and leaves its process group. It ignores SIGTERM
// (a stubborn daemon), so only what agentd does after the main process exits can stop it.
// Its pid goes to $1.
constexpr char kEscaper[] = R"(#!/bin/sh
( setsid sh -c 'trap "" TERM; exec sleep 1000' & echo $! > "$1.tmp" && mv "$1.tmp" "$1" )
echo started
exec sleep 1000
)";

class ContainmentTest : public ::testing::TestWithParam<bool> {
 protected:
  bool cgroups() const { return GetParam(); }

  void SetUp() override {
    if (cgroups()) {
      auto probe = agent::UnitCgroups::Open("containment-test-probe");
      if (!probe.ok()) GTEST_SKIP() << "no writable cgroup v2 here: " << probe.status();
    }
    std::vector<std::string> args;
    if (!cgroups()) args.push_back("--no-cgroups");
    ASSERT_TRUE(agent_.StartAgent(args)) << agent_.last_error();
    script_ = agent_.Path("work/escaper.sh");
    WriteTextFile(script_, kEscaper);
    pidfile_ = agent_.Path("work/sleeper.pid");
  }

  // Starts (or restarts) the unit and returns the sleeper's pid once written.
  pid_t SleeperPid() {
    pid_t pid = 0;
    WaitFor([&] {
      int v = 0;
      if (!absl::SimpleAtoi(absl::StripAsciiWhitespace(ReadFile(pidfile_)), &v)) return false;
      pid = v;
      return true;
    });
    if (pid > 0) agent_.Track(pid);
    return pid;
  }

  std::vector<pid_t> EscapedPids() {
    json d = agent_.CtlJson({"describe", "escaper"});
    std::vector<pid_t> out;
    for (const auto& e : d.value("escaped", json::array())) out.push_back(e.value("pid", 0));
    return out;
  }

  bool HasEvent(const std::string& unit, const std::string& kind) {
    auto kinds = agent_.EventKinds(unit);
    return std::find(kinds.begin(), kinds.end(), kind) != kinds.end();
  }

  AgentHarness agent_;
  std::string script_, pidfile_;
};

TEST_P(ContainmentTest, ADoubleForkedSleeperIsShownCountedAndStoppedWithItsUnit) {
  ASSERT_EQ(agent_.Ctl({"start", script_, "--name", "escaper", "--interpreter", "/bin/sh", "--",
                        pidfile_}).exit_code, 0);
  pid_t sleeper = SleeperPid();
  ASSERT_GT(sleeper, 0);
  ASSERT_TRUE(ProcessAlive(sleeper));

  // Shown as escaped, and counted among the unit's processes.
  ASSERT_TRUE(WaitFor([&] {
    auto e = EscapedPids();
    return std::find(e.begin(), e.end(), sleeper) != e.end();
  })) << agent_.Ctl({"describe", "escaper"}).out;
  json d = agent_.CtlJson({"describe", "escaper"});
  EXPECT_EQ(d.value("cgroup", "").empty(), !cgroups()) << d.dump();
  ASSERT_TRUE(WaitFor([&] {
    json u = agent_.Unit("escaper");
    for (const auto& p : u.value("sampled_pids", json::array())) {
      if (p.get<int>() == sleeper) return true;
    }
    return false;
  })) << agent_.Unit("escaper").dump();
  EXPECT_THAT(agent_.Ctl({"describe", "escaper"}).out, HasSubstr("escaped"));

  // Restart: the old sleeper goes, a new one comes.
  std::filesystem::remove(pidfile_);
  ASSERT_EQ(agent_.Ctl({"restart", "escaper"}).exit_code, 0);
  EXPECT_TRUE(WaitFor([&] { return !ProcessAlive(sleeper); }, absl::Seconds(10)))
      << "the sleeper outlived a restart of its unit";
  pid_t second = SleeperPid();
  ASSERT_GT(second, 0);
  ASSERT_NE(second, sleeper);
  ASSERT_TRUE(WaitFor([&] {
    auto e = EscapedPids();
    return std::find(e.begin(), e.end(), second) != e.end();
  }));

  // Stop: nothing of it is left.
  ASSERT_EQ(agent_.Ctl({"stop", "escaper"}).exit_code, 0);
  EXPECT_TRUE(WaitFor([&] { return !ProcessAlive(second); }, absl::Seconds(10)))
      << "the sleeper outlived a stop of its unit";
  EXPECT_THAT(agent_.EventKinds("escaper"), Contains("leftovers-stopped"));

  // Started again and deleted: nothing left either.
  std::filesystem::remove(pidfile_);
  ASSERT_EQ(agent_.Ctl({"start", "escaper"}).exit_code, 0);
  pid_t third = SleeperPid();
  ASSERT_GT(third, 0);
  ASSERT_TRUE(WaitFor([&] {
    auto e = EscapedPids();
    return std::find(e.begin(), e.end(), third) != e.end();
  }));
  ASSERT_EQ(agent_.Ctl({"delete", "escaper"}).exit_code, 0);
  EXPECT_TRUE(WaitFor([&] { return !ProcessAlive(third); }, absl::Seconds(10)))
      << "the sleeper outlived the deletion of its unit";
}

// An agent killed outright leaves its units running; the next start stops them, escaped
// ones included (their cgroup still holds them). Cgroups only: without them, the orphans of a
// dead subreaper go to init, out of reach (docs/agent.md says so).
// memory_max and pids_max: enforced by the kernel where a controller is there for agentd
// (v1 on CI's hybrid mount), shown by `describe`; the OOM kill is an event and the unit
// restarts as after any crash. Where none is (--no-cgroups, or a machine without one), the
// unit runs unlimited and an event and `describe` say so.
TEST_P(ContainmentTest, LimitsAreEnforcedShownAndAnOomKillIsAnEvent) {
  const std::string controllers =
      agent::UnitLimits::Open(absl::StrCat("containment-limits-probe-", getpid()), {})
          ->Describe();
  const bool enforced = cgroups() && absl::StrContains(controllers, "memory") &&
                        absl::StrContains(controllers, "pids");
  CmdResult r = agent_.Ctl({"start", Which("python3"), "--name", "hog", "--memory-max", "32M",
                            "--pids-max", "20", "--restart-delay", "500ms", "--", "-c",
                            "import time\nb = bytearray(256 << 20)\ntime.sleep(100)"});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  json d = agent_.CtlJson({"describe", "hog"});
  EXPECT_EQ(d["spec"].value("memory_max_bytes", 0), 32 << 20) << d.dump();
  EXPECT_EQ(d["spec"].value("pids_max", 0), 20) << d.dump();
  if (!enforced) {
    EXPECT_TRUE(WaitFor([&] { return HasEvent("hog", "limits-unavailable"); }));
    EXPECT_THAT(agent_.CtlJson({"describe", "hog"}).value("limits", ""),
                HasSubstr("memory_max not enforced"));
    return;
  }
  ASSERT_TRUE(WaitFor([&] { return HasEvent("hog", "oom-killed"); },
                      absl::Seconds(20)))
      << agent_.CtlJson({"describe", "hog"}).dump();
  d = agent_.CtlJson({"describe", "hog"});
  EXPECT_THAT(d.value("limits", ""), ::testing::MatchesRegex(
      "memory 32.0M \\(cgroup v[12]\\), pids 20 \\(cgroup v[12]\\)"));
  std::string detail;
  for (const auto& e : d.value("events", json::array())) {
    if (e.value("kind", "") == "oom-killed") detail = e.value("detail", "");
  }
  EXPECT_THAT(detail, HasSubstr("memory_max 32.0M reached"));
  EXPECT_TRUE(WaitFor([&] { return agent_.Unit("hog").value("restarts", 0) >= 1; }))
      << "restarted as after any crash";
  // The table shows the limits with the spec.
  CmdResult table = agent_.Ctl({"describe", "hog"});
  EXPECT_THAT(table.out, HasSubstr("memory max"));
  EXPECT_THAT(table.out, HasSubstr("pids max"));
}

class ContainmentAfterCrashTest : public ContainmentTest {};

TEST_P(ContainmentAfterCrashTest, AnAgentRestartStopsWhatTheKilledOneLeft) {
  ASSERT_EQ(agent_.Ctl({"start", script_, "--name", "escaper", "--interpreter", "/bin/sh", "--",
                        pidfile_}).exit_code, 0);
  pid_t sleeper = SleeperPid();
  ASSERT_GT(sleeper, 0);
  agent_.KillAgent();
  ASSERT_TRUE(ProcessAlive(sleeper));
  ASSERT_TRUE(agent_.StartAgent()) << agent_.last_error();
  EXPECT_TRUE(WaitFor([&] { return !ProcessAlive(sleeper); }, absl::Seconds(15)))
      << "the escaped sleeper of the killed agent's unit survived the next agent";
}

INSTANTIATE_TEST_SUITE_P(CgroupsOrSubreaper, ContainmentTest, ::testing::Bool(),
                         [](const auto& info) { return info.param ? "Cgroups" : "Subreaper"; });
INSTANTIATE_TEST_SUITE_P(Cgroups, ContainmentAfterCrashTest, ::testing::Values(true));

}  // namespace
}  // namespace herd::testing
