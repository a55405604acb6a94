// End-to-end tests: the real agentd in a temporary home, driven by the real agentctl, with
// herd_test_child as the supervised program. Waits are bounded polls on observable state,
// never fixed sleeps standing in for an event.
#include <fcntl.h>
#include <sys/stat.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <fstream>
#include <sstream>
#include <string>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/fakes/file_util.h"
#include "tests/fakes/temp_dir.h"
#include "tests/integration/agent_harness.h"

namespace herd::testing {
namespace {

using ::testing::Contains;
using ::testing::HasSubstr;
using ::testing::Not;

class AgentTest : public ::testing::Test {
 protected:
  void SetUp() override { ASSERT_TRUE(agent_.StartAgent()) << agent_.last_error(); }

  // agentctl start CHILD --name NAME flags... -- child_args...
  void StartChild(const std::string& name, const std::vector<std::string>& flags,
                  const std::vector<std::string>& child_args) {
    std::vector<std::string> args = {"start", AgentHarness::ChildBinary(), "--name", name};
    args.insert(args.end(), flags.begin(), flags.end());
    args.push_back("--");
    args.insert(args.end(), child_args.begin(), child_args.end());
    CmdResult r = agent_.Ctl(args);
    ASSERT_EQ(r.exit_code, 0) << r.err;
  }

  void WriteFile(const std::string& path, const std::string& content) {
    std::ofstream f(path, std::ios::trunc);
    f << content;
  }

  static int64_t Int(const nlohmann::json& j, const char* key) {
    // Protobuf's JSON mapping writes 64-bit integers as strings.
    if (!j.contains(key)) return 0;
    if (j[key].is_string()) {
      int64_t v = 0;
      return j[key].is_number() ? j[key].get<int64_t>() : (absl::SimpleAtoi(j[key].get<std::string>(), &v) ? v : 0);
    }
    return j[key].get<int64_t>();
  }

