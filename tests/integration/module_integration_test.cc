// Modules end to end on a real agentd: real PM2 modules (pmx and @pm2/io, installed from a
// local tarball and from npm), native modules speaking the channel directly, development
// mode, configuration, actions, a module watching a redis-server through its pid file, and
// uninstall leaving nothing behind.
//
// Needs node, npm (and network access to the npm registry) and redis-server: scripts/test.sh
// installs them. A missing tool fails the test with a message saying what to install.
#include <signal.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <filesystem>
#include <functional>
#include <fstream>
#include <sstream>
#include <set>
#include <string>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/strip.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/fakes/file_util.h"
#include "tests/integration/agent_harness.h"

namespace herd::testing {
namespace {

namespace fs = std::filesystem;
using ::testing::HasSubstr;
using json = nlohmann::json;

void WriteFile(const std::string& path, const std::string& content) {
  WriteTextFile(path, content);
}

// A pmx module (PM2's legacy library, as pm2-logrotate uses).
constexpr char kPmxManifest[] = R"({
  // Comments are accepted, as in PM2's documentation.
  "name": "pmx-probe",
  "version": "1.0.0",
  "description": "pmx-based test module",
  "dependencies": { "pmx": "1.6.8" },
  "config": { "greeting": "hi", "step": 1 },
  "apps": [{ "script": "index.js", "merge_logs": true }]
})";
constexpr char kPmxIndex[] = R"(var pmx = require('pmx');
var conf = pmx.initModule({
  widget: { logo: 'https://example.invalid/logo.png', theme: ['#111', '#222', 'white', 'white'],
            block: { main_probes: ['hits'] } }
});
var hits = 0;
pmx.probe().metric({ name: 'hits', value: function () { return hits; } });
setInterval(function () { hits += Number(conf.step); }, 100);
pmx.action('greet', function (opts, reply) { reply(conf.greeting + ' ' + opts.name); });
pmx.notify(new Error('pmx module started'));
)";

// An @pm2/io module (the current library).
constexpr char kIoManifest[] = R"({
  "name": "io-probe",
  "version": "2.0.0",
  "dependencies": { "@pm2/io": "6.1.0" },
  "config": { "greeting": "hello", "rate": 42 },
  "apps": [{ "script": "index.js" }]
})";
constexpr char kIoIndex[] = R"(const io = require('@pm2/io');
const conf = io.initModule({ widget: { block: { main_probes: ['rate'] } } });
io.metric({ name: 'rate', unit: 'req/s', value: () => Number(conf.rate) });
io.action('greet', (opts, reply) => reply(conf.greeting + ' ' + opts.name));
setInterval(() => {}, 1000);
)";

// A native module written against the channel directly (no SDK): python3.
constexpr char kRawManifest[] = R"({
  "name": "raw-native",
  "version": "0.1.0",
  "config": { "limit": 3, "label": "x" },
  "apps": [{ "script": "main.py" }]
})";
constexpr char kRawMain[] = R"(import json, os, socket, sys, threading, time
s = socket.socket(fileno=int(os.environ['HERD_CHANNEL_FD']))
conf = json.loads(os.environ['HERD_MODULE_CONFIG'])
def send(t, d): s.sendall((json.dumps({'type': t, 'data': d}) + '\n').encode())
send('axm:action', {'action_name': 'never-replies'})
send('axm:action', {'action_name': 'echo'})
send('axm:action', {'action_name': 'count', 'action_type': 'scoped'})
send('axm:action', {'action_name': 'hangup'})
# Garbage the agent must survive: invalid JSON, an unknown type, a 2 MiB line.
s.sendall(b'this is not json\n')
send('no:such:type', {})
s.sendall(b'{"type": "axm:monitor", "data": {"big": "' + b'x' * (2 << 20) + b'"}}\n')
def reader():
    for line in s.makefile():
        m = json.loads(line)
        if m['msg'] == 'echo':
            send('axm:reply', {'action_name': 'echo', 'return': {'opts': m['opts'], 'limit': conf['limit']}})
        elif m['msg'] == 'count':
            for i in range(int(m['opts'].get('to', '3'))):
                send('axm:scoped_action:stream', {'action_name': 'count', 'uuid': m['uuid'], 'data': 'line %d' % i})
            send('axm:scoped_action:end', {'action_name': 'count', 'uuid': m['uuid'], 'data': 'done'})
        elif m['msg'] == 'hangup':
            s.shutdown(socket.SHUT_RDWR)
            s.close()
            return
threading.Thread(target=reader, daemon=True).start()
while True:
    try:
        send('axm:monitor', {'limit': {'value': conf['limit'], 'type': 'gauge'}, 'label': conf['label']})
    except OSError:
        pass  # the channel is gone: keep running, as a module must
    time.sleep(0.2)
)";

class ModuleTest : public ::testing::Test {
 protected:
  void SetUp() override {
    ASSERT_TRUE(agent_.StartAgent()) << agent_.last_error();
    work_ = agent_.Path("work");
    fs::create_directories(work_);
  }

  void RequireNode() {
    ASSERT_FALSE(Which("node").empty()) << "node is not installed: apt-get install nodejs";
    ASSERT_FALSE(Which("npm").empty()) << "npm is not installed: apt-get install npm";
  }

