// PM2's daemon API served by a real agentd (agent/pm2, issue 23) to what `require('pm2')`
// does, unmodified: pm2-logrotate installed from npm rotates a unit's log through it, a unit
// using PM2's client lists the units, sees a restart on PM2's bus and is told, in its log,
// which call Herd does not serve. No PM2 daemon is ever started.
//
// Needs node and npm (and the npm registry): scripts/test.sh installs them.
#include <sys/stat.h>

#include <chrono>
#include <filesystem>
#include <regex>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/fakes/file_util.h"
#include "tests/integration/agent_harness.h"

namespace herd::testing {
namespace {

namespace fs = std::filesystem;
using ::testing::HasSubstr;
using json = nlohmann::json;

// Writes "line N" every 20 ms, N counting up from 1.
constexpr char kChatter[] = R"(let n = 0;
setInterval(() => console.log('line ' + (++n) + ' ' + 'x'.repeat(60)), 20);
)";

// PM2's client, as a module built on `require('pm2')` uses it: list, the bus, a restart
// through the API, and a call Herd does not serve. Prints what it saw, one line each.
constexpr char kPm2Client[] = R"(const pm2 = require(process.argv[2]);
pm2.connect((err) => {
  if (err) { console.log('CONNECT-ERROR ' + err.message); return; }
  pm2.list((err, list) => {
    if (err) { console.log('LIST-ERROR ' + err.message); return; }
    console.log('LIST ' + JSON.stringify(list.map((p) => ({
      name: p.name, pm_id: p.pm_id, status: p.pm2_env.status,
      out: p.pm2_env.pm_out_log_path, module: p.pm2_env.axm_options.isModule === true }))));
    pm2.launchBus((err, bus) => {
      if (err) { console.log('BUS-ERROR ' + err.message); return; }
      bus.on('process:event', (p) => console.log('EVENT ' + p.event + ' ' + p.process.name));
      bus.on('process:exception', (p) => console.log('EXCEPTION ' + p.process.name + ' ' + p.data.message));
      bus.on('process:msg', (p) => console.log('MSG ' + p.process.name + ' ' + JSON.stringify(p.data)));
      let lines = 0;
      bus.on('log:out', (p) => {
        if (p.process.name === 'chatter' && lines++ < 1) console.log('LOG-OUT ' + p.data.trim());
      });
      console.log('BUS-READY');
      pm2.sendSignalToProcessName('SIGUSR2', 'chatter', (err) => {
        console.log('SIGNAL ' + (err ? 'refused: ' + err.message : 'sent'));
      });
    });
  });
});
)";

class Pm2ApiTest : public ::testing::Test {
 protected:
  void SetUp() override {
    ASSERT_FALSE(Which("node").empty()) << "node is not installed: apt-get install nodejs";
    ASSERT_FALSE(Which("npm").empty()) << "npm is not installed: apt-get install npm";
    ASSERT_TRUE(agent_.StartAgent()) << agent_.last_error();
  }

  std::string Log(const std::string& file) { return ReadFile(agent_.Path("logs/" + file)); }

  // Processes of this test's agent whose command line says they are a PM2 daemon.
  std::vector<std::string> Pm2Daemons() {
    std::vector<std::string> found;
    const std::string tag = "HERD_TEST_HOME=" + agent_.home();
    for (const auto& e : fs::directory_iterator("/proc")) {
      const std::string pid = e.path().filename();
      if (pid.find_first_not_of("0123456789") != std::string::npos) continue;
      const std::string env = ReadFile(e.path().string() + "/environ");
      if (env.find(tag) == std::string::npos) continue;
      std::string cmd = ReadFile(e.path().string() + "/cmdline");
      if (absl::StrContains(cmd, "God Daemon") || absl::StrContains(cmd, "pm2/lib/Daemon")) {
        found.push_back(pid + ": " + cmd);
      }
    }
    return found;
  }

