#include "agent/supervisor/app_spec.h"

#include <stdlib.h>
#include <sys/stat.h>

#include <filesystem>
#include <fstream>
#include <string>

#include "absl/strings/str_cat.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace herd::agent {
namespace {

using ::testing::ElementsAre;
using ::testing::HasSubstr;
using ::testing::IsEmpty;

namespace fs = std::filesystem;

// A temporary directory holding scripts, and a fake PATH with a few "interpreters".
class AppSpecTest : public ::testing::Test {
 protected:
  void SetUp() override {
    char tmpl[] = "/tmp/herd-appspec-XXXXXX";
    ASSERT_NE(mkdtemp(tmpl), nullptr);
    dir_ = tmpl;
    bin_ = dir_ + "/bin";
    fs::create_directories(bin_);
    for (const char* p : {"node", "python3", "bash", "ruby"}) Write(bin_ + "/" + p, "", true);
    Write(dir_ + "/app.js", "console.log(1)\n");
    Write(dir_ + "/tool.py", "print(1)\n");
    ctx_.base_dir = dir_;
    ctx_.search_path = "/nonexistent:" + bin_;
  }
  void TearDown() override { fs::remove_all(dir_); }

  static void Write(const std::string& path, const std::string& text, bool exec = false) {
    fs::create_directories(fs::path(path).parent_path());
    std::ofstream(path) << text;
    chmod(path.c_str(), exec ? 0755 : 0644);
  }

  absl::StatusOr<std::vector<herd::v1::AppSpec>> Parse(const std::string& text) {
    return ParseEcosystem(text, ctx_);
  }
  // One app that must parse.
  herd::v1::AppSpec One(const std::string& app_json) {
    auto specs = Parse(absl::StrCat("{\"apps\": [", app_json, "]}"));
    EXPECT_TRUE(specs.ok()) << specs.status();
    if (!specs.ok() || specs->size() != 1) return {};
    return (*specs)[0];
  }
  // One app that must be refused; returns the message.
  std::string Refused(const std::string& app_json) {
    auto specs = Parse(absl::StrCat("{\"apps\": [", app_json, "]}"));
    EXPECT_FALSE(specs.ok()) << "accepted: " << app_json;
    return specs.ok() ? "" : std::string(specs.status().message());
  }

  std::string dir_, bin_;
  AppSpecContext ctx_;
};

TEST_F(AppSpecTest, Pm2DefaultsApplyAndNameComesFromTheScript) {
  auto s = One(R"({"script": "app.js"})");
  EXPECT_EQ(s.name(), "app");
  EXPECT_EQ(s.script(), dir_ + "/app.js");
  EXPECT_EQ(s.cwd(), dir_);
  EXPECT_TRUE(s.autorestart());
  EXPECT_EQ(s.max_restarts(), kDefaultMaxRestarts);
  EXPECT_EQ(s.min_uptime_ms(), kDefaultMinUptimeMs);
  EXPECT_EQ(s.kill_timeout_ms(), kDefaultKillTimeoutMs);
  EXPECT_EQ(s.restart_delay_ms(), 0u);
  EXPECT_EQ(s.exp_backoff_restart_delay_ms(), 0u);
  EXPECT_EQ(s.max_memory_restart_bytes(), 0u);
  EXPECT_FALSE(s.merge_logs());
  EXPECT_EQ(s.channel(), herd::v1::CHANNEL_KIND_NONE);
}

TEST_F(AppSpecTest, EveryDocumentedFieldIsRead) {
  auto s = One(R"({
    "name": "api", "script": "app.js", "args": "--port 80 'a b'",
    "interpreter_args": ["--inspect"], "env": {"A": "1", "N": 2, "B": true},
    "autorestart": false, "max_restarts": 3, "min_uptime": "2s", "restart_delay": 250,
    "exp_backoff_restart_delay": 100, "kill_timeout": "5s", "stop_exit_codes": [0, 3],
    "max_memory_restart": "200M", "cron_restart": "0 3 * * *", "merge_logs": true,
    "log_date_format": "YYYY-MM-DD", "out_file": "out.log", "error_file": "/var/tmp/e.log",
    "pid_files": ["run/x.pid"], "pid_files_join": true, "log_max_size": "10M",
    "log_retain": 5})");
  EXPECT_EQ(s.name(), "api");
  EXPECT_THAT(s.args(), ElementsAre("--port", "80", "a b"));
  EXPECT_THAT(s.interpreter_args(), ElementsAre("--inspect"));
  EXPECT_EQ(s.env().at("A"), "1");
  EXPECT_EQ(s.env().at("N"), "2");
  EXPECT_EQ(s.env().at("B"), "true");
  EXPECT_FALSE(s.autorestart());
  EXPECT_EQ(s.max_restarts(), 3u);
  EXPECT_EQ(s.min_uptime_ms(), 2000u);
  EXPECT_EQ(s.restart_delay_ms(), 250u);
  EXPECT_EQ(s.exp_backoff_restart_delay_ms(), 100u);
  EXPECT_EQ(s.kill_timeout_ms(), 5000u);
  EXPECT_THAT(s.stop_exit_codes(), ElementsAre(0, 3));
  EXPECT_EQ(s.max_memory_restart_bytes(), 200u * 1024 * 1024);
  EXPECT_EQ(s.cron_restart(), "0 3 * * *");
  EXPECT_TRUE(s.merge_logs());
  EXPECT_EQ(s.log_date_format(), "YYYY-MM-DD");
  EXPECT_EQ(s.out_file(), dir_ + "/out.log");
  EXPECT_EQ(s.error_file(), "/var/tmp/e.log");
  EXPECT_THAT(s.pid_files(), ElementsAre(dir_ + "/run/x.pid"));
  EXPECT_TRUE(s.pid_files_join());
  EXPECT_EQ(s.log_max_size_bytes(), 10u * 1024 * 1024);
  EXPECT_EQ(s.log_retain(), 5u);
}