  // Writes a module and archives it the way `npm pack` does (files under package/). tar,
  // not npm pack: npm cannot read a package.json with comments, which PM2 modules may have.
  std::string PackModule(const std::string& dir_name, const std::string& manifest,
                         const std::string& index) {
    std::string parent = work_ + "/" + dir_name;
    WriteFile(parent + "/package/package.json", manifest);
    WriteFile(parent + "/package/index.js", index);
    std::string tgz = work_ + "/" + dir_name + ".tgz";
    CmdResult r = herd::testing::Run({Which("tar"), "-czf", tgz, "-C", parent, "package"});
    EXPECT_EQ(r.exit_code, 0) << r.out << r.err;
    return tgz;
  }

  json Detail(const std::string& name) { return agent_.CtlJson({"describe", name}); }

  // The module's probe value as JSON from describe, or null.
  json Probe(const std::string& module, const std::string& probe) {
    json d = Detail(module);
    if (!d.is_object() || !d.contains("module_info")) return nullptr;
    for (const auto& p : d["module_info"]["probes"]) {
      if (p["name"] == probe) return p;
    }
    return nullptr;
  }

  bool HasAction(const std::string& module, const std::string& action) {
    json d = Detail(module);
    if (!d.is_object() || !d.contains("module_info")) return false;
    for (const auto& a : d["module_info"]["actions"]) {
      if (a["name"] == action) return true;
    }
    return false;
  }

  CmdResult Action(const std::string& module, const std::string& action,
                   const std::vector<std::string>& extra = {}) {
    std::vector<std::string> args = {"action", module, action};
    args.insert(args.end(), extra.begin(), extra.end());
    return agent_.Ctl(args);
  }

  int Pid(const std::string& name) {
    json u = agent_.Unit(name);
    return u.is_null() ? 0 : u.value("pid", 0);
  }

  // Sets a config value, then checks that exactly that module restarted with it.
  void SetAndExpectRestart(const std::string& module, const std::string& kv,
                           const std::string& value) {
    int old_pid = Pid(module);
    ASSERT_GT(old_pid, 0);
    CmdResult r = agent_.Ctl({"set", module + ":" + kv, value});
    ASSERT_EQ(r.exit_code, 0) << r.err;
    ASSERT_TRUE(WaitFor([&] {
      int p = Pid(module);
      return p > 0 && p != old_pid;
    })) << "set did not restart " << module;
  }

  AgentHarness agent_;
  std::string work_;
};

TEST_F(ModuleTest, PmxModuleFromTarballReportsProbesAnswersActionsAndTakesConfig) {
  RequireNode();
  std::string tgz = PackModule("pmx-src", kPmxManifest, kPmxIndex);
  CmdResult install = agent_.Ctl({"install", tgz});
  ASSERT_EQ(install.exit_code, 0) << install.err;
  EXPECT_THAT(install.out, HasSubstr("installed pmx-probe 1.0.0"));
  EXPECT_TRUE(fs::exists(agent_.Path("modules/pmx-probe/node_modules/pmx/package.json")));

  ASSERT_TRUE(WaitFor([&] {
    json p = Probe("pmx-probe", "hits");
    return p.is_object() && p.value("numeric", false) && p.value("number", 0.0) > 0;
  }, absl::Seconds(20))) << Detail("pmx-probe").dump();
  json d = Detail("pmx-probe");
  EXPECT_EQ(d["module_info"]["widget"]["main_probes"], json::array({"hits"}));
  EXPECT_EQ(d["module_info"]["widget"]["theme"][0], "#111");
  EXPECT_GE(d["module_info"]["issues_count"].get<int>(), 1);
  EXPECT_EQ(d["module_info"]["issues"][0]["message"], "pmx module started");
  EXPECT_TRUE(d["status"]["is_module"].get<bool>());

  // Issues, grouped, then cleared by the operator (agentd's herd:clear-issues action).
  CmdResult issues = agent_.Ctl({"issues", "pmx-probe"});
  ASSERT_EQ(issues.exit_code, 0) << issues.err;
  EXPECT_THAT(issues.out, HasSubstr("pmx module started"));
  json cleared = agent_.CtlJson({"issues", "pmx-probe", "--clear"});
  ASSERT_TRUE(cleared.is_object()) << agent_.last_error();
  EXPECT_GE(cleared["reply"]["cleared"].get<int>(), 1) << cleared.dump();
  EXPECT_EQ(Detail("pmx-probe")["module_info"].value("issues_count", -1), 0);
  EXPECT_THAT(agent_.Ctl({"issues", "pmx-probe"}).out, HasSubstr("no issues"));
  CmdResult not_module = agent_.Ctl({"issues", "nosuch"});
  EXPECT_NE(not_module.exit_code, 0);

  // top's module pane (pm2 monit's): main probes and the last lines the module wrote.
  CmdResult top = agent_.Ctl({"top"});
  ASSERT_EQ(top.exit_code, 0) << top.err;
  EXPECT_THAT(top.out, HasSubstr("modules:\npmx-probe (online): hits "));

  // -o yaml: the same document, block style.
  CmdResult yaml = agent_.Ctl({"-o", "yaml", "describe", "pmx-probe"});
  ASSERT_EQ(yaml.exit_code, 0) << yaml.err;
  EXPECT_THAT(yaml.out, HasSubstr("\n  state: online\n"));
  EXPECT_THAT(yaml.out, HasSubstr("  is_module: true\n"));

  // list shows the main probe.
  CmdResult list = agent_.Ctl({"list"});
  EXPECT_THAT(list.out, HasSubstr("PROBES"));
  EXPECT_THAT(list.out, HasSubstr("hits="));

  ASSERT_TRUE(WaitFor([&] { return HasAction("pmx-probe", "greet"); }));
  CmdResult reply = Action("pmx-probe", "greet", {"--param", "name=bob"});
  ASSERT_EQ(reply.exit_code, 0) << reply.err;
  EXPECT_EQ(reply.out, "hi bob\n");

  // PM2's `set`: stored as a string, given to pmx in the env var named after the module.
  SetAndExpectRestart("pmx-probe", "greeting", "hey there");
  ASSERT_TRUE(WaitFor([&] { return HasAction("pmx-probe", "greet"); }));
  reply = Action("pmx-probe", "greet", {"--param", "name=ann"});
  EXPECT_EQ(reply.out, "hey there ann\n");
  json conf = nlohmann::json::parse(ReadFile(agent_.Path("module_conf.json")));
  EXPECT_EQ(conf["pmx-probe"]["greeting"], "hey there");
}