  // The numbers N of "line N" in `text`, in order.
  static std::vector<int> LineNumbers(const std::string& text) {
    std::vector<int> out;
    for (absl::string_view l : absl::StrSplit(text, '\n', absl::SkipEmpty())) {
      std::vector<absl::string_view> w = absl::StrSplit(l, ' ');
      int n = 0;
      if (w.size() >= 2 && w[0] == "line" && absl::SimpleAtoi(w[1], &n)) out.push_back(n);
    }
    return out;
  }

  AgentHarness agent_;
};

TEST_F(Pm2ApiTest, Pm2LogrotateAndPm2sClientRunOnAgentdWithoutAPm2Daemon) {
  // The unit whose log is rotated, and pm2-logrotate from npm, unmodified.
  const std::string work = agent_.Path("work");
  WriteTextFile(work + "/chatter.js", kChatter);
  ASSERT_EQ(agent_.Ctl({"start", work + "/chatter.js", "--name", "chatter"}).exit_code, 0);
  CmdResult install = agent_.Ctl({"install", "pm2-logrotate@3.0.0"});
  ASSERT_EQ(install.exit_code, 0) << install.out << install.err;
  const std::string pm2_lib = agent_.Path("modules/pm2-logrotate/node_modules/pm2");
  ASSERT_TRUE(fs::exists(pm2_lib + "/package.json"));

  // PM2's client in a unit of its own: it lists the units, listens on the bus.
  WriteTextFile(work + "/client.js", kPm2Client);
  ASSERT_EQ(agent_.Ctl({"start", work + "/client.js", "--name", "client", "--", pm2_lib})
                .exit_code, 0);
  ASSERT_TRUE(WaitFor([&] { return absl::StrContains(Log("client-out.log"), "BUS-READY"); },
                      absl::Seconds(30)))
      << Log("client-out.log") << Log("client-err.log");
  const std::string out = Log("client-out.log");
  EXPECT_THAT(out, HasSubstr("\"name\":\"chatter\""));
  EXPECT_THAT(out, HasSubstr(absl::StrCat("\"out\":\"", agent_.Path("logs/chatter-out.log"))));
  EXPECT_THAT(out, HasSubstr("\"name\":\"pm2-logrotate\""));
  EXPECT_THAT(out, HasSubstr("\"module\":true"));
  // What Herd does not serve: an error naming the call, to the caller and in its log.
  ASSERT_TRUE(WaitFor([&] { return absl::StrContains(Log("client-out.log"), "SIGNAL "); }));
  EXPECT_THAT(Log("client-out.log"), HasSubstr("SIGNAL refused: agentd (Herd) does not serve "
                                               "PM2's \"sendSignalToProcessName\" call"));
  EXPECT_THAT(Log("client-err.log"), HasSubstr("[herd] agentd (Herd) does not serve PM2's "
                                               "\"sendSignalToProcessName\" call"));

  // A unit's output reaches PM2's bus while someone listens.
  ASSERT_TRUE(WaitFor([&] { return absl::StrContains(Log("client-out.log"), "LOG-OUT line "); }))
      << Log("client-out.log");
  // What a module sends on its channel reaches the bus under its type, as PM2's God
  // re-emits it: an exception (pm2-health mails those), a process:msg.
  WriteTextFile(work + "/thrower/package.json",
                R"({"name": "thrower", "version": "1.0.0", "apps": [{"script": "index.js"}]})");
  WriteTextFile(work + "/thrower/index.js", R"(setInterval(() => {
  process.send({type: 'process:exception', data: {message: 'boom', stack: 'Error: boom'}});
  process.send({type: 'process:msg', data: 'alive'});
}, 300);
)");
  ASSERT_EQ(agent_.Ctl({"install", work + "/thrower"}).exit_code, 0);
  ASSERT_TRUE(WaitFor([&] {
    const std::string o = Log("client-out.log");
    return absl::StrContains(o, "EXCEPTION thrower boom") &&
           absl::StrContains(o, "MSG thrower \"alive\"");
  })) << Log("client-out.log");
  ASSERT_EQ(agent_.Ctl({"uninstall", "thrower"}).exit_code, 0);

  // A restart by the operator reaches PM2's bus.
  ASSERT_EQ(agent_.Ctl({"restart", "chatter"}).exit_code, 0);
  ASSERT_TRUE(WaitFor([&] {
    const std::string o = Log("client-out.log");
    return absl::StrContains(o, "EVENT restart chatter") &&
           absl::StrContains(o, "EVENT online chatter");
  })) << Log("client-out.log");

  // pm2-logrotate by its own settings: past 2 KB, looked at every second.
  ASSERT_EQ(agent_.Ctl({"set", "pm2-logrotate:max_size", "2K"}).exit_code, 0);
  ASSERT_EQ(agent_.Ctl({"set", "pm2-logrotate:workerInterval", "1"}).exit_code, 0);
  const std::regex rotated_name("chatter-out__.*\\.log");
  std::string rotated;
  ASSERT_TRUE(WaitFor([&] {
    for (const auto& e : fs::directory_iterator(agent_.Path("logs"))) {
      const std::string name = e.path().filename();
      if (std::regex_match(name, rotated_name)) rotated = e.path();
    }
    return !rotated.empty();
  }, absl::Seconds(45))) << Log("pm2-logrotate-out.log") << Log("pm2-logrotate-err.log");
  // Wait for its copy to finish (it truncates the live file once written).
  ASSERT_TRUE(WaitFor([&] {
    return absl::StrContains(Log("pm2-logrotate-out.log"), "has been created");
  }, absl::Seconds(20))) << Log("pm2-logrotate-out.log");
  const std::string copy = ReadFile(rotated);
  const std::vector<int> before = LineNumbers(copy);
  ASSERT_FALSE(before.empty());

  // agentd keeps writing to the live file, from its start (O_APPEND after the truncation:
  // no hole of NUL bytes where the old content was), and never to the rotated copy.
  ASSERT_TRUE(WaitFor([&] {
    const std::vector<int> after = LineNumbers(Log("chatter-out.log"));
    return !after.empty() && after.back() > before.back() + 20;
  })) << Log("chatter-out.log");
  const std::string live = Log("chatter-out.log");
  EXPECT_EQ(live.find('\0'), std::string::npos) << "agentd wrote past the truncated end";
  EXPECT_EQ(ReadFile(rotated), copy) << "the rotated copy changed after it was made";
  const std::vector<int> after = LineNumbers(live);
  for (size_t i = 1; i < after.size(); ++i) {
    ASSERT_LT(after[i - 1], after[i]) << "lines out of order in the live log";
  }

  // By its retain setting too: rotations go on, at most 2 rotated copies are kept.
  ASSERT_EQ(agent_.Ctl({"set", "pm2-logrotate:retain", "2"}).exit_code, 0);
  std::set<std::string> seen;
  size_t now = 0;
  ASSERT_TRUE(WaitFor([&] {
    now = 0;
    for (const auto& e : fs::directory_iterator(agent_.Path("logs"))) {
      const std::string name = e.path().filename();
      if (!std::regex_match(name, rotated_name)) continue;
      ++now;
      seen.insert(name);
    }
    return seen.size() >= 4 && now <= 2;
  }, absl::Seconds(60))) << seen.size() << " rotated copies seen, " << now << " now\n"
                         << Log("pm2-logrotate-out.log") << Log("pm2-logrotate-err.log");

  // No PM2 daemon, ever: none running, and no pid file where it would write one.
  EXPECT_THAT(Pm2Daemons(), ::testing::IsEmpty());
  EXPECT_FALSE(fs::exists(agent_.Path("pm2/pm2.pid")));

  // The bus's last listener going away while a unit writes (its lines were being sent to
  // it) leaves agentd serving.
  ASSERT_EQ(agent_.Ctl({"stop", "client"}).exit_code, 0);
  std::this_thread::sleep_for(std::chrono::milliseconds(200));
  EXPECT_EQ(agent_.State("chatter"), "online");

  // Uninstalled, pm2-logrotate leaves nothing running either.
  ASSERT_EQ(agent_.Ctl({"uninstall", "pm2-logrotate"}).exit_code, 0);
  EXPECT_THAT(Pm2Daemons(), ::testing::IsEmpty());

  // compress: 3.0.0 cannot turn it on under PM2 either (pmx makes "true" a boolean, which its
  // parseBool refuses: keymetrics/pm2-logrotate#201); 2.7.0 reads it, and gzips the copies.
  CmdResult old = agent_.Ctl({"install", "pm2-logrotate@2.7.0"});
  ASSERT_EQ(old.exit_code, 0) << old.out << old.err;
  // (Its configuration went with the uninstall.)
  for (const auto& [key, value] : {std::pair<const char*, const char*>{"max_size", "2K"},
                                   {"workerInterval", "1"}, {"compress", "true"}}) {
    ASSERT_EQ(agent_.Ctl({"set", absl::StrCat("pm2-logrotate:", key), value}).exit_code, 0);
  }
  const std::regex gz_name("chatter-out__.*\\.log\\.gz");
  std::string gz;
  ASSERT_TRUE(WaitFor([&] {
    for (const auto& e : fs::directory_iterator(agent_.Path("logs"))) {
      const std::string name = e.path().filename();
      std::error_code ec;  // a copy removed meanwhile is no error
      if (std::regex_match(name, gz_name) && fs::file_size(e.path(), ec) >= 2 && !ec) {
        gz = e.path();
      }
    }
    return !gz.empty();
  }, absl::Seconds(60))) << Log("pm2-logrotate-out.log") << Log("pm2-logrotate-err.log");
  const std::string bytes = ReadFile(gz);
  ASSERT_GE(bytes.size(), 2u);
  EXPECT_EQ(static_cast<unsigned char>(bytes[0]), 0x1f) << gz << " is not gzip";
  EXPECT_EQ(static_cast<unsigned char>(bytes[1]), 0x8b) << gz << " is not gzip";
  // Installed pinned at 2.7.0, an update moves it to the latest (pm2 module:update).
  CmdResult update = agent_.Ctl({"module:update", "pm2-logrotate"});
  ASSERT_EQ(update.exit_code, 0) << update.out << update.err;
  EXPECT_THAT(update.out, ::testing::Not(HasSubstr("to 2.7.0")));
  EXPECT_THAT(update.err, HasSubstr("s npm pack pm2-logrotate\n"));
  EXPECT_THAT(update.err, HasSubstr("s stopping the running pm2-logrotate\n"));
  json info = agent_.CtlJson({"describe", "pm2-logrotate"});
  EXPECT_NE(info["module_info"].value("version", ""), "2.7.0") << info.dump();
  EXPECT_EQ(info["module_info"].value("source", ""), "pm2-logrotate");
  ASSERT_EQ(agent_.Ctl({"uninstall", "pm2-logrotate"}).exit_code, 0);
  EXPECT_THAT(Pm2Daemons(), ::testing::IsEmpty());
}