TEST_F(AppSpecTest, Pm2AliasesAreAccepted) {
  auto s = One(R"({"name": "a", "script": "app.js", "exec_interpreter": "node",
                   "node_args": "--max-old-space-size=64", "combine_logs": true,
                   "output": "o.log", "error": "e.log", "cron": "*/5 * * * *"})");
  EXPECT_EQ(s.interpreter(), bin_ + "/node");
  EXPECT_THAT(s.interpreter_args(), ElementsAre("--max-old-space-size=64"));
  EXPECT_TRUE(s.merge_logs());
  EXPECT_EQ(s.out_file(), dir_ + "/o.log");
  EXPECT_EQ(s.error_file(), dir_ + "/e.log");
  EXPECT_EQ(s.cron_restart(), "*/5 * * * *");
}

TEST_F(AppSpecTest, TimeTrueGivesADefaultDateFormat) {
  EXPECT_FALSE(One(R"({"script": "app.js", "time": true})").log_date_format().empty());
  EXPECT_EQ(One(R"({"script": "app.js", "time": true, "log_date_format": "HH:mm"})")
                .log_date_format(),
            "HH:mm");
}

TEST_F(AppSpecTest, DurationsAndCountsAcceptNumericStrings) {
  auto s = One(R"({"script": "app.js", "max_restarts": "7", "min_uptime": "1500",
                   "kill_timeout": 2000.9})");
  EXPECT_EQ(s.max_restarts(), 7u);
  EXPECT_EQ(s.min_uptime_ms(), 1500u);
  EXPECT_EQ(s.kill_timeout_ms(), 2000u);
}

TEST_F(AppSpecTest, LotsIsNotASizeAndTheMessageNamesAppFieldAndForms) {
  std::string m = Refused(R"({"name": "api", "script": "app.js", "max_memory_restart": "lots"})");
  EXPECT_THAT(m, HasSubstr("apps[0] (\"api\")"));
  EXPECT_THAT(m, HasSubstr("max_memory_restart"));
  EXPECT_THAT(m, HasSubstr("lots"));
  EXPECT_THAT(m, HasSubstr("200M"));
}

TEST_F(AppSpecTest, UnknownFieldIsRefusedWithTheAcceptedNames) {
  std::string m = Refused(R"({"script": "app.js", "max_restart": 3})");
  EXPECT_THAT(m, HasSubstr("max_restart: unknown field"));
  EXPECT_THAT(m, HasSubstr("max_restarts"));
}