TEST_F(ModuleTest, Pm2IoModuleFromTarballReportsProbesAnswersActionsAndTakesConfig) {
  RequireNode();
  std::string tgz = PackModule("io-src", kIoManifest, kIoIndex);
  CmdResult install = agent_.Ctl({"install", tgz});
  ASSERT_EQ(install.exit_code, 0) << install.err;
  ASSERT_TRUE(WaitFor([&] {
    json p = Probe("io-probe", "rate");
    return p.is_object() && p.value("number", 0.0) == 42;
  }, absl::Seconds(20))) << Detail("io-probe").dump();
  EXPECT_EQ(Probe("io-probe", "rate")["unit"], "req/s");

  ASSERT_TRUE(WaitFor([&] { return HasAction("io-probe", "greet"); }));
  CmdResult reply = Action("io-probe", "greet", {"--param", "name=bob"});
  ASSERT_EQ(reply.exit_code, 0) << reply.err;
  EXPECT_EQ(reply.out, "hello bob\n");

  // A value of the wrong type is refused at `set` time and changes nothing.
  int pid = Pid("io-probe");
  CmdResult bad = agent_.Ctl({"set", "io-probe:rate", "fast"});
  EXPECT_NE(bad.exit_code, 0);
  EXPECT_THAT(bad.err, HasSubstr("rate"));
  EXPECT_THAT(bad.err, HasSubstr("not an integer"));
  EXPECT_EQ(Pid("io-probe"), pid);

  SetAndExpectRestart("io-probe", "rate", "7");
  ASSERT_TRUE(WaitFor([&] {
    json p = Probe("io-probe", "rate");
    return p.is_object() && p.value("number", 0.0) == 7;
  }, absl::Seconds(20)));

  // unset goes back to the default (and restarts again).
  pid = Pid("io-probe");
  ASSERT_EQ(agent_.Ctl({"unset", "io-probe:rate"}).exit_code, 0);
  ASSERT_TRUE(WaitFor([&] {
    json p = Probe("io-probe", "rate");
    return Pid("io-probe") != pid && p.is_object() && p.value("number", 0.0) == 42;
  }, absl::Seconds(20)));
}

TEST_F(ModuleTest, PublishedPm2IoModuleFromNpmReportsProbes) {
  RequireNode();
  // pm2-server-monit 3 runs on @pm2/io 2.x, whose metrics start only once init() is called
  // (PM2's container does it): the agent's preload must do the same.
  CmdResult install = agent_.Ctl({"install", "pm2-server-monit@3.0.0"});
  ASSERT_EQ(install.exit_code, 0) << install.err;
  ASSERT_TRUE(WaitFor([&] { return Probe("pm2-server-monit", "CPU usage").is_object(); },
                      absl::Seconds(30)))
      << Detail("pm2-server-monit").dump();
  ASSERT_TRUE(WaitFor([&] { return HasAction("pm2-server-monit", "uptime"); }));
  CmdResult reply = Action("pm2-server-monit", "uptime");
  ASSERT_EQ(reply.exit_code, 0) << reply.err;
  EXPECT_THAT(reply.out, HasSubstr("load average"));
}

// A client that goes away mid-install (killed while npm runs) does not stop it: the agent
// finishes the install, and the steps it still tells go nowhere (nothing crashes).
TEST_F(ModuleTest, AnInstallWhoseClientIsKilledCompletesAnyway) {
  RequireNode();
  // Killed once the agent has told its first step (npm pack runs), not at a fixed time: a
  // slow machine may not have sent the request yet.
  const std::string err = work_ + "/install.err";
  const std::string script = absl::StrCat(
      "\"$0\" --home \"$1\" install pm2-server-monit@3.0.0 2> \"$2\" & pid=$!\n"
      "for i in $(seq 1200); do grep -q 'npm pack' \"$2\" && break; sleep 0.05; done\n"
      "grep -q 'npm pack' \"$2\" || exit 3\n"
      "kill -9 $pid; wait $pid; echo killed=$?\n");
  CmdResult killed = herd::testing::Run({"/bin/sh", "-c", script,
                                         AgentHarness::BinDir() + "/agentctl", agent_.home(),
                                         err});
  ASSERT_EQ(killed.exit_code, 0) << killed.out << killed.err << ReadFile(err);
  ASSERT_THAT(killed.out, HasSubstr("killed=137")) << "the client ended before it was killed";
  ASSERT_TRUE(WaitFor([&] { return !agent_.Unit("pm2-server-monit").is_null(); },
                      absl::Seconds(120)));
  EXPECT_EQ(agent_.Ctl({"info"}).exit_code, 0);
  CmdResult again = agent_.Ctl({"module:update", "pm2-server-monit@3.0.0"});
  ASSERT_EQ(again.exit_code, 0) << again.err;
  EXPECT_THAT(again.out, HasSubstr("updated pm2-server-monit to 3.0.0"));
}