  AgentHarness agent_;
};

TEST_F(AgentTest, CrashingChildIsRestartedWithBackoffThenErrored) {
  // PM2's rule: the exit that makes max_restarts unstable runs in a row errors the unit, so
  // max_restarts 4 means four runs and three restarts.
  StartChild("crasher", {"--max-restarts", "4", "--exp-backoff-restart-delay", "100ms"},
             {"--exit", "3"});
  ASSERT_TRUE(WaitFor([&] { return agent_.State("crasher") == "errored"; }))
      << agent_.Unit("crasher").dump();
  nlohmann::json u = agent_.Unit("crasher");
  EXPECT_EQ(u["restarts"], 3);
  EXPECT_EQ(u["last_exit_code"], 3);
  EXPECT_EQ(u["pid"], 0);
  EXPECT_THAT(u["status_reason"].get<std::string>(), HasSubstr("too many unstable restarts"));

  // Four runs, and each wait before a restart longer than the one before (x1.5 backoff).
  nlohmann::json d = agent_.CtlJson({"describe", "crasher"});
  std::vector<int64_t> starts;
  for (const auto& e : d["events"]) {
    if (e["kind"] == "started") starts.push_back(Int(e, "at_unix_ms"));
  }
  ASSERT_EQ(starts.size(), 4u) << d["events"].dump();
  std::vector<int64_t> gaps;
  for (size_t i = 1; i < starts.size(); ++i) gaps.push_back(starts[i] - starts[i - 1]);
  EXPECT_GE(gaps[0], 100);
  EXPECT_GE(gaps[1], 150);
  EXPECT_GE(gaps[2], 225);
  EXPECT_THAT(agent_.EventKinds("crasher"), Contains("errored"));

  // Not restarted any more: still errored a while later, same restart count.
  absl::SleepFor(absl::Milliseconds(600));
  EXPECT_EQ(agent_.State("crasher"), "errored");
  EXPECT_EQ(agent_.Unit("crasher")["restarts"], 3);

  // An explicit restart gives it a fresh budget.
  ASSERT_EQ(agent_.Ctl({"restart", "crasher"}).exit_code, 0);
  EXPECT_TRUE(WaitFor([&] {
    auto kinds = agent_.EventKinds("crasher");
    return std::count(kinds.begin(), kinds.end(), "started") >= 5;
  }));
}

TEST_F(AgentTest, ExitCodeInStopExitCodesIsNotRestarted) {
  StartChild("oneshot", {"--stop-exit-codes", "0,7", "--env", "A=1"}, {"--exit", "7", "--after-ms", "50"});
  ASSERT_TRUE(WaitFor([&] { return agent_.State("oneshot") == "stopped"; }));
  nlohmann::json u = agent_.Unit("oneshot");
  EXPECT_EQ(u["restarts"], 0);
  EXPECT_THAT(u["status_reason"].get<std::string>(), HasSubstr("stop_exit_codes"));
}

TEST_F(AgentTest, MaxMemoryRestartRestartsAChildThatGrowsPastItsLimit) {
  StartChild("leaky", {"--max-memory-restart", "64M"},
             {"--alloc-mb", "8", "--alloc-step-mb", "8", "--alloc-interval-ms", "50"});
  ASSERT_TRUE(WaitFor([&] { return agent_.Unit("leaky").value("restarts", 0) >= 1; },
                      absl::Seconds(20)))
      << agent_.Unit("leaky").dump();
  nlohmann::json d = agent_.CtlJson({"describe", "leaky"});
  bool found = false;
  for (const auto& e : d["events"]) {
    if (e["kind"] == "memory-limit") {
      found = true;
      EXPECT_THAT(e["detail"].get<std::string>(), HasSubstr("over max_memory_restart 64.0M"));
    }
  }
  EXPECT_TRUE(found) << d["events"].dump();
  ASSERT_EQ(agent_.Ctl({"delete", "leaky"}).exit_code, 0);
}

TEST_F(AgentTest, StopEscalatesToSigkillForAChildThatIgnoresSigterm) {
  StartChild("stubborn", {"--kill-timeout", "300ms"},
             {"--ignore-sigterm", "--fork-children", "2"});
  // The unit's tree is the main process and its two children.
  ASSERT_TRUE(WaitFor([&] { return agent_.Unit("stubborn")["sampled_pids"].size() == 3; }))
      << agent_.Unit("stubborn").dump();
  nlohmann::json before = agent_.Unit("stubborn");
  EXPECT_EQ(before["usage"]["processes"], 3);
  std::vector<pid_t> pids = before["sampled_pids"].get<std::vector<pid_t>>();

  absl::Time t0 = absl::Now();
  CmdResult r = agent_.Ctl({"stop", "stubborn"});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  ASSERT_TRUE(WaitFor([&] { return agent_.State("stubborn") == "stopped"; }));
  EXPECT_GE(absl::Now() - t0, absl::Milliseconds(300));
  nlohmann::json u = agent_.Unit("stubborn");
  EXPECT_EQ(u["last_signal"], SIGKILL);
  EXPECT_THAT(agent_.EventKinds("stubborn"), Contains("killed"));
  for (pid_t pid : pids) {
    EXPECT_TRUE(WaitFor([&] { return !ProcessAlive(pid); }, absl::Seconds(5)))
        << "pid " << pid << " survived the stop";
  }
}

TEST_F(AgentTest, CleanAgentRestartResurrectsWhatWasRunning) {
  StartChild("keep", {}, {});
  StartChild("parked", {}, {});
  ASSERT_TRUE(WaitFor([&] { return agent_.State("keep") == "online"; }));
  ASSERT_EQ(agent_.Ctl({"stop", "parked"}).exit_code, 0);
  ASSERT_TRUE(WaitFor([&] { return agent_.State("parked") == "stopped"; }));
  pid_t old_pid = agent_.Unit("keep")["pid"].get<pid_t>();

  agent_.StopAgent();
  EXPECT_TRUE(WaitFor([&] { return !ProcessAlive(old_pid); }, absl::Seconds(5)))
      << "a clean shutdown stops the units";
  ASSERT_TRUE(agent_.StartAgent()) << agent_.last_error();

  ASSERT_TRUE(WaitFor([&] { return agent_.State("keep") == "online"; }));
  pid_t new_pid = agent_.Unit("keep")["pid"].get<pid_t>();
  EXPECT_NE(new_pid, old_pid);
  EXPECT_TRUE(ProcessAlive(new_pid));
  EXPECT_EQ(agent_.State("parked"), "stopped");
  // The spec came back whole.
  nlohmann::json d = agent_.CtlJson({"describe", "keep"});
  EXPECT_EQ(d["spec"]["script"], AgentHarness::ChildBinary());
}

TEST_F(AgentTest, SigtermWithALogFileStopsTheUnits) {
  // With --log-file (and --daemon) the log's flusher thread starts before agentd's signalfd
  // is set up; it once left SIGTERM unblocked, was chosen by the kernel to take it, and
  // agentd ended at once without stopping its units.
  agent_.StopAgent();
  ASSERT_TRUE(agent_.StartAgent({"--log-file", agent_.Path("agentd.log")}))
      << agent_.last_error();
  StartChild("keep", {}, {});
  ASSERT_TRUE(WaitFor([&] { return agent_.State("keep") == "online"; }));
  pid_t pid = agent_.Unit("keep")["pid"].get<pid_t>();
  agent_.Track(pid);

  agent_.StopAgent();
  EXPECT_TRUE(WaitFor([&] { return !ProcessAlive(pid); }, absl::Seconds(5)))
      << "a clean shutdown stops the units";
  EXPECT_THAT(ReadFile(agent_.Path("agentd.log")), HasSubstr("event=stopped"));
}

TEST_F(AgentTest, AgentKilledHardStopsOrphansAndResurrects) {
  StartChild("survivor", {}, {"--fork-children", "1"});
  ASSERT_TRUE(WaitFor([&] { return agent_.Unit("survivor")["sampled_pids"].size() == 2; }));
  pid_t old_pid = agent_.Unit("survivor")["pid"].get<pid_t>();

  agent_.KillAgent();
  ASSERT_TRUE(ProcessAlive(old_pid)) << "SIGKILL to agentd does not reach its units";
  ASSERT_TRUE(agent_.StartAgent()) << agent_.last_error();

  // The orphan from the previous agent is stopped (it would hold ports and files), and the
  // unit runs again as a fresh child of the new agent.
  EXPECT_TRUE(WaitFor([&] { return !ProcessAlive(old_pid); }, absl::Seconds(10)));
  ASSERT_TRUE(WaitFor([&] {
    nlohmann::json u = agent_.Unit("survivor");
    return agent_.State("survivor") == "online" && u["pid"].get<pid_t>() != old_pid;
  }));
  EXPECT_THAT(agent_.EventKinds("survivor"), Contains("resurrected"));
}

// PM2's habits: a script whose name is taken is refused ("already launched"), not silently
// restarted; --force replaces it; a file that does not exist is named as such.
TEST_F(AgentTest, StartRefusesATakenNameUnlessForcedAndNamesAMissingFile) {
  StartChild("api", {}, {});
  const int pid = agent_.Unit("api").value("pid", 0);
  CmdResult again = agent_.Ctl({"start", AgentHarness::ChildBinary(), "--name", "api"});
  EXPECT_NE(again.exit_code, 0);
  EXPECT_THAT(again.err, HasSubstr("a unit named \"api\" already exists"));
  EXPECT_THAT(again.err, HasSubstr("--force"));
  EXPECT_EQ(agent_.Unit("api").value("pid", 0), pid) << "a refused start restarted it";
  CmdResult forced = agent_.Ctl({"start", AgentHarness::ChildBinary(), "--name", "api", "-f"});
  EXPECT_EQ(forced.exit_code, 0) << forced.err;
  EXPECT_TRUE(WaitFor([&] {
    const int now = agent_.Unit("api").value("pid", 0);
    return now != 0 && now != pid;
  }));
  CmdResult missing = agent_.Ctl({"start", "nosuch.js"});
  EXPECT_NE(missing.exit_code, 0);
  EXPECT_THAT(missing.err, HasSubstr("nosuch.js: no such file"));
}

// pm2 flush: the log files emptied, the unit writing on at their new end; an empty log
// says where its files are.
TEST_F(AgentTest, FlushEmptiesLogsAndAnEmptyLogNamesItsFiles) {
  StartChild("quiet", {}, {});
  CmdResult none = agent_.Ctl({"logs", "quiet"});
  EXPECT_EQ(none.exit_code, 0);
  EXPECT_THAT(none.out, HasSubstr("quiet has written nothing yet: " +
                                  agent_.Path("logs/quiet-out.log")));
  StartChild("talker", {}, {"--print", "before-flush"});
  const std::string out = agent_.Path("logs/talker-out.log");
  ASSERT_TRUE(WaitFor([&] { return absl::StrContains(ReadFile(out), "before-flush"); }));
  CmdResult flush = agent_.Ctl({"flush", "talker"});
  ASSERT_EQ(flush.exit_code, 0) << flush.err;
  EXPECT_THAT(flush.out, HasSubstr("flushed " + out));
  EXPECT_EQ(ReadFile(out), "");
  // agentd appends at the new end: no hole where the old lines were.
  ASSERT_EQ(agent_.Ctl({"restart", "talker"}).exit_code, 0);
  ASSERT_TRUE(WaitFor([&] { return absl::StrContains(ReadFile(out), "before-flush"); }));
  EXPECT_EQ(ReadFile(out).find('\0'), std::string::npos);
  EXPECT_EQ(agent_.Ctl({"flush"}).exit_code, 0);  // every unit
  EXPECT_EQ(agent_.Ctl({"save"}).exit_code, 0);
  EXPECT_THAT(agent_.Ctl({"resurrect"}).out, HasSubstr("nothing to do"));
}

TEST_F(AgentTest, ListAndDescribeInTableAndJson) {
  StartChild("web", {"--env", "PORT=8080"}, {"--print", "hello"});
  ASSERT_TRUE(WaitFor([&] {
    nlohmann::json u = agent_.Unit("web");
    return !u.is_null() && Int(u["usage"], "rss_bytes") > 0;
  }));

  CmdResult table = agent_.Ctl({"list"});
  ASSERT_EQ(table.exit_code, 0) << table.err;
  std::vector<std::string> lines = absl::StrSplit(table.out, '\n', absl::SkipEmpty());
  ASSERT_GE(lines.size(), 2u) << table.out;
  std::vector<std::string> header = absl::StrSplit(lines[0], ' ', absl::SkipEmpty());
  EXPECT_THAT(header, ::testing::ElementsAre("NAME", "STATUS", "PID", "CPU", "MEMORY",
                                             "RESTARTS", "UPTIME"));
  std::vector<std::string> row = absl::StrSplit(lines[1], ' ', absl::SkipEmpty());
  ASSERT_EQ(row.size(), 7u) << lines[1];
  nlohmann::json u = agent_.Unit("web");
  EXPECT_EQ(row[0], "web");
  EXPECT_EQ(row[1], "online");
  EXPECT_EQ(row[2], std::to_string(u["pid"].get<int>()));
  EXPECT_TRUE(absl::EndsWith(row[3], "%")) << row[3];
  EXPECT_EQ(row[5], "0");

  nlohmann::json d = agent_.CtlJson({"describe", "web"});
  ASSERT_TRUE(d.is_object()) << agent_.last_error();
  EXPECT_EQ(d["spec"]["env"]["PORT"], "8080");
  EXPECT_EQ(d["status"]["state"], "online");
  EXPECT_EQ(d["spec"]["max_restarts"], 16);

  CmdResult dt = agent_.Ctl({"describe", "web"});
  ASSERT_EQ(dt.exit_code, 0);
  EXPECT_THAT(dt.out, HasSubstr("web"));
  EXPECT_THAT(dt.out, HasSubstr(AgentHarness::ChildBinary()));

  CmdResult info = agent_.Ctl({"-o", "json", "info"});
  ASSERT_EQ(info.exit_code, 0);
  nlohmann::json ij = nlohmann::json::parse(info.out);
  EXPECT_EQ(ij["pid"], agent_.agent_pid());
  EXPECT_EQ(ij["home"], agent_.home());
}

TEST_F(AgentTest, InfoReportsWhatSamplingTicksCost) {
  StartChild("ticked", {}, {});
  nlohmann::json sampler;
  // Two ticks after the unit is online, so that the last one read its process.
  int64_t first_ticks = -1;
  ASSERT_TRUE(WaitFor([&] {
    nlohmann::json info = agent_.CtlJson({"info"});
    if (!info.is_object() || agent_.State("ticked") != "online") return false;
    sampler = info["sampler"];
    if (first_ticks < 0) first_ticks = Int(sampler, "ticks");
    return Int(sampler, "ticks") >= first_ticks + 2;
  }, absl::Seconds(15))) << sampler.dump();
  EXPECT_GT(Int(sampler, "last_tick_ns"), 0);
  EXPECT_GT(Int(sampler, "last_tick_cpu_ns"), 0);
  EXPECT_GE(Int(sampler, "total_tick_cpu_ns"), Int(sampler, "last_tick_cpu_ns"));
  EXPECT_GE(Int(sampler, "max_tick_ns"), Int(sampler, "last_tick_ns"));
  EXPECT_GE(Int(sampler, "total_tick_ns"), Int(sampler, "max_tick_ns"));
  // The unit's process and agentd itself.
  EXPECT_GE(Int(sampler, "last_tick_processes"), 2);
}

TEST_F(AgentTest, ErrorsSayWhatIsWrongAndExitNonZero) {
  CmdResult missing = agent_.Ctl({"describe", "nosuch"});
  EXPECT_NE(missing.exit_code, 0);
  EXPECT_THAT(missing.err, HasSubstr("nosuch"));

  CmdResult bad_size = agent_.Ctl({"start", AgentHarness::ChildBinary(), "--name", "x",
                                   "--max-memory-restart", "lots"});
  EXPECT_NE(bad_size.exit_code, 0);
  EXPECT_THAT(bad_size.err, HasSubstr("max_memory_restart"));
  EXPECT_THAT(bad_size.err, HasSubstr("lots"));

  // A whole ecosystem file is refused when one app is bad, and nothing of it starts.
  std::string eco = agent_.Path("eco.json");
  WriteFile(eco, absl::StrCat(R"({"apps": [{"name": "good", "script": ")",
                              AgentHarness::ChildBinary(),
                              R"("}, {"name": "bad", "script": ")",
                              AgentHarness::ChildBinary(), R"(", "scirpt": "typo"}]})"));
  CmdResult unknown = agent_.Ctl({"start", eco});
  EXPECT_NE(unknown.exit_code, 0);
  EXPECT_THAT(unknown.err, HasSubstr("scirpt"));
  EXPECT_TRUE(agent_.Unit("good").is_null());

  WriteFile(eco, "{\"apps\": [\n  {\"name\": \"a\",, }\n]}");
  CmdResult syntax = agent_.Ctl({"start", eco});
  EXPECT_NE(syntax.exit_code, 0);
  EXPECT_THAT(syntax.err, HasSubstr("line 2"));

  // With no agent at the address, say so and how to start one.
  AgentHarness other;
  CmdResult down = other.Ctl({"list"});
  EXPECT_NE(down.exit_code, 0);
  EXPECT_THAT(down.err, HasSubstr("agentd is not running at"));
  EXPECT_THAT(down.err, HasSubstr("agentd --home"));
}