TEST_F(AppSpecTest, BadValuesNameTheFieldAndTheAcceptedForm) {
  EXPECT_THAT(Refused(R"({"script": "app.js", "autorestart": "maybe"})"),
              HasSubstr("autorestart: \"maybe\" must be true or false"));
  EXPECT_THAT(Refused(R"({"script": "app.js", "max_restarts": -1})"),
              HasSubstr("max_restarts: -1 must be a whole number"));
  EXPECT_THAT(Refused(R"({"script": "app.js", "stop_exit_codes": [0, 300]})"),
              HasSubstr("stop_exit_codes: 300 is not an exit code"));
  EXPECT_THAT(Refused(R"({"script": "app.js", "cron_restart": "every day"})"),
              HasSubstr("cron_restart"));
  EXPECT_THAT(Refused(R"({"script": "app.js", "env": ["A=1"]})"),
              HasSubstr("env: must be an object"));
  EXPECT_THAT(Refused(R"({"script": "app.js", "env": {"A=B": "1"}})"),
              HasSubstr("not a valid variable name"));
  EXPECT_THAT(Refused(R"({"script": "app.js", "args": [{"x": 1}]})"),
              HasSubstr("args: element"));
  EXPECT_THAT(Refused(R"({"script": "app.js", "min_uptime": "soon"})"), HasSubstr("min_uptime"));
  EXPECT_THAT(Refused(R"({"script": "app.js", "log_retain": 5000})"),
              HasSubstr("log_retain: must be at most 1000"));
}

TEST_F(AppSpecTest, SingleStopExitCodeNeedNotBeAnArray) {
  EXPECT_THAT(One(R"({"script": "app.js", "stop_exit_codes": 2})").stop_exit_codes(),
              ElementsAre(2));
}

TEST_F(AppSpecTest, ClusterModeIsRefusedButItsNoOpValuesLoad) {
  One(R"({"script": "app.js", "instances": 1, "exec_mode": "fork", "watch": false})");
  EXPECT_THAT(Refused(R"({"script": "app.js", "instances": 4})"), HasSubstr("one process per unit"));
  EXPECT_THAT(Refused(R"({"script": "app.js", "exec_mode": "cluster"})"),
              HasSubstr("fork mode"));
  EXPECT_THAT(Refused(R"({"script": "app.js", "watch": true})"), HasSubstr("not supported"));
}

TEST_F(AppSpecTest, MissingOrAbsentScriptIsRefused) {
  EXPECT_THAT(Refused(R"({"name": "x"})"), HasSubstr("script: is required"));
  EXPECT_THAT(Refused(R"({"script": "nope.js"})"), HasSubstr("\"nope.js\" not found"));
  EXPECT_THAT(Refused(R"({"script": "sub/nope.js"})"), HasSubstr("not found"));
}

TEST_F(AppSpecTest, ScriptIsFoundOnPathWhenNotAFile) {
  auto s = One(R"({"name": "r", "script": "ruby", "args": ["-e", "1"]})");
  EXPECT_EQ(s.script(), bin_ + "/ruby");
  EXPECT_THAT(ExecArgv(s), ElementsAre(bin_ + "/ruby", "-e", "1"));
}

TEST_F(AppSpecTest, RelativeCwdResolvesAgainstTheBaseAndScriptAgainstCwd) {
  Write(dir_ + "/svc/main.py", "print(1)\n");
  auto s = One(R"({"script": "main.py", "cwd": "svc"})");
  EXPECT_EQ(s.cwd(), dir_ + "/svc");
  EXPECT_EQ(s.script(), dir_ + "/svc/main.py");
  EXPECT_THAT(Refused(R"({"script": "app.js", "cwd": "missing"})"),
              HasSubstr("cwd: \"" + dir_ + "/missing\" is not a directory"));
}

TEST_F(AppSpecTest, InterpreterComesFromTheExtension) {
  EXPECT_EQ(One(R"({"script": "app.js"})").interpreter(), bin_ + "/node");
  EXPECT_EQ(One(R"({"script": "tool.py"})").interpreter(), bin_ + "/python3");
  Write(dir_ + "/x.sh", "echo\n");
  EXPECT_EQ(One(R"({"script": "x.sh"})").interpreter(), bin_ + "/bash");
}