TEST_F(ModuleTest, NativeModuleSurvivesGarbageAndActionsTimeOut) {
  std::string dir = work_ + "/raw";
  WriteFile(dir + "/package.json", kRawManifest);
  WriteFile(dir + "/main.py", kRawMain);
  CmdResult install = agent_.Ctl({"install", dir});
  ASSERT_EQ(install.exit_code, 0) << install.err;
  EXPECT_THAT(install.out, HasSubstr("development mode"));
  ASSERT_TRUE(WaitFor([&] {
    json p = Probe("raw-native", "limit");
    return p.is_object() && p.value("number", 0.0) == 3;
  })) << Detail("raw-native").dump();

  json ch = Detail("raw-native")["module_info"]["channel"];
  EXPECT_TRUE(ch["connected"].get<bool>());
  // "invalid_json" is a count, not JSON text: only string fields named *_json are parsed.
  EXPECT_EQ(ch["invalid_json"], 1);
  EXPECT_EQ(ch["unknown_types"], 1);
  EXPECT_EQ(ch["oversized_lines"], 1);
  EXPECT_EQ(agent_.State("raw-native"), "online");
  // A version can only be chosen for a module from npm.
  CmdResult pinned = agent_.Ctl({"module", "update", "raw-native@1.0.0"});
  EXPECT_NE(pinned.exit_code, 0);
  EXPECT_THAT(pinned.err, HasSubstr("not from npm"));

  // Parameters arrive, the reply comes back as JSON.
  ASSERT_TRUE(WaitFor([&] { return HasAction("raw-native", "echo"); }));
  CmdResult echo = Action("raw-native", "echo", {"--param", "a=1", "--param", "b=two"});
  ASSERT_EQ(echo.exit_code, 0) << echo.err;
  json reply = json::parse(echo.out);
  EXPECT_EQ(reply["opts"]["a"], "1");
  EXPECT_EQ(reply["opts"]["b"], "two");
  EXPECT_EQ(reply["limit"], 3);

  CmdResult slow = Action("raw-native", "never-replies", {"--timeout", "1"});
  EXPECT_NE(slow.exit_code, 0);
  EXPECT_THAT(slow.err, HasSubstr("did not reply"));
  CmdResult unknown = Action("raw-native", "nope");
  EXPECT_NE(unknown.exit_code, 0);
  EXPECT_THAT(unknown.err, HasSubstr("echo"));  // lists the actions it has

  // A scoped action streams its output, then ends.
  CmdResult count = Action("raw-native", "count", {"--param", "to=4"});
  ASSERT_EQ(count.exit_code, 0) << count.err;
  EXPECT_EQ(count.out, "line 0\nline 1\nline 2\nline 3\ndone\n");

  // Typed config for native modules: the integer default makes "5" the number 5.
  SetAndExpectRestart("raw-native", "limit", "5");
  ASSERT_TRUE(WaitFor([&] {
    json p = Probe("raw-native", "limit");
    return p.is_object() && p.value("number", 0.0) == 5;
  }));
  CmdResult undeclared = agent_.Ctl({"set", "raw-native:other", "1"});
  EXPECT_NE(undeclared.exit_code, 0);
  EXPECT_THAT(undeclared.err, HasSubstr("--force"));
}

TEST_F(ModuleTest, ModuleThatClosesItsChannelKeepsRunning) {
  std::string dir = work_ + "/hangup";
  WriteFile(dir + "/package.json", kRawManifest);
  WriteFile(dir + "/main.py", kRawMain);
  ASSERT_EQ(agent_.Ctl({"install", dir}).exit_code, 0);
  ASSERT_TRUE(WaitFor([&] { return HasAction("raw-native", "hangup"); }));
  int pid = Pid("raw-native");
  CmdResult hang = Action("raw-native", "hangup");
  EXPECT_NE(hang.exit_code, 0);
  EXPECT_THAT(hang.err, HasSubstr("channel closed"));
  ASSERT_TRUE(WaitFor([&] {
    return !Detail("raw-native")["module_info"]["channel"].value("connected", true);
  }));
  absl::SleepFor(absl::Milliseconds(500));
  EXPECT_EQ(agent_.State("raw-native"), "online");
  EXPECT_EQ(Pid("raw-native"), pid);
  CmdResult after = Action("raw-native", "echo");
  EXPECT_NE(after.exit_code, 0);
  EXPECT_THAT(after.err, HasSubstr("not connected"));
}

TEST_F(ModuleTest, UpdateReinstallsFromTheSourceAndKeepConfigKeepsOverrides) {
  std::string manifest_v1 = kRawManifest;
  std::string parent = work_ + "/upd";
  WriteFile(parent + "/package/package.json", manifest_v1);
  WriteFile(parent + "/package/main.py", kRawMain);
  std::string tgz = work_ + "/upd.tgz";
  ASSERT_EQ(herd::testing::Run({Which("tar"), "-czf", tgz, "-C", parent, "package"}).exit_code,
            0);
  ASSERT_EQ(agent_.Ctl({"install", tgz}).exit_code, 0);
  ASSERT_TRUE(WaitFor([&] { return Pid("raw-native") > 0; }));
  SetAndExpectRestart("raw-native", "label", "kept");

  // A new version at the same source.
  std::string v2 = manifest_v1;
  v2.replace(v2.find("0.1.0"), 5, "0.2.0");
  WriteFile(parent + "/package/package.json", v2);
  ASSERT_EQ(herd::testing::Run({Which("tar"), "-czf", tgz, "-C", parent, "package"}).exit_code,
            0);
  CmdResult upd = agent_.Ctl({"module", "update", "raw-native"});
  ASSERT_EQ(upd.exit_code, 0) << upd.err;
  EXPECT_THAT(upd.out, HasSubstr("0.2.0"));
  EXPECT_EQ(Detail("raw-native")["module_info"]["version"], "0.2.0");
  ASSERT_TRUE(WaitFor([&] {
    json p = Probe("raw-native", "label");
    return p.is_object() && p["value"] == "kept";
  })) << "the override survives an update";

  ASSERT_EQ(agent_.Ctl({"uninstall", "raw-native", "--keep-config"}).exit_code, 0);
  json conf = json::parse(ReadFile(agent_.Path("module_conf.json")));
  EXPECT_EQ(conf["raw-native"]["label"], "kept");
  EXPECT_FALSE(fs::exists(agent_.Path("modules/raw-native")));
}