// Issue 20, item 10: a number beyond a double came back as UNIMPLEMENTED with an empty
// message ("agentctl: "), invalid UTF-8 as a libprotobuf ERROR line and an empty message,
// and 1e300 / 1e19 ms durations were taken. Each is now an error naming the app and field,
// and agentd keeps running.
TEST_F(AgentTest, NumbersAndEncodingsAreRefusedNamingTheAppAndField) {
  std::string eco = agent_.Path("eco.json");
  auto app = [&](const std::string& field_and_value) {
    return absl::StrCat(R"({"apps": [{"name": "ok", "script": ")", AgentHarness::ChildBinary(),
                        R"("}, {"name": "bad", "script": ")", AgentHarness::ChildBinary(),
                        "\", ", field_and_value, "}]}");
  };
  for (const char* v : {"1e99999", "9e+308"}) {
    WriteFile(eco, app(absl::StrCat("\"kill_timeout\": ", v)));
    CmdResult r = agent_.Ctl({"start", eco});
    EXPECT_NE(r.exit_code, 0) << v;
    EXPECT_THAT(r.err, HasSubstr("apps[1].kill_timeout")) << v;
    EXPECT_THAT(r.err, HasSubstr("number overflow")) << v;
  }
  for (const char* v : {"1e300", "1e19"}) {
    WriteFile(eco, app(absl::StrCat("\"restart_delay\": ", v)));
    CmdResult r = agent_.Ctl({"start", eco});
    EXPECT_NE(r.exit_code, 0) << v;
    EXPECT_THAT(r.err, HasSubstr("apps[1] (\"bad\"): restart_delay")) << v;
    EXPECT_THAT(r.err, HasSubstr("longer than the maximum")) << v;
  }
  WriteFile(eco, app("\"env\": {\"GREETING\": \"h\xff\xfei\"}"));
  CmdResult utf8 = agent_.Ctl({"start", eco});
  EXPECT_EQ(utf8.exit_code, 2);
  EXPECT_THAT(utf8.err, HasSubstr("apps[1].env.GREETING"));
  EXPECT_THAT(utf8.err, HasSubstr("must be UTF-8"));
  EXPECT_THAT(utf8.err, ::testing::Not(HasSubstr("libprotobuf")));

  CmdResult arg = agent_.Ctl({"start", AgentHarness::ChildBinary(), "--name", "x\xff"});
  EXPECT_EQ(arg.exit_code, 2);
  EXPECT_THAT(arg.err, HasSubstr("is not valid UTF-8"));
  EXPECT_THAT(arg.err, HasSubstr("x\\xff"));

  EXPECT_TRUE(agent_.Unit("ok").is_null());
  EXPECT_EQ(agent_.Ctl({"info"}).exit_code, 0);  // agentd is still there
}