TEST_F(AppSpecTest, InterpreterNoneOrAnExecutableScriptRunsDirectly) {
  Write(dir_ + "/run", "#!/bin/sh\n", /*exec=*/true);
  auto direct = One(R"({"script": "run"})");
  EXPECT_EQ(direct.interpreter(), "");
  EXPECT_THAT(ExecArgv(direct), ElementsAre(dir_ + "/run"));
  auto none = One(R"({"name": "n", "script": "app.js", "interpreter": "none"})");
  EXPECT_EQ(none.interpreter(), "");
}

TEST_F(AppSpecTest, NonExecutableScriptRunsThroughItsShebangWithItsArgument) {
  Write(dir_ + "/tool", "#!/usr/bin/env python3\nprint(1)\n");
  auto s = One(R"({"script": "tool", "interpreter_args": ["-u"], "args": ["x"]})");
  EXPECT_EQ(s.interpreter(), "/usr/bin/env");
  EXPECT_THAT(ExecArgv(s), ElementsAre("/usr/bin/env", "python3", "-u", dir_ + "/tool", "x"));
}

TEST_F(AppSpecTest, ShebangWithABareProgramIsLookedUpOnPath) {
  Write(dir_ + "/tool", "#!bash\necho\n");
  EXPECT_EQ(One(R"({"script": "tool"})").interpreter(), bin_ + "/bash");
}

TEST_F(AppSpecTest, NoWayToRunAScriptIsExplained) {
  Write(dir_ + "/data.txt", "hello\n");
  EXPECT_THAT(Refused(R"({"script": "data.txt"})"),
              HasSubstr("cannot tell how to run"));
  EXPECT_THAT(Refused(R"({"script": "app.js", "interpreter": "deno"})"),
              HasSubstr("\"deno\" not found on PATH"));
}

TEST_F(AppSpecTest, AbsoluteInterpreterIsKeptAsGiven) {
  EXPECT_EQ(One(R"({"script": "app.js", "interpreter": "/opt/node/bin/node"})").interpreter(),
            "/opt/node/bin/node");
}

TEST_F(AppSpecTest, EcosystemShapes) {
  auto single = Parse(R"({"script": "app.js", "name": "solo"})");
  ASSERT_TRUE(single.ok()) << single.status();
  EXPECT_EQ((*single)[0].name(), "solo");
  auto object_apps = Parse(R"({"apps": {"script": "app.js"}})");
  ASSERT_TRUE(object_apps.ok()) << object_apps.status();
  auto with_deploy = Parse(R"({"apps": [{"script": "app.js"}], "deploy": {}})");
  ASSERT_TRUE(with_deploy.ok());
  auto two = Parse(R"({"apps": [{"script": "app.js"}, {"script": "tool.py", "name": "t"}]})");
  ASSERT_TRUE(two.ok());
  EXPECT_EQ(two->size(), 2u);
}

TEST_F(AppSpecTest, EcosystemErrors) {
  EXPECT_THAT(std::string(Parse(R"({"apps": []})").status().message()), HasSubstr("empty"));
  EXPECT_THAT(std::string(Parse(R"({"apps": 5})").status().message()),
              HasSubstr("must be an array"));
  EXPECT_THAT(std::string(Parse(R"([1])").status().message()), HasSubstr("must be an object"));
  EXPECT_THAT(std::string(Parse(R"({"apps": [{"script": "app.js"}], "extra": 1})")
                              .status()
                              .message()),
              HasSubstr("unknown top-level field \"extra\""));
  EXPECT_THAT(std::string(Parse(R"({"apps": [5]})").status().message()),
              HasSubstr("apps[0]: an app must be a JSON object"));
  EXPECT_THAT(
      std::string(Parse(R"({"apps": [{"script": "app.js"}, {"script": "app.js"}]})")
                      .status()
                      .message()),
      HasSubstr("apps[1]: name: \"app\" is used by two apps"));
}