TEST_F(ModuleTest, DevelopmentModeRestartsOnFileChangeButNotInNodeModules) {
  std::string dir = work_ + "/dev";
  WriteFile(dir + "/package.json", kRawManifest);
  WriteFile(dir + "/main.py", kRawMain);
  ASSERT_EQ(agent_.Ctl({"install", dir}).exit_code, 0);
  ASSERT_TRUE(WaitFor([&] { return Pid("raw-native") > 0; }));
  int pid = Pid("raw-native");

  // Ignored: node_modules, dot-folders, logs.
  WriteFile(dir + "/node_modules/dep/index.js", "x");
  WriteFile(dir + "/.git/HEAD", "x");
  WriteFile(dir + "/logs/out.log", "x");
  absl::SleepFor(absl::Milliseconds(1200));  // past the debounce: nothing may happen
  EXPECT_EQ(Pid("raw-native"), pid);

  WriteFile(dir + "/helper.py", "X = 1\n");
  ASSERT_TRUE(WaitFor([&] {
    int p = Pid("raw-native");
    return p > 0 && p != pid;
  })) << "a source change must restart the module";

  // Uninstall leaves the operator's directory in place (it was used in place).
  ASSERT_EQ(agent_.Ctl({"uninstall", "raw-native"}).exit_code, 0);
  EXPECT_TRUE(fs::exists(dir + "/main.py"));
}

TEST_F(ModuleTest, ModuleWatchingRedisThroughItsPidFileIsSampledAsRedis) {
  RequireNode();
  std::string redis = Which("redis-server");
  ASSERT_FALSE(redis.empty()) << "redis-server is not installed: apt-get install redis-server";
  std::string pidfile = agent_.Path("redis.pid");
  CmdResult started = herd::testing::Run({redis, "--port", "0", "--unixsocket", agent_.Path("redis.sock"),
                           "--daemonize", "yes", "--pidfile", pidfile, "--save", "",
                           "--appendonly", "no", "--dir", agent_.home()});
  ASSERT_EQ(started.exit_code, 0) << started.out << started.err;
  ASSERT_TRUE(WaitFor([&] { return !ReadFile(pidfile).empty(); }));
  int redis_pid = 0;
  ASSERT_TRUE(absl::SimpleAtoi(absl::StripAsciiWhitespace(ReadFile(pidfile)), &redis_pid));
  agent_.Track(redis_pid);
  struct KillRedis {
    int pid;
    ~KillRedis() { kill(pid, SIGKILL); }
  } kill_redis{redis_pid};

  std::string manifest = R"({"name": "redis-watch", "version": "1.0.0",
    "dependencies": {"pmx": "1.6.8"}, "apps": [{"script": "index.js"}]})";
  std::string index = absl::StrCat(
      "var pmx = require('pmx');\n"
      "pmx.initModule({ pid: pmx.resolvePidPaths(['/nonexistent.pid', '", pidfile, "']) });\n"
      "setInterval(function () {}, 1000);\n");
  std::string tgz = PackModule("redis-src", manifest, index);
  ASSERT_EQ(agent_.Ctl({"install", tgz}).exit_code, 0);
  ASSERT_TRUE(WaitFor([&] {
    json u = agent_.Unit("redis-watch");
    return !u.is_null() && u["sampled_pids"] == json::array({redis_pid});
  }, absl::Seconds(20))) << agent_.Unit("redis-watch").dump();
  json u = agent_.Unit("redis-watch");
  EXPECT_NE(u["pid"], redis_pid);  // the module runs; redis is what is measured
  EXPECT_GT(u["usage"]["rss_bytes"].get<int64_t>(), 0);
}

// pid_join (a Herd extension): the announced pid is sampled beside the module's own process.
TEST_F(ModuleTest, AnnouncedPidWithJoinIsSampledBesideTheModule) {
  std::string dir = work_ + "/joiner";
  WriteFile(dir + "/package.json", R"({"name": "joiner", "version": "0.1.0",
    "apps": [{"script": "main.py"}]})");
  // `sleep` outlives the shell that started it, so it is not in the module's process tree.
  WriteFile(dir + "/main.py", R"(import json, os, socket, subprocess, time
s = socket.socket(fileno=int(os.environ['HERD_CHANNEL_FD']))
out = subprocess.run(['sh', '-c', 'sleep 300 >/dev/null 2>&1 & echo $!'], capture_output=True, text=True).stdout
pid = int(out.strip())
s.sendall((json.dumps({'type': 'axm:option:configuration', 'data': {'pid': pid, 'pid_join': True}}) + '\n').encode())
s.sendall((json.dumps({'type': 'axm:monitor', 'data': {'watched': pid}}) + '\n').encode())
while True: time.sleep(1)
)");
  ASSERT_EQ(agent_.Ctl({"install", dir}).exit_code, 0);
  int watched = 0;
  ASSERT_TRUE(WaitFor([&] {
    json p = Probe("joiner", "watched");
    if (p.is_object()) watched = static_cast<int>(p.value("number", 0.0));
    return watched > 0;
  })) << Detail("joiner").dump();
  agent_.Track(watched);
  struct KillWatched {
    int pid;
    ~KillWatched() { kill(pid, SIGKILL); }
  } kill_watched{watched};
  ASSERT_TRUE(WaitFor([&] {
    json u = agent_.Unit("joiner");
    if (u.is_null() || !u.contains("sampled_pids")) return false;
    std::set<int> pids;
    for (const auto& p : u["sampled_pids"]) pids.insert(p.get<int>());
    return pids.count(watched) == 1 && pids.count(u.value("pid", 0)) == 1;
  }, absl::Seconds(10))) << agent_.Unit("joiner").dump();
  EXPECT_TRUE(Detail("joiner")["module_info"].value("pid_join", false));
}

