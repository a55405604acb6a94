// The control plane's HTTP side end to end on loopback: a real controlplane --http, a real
// agentd linked to it running the dash-demo module (tests/integration/fixtures), and
//   - the JSON API: the Fleet service in protobuf JSON, with the same tokens and roles,
//     errors as JSON, streams as ndjson;
//   - the dashboard's files, health and readiness;
//   - the dashboard in a real browser (Debian's chromium driven by playwright-core:
//     tests/e2e/dashboard.mjs), screenshots in <build>/test-artifacts/dashboard.
#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <filesystem>
#include <string>
#include <vector>

#include <httplib.h>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/fakes/file_util.h"
#include "tests/integration/agent_harness.h"

namespace herd::testing {
namespace {

namespace fs = std::filesystem;
using ::testing::HasSubstr;
using ::testing::StartsWith;
using json = nlohmann::json;


class DashboardTest : public ::testing::Test {
 protected:
  void SetUp() override {
    ASSERT_TRUE(cp_.Start({"--http", "127.0.0.1:0", "--metrics-interval-ms", "500"}))
        << cp_.last_error();
    http_ = cp_.http_address();
    ASSERT_FALSE(http_.empty()) << "controlplane --http wrote no http-address";
    viewer_ = ReadTrimmed(cp_.ViewerTokenFile());
    operator_ = ReadTrimmed(cp_.OperatorTokenFile());
    ASSERT_TRUE(agent_.StartAgent(cp_.AgentArgs("role=e2e,env=test"))) << agent_.last_error();
    const std::string dir = agent_.Path("src/dash-demo");
    fs::create_directories(dir);
    for (const char* f : {"package.json", "main.py"}) {
      fs::copy_file(SourceDir() + "/tests/integration/fixtures/dashboard-module/" + f,
                    dir + "/" + f);
    }
    fs::copy_file(SourceDir() + "/sdk/python/herd_module.py", dir + "/herd_module.py");
    CmdResult inst = agent_.Ctl({"install", dir});
    ASSERT_EQ(inst.exit_code, 0) << inst.out << inst.err;
    json info = agent_.CtlJson({"info"});
    host_id_ = info.is_object() ? info.value("host_id", "") : "";
    ASSERT_FALSE(host_id_.empty());
    // Registered, with the module's widget and action in the inventory.
    ASSERT_TRUE(WaitFor([&] {
      json d = Api("GetHost", {{"hostId", host_id_}});
      if (!d.contains("modules")) return false;
      for (const auto& m : d["modules"]) {
        if (m["name"] == "dash-demo" && !m["actions"].empty() && !m["recentIssues"].empty()) {
          return true;
        }
      }
      return false;
    }, absl::Seconds(30))) << Api("GetHost", {{"hostId", host_id_}}).dump();
  }

  // POST /api/v1/<method> with the viewer token (or `token`); the parsed body.
  json Api(const std::string& method, const json& body, const std::string& token = "") {
    HttpReply r = HttpCall(http_, "POST", "/api/v1/" + method, body.dump(),
                           token.empty() ? viewer_ : token);
    last_status_ = r.status;
    return json::parse(r.body, nullptr, false);
  }

  json DashDemo() {
    json d = Api("GetHost", {{"hostId", host_id_}});
    for (const auto& u : d.value("units", json::array())) {
      if (u["name"] == "dash-demo") return u;
    }
    return json();
  }