TEST_F(AgentTest, EcosystemFileStartsEveryApp) {
  std::string eco = agent_.Path("apps.json");
  WriteFile(eco, absl::StrCat(R"({"apps": [
    {"name": "one", "script": ")", AgentHarness::ChildBinary(), R"(", "args": ["--print", "1"]},
    {"name": "two", "script": ")", AgentHarness::ChildBinary(), R"(", "args": "--print 2",
     "max_memory_restart": "1G", "kill_timeout": 500}
  ]})"));
  CmdResult r = agent_.Ctl({"start", eco});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  ASSERT_TRUE(WaitFor([&] {
    return agent_.State("one") == "online" && agent_.State("two") == "online";
  }));
  nlohmann::json d = agent_.CtlJson({"describe", "two"});
  EXPECT_EQ(Int(d["spec"], "max_memory_restart_bytes"), int64_t{1} << 30);
  EXPECT_EQ(Int(d["spec"], "kill_timeout_ms"), 500);
}

TEST_F(AgentTest, PidFileProcessIsSampledAsTheUnit) {
  // A process agentd did not start (as a daemon that forks away would be), named in a pid
  // file.
  std::string pidfile = agent_.Path("outside.pid");
  pid_t outside = fork();
  if (outside == 0) {
    std::string child = AgentHarness::ChildBinary();
    execl(child.c_str(), child.c_str(), "--write-pidfile", pidfile.c_str(), nullptr);
    _exit(127);
  }
  agent_.Track(outside);
  ASSERT_TRUE(WaitFor([&] { return access(pidfile.c_str(), F_OK) == 0; }));

  StartChild("watcher", {"--pid-file", pidfile}, {});
  ASSERT_TRUE(WaitFor([&] {
    nlohmann::json u = agent_.Unit("watcher");
    if (u.is_null()) return false;
    for (const auto& p : u["sampled_pids"]) {
      if (p.get<pid_t>() == outside) return true;
    }
    return false;
  })) << agent_.Unit("watcher").dump();
  kill(outside, SIGKILL);
  waitpid(outside, nullptr, 0);
}