TEST_F(ModuleTest, UninstallLeavesNothingBehind) {
  RequireNode();
  std::string tgz = PackModule("gone-src", kPmxManifest, kPmxIndex);
  ASSERT_EQ(agent_.Ctl({"install", tgz}).exit_code, 0);
  ASSERT_TRUE(WaitFor([&] { return Pid("pmx-probe") > 0; }));
  int pid = Pid("pmx-probe");
  ASSERT_EQ(agent_.Ctl({"set", "pmx-probe:greeting", "yo"}).exit_code, 0);
  // A module is removed with uninstall, not delete.
  CmdResult del = agent_.Ctl({"delete", "pmx-probe"});
  EXPECT_NE(del.exit_code, 0);
  EXPECT_THAT(del.err, HasSubstr("uninstall"));

  pid = Pid("pmx-probe");
  CmdResult r = agent_.Ctl({"uninstall", "pmx-probe"});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_FALSE(fs::exists(agent_.Path("modules/pmx-probe")));
  EXPECT_TRUE(WaitFor([&] { return !ProcessAlive(pid); }));
  EXPECT_TRUE(agent_.Unit("pmx-probe").is_null());
  json records = json::parse(ReadFile(agent_.Path("modules.json")));
  EXPECT_TRUE(records["modules"].empty());
  json conf = json::parse(ReadFile(agent_.Path("module_conf.json")));
  EXPECT_FALSE(conf.contains("pmx-probe"));
  // Nothing left in modules/ (no staging directories either).
  EXPECT_TRUE(fs::is_empty(agent_.Path("modules")));
  // And it does not come back with the agent.
  agent_.StopAgent();
  ASSERT_TRUE(agent_.StartAgent()) << agent_.last_error();
  EXPECT_TRUE(agent_.Unit("pmx-probe").is_null());
}

TEST_F(ModuleTest, ModulesComeBackWithTheAgentWithTheirConfig) {
  std::string dir = work_ + "/persist";
  WriteFile(dir + "/package.json", kRawManifest);
  WriteFile(dir + "/main.py", kRawMain);
  ASSERT_EQ(agent_.Ctl({"install", dir}).exit_code, 0);
  ASSERT_TRUE(WaitFor([&] { return Pid("raw-native") > 0; }));
  SetAndExpectRestart("raw-native", "limit", "9");
  agent_.StopAgent();
  ASSERT_TRUE(agent_.StartAgent()) << agent_.last_error();
  ASSERT_TRUE(WaitFor([&] {
    json p = Probe("raw-native", "limit");
    return p.is_object() && p.value("number", 0.0) == 9;
  })) << Detail("raw-native").dump();
}

TEST_F(ModuleTest, BadInstallsAreRefusedWithWhatToFix) {
  CmdResult missing = agent_.Ctl({"install", work_ + "/does-not-exist"});
  EXPECT_NE(missing.exit_code, 0);
  EXPECT_THAT(missing.err, HasSubstr("no such file or directory"));

  std::string dir = work_ + "/broken";
  WriteFile(dir + "/package.json", "{\n  \"name\": \"broken\",\n  \"apps\": [\n}\n");
  CmdResult broken = agent_.Ctl({"install", dir});
  EXPECT_NE(broken.exit_code, 0);
  EXPECT_THAT(broken.err, HasSubstr("package.json"));
  EXPECT_THAT(broken.err, HasSubstr("line 4"));

  WriteFile(dir + "/package.json", R"({"name": "../evil", "apps": [{"script": "x.sh"}]})");
  CmdResult evil = agent_.Ctl({"install", dir});
  EXPECT_NE(evil.exit_code, 0);
  EXPECT_THAT(evil.err, HasSubstr(".."));

  CmdResult bad_npm = agent_.Ctl({"install", "-rf"});
  EXPECT_NE(bad_npm.exit_code, 0);

  CmdResult uninstall = agent_.Ctl({"uninstall", "nosuch"});
  EXPECT_NE(uninstall.exit_code, 0);
  EXPECT_THAT(uninstall.err, HasSubstr("no module named"));
  CmdResult set = agent_.Ctl({"set", "nosuch:key", "1"});
  EXPECT_NE(set.exit_code, 0);
  CmdResult malformed = agent_.Ctl({"set", "no-colon", "1"});
  EXPECT_NE(malformed.exit_code, 0);
  EXPECT_THAT(malformed.err, HasSubstr("MODULE:KEY"));
  EXPECT_TRUE(fs::is_empty(agent_.Path("modules")));
}