// pm2-health (npm, unmodified) declares config defaults that are objects and arrays
// (`smtp: {...}`, `appsExcluded: []`) and runs from `main` (no `apps`). It installs, runs on
// PM2's API served by agentd, and its `debug` action writes the config it was given and PM2's
// process list to its directory: what the module really received.
TEST_F(Pm2ApiTest, Pm2HealthTakesJsonArraysAndObjectsAndHandEdits) {
  CmdResult install = agent_.Ctl({"install", "pm2-health@1.12.10"});
  ASSERT_EQ(install.exit_code, 0) << install.out << install.err;
  // As PM2 prints a module's configuration once installed: how to set each key.
  EXPECT_THAT(install.out, HasSubstr("agentctl set pm2-health:appsExcluded '[]'\n"));
  // Each step on stderr, with the time since the start (no terminal: one line each).
  EXPECT_THAT(install.err, ::testing::ContainsRegex("s npm pack pm2-health@1.12.10\n"));
  EXPECT_THAT(install.err, ::testing::ContainsRegex("s extracting \\(tar: [0-9]+ entries"));
  EXPECT_THAT(install.err, HasSubstr("s npm install --omit=dev (pm2-health's dependencies)\n"));
  EXPECT_THAT(install.err, HasSubstr("s starting pm2-health 1.12.10\n"));
  EXPECT_THAT(install.out, HasSubstr("agentctl set pm2-health:mailTo mail1,mail2\n"));
  const std::string dir = agent_.Path("modules/pm2-health");
  // What the module saw, after its `debug` action (retried until it has registered it).
  auto debug = [&]() -> json {
    fs::remove(dir + "/pm2-health-config.json");
    bool ran = WaitFor([&] {
      return agent_.Ctl({"action", "pm2-health", "debug"}).exit_code == 0 &&
             fs::exists(dir + "/pm2-health-config.json");
    }, absl::Seconds(30));
    if (!ran) return json();
    return json::parse(ReadFile(dir + "/pm2-health-config.json"), nullptr, false);
  };

  json seen = debug();
  ASSERT_TRUE(seen.is_object()) << Log("pm2-health-out.log") << Log("pm2-health-err.log");
  EXPECT_EQ(seen["appsExcluded"], json::array());
  EXPECT_EQ(seen["smtp"]["port"], 587);
  // PM2.list answered by agentd: the module itself, as a PM2 process.
  json list = json::parse(ReadFile(dir + "/pm2-health-debug.json"), nullptr, false);
  ASSERT_TRUE(list.is_array()) << ReadFile(dir + "/pm2-health-debug.json");
  bool listed = false;
  for (const auto& p : list) listed |= p.value("name", "") == "pm2-health";
  EXPECT_TRUE(listed) << list.dump();

  // A value of the wrong shape is refused saying how to write it; a JSON array is taken.
  CmdResult bad = agent_.Ctl({"set", "pm2-health:appsExcluded", "web"});
  EXPECT_NE(bad.exit_code, 0);
  EXPECT_THAT(bad.err, HasSubstr("is not a JSON array"));
  CmdResult set = agent_.Ctl({"set", "pm2-health:appsExcluded", R"(["web", "api"])"});
  ASSERT_EQ(set.exit_code, 0) << set.err;
  CmdResult obj = agent_.Ctl({"set", "pm2-health:smtp", R"({"host": "mail.test", "port": 25})"});
  ASSERT_EQ(obj.exit_code, 0) << obj.err;
  json conf = json::parse(ReadFile(agent_.Path("module_conf.json")), nullptr, false);
  EXPECT_EQ(conf["pm2-health"]["appsExcluded"], json::parse(R"(["web", "api"])"));
  seen = debug();
  ASSERT_TRUE(seen.is_object());
  EXPECT_EQ(seen["appsExcluded"], json::parse(R"(["web", "api"])"));
  EXPECT_EQ(seen["smtp"]["host"], "mail.test");
  EXPECT_EQ(seen["smtp"]["port"], 25);

  // A hand edit of module_conf.json applies at the module's next restart; what of it does
  // not fit its default is said in the module's log and the default applies.
  WriteTextFile(agent_.Path("module_conf.json"),
                R"({"pm2-health": {"appsExcluded": ["db"], "events": "exit"}})");
  ASSERT_EQ(agent_.Ctl({"restart", "pm2-health"}).exit_code, 0);
  seen = debug();
  ASSERT_TRUE(seen.is_object());
  EXPECT_EQ(seen["appsExcluded"], json::array({"db"}));
  EXPECT_EQ(seen["events"], json::array({"exit"}));
  EXPECT_EQ(seen["smtp"]["host"], "your-smtp-host");
  EXPECT_THAT(Log("pm2-health-err.log"), HasSubstr("events: \"exit\" is not a JSON array"));
  // An edit that is not JSON keeps the values read before, and says so.
  WriteTextFile(agent_.Path("module_conf.json"), R"({"pm2-health": {"appsExcluded": [)");
  ASSERT_EQ(agent_.Ctl({"restart", "pm2-health"}).exit_code, 0);
  seen = debug();
  ASSERT_TRUE(seen.is_object());
  EXPECT_EQ(seen["appsExcluded"], json::array({"db"}));
  EXPECT_THAT(Log("pm2-health-err.log"), HasSubstr("values read before stay in force"));

  EXPECT_THAT(Pm2Daemons(), ::testing::IsEmpty());
}

}  // namespace
}  // namespace herd::testing