TEST_F(AppSpecTest, OneBadAppRefusesTheWholeDocumentNamingIt) {
  auto r = Parse(R"({"apps": [{"script": "app.js"}, {"name": "b", "script": "app.js",
                                "kill_timeout": "x"}]})");
  ASSERT_FALSE(r.ok());
  EXPECT_THAT(std::string(r.status().message()), HasSubstr("apps[1] (\"b\"): kill_timeout"));
}

TEST_F(AppSpecTest, InvalidJsonGivesLineAndColumn) {
  auto r = Parse("{\"apps\": [\n  {\"script\": \"app.js\",}\n]}");
  ASSERT_FALSE(r.ok());
  EXPECT_THAT(std::string(r.status().message()), HasSubstr("invalid JSON at line 2, column"));
}

TEST_F(AppSpecTest, BadNamesAreRefused) {
  EXPECT_THAT(Refused(R"({"name": "all", "script": "app.js"})"), HasSubstr("reserved"));
  EXPECT_THAT(Refused(R"({"name": "a/b", "script": "app.js"})"),
              HasSubstr("may only contain"));
  EXPECT_THAT(Refused(R"({"name": 5, "script": "app.js"})"), HasSubstr("must be a string"));
}

TEST(ValidateUnitName, Rules) {
  EXPECT_TRUE(ValidateUnitName("api-1.v2_x").ok());
  EXPECT_TRUE(ValidateUnitName(std::string(64, 'a')).ok());
  EXPECT_FALSE(ValidateUnitName("").ok());
  EXPECT_FALSE(ValidateUnitName(std::string(65, 'a')).ok());
  EXPECT_FALSE(ValidateUnitName(".hidden").ok());
  EXPECT_FALSE(ValidateUnitName("-flag").ok());
  EXPECT_FALSE(ValidateUnitName("all").ok());
  EXPECT_FALSE(ValidateUnitName("a b").ok());
  EXPECT_FALSE(ValidateUnitName("../x").ok());
}

TEST(ValidateAppSpec, TypedSpecsNeedAbsolutePathsAndAValidCron) {
  herd::v1::AppSpec s;
  s.set_name("x");
  s.set_script("/bin/true");
  s.set_cwd("/");
  EXPECT_TRUE(ValidateAppSpec(s).ok());
  s.set_cron_restart("61 * * * *");
  EXPECT_FALSE(ValidateAppSpec(s).ok());
  s.clear_cron_restart();
  s.set_script("true");
  EXPECT_THAT(std::string(ValidateAppSpec(s).message()), HasSubstr("absolute"));
  s.set_script("/bin/true");
  s.set_cwd("rel");
  EXPECT_FALSE(ValidateAppSpec(s).ok());
  s.set_cwd("/");
  s.set_name("bad name");
  EXPECT_FALSE(ValidateAppSpec(s).ok());
}

TEST(ExecArgv, InterpreterThenItsArgsThenScriptThenArgs) {
  herd::v1::AppSpec s;
  s.set_interpreter("/usr/bin/node");
  s.add_interpreter_args("--a");
  s.set_script("/srv/app.js");
  s.add_args("x");
  EXPECT_THAT(ExecArgv(s), ElementsAre("/usr/bin/node", "--a", "/srv/app.js", "x"));
}

TEST_F(AppSpecTest, FindInPathNeedsAnExecutableRegularFile) {
  Write(bin_ + "/plain", "", /*exec=*/false);
  fs::create_directories(bin_ + "/dir");
  EXPECT_EQ(FindInPath("node", ctx_.search_path), bin_ + "/node");
  EXPECT_EQ(FindInPath("plain", ctx_.search_path), "");
  EXPECT_EQ(FindInPath("dir", ctx_.search_path), "");
  EXPECT_EQ(FindInPath("node", ""), "");
  EXPECT_THAT(FindInPath("node", "::" + bin_), HasSubstr("/node"));
}