// An archive leaves behind only files, directories and relative links within the module: a
// link out of it (absolute, through "..", to the directory above, or dangling), a module
// directory that is a link, a FIFO or a set-user-ID file is refused with the member and the
// reason, and nothing of it stays in the modules directory. A link within the module installs.
TEST_F(ModuleTest, ArchivesWithLinksOutOrSpecialFilesAreRefused) {
  // A working native module in package/, plus what `add` puts beside it (given the directory
  // that is archived, package/'s parent).
  auto pack = [&](const std::string& name, const std::function<void(const std::string&)>& add) {
    std::string parent = work_ + "/" + name;
    WriteFile(parent + "/package/package.json", kRawManifest);
    WriteFile(parent + "/package/main.py", kRawMain);
    add(parent);
    std::string tgz = work_ + "/" + name + ".tgz";
    CmdResult r = herd::testing::Run({Which("tar"), "-czf", tgz, "-C", parent, "."});
    EXPECT_EQ(r.exit_code, 0) << r.out << r.err;
    return tgz;
  };
  auto refused = [&](const std::string& name, const std::function<void(const std::string&)>& add,
                     const std::string& why) {
    CmdResult r = agent_.Ctl({"install", pack(name, add)});
    EXPECT_NE(r.exit_code, 0) << name;
    EXPECT_THAT(r.err, HasSubstr(why)) << name;
  };

  refused("absolute",
          [](const std::string& d) { fs::create_directory_symlink("/etc", d + "/package/conf"); },
          "package/conf is a symbolic link to \"/etc\", an absolute path");
  refused("up",
          [](const std::string& d) {
            fs::create_directories(d + "/package/lib");
            fs::create_directory_symlink("../../../..", d + "/package/lib/up");
          },
          "package/lib/up is a symbolic link to \"../../../..\", outside the module");
  // The extraction's own directory is outside the module too: only package/ moves into place.
  refused("parent",
          [](const std::string& d) { fs::create_directory_symlink("..", d + "/package/above"); },
          "package/above is a symbolic link to \"..\", outside the module");
  refused("dangling",
          [](const std::string& d) { fs::create_symlink("gone/file", d + "/package/ghost"); },
          "package/ghost is a symbolic link to \"gone/file\", which does not resolve");
  // package/ a link to a directory of the archive: what would move into place is the link.
  refused("linked",
          [](const std::string& d) {
            fs::rename(d + "/package", d + "/real");
            fs::create_directory_symlink("real", d + "/package");
          },
          "package is a symbolic link, not the module's directory");
  refused("fifo",
          [](const std::string& d) { ASSERT_EQ(mkfifo((d + "/package/pipe").c_str(), 0600), 0); },
          "package/pipe is neither a file, a directory nor a link");
  EXPECT_TRUE(fs::is_empty(agent_.Path("modules")));

  // A link within the module installs; a set-user-ID file installs without the bit.
  CmdResult inside = agent_.Ctl({"install", pack("inside", [](const std::string& d) {
                                   WriteFile(d + "/package/src/data.txt", "1");
                                   fs::create_directory_symlink("src", d + "/package/lib");
                                   WriteFile(d + "/package/tool", "#!/bin/sh\n");
                                   ASSERT_EQ(chmod((d + "/package/tool").c_str(), 06755), 0);
                                 })});
  ASSERT_EQ(inside.exit_code, 0) << inside.err;
  const std::string installed = agent_.Path("modules") + "/raw-native";
  EXPECT_EQ(ReadFile(installed + "/lib/data.txt"), "1");
  struct stat st{};
  ASSERT_EQ(stat((installed + "/tool").c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & (S_ISUID | S_ISGID), 0u);
  EXPECT_EQ(st.st_mode & 0777, 0755u);
  EXPECT_TRUE(WaitFor([&] { return agent_.State("raw-native") == "online"; }))
      << Detail("raw-native").dump();
}

// One broken module does not keep agentd down: a package.json with a number no double holds
// (which once threw out of the parser and ended agentd at every start) leaves that module
// errored with the reason while the agent and its other modules run; mended, it comes back.
TEST_F(ModuleTest, ABrokenModuleIsErroredAndTheRestRun) {
  std::string broken = work_ + "/broken-dev", healthy = work_ + "/healthy-dev";
  WriteFile(broken + "/package.json", kRawManifest);
  WriteFile(broken + "/main.py", kRawMain);
  std::string other = kRawManifest;
  other.replace(other.find("raw-native"), 10, "raw-healthy");
  WriteFile(healthy + "/package.json", other);
  WriteFile(healthy + "/main.py", kRawMain);
  ASSERT_EQ(agent_.Ctl({"install", broken}).exit_code, 0);
  ASSERT_EQ(agent_.Ctl({"install", healthy}).exit_code, 0);
  ASSERT_TRUE(WaitFor([&] { return Pid("raw-native") > 0 && Pid("raw-healthy") > 0; }));

  agent_.StopAgent();
  const std::string bad = R"({"name": "raw-native", "version": "0.1.0",
    "config": {"limit": 1e99999}, "apps": [{"script": "main.py"}]})";
  WriteFile(broken + "/package.json", bad);
  // Installing such a module is refused with the key, not a crash.
  std::string third = work_ + "/third";
  WriteFile(third + "/package.json", bad);
  WriteFile(third + "/main.py", kRawMain);

  ASSERT_TRUE(agent_.StartAgent()) << agent_.last_error();
  ASSERT_TRUE(WaitFor([&] { return agent_.State("raw-native") == "errored"; }))
      << agent_.Unit("raw-native").dump();
  EXPECT_THAT(agent_.Unit("raw-native").dump(), HasSubstr("package.json"));
  EXPECT_TRUE(WaitFor([&] { return agent_.State("raw-healthy") == "online"; }));
  CmdResult refused = agent_.Ctl({"install", third});
  EXPECT_NE(refused.exit_code, 0);
  EXPECT_THAT(refused.err, HasSubstr("limit"));
  EXPECT_TRUE(ProcessAlive(agent_.agent_pid()));

  // Mended (development mode reloads it on change), it runs again.
  WriteFile(broken + "/package.json", kRawManifest);
  EXPECT_TRUE(WaitFor([&] { return agent_.State("raw-native") == "online"; },
                      absl::Seconds(15)))
      << agent_.Unit("raw-native").dump();
}