TEST_F(AgentTest, LogsGoToFilesWithTimestampsAndMerge) {
  StartChild("talker", {"--log-date-format", "YYYY-MM-DD", "--merge-logs"},
             {"--print", "marker-line"});
  nlohmann::json d;
  ASSERT_TRUE(WaitFor([&] {
    d = agent_.CtlJson({"describe", "talker"});
    return d.is_object() &&
           absl::StrContains(ReadFile(d["out_log_path"].get<std::string>()), "err:marker-line");
  })) << d.dump();
  std::string out = ReadFile(d["out_log_path"].get<std::string>());
  // Both streams in one file, each line prefixed with today's date.
  std::string today = absl::FormatTime("%Y-%m-%d", absl::Now(), absl::LocalTimeZone());
  EXPECT_THAT(out, HasSubstr("marker-line"));
  for (absl::string_view line : absl::StrSplit(out, '\n', absl::SkipEmpty())) {
    EXPECT_TRUE(absl::StartsWith(line, today.substr(0, 4))) << line;
  }

  CmdResult logs = agent_.Ctl({"logs", "talker", "--lines", "10"});
  ASSERT_EQ(logs.exit_code, 0) << logs.err;
  EXPECT_THAT(logs.out, HasSubstr("marker-line"));
}

// A unit may print any bytes; LogLine.text is a protobuf string, which must be UTF-8:
// agentctl logs printed a libprotobuf ERROR line and no logs at all.
TEST_F(AgentTest, LogsOfAUnitPrintingInvalidUtf8AreShownWithReplacementCharacters) {
  std::string script = agent_.Path("bytes.sh");
  WriteFile(script, "printf 'before \\377\\376 after\\n'\nexec sleep 60\n");
  CmdResult started = agent_.Ctl({"start", script, "--name", "bytes"});
  ASSERT_EQ(started.exit_code, 0) << started.err;
  CmdResult logs;
  ASSERT_TRUE(WaitFor([&] {
    logs = agent_.Ctl({"logs", "bytes", "--lines", "5"});
    return absl::StrContains(logs.out, "after");
  })) << logs.out << logs.err;
  EXPECT_EQ(logs.exit_code, 0);
  EXPECT_THAT(logs.out, HasSubstr("before \xef\xbf\xbd\xef\xbf\xbd after"));
  EXPECT_THAT(logs.err, Not(HasSubstr("libprotobuf")));
}

