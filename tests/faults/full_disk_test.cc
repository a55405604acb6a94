// A full disk under the agent's home (unit logs, state.json) and under the control plane's
// data directory (the SQLite store): each is a 4 MiB tmpfs, mounted in a mount namespace of
// the test's own, filled to ENOSPC by a filler file, then freed by deleting it.
//
// Asserted: nothing crashes; the failures are logged with the path and the reason, and
// refused requests say why; what is on disk is not corrupted (state.json parses, the store
// passes SQLite's integrity check and opens again); writes succeed again once space returns.
// See tests/faults/README.md.
#include <stdlib.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <string>

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

using ::testing::AnyOf;
using ::testing::HasSubstr;
using json = nlohmann::json;

constexpr size_t kDiskBytes = 4 << 20;

int64_t LogLinesDropped(AgentHarness& agent) {
  return JsonInt(agent.CtlJson({"info"}), "log_lines_dropped");
}

TEST(FaultFullDisk, AgentHomeFullDropsAndCountsLogLinesCorruptsNothingAndRecovers) {
  Stopwatch took("FaultFullDisk.AgentHome");
  {
    absl::Status s = EnterPrivateNamespaces(/*network=*/false);
    ASSERT_TRUE(s.ok()) << s.message();
  }
  // A directory off the small disks for what the test must still be able to write (the
  // processes' own logs, scripts); removed at the end.
  ScopedTempDir tmp("herd-fault");
  ASSERT_FALSE(tmp.path().empty());
  TmpfsMount disk;  // declared before the agent: unmounted after it has stopped
  AgentHarness agent;
  {
    absl::Status s = disk.Mount(agent.home(), kDiskBytes);
    ASSERT_TRUE(s.ok()) << s.message();
  }
  const std::string log = tmp.path() + "/agentd.out";
  agent.set_output_path(log);
  ASSERT_TRUE(agent.StartAgent()) << agent.last_error();

  // A unit that logs a numbered line every 50 ms.
  const std::string printer = tmp.path() + "/printer.sh";
  // 200-byte lines: the tmpfs page the log's last line sits on fills within a second.
  std::ofstream(printer) << "i=0\nwhile :; do i=$((i+1)); printf 'line %d %0200d\\n' $i 0; "
                            "sleep 0.05; done\n";
  CmdResult start = agent.Ctl({"start", printer, "--name", "printer"});
  ASSERT_EQ(start.exit_code, 0) << start.err;
  ASSERT_TRUE(WaitFor([&] {
    return absl::StrContains(agent.Ctl({"logs", "printer", "--lines", "3"}).out, "line ");
  })) << agent.Ctl({"logs", "printer"}).err;
  const std::string state_path = agent.Path("state.json");
  ASSERT_TRUE(WaitFor([&] { return absl::StrContains(ReadFile(state_path), "printer"); }));

  // ---- The disk fills up.
  const std::string filler = agent.Path("filler");
  auto filled = FillDisk(filler);
  ASSERT_TRUE(filled.ok()) << filled.status().message();
  fprintf(stderr, "[fault] filled %s with %zu bytes\n", agent.home().c_str(), *filled);

  // The unit's lines are dropped, counted and shown by `agentctl info`; the failure is
  // logged once with the file and the reason.
  const std::string unit_log_failed = "event=log_write_failed";
  EXPECT_TRUE(WaitFor([&] { return CountInFile(log, unit_log_failed) > 0; }))
      << ReadFile(log);
  EXPECT_THAT(ReadFile(log), HasSubstr("No space left on device"));
  int64_t dropped = 0;
  EXPECT_TRUE(WaitFor([&] { return (dropped = LogLinesDropped(agent)) > 0; }))
      << agent.Ctl({"info"}).out;
  EXPECT_TRUE(WaitFor([&] { return LogLinesDropped(agent) > dropped; }))
      << "lines keep being dropped (and counted) while the disk is full";
  // The agent answers and keeps supervising.
  ASSERT_TRUE(ProcessAlive(agent.agent_pid())) << ReadFile(log);
  EXPECT_EQ(agent.State("printer"), "online");

  // A change to the units while full: the new unit runs, state.json cannot be replaced, and
  // the old one is left whole (written atomically).
  CmdResult sleeper = agent.Ctl({"start", AgentHarness::ChildBinary(), "--name", "sleeper"});
  EXPECT_EQ(sleeper.exit_code, 0) << sleeper.err;
  EXPECT_TRUE(WaitFor([&] { return agent.State("sleeper") == "online"; }))
      << agent.Ctl({"list"}).out;
  EXPECT_TRUE(WaitFor([&] { return CountInFile(log, "event=state_write_failed") > 0; }))
      << ReadFile(log);
  {
    json state = json::parse(ReadFile(state_path), nullptr, /*allow_exceptions=*/false);
    EXPECT_FALSE(state.is_discarded()) << "state.json is corrupt: " << ReadFile(state_path);
    EXPECT_THAT(ReadFile(state_path), HasSubstr("printer"));
  }
  ASSERT_TRUE(ProcessAlive(agent.agent_pid())) << ReadFile(log);

  // ---- Space returns.
  ASSERT_EQ(unlink(filler.c_str()), 0);
  EXPECT_TRUE(WaitFor([&] { return CountInFile(log, "event=log_write_recovered") > 0; }))
      << ReadFile(log);
  // New lines reach the unit's log again.
  const int64_t dropped_at_recovery = LogLinesDropped(agent);
  const std::string marker_before = agent.Ctl({"logs", "printer", "--lines", "1"}).out;
  EXPECT_TRUE(WaitFor([&] {
    const std::string now = agent.Ctl({"logs", "printer", "--lines", "1"}).out;
    return absl::StrContains(now, "line ") && now != marker_before;
  })) << agent.Ctl({"logs", "printer"}).out;
  absl::SleepFor(absl::Seconds(1));
  EXPECT_EQ(LogLinesDropped(agent), dropped_at_recovery) << "lines still dropped after recovery";
  // What the failed write left out reaches state.json without waiting for another change:
  // the agent killed now must find the sleeper (and stop it before starting it again).
  EXPECT_TRUE(WaitFor([&] { return absl::StrContains(ReadFile(state_path), "sleeper"); },
                      absl::Seconds(15)))
      << "state.json still lacks the unit started while the disk was full, after space "
         "returned (a failed state write is not retried until the next change): "
      << ReadFile(state_path);
  // A new change is written.
  ASSERT_EQ(agent.Ctl({"stop", "printer"}).exit_code, 0);
  EXPECT_TRUE(WaitFor([&] {
    const std::string s = ReadFile(state_path);
    return absl::StrContains(s, "sleeper") && absl::StrContains(s, "printer");
  })) << ReadFile(state_path);

  // A new agentd on the same home reads its state back: nothing was corrupted.
  agent.KillAgent();
  ASSERT_TRUE(agent.StartAgent()) << agent.last_error();
  EXPECT_TRUE(WaitFor([&] { return agent.State("sleeper") == "online"; }))
      << agent.Ctl({"list"}).out;
  EXPECT_EQ(agent.State("printer"), "stopped");
  agent.StopAgent();
  EXPECT_TRUE(disk.Unmount().ok());
}

