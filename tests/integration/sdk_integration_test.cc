// The sample modules `agentctl generate` writes, one per language, installed on a real
// agentd: each reports its probes through its SDK (or @pm2/io for node), answers an action
// with a parameter, reports an issue, and takes an overridden config after `set` (which
// restarts it). This is also the end-to-end test of the Python, shell and C++ SDKs.
//
// Needs python3, bash, a C++ compiler, node and npm (the node sample installs @pm2/io from
// the npm registry): scripts/install-deps.sh installs them.
#include <filesystem>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/time/time.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/integration/agent_harness.h"

namespace herd::testing {
namespace {

using ::testing::HasSubstr;
using json = nlohmann::json;

class GeneratedModuleTest : public ::testing::TestWithParam<std::string> {
 protected:
  void SetUp() override {
    ASSERT_TRUE(agent_.StartAgent()) << agent_.last_error();
    work_ = agent_.Path("work");
    std::filesystem::create_directories(work_);
  }

  json ModuleInfo(const std::string& name) {
    json d = agent_.CtlJson({"describe", name});
    return d.is_object() && d.contains("module_info") ? d["module_info"] : json();
  }

  json Probe(const std::string& module, const std::string& probe) {
    json m = ModuleInfo(module);
    if (!m.is_object()) return nullptr;
    for (const auto& p : m["probes"]) {
      if (p["name"] == probe) return p;
    }
    return nullptr;
  }

  bool HasAction(const std::string& module, const std::string& action) {
    json m = ModuleInfo(module);
    if (!m.is_object()) return false;
    for (const auto& a : m["actions"]) {
      if (a["name"] == action) return true;
    }
    return false;
  }

  int Pid(const std::string& name) {
    json u = agent_.Unit(name);
    return u.is_null() ? 0 : u.value("pid", 0);
  }

  AgentHarness agent_;
  std::string work_;
};

TEST_P(GeneratedModuleTest, InstallsReportsProbesAnswersActionsAndTakesConfig) {
  const std::string lang = GetParam();
  const std::string name = "gen-" + lang;
  const std::string dir = work_ + "/" + name;

  CmdResult gen = agent_.Ctl({"generate", name, "--lang", lang, "--dir", dir});
  ASSERT_EQ(gen.exit_code, 0) << gen.err;
  EXPECT_THAT(gen.out, HasSubstr("package.json"));

  // Installing a directory is development mode; a C++ sample compiles on its first start and
  // a node sample installs @pm2/io, so allow time.
  CmdResult install = agent_.Ctl({"install", dir});
  ASSERT_EQ(install.exit_code, 0) << install.out << install.err;
  const absl::Duration slow = absl::Seconds(180);
  ASSERT_TRUE(WaitFor([&] {
    json ticks = Probe(name, "ticks");
    return ticks.is_object() && ticks.value("numeric", false) && Probe(name, "latency").is_object();
  }, slow)) << ModuleInfo(name).dump(2) << "\n" << agent_.Ctl({"logs", name, "--lines", "40"}).out;

  ASSERT_TRUE(WaitFor([&] { return HasAction(name, "greet"); }));
  CmdResult greet = agent_.Ctl({"action", name, "greet", "--param", "name=you"});
  ASSERT_EQ(greet.exit_code, 0) << greet.err;
  EXPECT_THAT(greet.out, HasSubstr("hello, you"));

  ASSERT_TRUE(WaitFor([&] { return ModuleInfo(name).value("issues_count", 0) != 0; }))
      << "the sample reports an issue at start: " << ModuleInfo(name).dump(2);

  // The override reaches the module (typed for the SDKs, as an env string for @pm2/io).
  int old_pid = Pid(name);
  CmdResult set = agent_.Ctl({"set", name + ":greeting", "hi"});
  ASSERT_EQ(set.exit_code, 0) << set.err;
  ASSERT_TRUE(WaitFor([&] {
    int p = Pid(name);
    return p > 0 && p != old_pid;
  }, slow)) << "set did not restart " << name;
  ASSERT_TRUE(WaitFor([&] { return HasAction(name, "greet"); }, slow));
  CmdResult greet2 = agent_.Ctl({"action", name, "greet"});
  ASSERT_EQ(greet2.exit_code, 0) << greet2.err;
  EXPECT_THAT(greet2.out, HasSubstr("hi, stranger"));

  CmdResult uninstall = agent_.Ctl({"uninstall", name});
  ASSERT_EQ(uninstall.exit_code, 0) << uninstall.err;
  EXPECT_TRUE(agent_.Unit(name).is_null());
}

INSTANTIATE_TEST_SUITE_P(Languages, GeneratedModuleTest,
                         ::testing::Values("python", "sh", "cpp", "node"),
                         [](const ::testing::TestParamInfo<std::string>& p) { return p.param; });

TEST(Generate, RefusesUnknownLanguagesBadNamesAndNonEmptyDirectories) {
  AgentHarness agent;  // agentctl generate needs no running agent
  CmdResult lang = agent.Ctl({"generate", "x", "--lang", "cobol", "--dir", agent.Path("x")});
  EXPECT_NE(lang.exit_code, 0);
  EXPECT_THAT(lang.err, HasSubstr("no generator for \"cobol\""));
  EXPECT_THAT(lang.err, HasSubstr("python"));
  CmdResult name = agent.Ctl({"generate", "../evil", "--dir", agent.Path("y")});
  EXPECT_NE(name.exit_code, 0);
  EXPECT_THAT(name.err, HasSubstr("not a valid module name"));
  std::filesystem::create_directories(agent.Path("full/sub"));
  CmdResult full = agent.Ctl({"generate", "x", "--dir", agent.Path("full")});
  EXPECT_NE(full.exit_code, 0);
  EXPECT_THAT(full.err, HasSubstr("not empty"));
}

}  // namespace
}  // namespace herd::testing