// A small archive that unpacks to more than --module-max-unpacked, or holds more members than
// --module-max-files, is refused with the numbers before anything is written.
TEST_F(ModuleTest, ArchivesPastTheSizeLimitsAreRefusedBeforeExtracting) {
  agent_.StopAgent();
  ASSERT_TRUE(agent_.StartAgent({"--module-max-unpacked", "1M", "--module-max-files", "20"}))
      << agent_.last_error();
  std::string parent = work_ + "/bomb";
  WriteFile(parent + "/package/package.json", kRawManifest);
  WriteFile(parent + "/package/main.py", kRawMain);
  WriteFile(parent + "/package/zeros", std::string(3 << 20, '\0'));
  std::string tgz = work_ + "/bomb.tgz";
  ASSERT_EQ(herd::testing::Run({Which("tar"), "-czf", tgz, "-C", parent, "package"}).exit_code, 0);
  ASSERT_LT(fs::file_size(tgz), 64u * 1024);
  CmdResult bomb = agent_.Ctl({"install", tgz});
  EXPECT_NE(bomb.exit_code, 0);
  EXPECT_THAT(bomb.err, HasSubstr("unpacks to more than 1.0M"));
  EXPECT_THAT(bomb.err, HasSubstr("--module-max-unpacked"));

  std::string many = work_ + "/many";
  WriteFile(many + "/package/package.json", kRawManifest);
  WriteFile(many + "/package/main.py", kRawMain);
  for (int i = 0; i < 25; ++i) WriteFile(absl::StrCat(many, "/package/f", i), "x");
  std::string many_tgz = work_ + "/many.tgz";
  ASSERT_EQ(herd::testing::Run({Which("tar"), "-czf", many_tgz, "-C", many, "package"}).exit_code, 0);
  CmdResult crowd = agent_.Ctl({"install", many_tgz});
  EXPECT_NE(crowd.exit_code, 0);
  EXPECT_THAT(crowd.err, HasSubstr("more than 20 files"));
  EXPECT_TRUE(fs::is_empty(agent_.Path("modules")));
}

// An install that cannot start its module (its script is not in the archive) is refused and
// leaves nothing: no record, no configuration shown, no files.
TEST_F(ModuleTest, AFailedInstallLeavesNothingBehind) {
  std::string parent = work_ + "/noscript";
  WriteFile(parent + "/package/package.json", kRawManifest);  // apps[0] is main.py: absent
  WriteFile(parent + "/package/README", "no script here\n");
  std::string tgz = work_ + "/noscript.tgz";
  ASSERT_EQ(herd::testing::Run({Which("tar"), "-czf", tgz, "-C", parent, "package"}).exit_code, 0);
  CmdResult r = agent_.Ctl({"install", tgz});
  EXPECT_NE(r.exit_code, 0);
  EXPECT_THAT(r.err, HasSubstr("main.py"));
  // The steps that ran, then the error: each step line before the error's.
  EXPECT_THAT(r.err, ::testing::ContainsRegex(
                         "s copying [^\n]*noscript.tgz\n.*s checking the archive\n"
                         ".*s extracting \\(tar: 3 entries, 0 KiB\\)\n.*main.py"));
  EXPECT_TRUE(agent_.Unit("raw-native").is_null());
  CmdResult conf = agent_.Ctl({"conf"});
  EXPECT_THAT(conf.out + conf.err, ::testing::Not(HasSubstr("raw-native")));
  std::string records = ReadFile(agent_.Path("modules.json"));
  EXPECT_THAT(records, ::testing::Not(HasSubstr("raw-native")));
  EXPECT_TRUE(fs::is_empty(agent_.Path("modules")));
}

// Values that would make the module's environment exceed what the kernel passes to a program
// (128 KiB for one variable) are refused, and the module keeps running on the values it had.
TEST_F(ModuleTest, ConfigTooLargeForTheEnvironmentIsRefused) {
  std::string dir = work_ + "/envsize";
  WriteFile(dir + "/package.json", kRawManifest);
  WriteFile(dir + "/main.py", kRawMain);
  ASSERT_EQ(agent_.Ctl({"install", dir}).exit_code, 0);
  ASSERT_TRUE(WaitFor([&] { return Pid("raw-native") > 0; }));
  const std::string big(60 * 1024, 'v');
  SetAndExpectRestart("raw-native", "label", big);
  ASSERT_EQ(agent_.Ctl({"set", "raw-native:extra1", big, "--force"}).exit_code, 0);
  ASSERT_TRUE(WaitFor([&] { return agent_.State("raw-native") == "online"; }));
  int pid = Pid("raw-native");
  CmdResult r = agent_.Ctl({"set", "raw-native:extra2", big, "--force"});
  EXPECT_NE(r.exit_code, 0);
  EXPECT_THAT(r.err, HasSubstr("over the kernel's limit"));
  EXPECT_EQ(agent_.State("raw-native"), "online");
  EXPECT_EQ(Pid("raw-native"), pid);
}

}  // namespace
}  // namespace herd::testing