TEST(FaultFullDisk, ControlPlaneStoreFullRefusesWritesWithTheReasonCorruptsNothingAndRecovers) {
  Stopwatch took("FaultFullDisk.ControlPlaneStore");
  {
    absl::Status s = EnterPrivateNamespaces(/*network=*/false);
    ASSERT_TRUE(s.ok()) << s.message();
  }
  // A directory off the small disks for what the test must still be able to write (the
  // processes' own logs, scripts); removed at the end.
  ScopedTempDir tmp("herd-fault");
  ASSERT_FALSE(tmp.path().empty());
  TmpfsMount disk;  // declared before the control plane: unmounted after it has stopped
  ControlPlaneHarness cp;
  {
    absl::Status s = disk.Mount(cp.data_dir(), kDiskBytes);
    ASSERT_TRUE(s.ok()) << s.message();
  }
  const std::string log = tmp.path() + "/controlplane.out";
  cp.set_output_path(log);
  const std::vector<std::string> cp_args = {"--lease", "2s", "--metrics-interval-ms", "200"};
  ASSERT_TRUE(cp.Start(cp_args)) << cp.last_error();
  AgentHarness agent;
  ASSERT_TRUE(agent.StartAgent(cp.AgentArgs("fault=disk"))) << agent.last_error();
  {
    absl::Status s = InstallSvc(agent);
    ASSERT_TRUE(s.ok()) << s.message();
  }
  auto greeting_is = [&](const std::string& g) {
    return WaitFor([&] {
      CmdResult r = agent.Ctl({"action", "svc", "greet", "--param", "name=x"});
      return r.exit_code == 0 && absl::StrContains(r.out, g + ", x");
    }, absl::Seconds(30));
  };
  ASSERT_TRUE(WaitFor([&] {
    json m = cp.CtlJson({"modules", "svc"});
    return m.is_object() && m.contains("modules") && m["modules"].size() == 1u;
  }, absl::Seconds(30))) << cp.Ctl({"modules"}).out;
  ASSERT_EQ(cp.Ctl({"set", "svc:greeting", "before", "--global"}).exit_code, 0);
  ASSERT_TRUE(greeting_is("before"));

  // ---- The disk fills up.
  const std::string filler = cp.Path("filler");
  auto filled = FillDisk(filler);
  ASSERT_TRUE(filled.ok()) << filled.status().message();
  fprintf(stderr, "[fault] filled %s with %zu bytes\n", cp.data_dir().c_str(), *filled);

  // Writes are refused with the reason; the control plane stays up and serves reads.
  const auto disk_full = AnyOf(HasSubstr("disk is full"), HasSubstr("No space left"));
  CmdResult set = cp.Ctl({"set", "svc:greeting", "during", "--global"});
  EXPECT_NE(set.exit_code, 0) << set.out;
  EXPECT_THAT(set.err, disk_full);
  fprintf(stderr, "[fault] set while full: %s", set.err.c_str());
  CmdResult rollout = cp.Ctl({"restart", "svc", "--all-hosts", "--wait-healthy", "200ms"});
  EXPECT_NE(rollout.exit_code, 0) << rollout.out;
  EXPECT_THAT(rollout.err + rollout.out, disk_full);
  const std::string controlplane = AgentHarness::BinDir() + "/controlplane";
  CmdResult token =
      herd::testing::Run({controlplane, "--data", cp.data_dir(), "token", "create", "while-full"});
  EXPECT_NE(token.exit_code, 0) << token.out;
  EXPECT_THAT(token.err, disk_full);
  ASSERT_TRUE(ProcessAlive(cp.pid())) << ReadFile(log);
  EXPECT_THAT(cp.Ctl({"conf", "--fleet"}).out, HasSubstr("before"));
  json hosts = cp.CtlJson({"hosts"});
  ASSERT_TRUE(hosts.is_object()) << cp.last_error();
  EXPECT_TRUE(hosts["hosts"][0].value("online", false)) << hosts.dump();
  EXPECT_THAT(ReadFile(log), disk_full);
  // The host kept the config it had.
  EXPECT_TRUE(greeting_is("before"));

  // ---- Space returns: writes succeed again, and reach the host.
  ASSERT_EQ(unlink(filler.c_str()), 0);
  CmdResult after = cp.Ctl({"set", "svc:greeting", "after", "--global"});
  EXPECT_EQ(after.exit_code, 0) << after.err;
  EXPECT_TRUE(greeting_is("after"));
  CmdResult ok_token =
      herd::testing::Run({controlplane, "--data", cp.data_dir(), "token", "create", "after-full"});
  EXPECT_EQ(ok_token.exit_code, 0) << ok_token.err;

  // Nothing was corrupted: SQLite's own check, and the store opens again with everything.
  cp.Stop();
  CmdResult check = herd::testing::Run({"/usr/bin/python3", "-c",
                         "import sqlite3, sys; "
                         "print(sqlite3.connect(sys.argv[1]).execute("
                         "'pragma integrity_check').fetchone()[0])",
                         cp.Path("herd.db")});
  EXPECT_EQ(check.exit_code, 0) << check.err;
  EXPECT_EQ(check.out, "ok\n") << check.err;
  ASSERT_TRUE(cp.Start(cp_args)) << cp.last_error();
  EXPECT_THAT(cp.Ctl({"conf", "--fleet"}).out, HasSubstr("after"));
  EXPECT_THAT(cp.Ctl({"audit"}).out, HasSubstr("config.set"));
  agent.StopAgent();
  cp.Stop();
  EXPECT_TRUE(disk.Unmount().ok());
}

}  // namespace
}  // namespace herd::testing