TEST_F(AgentTest, DeleteStopsAndForgets) {
  StartChild("gone", {}, {});
  ASSERT_TRUE(WaitFor([&] { return agent_.State("gone") == "online"; }));
  pid_t pid = agent_.Unit("gone")["pid"].get<pid_t>();
  ASSERT_EQ(agent_.Ctl({"delete", "gone"}).exit_code, 0);
  EXPECT_TRUE(agent_.Unit("gone").is_null());
  EXPECT_TRUE(WaitFor([&] { return !ProcessAlive(pid); }));
  // And it stays forgotten across an agent restart.
  agent_.StopAgent();
  ASSERT_TRUE(agent_.StartAgent()) << agent_.last_error();
  EXPECT_TRUE(agent_.Unit("gone").is_null());
  EXPECT_THAT(agent_.CtlJson({"list"}).dump(), Not(HasSubstr("\"gone\"")));
}

TEST_F(AgentTest, LogsFollowStreamsNewLines) {
  StartChild("chatty", {}, {"--print", "round"});
  ASSERT_TRUE(WaitFor([&] {
    return absl::StrContains(agent_.Ctl({"logs", "chatty", "--lines", "5"}).out, "round");
  }));
  // agentctl logs -f in the background, its output in a file.
  std::string out_path = agent_.Path("follow.out");
  pid_t follower = fork();
  if (follower == 0) {
    int fd = open(out_path.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
    dup2(fd, 1);
    dup2(fd, 2);
    std::string ctl = AgentHarness::BinDir() + "/agentctl";
    execl(ctl.c_str(), ctl.c_str(), "--home", agent_.home().c_str(), "logs", "chatty", "-f",
          "--lines", "0", nullptr);
    _exit(127);
  }
  // Followers attach asynchronously: restart until a fresh line shows up in the stream.
  bool seen = WaitFor(
      [&] {
        if (!absl::StrContains(ReadFile(out_path), "round")) {
          agent_.Ctl({"restart", "chatty"});
          return false;
        }
        return true;
      },
      absl::Seconds(15));
  kill(follower, SIGTERM);
  waitpid(follower, nullptr, 0);
  EXPECT_TRUE(seen) << ReadFile(out_path);
}

TEST_F(AgentTest, TopShowsEveryUnit) {
  StartChild("busy", {}, {});
  ASSERT_TRUE(WaitFor([&] { return agent_.State("busy") == "online"; }));
  CmdResult top = agent_.Ctl({"top", "--iterations", "1", "--interval", "0"});
  ASSERT_EQ(top.exit_code, 0) << top.err;
  EXPECT_THAT(top.out, HasSubstr("busy"));
  EXPECT_THAT(top.out, HasSubstr("agentd"));
  // Not on a terminal (a pipe here): one frame and done, without --iterations.
  CmdResult piped = agent_.Ctl({"top"});
  ASSERT_EQ(piped.exit_code, 0) << piped.err;
  EXPECT_THAT(piped.out, HasSubstr("busy"));
  const std::vector<std::string> frames = absl::StrSplit(piped.out, "agentd ");
  EXPECT_EQ(frames.size(), 2u) << "not one frame:\n" << piped.out;
}


// Like sshd's StrictModes: a home or logs/ that another user could write to is refused (they
// could plant links there that a root agentd would write through), and agentd's own files
// and units' logs are never opened through a link.
class AgentHomeTest : public ::testing::Test {
 protected:
  void SetUp() override {
    ASSERT_FALSE(dir_.empty());
    home_ = dir_ + "/home";
  }

  CmdResult Agentd(const std::vector<std::string>& extra) {
    std::vector<std::string> argv = {AgentHarness::BinDir() + "/agentd", "--home", home_};
    argv.insert(argv.end(), extra.begin(), extra.end());
    return herd::testing::Run(argv);
  }

  ScopedTempDir tmp_{"herd-home"};
  const std::string dir_ = tmp_.path();
  std::string home_;
};

TEST_F(AgentHomeTest, AHomeWritableByOthersIsRefused) {
  ASSERT_EQ(mkdir(home_.c_str(), 0700), 0);
  ASSERT_EQ(chmod(home_.c_str(), 0777), 0);
  CmdResult r = Agentd({"--daemon"});
  EXPECT_NE(r.exit_code, 0);
  EXPECT_THAT(r.err, HasSubstr("writable by every user"));
  EXPECT_THAT(r.err, HasSubstr("chmod go-w"));

  ASSERT_EQ(chmod(home_.c_str(), 0770), 0);
  r = Agentd({"--daemon"});
  EXPECT_NE(r.exit_code, 0);
  EXPECT_THAT(r.err, HasSubstr("writable by its group"));
}

TEST_F(AgentHomeTest, LinksPlantedInTheHomeAreNotFollowed) {
  const std::string victim = dir_ + "/victim";
  std::ofstream(victim) << "untouched\n";
  ASSERT_EQ(mkdir(home_.c_str(), 0700), 0);
  // logs/ a link to somewhere else.
  ASSERT_EQ(mkdir((dir_ + "/elsewhere").c_str(), 0700), 0);
  ASSERT_EQ(symlink((dir_ + "/elsewhere").c_str(), (home_ + "/logs").c_str()), 0);
  CmdResult r = Agentd({"--daemon"});
  EXPECT_NE(r.exit_code, 0);
  EXPECT_THAT(r.err, HasSubstr("logs is a symbolic link"));
  ASSERT_EQ(unlink((home_ + "/logs").c_str()), 0);

  // agentd.log and agentd.pid links.
  ASSERT_EQ(symlink(victim.c_str(), (home_ + "/agentd.log").c_str()), 0);
  r = Agentd({"--daemon"});
  EXPECT_NE(r.exit_code, 0);
  EXPECT_THAT(r.err + r.out, HasSubstr("symbolic link"));
  ASSERT_EQ(unlink((home_ + "/agentd.log").c_str()), 0);
  ASSERT_EQ(symlink(victim.c_str(), (home_ + "/agentd.pid").c_str()), 0);
  r = Agentd({"--log-file", dir_ + "/agentd.log"});
  EXPECT_NE(r.exit_code, 0);
  EXPECT_THAT(r.err, HasSubstr("agentd.pid: it is a symbolic link"));
  ASSERT_EQ(unlink((home_ + "/agentd.pid").c_str()), 0);
  std::ifstream in(victim);
  std::stringstream ss;
  ss << in.rdbuf();
  EXPECT_EQ(ss.str(), "untouched\n");
}

TEST_F(AgentTest, AUnitLogThatIsALinkIsNotWrittenThrough) {
  const std::string victim = agent_.Path("victim");
  WriteFile(victim, "untouched\n");
  ASSERT_EQ(symlink(victim.c_str(), agent_.Path("logs/planted-out.log").c_str()), 0);
  StartChild("planted", {}, {"--print", "secret-output"});
  ASSERT_TRUE(WaitFor([&] { return agent_.State("planted") == "online"; }));
  // The unit runs and writes both streams (its stderr log is a real file and gets its line);
  // its stdout is not appended to what the link points at.
  ASSERT_TRUE(WaitFor([&] {
    return absl::StrContains(ReadFile(agent_.Path("logs/planted-err.log")), "err:secret-output");
  })) << ReadFile(agent_.Path("logs/planted-err.log"));
  EXPECT_EQ(ReadFile(victim), "untouched\n");
}

TEST_F(AgentHomeTest, AParentWritableByOthersIsRefused) {
  // dir_/open is writable by everyone and not sticky: anyone could rename home away and put
  // their own in its place after agentd checked it.
  const std::string open_dir = dir_ + "/open";
  ASSERT_EQ(mkdir(open_dir.c_str(), 0700), 0);
  ASSERT_EQ(chmod(open_dir.c_str(), 0777), 0);
  home_ = open_dir + "/home";
  ASSERT_EQ(mkdir(home_.c_str(), 0700), 0);
  CmdResult r = Agentd({"--daemon"});
  EXPECT_NE(r.exit_code, 0);
  EXPECT_THAT(r.err, HasSubstr("without the sticky bit"));
  // With the sticky bit (as /tmp) others cannot rename what is not theirs: accepted.
  ASSERT_EQ(chmod(open_dir.c_str(), 01777), 0);
  r = Agentd({"--daemon"});
  EXPECT_EQ(r.exit_code, 0) << r.err;
  herd::testing::Run({AgentHarness::BinDir() + "/agentctl", "--home", home_, "kill"});
}

}  // namespace
}  // namespace herd::testing