// Issue 20, item 10: numbers beyond a double threw out of ParseEcosystem (gRPC answered
// UNIMPLEMENTED with an empty message); durations of 1e300 became 0 and 1e19 ms was taken.
TEST_F(AppSpecTest, NumberTooLargeForADoubleIsAnErrorNamingTheAppAndField) {
  for (const char* v : {"1e99999", "-1e99999", "9e+308"}) {
    absl::StatusOr<std::vector<herd::v1::AppSpec>> r = absl::InternalError("not parsed");
    EXPECT_NO_THROW(r = Parse(absl::StrCat(
                        R"({"apps": [{"name": "a", "script": "app.js"},
                                     {"name": "b", "script": "app.js", "kill_timeout": )",
                        v, "}]}")));
    ASSERT_FALSE(r.ok()) << v;
    EXPECT_EQ(r.status().code(), absl::StatusCode::kInvalidArgument);
    EXPECT_THAT(std::string(r.status().message()), HasSubstr("apps[1].kill_timeout")) << v;
    EXPECT_THAT(std::string(r.status().message()), HasSubstr("number overflow")) << v;
  }
}

TEST_F(AppSpecTest, DurationsBeyondTheirMaximumAreRefusedNamingAppAndField) {
  for (const char* field : {"kill_timeout", "min_uptime", "restart_delay",
                            "exp_backoff_restart_delay"}) {
    for (const char* v : {"1e300", "1.7e308", "1e19", "10000000000000000000", "\"100000h\""}) {
      std::string msg =
          Refused(absl::StrCat(R"({"name": "api", "script": "app.js", ")", field, "\": ", v, "}"));
      EXPECT_THAT(msg, HasSubstr(absl::StrCat("(\"api\"): ", field))) << field << "=" << v;
      EXPECT_THAT(msg, HasSubstr("longer than the maximum")) << field << "=" << v;
    }
  }
}

TEST_F(AppSpecTest, DurationsAtTheirMaximumAndFractionsAreAccepted) {
  auto s = One(R"({"script": "app.js", "kill_timeout": 3600000, "min_uptime": "24h",
                   "restart_delay": 86400000.0, "exp_backoff_restart_delay": 2.6})");
  EXPECT_EQ(s.kill_timeout_ms(), kMaxKillTimeoutMs);
  EXPECT_EQ(s.min_uptime_ms(), kMaxDelayMs);
  EXPECT_EQ(s.restart_delay_ms(), kMaxDelayMs);
  EXPECT_EQ(s.exp_backoff_restart_delay_ms(), 2u);
  EXPECT_THAT(Refused(R"({"script": "app.js", "kill_timeout": 3600001})"),
              HasSubstr("kill_timeout: 3600001 is longer than the maximum of 3600000 ms (1h)"));
}

TEST_F(AppSpecTest, NegativeDurationsAreRefused) {
  EXPECT_THAT(Refused(R"({"script": "app.js", "restart_delay": -5})"),
              HasSubstr("restart_delay: -5 must be >= 0"));
  EXPECT_THAT(Refused(R"({"script": "app.js", "min_uptime": -0.5})"),
              HasSubstr("min_uptime: -0.5 must be >= 0"));
}

TEST_F(AppSpecTest, InvalidUtf8IsAnErrorNamingThePath) {
  auto r = Parse("{\"apps\": [{\"script\": \"app.js\", \"env\": {\"A\": \"x\xff\"}}]}");
  ASSERT_FALSE(r.ok());
  EXPECT_THAT(std::string(r.status().message()), HasSubstr("apps[0].env.A"));
  EXPECT_THAT(std::string(r.status().message()), HasSubstr("UTF-8"));
}

// Messages are logged (agentd.log, key="value" fields): keys and names from the document are
// escaped so that one cannot end the line or forge fields.
TEST_F(AppSpecTest, KeysAndNamesInErrorsAreEscaped) {
  std::string m = Refused(R"({"script": "app.js", "x\"\nevent=forged": 1})");
  EXPECT_EQ(m.find('\n'), std::string::npos) << m;
  EXPECT_THAT(m, HasSubstr("x\\\"\\nevent=forged: unknown field"));
  m = Refused(R"({"script": "app.js", "name": "a\nb"})");
  EXPECT_EQ(m.find('\n'), std::string::npos) << m;
  m = Refused(R"({"script": "app.js", "env": {"A=\r": "1"}})");
  EXPECT_EQ(m.find('\r'), std::string::npos) << m;
}

}  // namespace
}  // namespace herd::agent