  ControlPlaneHarness cp_;
  AgentHarness agent_;
  std::string http_, viewer_, operator_, host_id_;
  int last_status_ = 0;
};

TEST_F(DashboardTest, HealthAndReadiness) {
  HttpReply health = HttpCall(http_, "GET", "/healthz");
  EXPECT_EQ(health.status, 200);
  EXPECT_EQ(health.body, "ok\n");
  HttpReply ready = HttpCall(http_, "GET", "/readyz");
  EXPECT_EQ(ready.status, 200);
  EXPECT_EQ(ready.body, "ready\n");
}

TEST_F(DashboardTest, ApiIsTheFleetServiceInProtobufJson) {
  json hosts = Api("ListHosts", json::object());
  ASSERT_EQ(last_status_, 200) << hosts.dump();
  ASSERT_EQ(hosts["hosts"].size(), 1u);
  const json& h = hosts["hosts"][0];
  EXPECT_EQ(h["hostId"], host_id_);
  EXPECT_EQ(h["labels"]["role"], "e2e");
  EXPECT_TRUE(h["online"].get<bool>());
  // int64 as a string (protobuf's JSON mapping), defaults included.
  EXPECT_TRUE(h["lastSeenUnixMs"].is_string());
  EXPECT_TRUE(h.contains("droppedBatches"));
  EXPECT_EQ(hosts["totalSize"], 1);
  EXPECT_EQ(hosts["onlineSize"], 1);

  // Search is by id, hostname or label; pages carry a token.
  EXPECT_EQ(Api("ListHosts", {{"query", "ROLE=E2E"}})["totalSize"], 1);
  EXPECT_EQ(Api("ListHosts", {{"query", host_id_.substr(0, 6)}})["totalSize"], 1);
  json none = Api("ListHosts", {{"query", "no-such-host-xyz"}});
  EXPECT_EQ(none["totalSize"], 0);
  EXPECT_TRUE(none["hosts"].empty());
  json page = Api("ListHosts", {{"pageSize", 1}});
  EXPECT_EQ(page["totalSize"], 1);
  EXPECT_EQ(page["hosts"].size(), 1u);
  EXPECT_EQ(page["nextPageToken"], "");  // the only host: no page after it
  // A token is the key of the page's last host, opaque: anything else is refused.
  for (const char* bad : {"x", "1"}) {
    Api("ListHosts", {{"pageToken", bad}});
    EXPECT_EQ(last_status_, 400) << bad;
  }

  // What a widget needs: the module's widget options, actions, latest issues, meta.
  json d = Api("GetHost", {{"hostId", host_id_}});
  json mod;
  for (const auto& m : d["modules"]) {
    if (m["name"] == "dash-demo") mod = m;
  }
  ASSERT_FALSE(mod.is_null()) << d.dump();
  EXPECT_EQ(mod["version"], "1.4.2");
  EXPECT_THAT(mod["widget"]["logo"].get<std::string>(), StartsWith("data:image/svg+xml;base64,"));
  EXPECT_EQ(mod["widget"]["theme"][0], "#9F1414");
  EXPECT_EQ(mod["widget"]["mainProbes"][0], "ticks");
  EXPECT_EQ(mod["actions"][0]["name"], "greet");
  EXPECT_EQ(mod["recentIssues"][0]["message"], "dash-demo started");
  EXPECT_EQ(mod["interpreter"], "python3");
  EXPECT_EQ(mod["state"], "UNIT_STATE_ONLINE");
  EXPECT_TRUE(WaitFor([&] {
    json u = DashDemo();
    return u.is_object() && u["isModule"].get<bool>() && !u["probes"].empty() &&
           u["issuesCount"] == "1";
  })) << DashDemo().dump();

  // Recent history of the unit's CPU, as the charts load it.
  ASSERT_TRUE(WaitFor([&] {
    json s = Api("QuerySeries", {{"hostId", host_id_}, {"unit", "dash-demo"}, {"metric", "cpu"}});
    return s["points"].size() >= 2;
  }));
}

TEST_F(DashboardTest, ApiKeepsTheTokensAndRolesAndSaysWhatIsWrong) {
  HttpReply none = HttpCall(http_, "POST", "/api/v1/ListHosts", "{}");
  EXPECT_EQ(none.status, 401);
  EXPECT_EQ(none.content_type, "application/json");
  json err = json::parse(none.body, nullptr, false);
  EXPECT_EQ(err["error"]["status"], "UNAUTHENTICATED") << none.body;
  EXPECT_EQ(HttpCall(http_, "POST", "/api/v1/ListHosts", "{}", "hv_not-a-token").status, 401);

  json denied = Api("SetConfig", {{"scope", {{"global", true}}}, {"module", "dash-demo"},
                                  {"key", "greeting"}, {"value", "no"}});
  EXPECT_EQ(last_status_, 403);
  EXPECT_EQ(denied["error"]["status"], "PERMISSION_DENIED");
  EXPECT_THAT(denied["error"]["message"].get<std::string>(), HasSubstr("operator token"));

  json bad = Api("ListHosts", {{"bogus", 1}});
  EXPECT_EQ(last_status_, 400);
  EXPECT_THAT(bad["error"]["message"].get<std::string>(), HasSubstr("herd.v1.ListHostsRequest"));
  HttpReply garbage = HttpCall(http_, "POST", "/api/v1/ListHosts", "{not json", viewer_);
  EXPECT_EQ(garbage.status, 400);
  json unknown = Api("DropEverything", json::object());
  EXPECT_EQ(last_status_, 404);
  EXPECT_THAT(unknown["error"]["message"].get<std::string>(), HasSubstr("DropEverything"));
  EXPECT_EQ(HttpCall(http_, "GET", "/api/v1/ListHosts", "", viewer_).status, 400);
  json missing = Api("GetHost", {{"hostId", "no-such-host"}});
  EXPECT_EQ(last_status_, 404) << missing.dump();

  // Who the token is, for the dashboard.
  json viewer = Api("WhoAmI", json::object());
  EXPECT_EQ(viewer["name"], "viewer");
  EXPECT_EQ(viewer["role"], "viewer");
  json admin = Api("WhoAmI", json::object(), operator_);
  EXPECT_EQ(admin["name"], "admin");
  EXPECT_EQ(admin["role"], "operator");
}

TEST_F(DashboardTest, ActionsAndConfigGoThroughTheSamePathAsAgentctl) {
  json target = {{"hosts", {{"ids", {host_id_}}}}};
  auto greet = [&] {
    json r = Api("TriggerAction", {{"target", target}, {"module", "dash-demo"},
                                   {"action", "greet"}, {"params", {{"name", "json"}}}},
                 operator_);
    return r.value("results", json::array()).empty() ? r.dump()
                                                      : r["results"][0].value("replyJson", "");
  };
  EXPECT_THAT(greet(), HasSubstr("hello, json"));

  const int pid = DashDemo().value("pid", 0);
  json change = Api("SetConfig", {{"scope", {{"hostId", host_id_}}}, {"module", "dash-demo"},
                                  {"key", "greeting"}, {"value", "bonjour"}},
                    operator_);
  ASSERT_EQ(last_status_, 200) << change.dump();
  EXPECT_TRUE(change["changed"].get<bool>());
  EXPECT_EQ(change["hosts"][0], host_id_);
  // Acknowledged by the host, which restarted the module with it.
  ASSERT_TRUE(WaitFor([&] {
    json h = Api("GetHost", {{"hostId", host_id_}})["host"];
    return h["ackedConfigVersion"] == h["desiredConfigVersion"] && h["configRejections"].empty();
  }, absl::Seconds(20)));
  ASSERT_TRUE(WaitFor([&] {
    json u = DashDemo();
    return u.value("pid", 0) != pid && u["state"] == "UNIT_STATE_ONLINE";
  }, absl::Seconds(20)));
  EXPECT_TRUE(WaitFor([&] { return absl::StrContains(greet(), "bonjour, json"); },
                      absl::Seconds(15)));
  json conf = Api("GetConfig", {{"module", "dash-demo"}, {"hostId", host_id_}});
  bool seen = false;
  for (const auto& e : conf["effective"][0]["entries"]) {
    if (e["key"] == "greeting") {
      seen = true;
      EXPECT_EQ(e["effectiveJson"], "\"bonjour\"");
      EXPECT_EQ(e["source"], "host");
      EXPECT_EQ(e["defaultJson"], "\"hello\"");
    }
  }
  EXPECT_TRUE(seen) << conf.dump();
  // A key whose default is an array takes a JSON array, checked by the control plane against
  // the host's manifest, and the module gets an array.
  json refused = Api("SetConfig", {{"scope", {{"hostId", host_id_}}}, {"module", "dash-demo"},
                                   {"key", "teams"}, {"value", "ops,dev"}},
                     operator_);
  EXPECT_EQ(last_status_, 400) << refused.dump();
  EXPECT_THAT(refused.dump(), HasSubstr("is not a JSON array"));
  Api("SetConfig", {{"scope", {{"hostId", host_id_}}}, {"module", "dash-demo"},
                    {"key", "teams"}, {"value", "[\"ops\", 7]"}},
      operator_);
  ASSERT_EQ(last_status_, 200);
  EXPECT_TRUE(WaitFor([&] { return absl::StrContains(greet(), "teams: ops+7)"); },
                      absl::Seconds(30)))
      << greet();
}

TEST_F(DashboardTest, StreamsAreNdjsonAndEndWhenTheClientGoes) {
  httplib::Client client(absl::StrCat("http://", http_));
  client.set_read_timeout(20);
  std::string buffer;
  std::vector<json> messages;
  httplib::Request req;
  req.method = "POST";
  req.path = "/api/v1/WatchMetrics";
  req.headers = {{"Authorization", "Bearer " + viewer_}, {"Content-Type", "application/json"}};
  req.body = json({{"target", {{"hosts", {{"ids", {host_id_}}}}}}}).dump();
  req.content_receiver = [&](const char* data, size_t len, uint64_t, uint64_t) {
    buffer.append(data, len);
    size_t nl;
    while ((nl = buffer.find('\n')) != std::string::npos) {
      messages.push_back(json::parse(buffer.substr(0, nl), nullptr, false));
      buffer.erase(0, nl + 1);
    }
    return messages.size() < 3;  // then hang up
  };
  client.send(req);
  ASSERT_GE(messages.size(), 3u);
  for (const auto& m : messages) {
    ASSERT_TRUE(m.contains("result")) << m.dump();
    EXPECT_EQ(m["result"]["hostId"], host_id_);
    EXPECT_FALSE(m["result"]["batch"]["units"].empty());
  }
  // A stream refused at the start says why, in its one line.
  HttpReply denied = HttpCall(http_, "POST", "/api/v1/WatchMetrics", "{}", "hv_wrong");
  EXPECT_EQ(denied.status, 200);
  EXPECT_EQ(denied.content_type, "application/x-ndjson");
  EXPECT_THAT(denied.body, HasSubstr("UNAUTHENTICATED"));
  // The server is still there for everyone else after the hang-up.
  EXPECT_EQ(HttpCall(http_, "GET", "/healthz").status, 200);
  EXPECT_EQ(Api("ListHosts", json::object())["totalSize"], 1);
}

TEST_F(DashboardTest, DashboardFilesAreServedWithAStrictPolicy) {
  httplib::Client client(absl::StrCat("http://", http_));
  auto index = client.Get("/");
  ASSERT_TRUE(index);
  EXPECT_EQ(index->status, 200);
  EXPECT_THAT(index->get_header_value("Content-Type"), StartsWith("text/html"));
  EXPECT_THAT(index->get_header_value("Content-Security-Policy"), HasSubstr("script-src 'self'"));
  EXPECT_EQ(index->get_header_value("X-Frame-Options"), "DENY");
  EXPECT_THAT(index->body, HasSubstr("/assets/uPlot.iife.min.js"));
  auto chart = client.Get("/assets/uPlot.iife.min.js");
  ASSERT_TRUE(chart);
  EXPECT_EQ(chart->status, 200);
  EXPECT_THAT(chart->get_header_value("Content-Type"), StartsWith("text/javascript"));
  EXPECT_THAT(chart->body, HasSubstr("uPlot"));
  EXPECT_EQ(client.Get("/assets/no-such-file.js")->status, 404);
  EXPECT_EQ(client.Get("/assets/..%2Fserver.cc")->status, 404);
}

// A POST on a raw connection, left open: returns the socket and the response's status line
// (empty if none came within 10 s).
int RawPost(const std::string& address, const std::string& path, const std::string& body,
            const std::string& token, std::string* status_line) {
  const size_t colon = address.rfind(':');
  sockaddr_in sa{};
  sa.sin_family = AF_INET;
  sa.sin_port = htons(static_cast<uint16_t>(std::stoi(address.substr(colon + 1))));
  inet_pton(AF_INET, address.substr(0, colon).c_str(), &sa.sin_addr);
  int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (connect(fd, reinterpret_cast<sockaddr*>(&sa), sizeof sa) != 0) return fd;
  const std::string req =
      absl::StrCat("POST ", path, " HTTP/1.1\r\nHost: ", address, "\r\nAuthorization: Bearer ",
                   token, "\r\nContent-Type: application/json\r\nContent-Length: ",
                   body.size(), "\r\n\r\n", body);
  if (write(fd, req.data(), req.size()) < 0) return fd;
  std::string got;
  pollfd p{fd, POLLIN, 0};
  while (got.find("\r\n") == std::string::npos && poll(&p, 1, 10000) == 1) {
    char buf[512];
    ssize_t n = read(fd, buf, sizeof buf);
    if (n <= 0) break;
    got.append(buf, static_cast<size_t>(n));
  }
  *status_line = got.substr(0, got.find("\r\n"));
  return fd;
}

// Quiet streams hold a thread each, so they are capped; a browser that went away is noticed
// by the heartbeat on a quiet stream, which frees its place. And no header, however broken,
// takes the control plane down.
TEST(DashboardServerTest, StreamsAreCappedAndAClosedQuietStreamFreesItsPlace) {
  ControlPlaneHarness cp;
  ASSERT_TRUE(cp.Start({"--http", "127.0.0.1:0", "--http-max-streams", "2"})) << cp.last_error();
  const std::string http = cp.http_address();
  const std::string token = ReadTrimmed(cp.ViewerTokenFile());
  // No host: nothing is ever sent on these streams but heartbeats.
  const std::string watch = R"({"target": {"all": true}})";
  std::string status;
  int a = RawPost(http, "/api/v1/WatchMetrics", watch, token, &status);
  EXPECT_THAT(status, HasSubstr("200")) << status;
  int b = RawPost(http, "/api/v1/WatchMetrics", watch, token, &status);
  EXPECT_THAT(status, HasSubstr("200")) << status;
  int c = RawPost(http, "/api/v1/WatchMetrics", watch, token, &status);
  EXPECT_THAT(status, HasSubstr("429")) << status;
  close(c);
  close(a);
  close(b);
  // Within a couple of heartbeats both places are free again: two new streams are accepted
  // (each kept open once accepted; a refused one takes no place).
  std::vector<int> accepted;
  EXPECT_TRUE(WaitFor([&] {
    std::string st;
    int fd = RawPost(http, "/api/v1/WatchMetrics", watch, token, &st);
    if (absl::StrContains(st, "200")) {
      accepted.push_back(fd);
    } else {
      close(fd);
    }
    return accepted.size() == 2;
  }, absl::Seconds(30)));
  for (int fd : accepted) close(fd);

  // Bytes gRPC metadata cannot carry, percent-escapes, an over-long token: 401, and the
  // server lives on. Control characters in a header are not HTTP at all: 400, saying so.
  for (const std::string& bad : {std::string("hv_\x01\x7f"), std::string("%ff%00"),
                                 std::string("\xc3\xa9t\xc3\xa9"), std::string(300, 'a')}) {
    const int want = absl::StrContains(bad, '\x01') ? 400 : 401;
    HttpReply r = HttpCall(http, "POST", "/api/v1/ListHosts", "{}", bad);
    EXPECT_EQ(r.status, want) << r.body << r.error;
    if (want == 400) {
      EXPECT_THAT(r.body, HasSubstr("header"));
    }
    EXPECT_EQ(HttpCall(http, "GET", "/metrics", "", bad).status, want);
  }
  EXPECT_EQ(HttpCall(http, "GET", "/healthz").status, 200);
  EXPECT_EQ(HttpCall(http, "POST", "/api/v1/ListHosts", "{}", token).status, 200);
  cp.Stop();
}

// The dashboard in Debian's chromium, driven by playwright-core: see tests/e2e/dashboard.mjs
// for the steps (log in, find the host, the live widget, an action, Configure, a rollout).
TEST_F(DashboardTest, BrowserSeesTheFleetAndDrivesIt) {
  const std::string node_path = HERD_E2E_NODE_PATH;
  ASSERT_TRUE(fs::exists(node_path + "/playwright-core"))
      << "playwright-core is not in " << node_path
      << ": the build installs it from npm (tests/e2e/package.json, target e2e_npm)";
  ASSERT_TRUE(fs::exists("/usr/bin/chromium"))
      << "no /usr/bin/chromium: scripts/install-deps.sh installs Debian's chromium";
  const std::string shots = absl::StrCat(HERD_ARTIFACTS_DIR, "/dashboard");
  fs::create_directories(shots);
  json hostname = Api("GetHost", {{"hostId", host_id_}})["host"]["hostname"];
  // Bounded: a hung browser fails the test instead of holding it (playwright closes chromium
  // on SIGTERM).
  CmdResult r = herd::testing::Run({"/usr/bin/timeout", "--kill-after=10", "300", "/usr/bin/env",
                     absl::StrCat("NODE_PATH=", node_path),
                     absl::StrCat("HERD_URL=http://", http_), "HERD_TOKEN=" + operator_,
                     "HERD_VIEWER_TOKEN=" + viewer_, "HERD_HOST_ID=" + host_id_,
                     "HERD_HOSTNAME=" + hostname.get<std::string>(), "HERD_MODULE=dash-demo",
                     "HERD_SELECTOR=role=e2e", "HERD_ARTIFACTS=" + shots,
                     "node", SourceDir() + "/tests/e2e/dashboard.mjs"});
  EXPECT_EQ(r.exit_code, 0) << "stdout:\n" << r.out << "\nstderr:\n" << r.err
                            << "\nscreenshots in " << shots;
  // What the browser did went through the Fleet service with the operator's token: the
  // audit log has its config change by "admin", and the module still answers.
  json audit = Api("ListAudit", json::object());
  bool set_by_admin = false;
  for (const auto& e : audit.value("entries", json::array())) {
    if (e["action"] == "config.set" && e["actor"] == "admin" &&
        absl::StrContains(e["detailJson"].get<std::string>(), "bonjour")) {
      set_by_admin = true;
    }
  }
  EXPECT_TRUE(set_by_admin) << audit.dump();
  CmdResult greet = agent_.Ctl({"action", "dash-demo", "greet", "--param", "name=agent"});
  EXPECT_EQ(greet.exit_code, 0) << greet.err;
}

// The operator's pages (tests/e2e/dashboard-pages.mjs): the hosts table's modules and issue
// counts, the Modules page with a deployment made from its dialog, Logs, Audit.
TEST_F(DashboardTest, OperatorPagesShowModulesDeploymentsLogsAndAudit) {
  const std::string node_path = HERD_E2E_NODE_PATH;
  ASSERT_TRUE(fs::exists(node_path + "/playwright-core"))
      << "playwright-core is not in " << node_path << " (target e2e_npm)";
  // A unit that logs a line every 200 ms, for the Logs page.
  const std::string ticker = agent_.Path("ticker.sh");
  WriteTextFile(ticker,
                "#!/bin/sh\ni=0\nwhile true; do echo \"tick $i\"; i=$((i+1)); sleep 0.2; done\n");
  fs::permissions(ticker, fs::perms::owner_all);
  CmdResult started = agent_.Ctl({"start", ticker, "--name", "ticker"});
  ASSERT_EQ(started.exit_code, 0) << started.err;
  // An audit entry by the operator ("admin") before the browser's own.
  ASSERT_EQ(cp_.Ctl({"set", "dash-demo:greeting", "hi", "--global"}, cp_.OperatorTokenFile())
                .exit_code, 0);
  const std::string shots = absl::StrCat(HERD_ARTIFACTS_DIR, "/dashboard-pages");
  fs::create_directories(shots);
  CmdResult r = herd::testing::Run({"/usr/bin/timeout", "--kill-after=10", "300", "/usr/bin/env",
                                    absl::StrCat("NODE_PATH=", node_path),
                                    absl::StrCat("HERD_URL=http://", http_),
                                    "HERD_TOKEN=" + operator_, "HERD_HOST_ID=" + host_id_,
                                    "HERD_MODULE=dash-demo", "HERD_LOG_UNIT=ticker",
                                    "HERD_ARTIFACTS=" + shots, "node",
                                    SourceDir() + "/tests/e2e/dashboard-pages.mjs"});
  EXPECT_EQ(r.exit_code, 0) << "stdout:\n" << r.out << "\nstderr:\n" << r.err
                            << "\nscreenshots in " << shots;
  // The dialog's deploy and undeploy went through the Fleet API as the operator.
  json audit = Api("ListAudit", json::object());
  int deployed = 0, undeployed = 0;
  for (const auto& e : audit.value("entries", json::array())) {
    if (e["actor"] != "admin") continue;
    deployed += e["action"] == "module.deploy" ? 1 : 0;
    undeployed += e["action"] == "module.undeploy" ? 1 : 0;
  }
  EXPECT_EQ(deployed, 1) << audit.dump();
  EXPECT_EQ(undeployed, 1) << audit.dump();
}

// Real modules as Keymetrics drew them: pm2-elasticsearch, pm2-server-monit and
// pm2-sysmonit, replaying what they sent on their channel (fixtures/recorded-modules), in the
// browser (tests/e2e/dashboard-modules.mjs), with the host online and then offline.
TEST_F(DashboardTest, RecordedModulesAreDrawnAsKeymetricsDid) {
  const std::string node_path = HERD_E2E_NODE_PATH;
  ASSERT_TRUE(fs::exists(node_path + "/playwright-core")) << node_path;
  const std::string fixtures = SourceDir() + "/tests/integration/fixtures/recorded-modules";
  for (const char* m : {"elastic", "monit", "sysmonit"}) {
    const std::string dir = agent_.Path(absl::StrCat("src/rec-", m));
    fs::create_directories(dir);
    fs::copy_file(fixtures + "/replay.js", dir + "/replay.js");
    for (const char* f : {"package.json", "recorded.json"}) {
      fs::copy_file(absl::StrCat(fixtures, "/", m, "/", f), dir + "/" + f);
    }
    CmdResult inst = agent_.Ctl({"install", dir});
    ASSERT_EQ(inst.exit_code, 0) << inst.out << inst.err;
  }
  // In the control plane's inventory, the replayed issues included.
  ASSERT_TRUE(WaitFor([&] {
    json d = Api("GetHost", {{"hostId", host_id_}});
    int found = 0;
    for (const auto& m : d.value("modules", json::array())) {
      const std::string name = m.value("name", "");
      if (name == "rec-elastic" && !m.value("recentIssues", json::array()).empty()) ++found;
      if (name == "rec-monit" || name == "rec-sysmonit") ++found;
    }
    return found == 3;
  }, absl::Seconds(30))) << Api("GetHost", {{"hostId", host_id_}}).dump();
  const std::string shots = absl::StrCat(HERD_ARTIFACTS_DIR, "/dashboard-modules");
  auto browse = [&](const std::string& phase) {
    return herd::testing::Run({"/usr/bin/timeout", "--kill-after=10", "180", "/usr/bin/env",
                               absl::StrCat("NODE_PATH=", node_path),
                               absl::StrCat("HERD_URL=http://", http_), "HERD_TOKEN=" + operator_,
                               "HERD_HOST_ID=" + host_id_, "HERD_PHASE=" + phase,
                               "HERD_ARTIFACTS=" + shots, "node",
                               SourceDir() + "/tests/e2e/dashboard-modules.mjs"});
  };
  CmdResult online = browse("online");
  EXPECT_EQ(online.exit_code, 0) << online.out << online.err << "\nscreenshots in " << shots;
  // The Clear in the browser reached the agent.
  json d = agent_.CtlJson({"describe", "rec-elastic"});
  EXPECT_EQ(d["module_info"].value("issues_count", -1), 0) << d.dump();

  agent_.StopAgent();
  ASSERT_TRUE(WaitFor([&] {
    return !Api("GetHost", {{"hostId", host_id_}})["host"].value("online", true);
  }, absl::Seconds(30)));
  CmdResult offline = browse("offline");
  EXPECT_EQ(offline.exit_code, 0) << offline.out << offline.err << "\nscreenshots in " << shots;
}

}  // namespace
}  // namespace herd::testing
