// End to end on loopback: a real controlplane and three real agentd (separate homes, labels
// env/role), each running the same module "svc" (a generated Python module). Registration,
// config at each scope reaching exactly the right hosts and restarting exactly the right
// modules, a rejected value, rollouts in batches, action fan-out, and both sides killed and
// restarted without losing anything.
#include <signal.h>

#include <filesystem>
#include <fstream>
#include <map>
#include <set>
#include <string>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"
#include "absl/synchronization/notification.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "grpcpp/generic/generic_stub.h"
#include "grpcpp/grpcpp.h"
#include "herd/v1/fleet.grpc.pb.h"
#include "herd/v1/gateway.grpc.pb.h"
#include "tests/integration/agent_harness.h"

namespace herd::testing {
namespace {

using ::testing::HasSubstr;
using json = nlohmann::json;

std::string FileText(const std::string& path);

constexpr int kAgents = 3;
const char* const kLabels[kAgents] = {"env=prod,role=web", "env=prod,role=db", "env=dev,role=web"};

class FleetTest : public ::testing::Test {
 protected:
  void SetUp() override {
    ASSERT_TRUE(cp_.Start({"--lease", "2s", "--metrics-interval-ms", "200", "--hello-timeout", "2s"}))
        << cp_.last_error();
    for (int i = 0; i < kAgents; ++i) {
      agents_[i] = std::make_unique<AgentHarness>();
      ASSERT_TRUE(agents_[i]->StartAgent(cp_.AgentArgs(kLabels[i]))) << agents_[i]->last_error();
    }
    // The same module on every host, each from its own generated copy.
    for (int i = 0; i < kAgents; ++i) {
      std::string dir = agents_[i]->Path("src/svc");
      CmdResult gen = agents_[i]->Ctl({"generate", "svc", "--lang", "python", "--dir", dir});
      ASSERT_EQ(gen.exit_code, 0) << gen.err;
      CmdResult inst = agents_[i]->Ctl({"install", dir});
      ASSERT_EQ(inst.exit_code, 0) << inst.err;
      host_ids_[i] = HostId(i);
      ASSERT_FALSE(host_ids_[i].empty());
    }
    // Every host registered, with the module in its inventory and its first probes.
    ASSERT_TRUE(WaitFor([&] {
      json m = cp_.CtlJson({"modules", "svc"});
      if (!m.is_object() || !m.contains("modules") || m["modules"].size() != kAgents) return false;
      for (const auto& x : m["modules"]) {
        if (!x["unit"].contains("probes") || x["unit"]["probes"].empty()) return false;
      }
      return true;
    }, absl::Seconds(30))) << cp_.last_error() << cp_.Ctl({"modules"}).out;
  }

  std::string HostId(int i) {
    json info = agents_[i]->CtlJson({"info"});
    return info.is_object() ? info.value("host_id", "") : "";
  }
  int Pid(int i) {
    json u = agents_[i]->Unit("svc");
    return u.is_null() ? 0 : u.value("pid", 0);
  }
  std::map<int, int> Pids() {
    std::map<int, int> p;
    for (int i = 0; i < kAgents; ++i) p[i] = Pid(i);
    return p;
  }
  // The greet action's reply on host i, through the local agent.
  std::string Greet(int i) {
    CmdResult r = agents_[i]->Ctl({"action", "svc", "greet", "--param", "name=x"});
    return r.exit_code == 0 ? r.out : "error: " + r.err;
  }
  // Waits for it: a restarted module registers its action a moment after it starts.
  bool GreetingIs(int i, const std::string& g) {
    return WaitFor([&] { return absl::StrContains(Greet(i), absl::StrCat(g, ", x")); },
                   absl::Seconds(10));
  }
  // Waits until exactly the hosts in `changed` have a new svc pid (and have been restarted
  // once), and checks the others kept theirs.
  void ExpectRestarted(const std::map<int, int>& before, const std::set<int>& changed) {
    ASSERT_TRUE(WaitFor([&] {
      for (int i : changed) {
        int p = Pid(i);
        if (p == 0 || p == before.at(i)) return false;
      }
      return true;
    }, absl::Seconds(20))) << "expected restarts on " << changed.size() << " host(s)";
    absl::SleepFor(absl::Milliseconds(500));  // a wrong restart elsewhere would show by now
    for (int i = 0; i < kAgents; ++i) {
      if (!changed.count(i)) {
        EXPECT_EQ(Pid(i), before.at(i)) << "host " << i << " restarted";
      }
    }
  }
  json Host(const std::string& id) { return cp_.Host(id); }

  ControlPlaneHarness cp_;
  std::unique_ptr<AgentHarness> agents_[kAgents];
  std::string host_ids_[kAgents];
};

TEST_F(FleetTest, HostsRegisterWithLabelsAndReportMetrics) {
  json hosts = cp_.CtlJson({"hosts"});
  ASSERT_TRUE(hosts.is_object()) << cp_.last_error();
  ASSERT_EQ(hosts["hosts"].size(), static_cast<size_t>(kAgents));
  for (int i = 0; i < kAgents; ++i) {
    json h = Host(host_ids_[i]);
    ASSERT_TRUE(h.is_object()) << host_ids_[i];
    EXPECT_TRUE(h["online"].get<bool>());
    EXPECT_EQ(h["labels"]["env"], i < 2 ? "prod" : "dev");
    EXPECT_EQ(h["modules"], 1);
    EXPECT_GT(h["usage"]["memory_total_bytes"].get<uint64_t>(), 0u);
  }
  json sel = cp_.CtlJson({"hosts", "--selector", "env=prod,role!=db"});
  ASSERT_EQ(sel["hosts"].size(), 1u);
  EXPECT_EQ(sel["hosts"][0]["host_id"], host_ids_[0]);
  // Recent history of the module's CPU is kept per host.
  ASSERT_TRUE(WaitFor([&] {
    json s = cp_.CtlJson({"series", host_ids_[1], "cpu", "--unit", "svc"});
    return s.is_object() && s.contains("points") && s["points"].size() >= 3;
  })) << cp_.last_error();
  json ticks = cp_.CtlJson({"series", host_ids_[1], "probe:ticks", "--unit", "svc"});
  ASSERT_TRUE(ticks.is_object()) << cp_.last_error();
  EXPECT_FALSE(ticks["points"].empty());
}

TEST_F(FleetTest, ConfigAtEachScopeReachesExactlyTheRightHostsAndRestartsOnlyThem) {
  auto before = Pids();
  CmdResult g = cp_.Ctl({"set", "svc:greeting", "hi", "--global"});
  ASSERT_EQ(g.exit_code, 0) << g.err;
  ExpectRestarted(before, {0, 1, 2});
  for (int i = 0; i < kAgents; ++i) EXPECT_TRUE(GreetingIs(i, "hi")) << Greet(i);

  before = Pids();
  CmdResult s = cp_.Ctl({"set", "svc:greeting", "prod", "--selector", "env=prod"});
  ASSERT_EQ(s.exit_code, 0) << s.err;
  ExpectRestarted(before, {0, 1});
  EXPECT_TRUE(GreetingIs(0, "prod"));
  EXPECT_TRUE(GreetingIs(1, "prod"));
  EXPECT_TRUE(GreetingIs(2, "hi"));

  // The host scope wins over the selector; from the host itself, set without a scope means
  // this host.
  before = Pids();
  CmdResult h = agents_[1]->Ctl({"--token-file", cp_.OperatorTokenFile(), "set", "svc:greeting", "db"});
  ASSERT_EQ(h.exit_code, 0) << h.err;
  ExpectRestarted(before, {1});
  EXPECT_TRUE(GreetingIs(1, "db"));

  // Each key shows where its value comes from, on the host and from the control plane.
  CmdResult conf = agents_[0]->Ctl({"conf", "svc"});
  EXPECT_THAT(conf.out, HasSubstr("selector:env=prod"));
  json eff = cp_.CtlJson({"conf", "svc", "--host", host_ids_[1]});
  ASSERT_TRUE(eff.is_object()) << cp_.last_error();
  bool found = false;
  for (const auto& e : eff["effective"][0]["entries"]) {
    if (e["key"] == "greeting") {
      EXPECT_EQ(e["source"], "host");
      EXPECT_EQ(e["override_value"], "db");
      found = true;
    }
  }
  EXPECT_TRUE(found) << eff.dump();

  // Unsetting the selector falls back to global on those hosts only (db keeps its own).
  before = Pids();
  ASSERT_EQ(cp_.Ctl({"unset", "svc:greeting", "--selector", "env=prod"}).exit_code, 0);
  ExpectRestarted(before, {0});
  EXPECT_TRUE(GreetingIs(0, "hi"));

  // A local set on a linked agent's own API is refused with where to go instead.
  CmdResult local = agents_[2]->Ctl({"--controlplane", "", "set", "svc:greeting", "x"});
  EXPECT_NE(local.exit_code, 0);
  // The audit log names who changed what.
  CmdResult audit = cp_.Ctl({"audit"});
  EXPECT_THAT(audit.out, HasSubstr("config.set"));
  EXPECT_THAT(audit.out, HasSubstr("admin"));
}

TEST_F(FleetTest, BadValueIsRefusedOrRejectedByTheHostsWhichKeepTheLastGoodConfig) {
  // Checked at set time against the manifests the hosts reported.
  CmdResult refused = cp_.Ctl({"set", "svc:interval", "fast", "--global"});
  EXPECT_NE(refused.exit_code, 0);
  EXPECT_THAT(refused.err, HasSubstr("is not an integer"));
  EXPECT_THAT(refused.err, HasSubstr("--force"));

  ASSERT_EQ(cp_.Ctl({"set", "svc:greeting", "ok", "--global"}).exit_code, 0);
  ASSERT_TRUE(WaitFor([&] { return GreetingIs(2, "ok"); }, absl::Seconds(20)));
  json h0 = Host(host_ids_[2]);
  const uint64_t acked = h0["acked_config_version"];
  auto before = Pids();

  // Forced through, the hosts reject the snapshot whole (greeting too) and say why.
  ASSERT_EQ(cp_.Ctl({"set", "svc:interval", "fast", "--global", "--force"}).exit_code, 0);
  ASSERT_TRUE(WaitFor([&] {
    json h = Host(host_ids_[2]);
    return h.is_object() && h.contains("config_rejections") && !h["config_rejections"].empty();
  })) << cp_.Ctl({"hosts"}).out;
  json h = Host(host_ids_[2]);
  EXPECT_EQ(h["acked_config_version"], acked);
  EXPECT_THAT(h["config_rejections"][0]["reason"].get<std::string>(), HasSubstr("not an integer"));
  absl::SleepFor(absl::Milliseconds(500));
  EXPECT_EQ(Pids(), before) << "a rejected snapshot must not restart anything";
  EXPECT_TRUE(GreetingIs(2, "ok"));
  CmdResult host = cp_.Ctl({"host", host_ids_[2]});
  EXPECT_THAT(host.out, HasSubstr("config rejected: svc:interval"));

  // Fixing it is accepted again.
  ASSERT_EQ(cp_.Ctl({"unset", "svc:interval", "--global"}).exit_code, 0);
  ASSERT_TRUE(WaitFor([&] {
    json x = Host(host_ids_[2]);
    return x.is_object() && (!x.contains("config_rejections") || x["config_rejections"].empty()) &&
           x["acked_config_version"] != acked;
  }));
}

TEST_F(FleetTest, RolloutRestartsHostsBatchByBatch) {
  auto before = Pids();
  CmdResult r = cp_.Ctl({"restart", "svc", "--all-hosts", "--batch", "2", "--wait-healthy", "500ms"});
  ASSERT_EQ(r.exit_code, 0) << r.out << r.err;
  EXPECT_THAT(r.out, HasSubstr("succeeded"));
  for (int i = 0; i < kAgents; ++i) EXPECT_NE(Pid(i), before[i]) << "host " << i;
  json list = cp_.CtlJson({"rollouts"});
  ASSERT_EQ(list["rollouts"].size(), 1u);
  const json& ro = list["rollouts"][0];
  EXPECT_EQ(ro["state"], "succeeded");
  EXPECT_EQ(ro["batches"], 2);
  std::map<int, int> per_batch;
  for (const auto& h : ro["hosts"]) {
    EXPECT_EQ(h["state"], "done");
    per_batch[h["batch"].get<int>()]++;
  }
  EXPECT_EQ(per_batch[0], 2);
  EXPECT_EQ(per_batch[1], 1);

  // A selector restarts only its hosts.
  before = Pids();
  CmdResult sel = cp_.Ctl({"restart", "svc", "--selector", "env=dev", "--wait-healthy", "200ms"});
  ASSERT_EQ(sel.exit_code, 0) << sel.out << sel.err;
  EXPECT_NE(Pid(2), before[2]);
  EXPECT_EQ(Pid(0), before[0]);
  EXPECT_EQ(Pid(1), before[1]);
}

TEST_F(FleetTest, RolloutStopsAtTheFailureThreshold) {
  // A host whose module cannot stay up fails its batch; the rest is skipped.
  agents_[0]->Ctl({"stop", "svc"});
  // Make svc on host 0 crash at start: its script is replaced by one that exits at once.
  // The wait for health is long enough that a slow interpreter start on a loaded machine
  // still ends inside it (with 1.5 s, a start slower than the wait read as healthy).
  std::string script = agents_[0]->Path("src/svc/main.py");
  {
    FILE* f = fopen(script.c_str(), "w");
    ASSERT_NE(f, nullptr);
    fputs("import sys\nsys.exit(3)\n", f);
    fclose(f);
  }
  CmdResult r = cp_.Ctl({"restart", "svc", "--host", host_ids_[0], "--host", host_ids_[1],
                         "--batch", "1", "--wait-healthy", "5s"});
  EXPECT_NE(r.exit_code, 0);
  EXPECT_THAT(r.out, HasSubstr("failed"));
  json list = cp_.CtlJson({"rollouts"});
  const json& ro = list["rollouts"][0];
  EXPECT_EQ(ro["state"], "failed");
  EXPECT_EQ(ro["hosts"][0]["state"], "failed");
  EXPECT_EQ(ro["hosts"][1]["state"], "skipped");
}

TEST_F(FleetTest, RolloutRunningWhenTheControlPlaneDiesIsAborted) {
  CmdResult r = cp_.Ctl({"restart", "svc", "--all-hosts", "--batch", "1", "--wait-healthy", "30s",
                         "--no-wait"});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  ASSERT_TRUE(WaitFor([&] {
    json list = cp_.CtlJson({"rollouts"});
    return list.is_object() && !list["rollouts"].empty() &&
           list["rollouts"][0]["hosts"][0]["state"] == "restarting";
  }));
  cp_.Kill();
  ASSERT_TRUE(cp_.Start({"--lease", "2s", "--metrics-interval-ms", "200"})) << cp_.last_error();
  json list = cp_.CtlJson({"rollouts"});
  ASSERT_TRUE(list.is_object()) << cp_.last_error();
  const json& ro = list["rollouts"][0];
  EXPECT_EQ(ro["state"], "aborted");
  EXPECT_THAT(ro["reason"].get<std::string>(), HasSubstr("restarted"));
  // The first host was told to restart (and did): not "skipped", which says it was not
  // touched, but interrupted, with why. The hosts never asked are skipped.
  ASSERT_EQ(ro["hosts"].size(), static_cast<size_t>(kAgents));
  EXPECT_EQ(ro["hosts"][0]["state"], "interrupted");
  EXPECT_THAT(ro["hosts"][0].value("error", ""), HasSubstr("before the host answered"));
  for (size_t i = 1; i < ro["hosts"].size(); ++i) {
    EXPECT_EQ(ro["hosts"][i]["state"], "skipped");
  }
}

// A restart names its hosts: a request without a target is refused, not run on every host.
TEST_F(FleetTest, ARestartWithoutATargetIsRefused) {
  auto before = Pids();
  auto channel = grpc::CreateChannel(cp_.address(), grpc::InsecureChannelCredentials());
  auto stub = herd::v1::Fleet::NewStub(channel);
  std::string token;
  {
    std::ifstream f(cp_.OperatorTokenFile());
    std::getline(f, token);
  }
  grpc::ClientContext ctx;
  ctx.AddMetadata("authorization", "Bearer " + token);
  herd::v1::FleetRestartRequest req;
  req.set_module("svc");
  herd::v1::Rollout rollout;
  grpc::Status st = stub->Restart(&ctx, req, &rollout);
  EXPECT_EQ(st.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_THAT(st.error_message(), HasSubstr("all"));
  json list = cp_.CtlJson({"rollouts"});
  ASSERT_TRUE(list.is_object());
  EXPECT_TRUE(!list.contains("rollouts") || list["rollouts"].empty()) << list.dump();
  EXPECT_EQ(Pids(), before);
}

// One host sending far more than a host may keep (here 20,000 units) is cut to the limit,
// logged by name, and the other hosts' data stays whole.
TEST_F(FleetTest, AHostPastItsLimitsIsCutAndTheOthersKeepTheirData) {
  std::string join;
  {
    std::ifstream f(cp_.JoinTokenFile());
    std::getline(f, join);
  }
  auto stub = herd::v1::Gateway::NewStub(
      grpc::CreateChannel(cp_.address(), grpc::InsecureChannelCredentials()));
  grpc::ClientContext ctx;
  ctx.AddMetadata("authorization", "Bearer " + join);
  ctx.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(60));
  auto stream = stub->Connect(&ctx);
  herd::v1::AgentMessage hello;
  hello.mutable_hello()->set_host_id("flood-host");
  hello.mutable_hello()->set_hostname("flood-host");
  ASSERT_TRUE(stream->Write(hello));
  herd::v1::ControlMessage m;
  ASSERT_TRUE(stream->Read(&m));
  ASSERT_TRUE(m.has_welcome());
  herd::v1::AgentMessage batch;
  auto* b = batch.mutable_metrics();
  b->set_at_unix_ms(absl::ToUnixMillis(absl::Now()));
  for (int i = 0; i < 20000; ++i) {
    auto* u = b->add_units();
    u->set_name(absl::StrCat("u", i));
    auto* p = u->add_probes();
    p->set_name("p");
    p->set_numeric(true);
    p->set_number(i);
  }
  ASSERT_TRUE(stream->Write(batch));
  ASSERT_TRUE(WaitFor([&] {
    json h = cp_.CtlJson({"host", "flood-host"});
    return h.is_object() && h.contains("units") && h["units"].size() == 1000u;
  })) << cp_.CtlJson({"host", "flood-host"}).dump().substr(0, 500);
  EXPECT_TRUE(WaitFor([&] {
    return absl::StrContains(FileText(cp_.Path("controlplane.out")),
                             "event=agent_limited host=flood-host");
  }));
  // The real hosts: their module, its probes, and its history.
  json mods = cp_.CtlJson({"modules", "svc"});
  ASSERT_TRUE(mods.is_object());
  ASSERT_EQ(mods["modules"].size(), static_cast<size_t>(kAgents));
  for (const auto& x : mods["modules"]) EXPECT_FALSE(x["unit"]["probes"].empty()) << x.dump();
  CmdResult series = cp_.Ctl({"series", host_ids_[0], "cpu", "--unit", "svc"});
  EXPECT_EQ(series.exit_code, 0) << series.err;
  ctx.TryCancel();
  (void)stream->Finish();
}

TEST_F(FleetTest, ActionFansOutAndEachHostReplies) {
  ASSERT_EQ(cp_.Ctl({"set", "svc:greeting", "yo", "--host", host_ids_[0]}).exit_code, 0);
  ASSERT_TRUE(WaitFor([&] { return GreetingIs(0, "yo"); }, absl::Seconds(20)));
  json r = cp_.CtlJson({"action", "svc", "greet", "--param", "name=x", "--selector", "env=prod"});
  ASSERT_TRUE(r.is_object()) << cp_.last_error();
  ASSERT_EQ(r["results"].size(), 2u);
  std::map<std::string, std::string> replies;
  for (const auto& x : r["results"]) {
    EXPECT_TRUE(x["ok"].get<bool>()) << x.dump();
    replies[x["host_id"]] = x["reply"];
  }
  EXPECT_EQ(replies[host_ids_[0]], "yo, x");
  EXPECT_EQ(replies[host_ids_[1]], "hello, x");
  // An unknown action is an error per host, not a failure of the call.
  CmdResult bad = cp_.Ctl({"action", "svc", "nope", "--all-hosts"});
  EXPECT_NE(bad.exit_code, 0);
  EXPECT_THAT(bad.out, HasSubstr("error"));
}

TEST_F(FleetTest, ControlPlaneKilledAndRestartedLosesNothing) {
  ASSERT_EQ(cp_.Ctl({"set", "svc:greeting", "kept", "--selector", "role=web"}).exit_code, 0);
  ASSERT_TRUE(WaitFor([&] { return GreetingIs(2, "kept"); }, absl::Seconds(20)));
  auto before = Pids();
  cp_.Kill();
  // Agents keep supervising: the module keeps running, actions still work locally.
  absl::SleepFor(absl::Seconds(1));
  EXPECT_EQ(Pids(), before);
  EXPECT_TRUE(GreetingIs(2, "kept"));
  json info = agents_[0]->CtlJson({"info"});
  EXPECT_FALSE(info.value("controlplane_connected", true));

  ASSERT_TRUE(cp_.Start({"--lease", "2s", "--metrics-interval-ms", "200"})) << cp_.last_error();
  ASSERT_TRUE(WaitFor([&] {
    json hosts = cp_.CtlJson({"hosts"});
    if (!hosts.is_object() || hosts["hosts"].size() != kAgents) return false;
    for (const auto& h : hosts["hosts"]) {
      if (!h["online"].get<bool>()) return false;
    }
    return true;
  }, absl::Seconds(40))) << cp_.Ctl({"hosts"}).out;
  // The configuration survived; reconnecting restarted nothing.
  CmdResult conf = cp_.Ctl({"conf", "--fleet"});
  EXPECT_THAT(conf.out, HasSubstr("kept"));
  absl::SleepFor(absl::Milliseconds(500));
  EXPECT_EQ(Pids(), before);
  EXPECT_TRUE(GreetingIs(0, "kept"));
  EXPECT_TRUE(GreetingIs(1, "hello"));
}

TEST_F(FleetTest, AgentRestartedKeepsItsHostIdAndConfigEvenWithoutTheControlPlane) {
  ASSERT_EQ(cp_.Ctl({"set", "svc:greeting", "mine", "--host", host_ids_[1]}).exit_code, 0);
  ASSERT_TRUE(WaitFor([&] { return GreetingIs(1, "mine"); }, absl::Seconds(20)));
  cp_.Stop();
  agents_[1]->StopAgent();
  ASSERT_TRUE(agents_[1]->StartAgent(cp_.AgentArgs(kLabels[1]))) << agents_[1]->last_error();
  // The cached snapshot applies while the control plane is away.
  ASSERT_TRUE(WaitFor([&] { return GreetingIs(1, "mine"); }, absl::Seconds(20))) << Greet(1);
  EXPECT_EQ(HostId(1), host_ids_[1]);
  ASSERT_TRUE(cp_.Start({"--lease", "2s", "--metrics-interval-ms", "200"})) << cp_.last_error();
  ASSERT_TRUE(WaitFor([&] {
    json h = Host(host_ids_[1]);
    return h.is_object() && h["online"].get<bool>();
  }, absl::Seconds(40)));
  json hosts = cp_.CtlJson({"hosts"});
  EXPECT_EQ(hosts["hosts"].size(), static_cast<size_t>(kAgents)) << "no duplicate host";
  EXPECT_TRUE(GreetingIs(1, "mine"));
}

TEST_F(FleetTest, HostGoesOfflineAfterTheLeaseAndKeepsItsLastState) {
  agents_[2]->StopAgent();
  ASSERT_TRUE(WaitFor([&] {
    json h = Host(host_ids_[2]);
    return h.is_object() && !h["online"].get<bool>();
  }, absl::Seconds(10)));
  json m = cp_.CtlJson({"modules", "svc", "--host", host_ids_[2]});
  ASSERT_EQ(m["modules"].size(), 1u);
  EXPECT_FALSE(m["modules"][0]["online"].get<bool>());
  CmdResult act = cp_.Ctl({"action", "svc", "greet", "--host", host_ids_[2]});
  EXPECT_NE(act.exit_code, 0);
  EXPECT_THAT(act.out, HasSubstr("not connected"));
}

TEST_F(FleetTest, CallsWithoutTheRightCredentialsAreRefused) {
  std::string empty = cp_.Path("empty-token");
  FILE* f = fopen(empty.c_str(), "w");
  fputs("not-a-token\n", f);
  fclose(f);
  CmdResult bad = cp_.Ctl({"hosts"}, empty);
  EXPECT_NE(bad.exit_code, 0);
  EXPECT_THAT(bad.err, HasSubstr("unknown token"));
  CmdResult viewer_read = cp_.Ctl({"hosts"}, cp_.ViewerTokenFile());
  EXPECT_EQ(viewer_read.exit_code, 0) << viewer_read.err;
  CmdResult viewer_write = cp_.Ctl({"set", "svc:greeting", "x", "--global"}, cp_.ViewerTokenFile());
  EXPECT_NE(viewer_write.exit_code, 0);
  EXPECT_THAT(viewer_write.err, HasSubstr("read-only"));

  // An agent with a wrong join token is refused and says so.
  AgentHarness intruder;
  std::string wrong = intruder.Path("join");
  f = fopen(wrong.c_str(), "w");
  fputs("hj_wrong\n", f);
  fclose(f);
  ASSERT_TRUE(intruder.StartAgent({"--controlplane", cp_.address(), "--join-token-file", wrong}))
      << intruder.last_error();
  ASSERT_TRUE(WaitFor([&] {
    json info = intruder.CtlJson({"info"});
    if (!info.is_object()) return false;
    const std::string e = info.value("controlplane_error", "");
    return absl::StrContains(e, "refused the stream") && absl::StrContains(e, "join token");
  })) << intruder.Ctl({"info"}).out;
  EXPECT_EQ(cp_.CtlJson({"hosts"})["hosts"].size(), static_cast<size_t>(kAgents));
}


// Another service on the Fleet API: the Python example (Debian's python3-grpcio).
TEST_F(FleetTest, PythonClientUsesTheFleetApi) {
  const std::string client = SourceDir() + "/examples/python/fleet_client.py";
  CmdResult hosts = herd::testing::Run({"/usr/bin/python3", client, "--controlplane", cp_.address(),
                         "--token-file", cp_.ViewerTokenFile(), "hosts"});
  ASSERT_EQ(hosts.exit_code, 0) << hosts.err;
  json h = json::parse(hosts.out);
  ASSERT_EQ(h["hosts"].size(), static_cast<size_t>(kAgents));
  CmdResult set = herd::testing::Run({"/usr/bin/python3", client, "--controlplane", cp_.address(),
                       "--token-file", cp_.OperatorTokenFile(), "set", "svc:greeting", "py",
                       "--selector", "env=dev"});
  ASSERT_EQ(set.exit_code, 0) << set.err;
  EXPECT_TRUE(GreetingIs(2, "py"));
  CmdResult act = herd::testing::Run({"/usr/bin/python3", client, "--controlplane", cp_.address(),
                       "--token-file", cp_.OperatorTokenFile(), "action", "svc", "greet",
                       "--param", "name=x"});
  ASSERT_EQ(act.exit_code, 0) << act.err;
  EXPECT_THAT(act.out, HasSubstr("py, x"));
  CmdResult denied = herd::testing::Run({"/usr/bin/python3", client, "--controlplane", cp_.address(),
                          "--token-file", cp_.ViewerTokenFile(), "set", "svc:greeting", "no"});
  EXPECT_NE(denied.exit_code, 0);
  EXPECT_THAT(denied.err, HasSubstr("PERMISSION_DENIED"));
}

// A unit's logs on its host, relayed through the host's stream; and live metrics.
TEST_F(FleetTest, LogsAndMetricsComeThroughTheControlPlane) {
  CmdResult start = agents_[0]->Ctl({"start", AgentHarness::ChildBinary(), "--name", "printer",
                                     "--", "--print", "hello-from-host-0"});
  ASSERT_EQ(start.exit_code, 0) << start.err;
  ASSERT_TRUE(WaitFor([&] {
    CmdResult r = cp_.Ctl({"logs", "printer", "--host", host_ids_[0], "--lines", "5"});
    return r.exit_code == 0 && absl::StrContains(r.out, "hello-from-host-0") &&
           absl::StrContains(r.err, "err:hello-from-host-0");
  })) << cp_.Ctl({"logs", "printer", "--host", host_ids_[0]}).err;
  CmdResult missing = cp_.Ctl({"logs", "nope", "--host", host_ids_[0]});
  EXPECT_NE(missing.exit_code, 0);
  EXPECT_THAT(missing.err, HasSubstr("nope"));
  // The unit shows in the host's detail, with its sample, and its start among the events.
  ASSERT_TRUE(WaitFor([&] {
    json d = cp_.CtlJson({"host", host_ids_[0]});
    if (!d.is_object()) return false;
    bool online = false, started = false;
    for (const auto& u : d["units"]) {
      if (u["name"] == "printer" && u["state"] == "online") online = true;
    }
    for (const auto& e : d["events"]) {
      if (e["unit"] == "printer" && e["kind"] == "started") started = true;
    }
    return online && started;
  })) << cp_.Ctl({"host", host_ids_[0]}).out;
}

// Live metrics for a selector; and an agent cut off from the control plane keeps a bounded
// buffer, whose overflow it reports on reconnect.
TEST_F(FleetTest, WatchStreamsBatchesAndAnAgentAwayBuffersBounded) {
  CmdResult w = cp_.Ctl({"-o", "json", "watch", "--selector", "env=dev", "--count", "3"});
  ASSERT_EQ(w.exit_code, 0) << w.err;
  int lines = 0;
  for (absl::string_view line : absl::StrSplit(w.out, '\n', absl::SkipEmpty())) {
    json m = json::parse(line);
    EXPECT_EQ(m["host_id"], host_ids_[2]);
    ++lines;
  }
  EXPECT_EQ(lines, 3);

  AgentHarness small;
  std::vector<std::string> args = cp_.AgentArgs("env=buffer");
  args.push_back("--metrics-buffer");
  args.push_back("2");
  ASSERT_TRUE(small.StartAgent(args)) << small.last_error();
  std::string id;
  ASSERT_TRUE(WaitFor([&] {
    json info = small.CtlJson({"info"});
    id = info.is_object() ? info.value("host_id", "") : "";
    return info.is_object() && info.value("controlplane_connected", false);
  }));
  cp_.Kill();
  // Batches go on being made (one per 200 ms) with room for 2: the rest is dropped, counted.
  ASSERT_TRUE(WaitFor([&] {
    json info = small.CtlJson({"info"});
    return info.is_object() && info.value("metrics_dropped", uint64_t{0}) >= 3;
  }, absl::Seconds(20))) << small.Ctl({"info"}).out;
  ASSERT_TRUE(cp_.Start({"--lease", "2s", "--metrics-interval-ms", "200"})) << cp_.last_error();
  ASSERT_TRUE(WaitFor([&] {
    json h = Host(id);
    return h.is_object() && h["online"].get<bool>() && h.contains("dropped_batches") &&
           h["dropped_batches"].get<uint64_t>() >= 3;
  }, absl::Seconds(40))) << cp_.Ctl({"hosts"}).out;
}

// A stream that opens with the join token and never says Hello is ended after
// --hello-timeout (the control plane sends no keepalive pings to find such peers); the
// agents, which did, keep their streams.
TEST_F(FleetTest, StreamWithoutHelloIsEnded) {
  std::ifstream f(cp_.JoinTokenFile());
  std::string token;
  std::getline(f, token);
  auto channel = grpc::CreateChannel(cp_.address(), grpc::InsecureChannelCredentials());
  auto stub = herd::v1::Gateway::NewStub(channel);
  grpc::ClientContext ctx;
  ctx.AddMetadata("authorization", "Bearer " + token);
  ctx.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(30));
  const absl::Time t0 = absl::Now();
  auto stream = stub->Connect(&ctx);
  herd::v1::ControlMessage m;
  EXPECT_FALSE(stream->Read(&m));  // nothing comes; the server ends the stream
  grpc::Status st = stream->Finish();
  const absl::Duration took = absl::Now() - t0;
  // Ended by the server with the reason as its status (also in its log:
  // event=stream_refused reason=no_hello).
  EXPECT_EQ(st.error_code(), grpc::StatusCode::ABORTED) << st.error_message();
  EXPECT_THAT(st.error_message(), HasSubstr("no Hello within 2s"));
  EXPECT_GE(took, absl::Seconds(2));
  EXPECT_LT(took, absl::Seconds(10));
  json hosts = cp_.CtlJson({"hosts"});
  ASSERT_TRUE(hosts.is_object()) << cp_.last_error();
  for (const auto& h : hosts["hosts"]) EXPECT_TRUE(h.value("online", false)) << h.dump();
}

std::string FileText(const std::string& path) {
  std::ifstream f(path);
  return std::string(std::istreambuf_iterator<char>(f), std::istreambuf_iterator<char>());
}

// A second stream for a host replaces the first, which the control plane ends with the
// reason as its status: the agent whose stream it was logs why, reconnects, and in turn ends
// the intruder's stream the same way.
TEST_F(FleetTest, ReplacedStreamTellsItsAgentWhy) {
  std::string credential;
  {
    std::ifstream f(agents_[0]->Path("host-credential"));
    std::getline(f, credential);
  }
  ASSERT_FALSE(credential.empty());
  auto channel = grpc::CreateChannel(cp_.address(), grpc::InsecureChannelCredentials());
  auto stub = herd::v1::Gateway::NewStub(channel);
  grpc::ClientContext ctx;
  ctx.AddMetadata("authorization", "Bearer " + credential);
  ctx.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(30));
  auto stream = stub->Connect(&ctx);
  herd::v1::AgentMessage hello;
  hello.mutable_hello()->set_host_id(host_ids_[0]);
  hello.mutable_hello()->set_hostname("intruder");
  ASSERT_TRUE(stream->Write(hello));
  herd::v1::ControlMessage m;
  ASSERT_TRUE(stream->Read(&m));
  EXPECT_TRUE(m.has_welcome()) << m.DebugString();
  // The agent's stream was ended with a reason it logged.
  const std::string why = "the control plane ended the stream: the host connected again on "
                          "another stream";
  EXPECT_TRUE(WaitFor([&] {
    return absl::StrContains(FileText(agents_[0]->Path("agentd.out")), why);
  })) << FileText(agents_[0]->Path("agentd.out"));
  // The agent connects again (its backoff starts at 0.5 s), which ends this stream likewise.
  while (stream->Read(&m)) {
  }
  grpc::Status st = stream->Finish();
  EXPECT_EQ(st.error_code(), grpc::StatusCode::ABORTED) << st.error_message();
  EXPECT_THAT(st.error_message(), HasSubstr("the host connected again on another stream"));
  EXPECT_TRUE(WaitFor([&] {
    json h = Host(host_ids_[0]);
    return h.is_object() && h.value("online", false) && h["hostname"] != "intruder";
  }));
}

// A stream the control plane ends while its agent is not reading: the status waits behind
// the unread data, so the stream is cancelled once the grace (5 s) has passed instead of
// staying open for as long as the agent does not read.
TEST_F(FleetTest, EndedStreamOfAnAgentThatDoesNotReadIsCancelledAfterTheGrace) {
  std::string join;
  {
    std::ifstream f(cp_.JoinTokenFile());
    std::getline(f, join);
  }
  auto hello = [] {
    herd::v1::AgentMessage m;
    m.mutable_hello()->set_host_id("stuck-host");
    m.mutable_hello()->set_hostname("stuck-host");
    for (const char* name : {"big", "big2"}) {
      auto* mod = m.mutable_hello()->add_modules();
      mod->set_name(name);
      mod->set_defaults_json(R"({"key": "x", "key2": "y"})");
    }
    return m;
  };
  // As agents do: no bandwidth probing, so the stream's window stays at 64 KiB (with it,
  // gRPC widens the window as data arrives, read or not).
  grpc::ChannelArguments args;
  args.SetInt(GRPC_ARG_HTTP2_BDP_PROBE, 0);
  auto channel =
      grpc::CreateCustomChannel(cp_.address(), grpc::InsecureChannelCredentials(), args);
  auto stub = herd::v1::Gateway::NewStub(channel);
  grpc::ClientContext ctx;
  ctx.AddMetadata("authorization", "Bearer " + join);
  ctx.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(60));
  auto stuck = stub->Connect(&ctx);
  ASSERT_TRUE(stuck->Write(hello()));
  herd::v1::ControlMessage m;
  ASSERT_TRUE(stuck->Read(&m));
  ASSERT_TRUE(m.has_welcome()) << m.DebugString();
  const std::string credential = m.welcome().host_credential();
  ASSERT_FALSE(credential.empty());
  // Snapshots beyond the stream's 64 KiB window (a module's config is at most 48 KiB, so
  // two modules), which this agent never reads.
  for (const char* key : {"big:key", "big:key2", "big2:key", "big2:key2"}) {
    CmdResult set = cp_.Ctl({"set", key, std::string(22 << 10, 'v'), "--host", "stuck-host"});
    ASSERT_EQ(set.exit_code, 0) << set.err;
  }
  absl::SleepFor(absl::Milliseconds(500));
  // The host connects again on another stream: the control plane ends the stuck one.
  grpc::ClientContext ctx2;
  ctx2.AddMetadata("authorization", "Bearer " + credential);
  ctx2.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(60));
  auto again = stub->Connect(&ctx2);
  ASSERT_TRUE(again->Write(hello()));
  ASSERT_TRUE(again->Read(&m));
  ASSERT_TRUE(m.has_welcome()) << m.DebugString();
  absl::SleepFor(absl::Seconds(7));  // the grace, and the watcher's 1 s period
  // Finished with ABORTED and its reason, the stream would still deliver them behind the
  // snapshot; cancelled, it ends as CANCELLED.
  while (stuck->Read(&m)) {
  }
  grpc::Status st = stuck->Finish();
  EXPECT_EQ(st.error_code(), grpc::StatusCode::CANCELLED) << st.error_message();
  ctx2.TryCancel();
  (void)again->Finish();
}

// What the control plane serves to any gRPC tool, which needs no agent.
class FleetApiTest : public ::testing::Test {
 protected:
  void SetUp() override { ASSERT_TRUE(cp_.Start()) << cp_.last_error(); }
  ControlPlaneHarness cp_;
};

// gRPC health checking answers SERVING without a token (for load balancers and probes).
TEST_F(FleetApiTest, HealthCheckIsServing) {
  auto channel = grpc::CreateChannel(cp_.address(), grpc::InsecureChannelCredentials());
  grpc::GenericStub stub(channel);
  grpc::ClientContext ctx;
  ctx.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(10));
  grpc::Slice empty("");
  grpc::ByteBuffer request(&empty, 1), response;
  absl::Notification done;
  grpc::Status status;
  stub.UnaryCall(&ctx, "/grpc.health.v1.Health/Check", grpc::StubOptions(), &request, &response,
                 [&](grpc::Status s) {
                   status = s;
                   done.Notify();
                 });
  done.WaitForNotification();
  ASSERT_TRUE(status.ok()) << status.error_message();
  std::vector<grpc::Slice> slices;
  ASSERT_TRUE(response.Dump(&slices).ok());
  std::string bytes;
  for (const auto& s : slices) bytes.append(reinterpret_cast<const char*>(s.begin()), s.size());
  EXPECT_EQ(bytes, std::string("\x08\x01", 2));  // HealthCheckResponse{status: SERVING}
}

// Server reflection lists Herd's services (what grpcurl-style tools discover).
TEST_F(FleetApiTest, ReflectionListsTheServices) {
  auto channel = grpc::CreateChannel(cp_.address(), grpc::InsecureChannelCredentials());
  grpc::GenericStub stub(channel);
  grpc::ClientContext ctx;
  ctx.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(10));
  grpc::CompletionQueue cq;
  auto call = stub.PrepareCall(&ctx, "/grpc.reflection.v1alpha.ServerReflection/ServerReflectionInfo", &cq);
  void* tag = nullptr;
  bool ok = false;
  auto step = [&](intptr_t want) {
    EXPECT_TRUE(cq.Next(&tag, &ok));
    EXPECT_EQ(reinterpret_cast<intptr_t>(tag), want);
    return ok;
  };
  call->StartCall(reinterpret_cast<void*>(1));
  ASSERT_TRUE(step(1));
  // ServerReflectionRequest{list_services: ""}: field 7, length-delimited, empty.
  grpc::Slice req(std::string("\x3a\x00", 2));
  grpc::ByteBuffer out(&req, 1), in;
  call->Write(out, reinterpret_cast<void*>(2));
  ASSERT_TRUE(step(2));
  call->Read(&in, reinterpret_cast<void*>(3));
  ASSERT_TRUE(step(3));
  call->WritesDone(reinterpret_cast<void*>(4));
  step(4);
  grpc::Status status;
  call->Finish(&status, reinterpret_cast<void*>(5));
  step(5);
  std::vector<grpc::Slice> slices;
  ASSERT_TRUE(in.Dump(&slices).ok());
  std::string bytes;
  for (const auto& s : slices) bytes.append(reinterpret_cast<const char*>(s.begin()), s.size());
  EXPECT_THAT(bytes, HasSubstr("herd.v1.Fleet"));
  EXPECT_THAT(bytes, HasSubstr("herd.v1.Gateway"));
  cq.Shutdown();
  while (cq.Next(&tag, &ok)) {
  }
}

// A token revoked while a stream opened with it is open (`controlplane token revoke`, another
// process writing the store) ends that stream, UNAUTHENTICATED, within --token-recheck; a
// stream opened with another token stays open.
TEST(FleetTokens, RevokedTokenEndsItsOpenStreams) {
  ControlPlaneHarness cp;
  ASSERT_TRUE(cp.Start({"--token-recheck", "200ms"})) << cp.last_error();
  const std::string controlplane = AgentHarness::BinDir() + "/controlplane";
  CmdResult created = herd::testing::Run({controlplane, "--data", cp.data_dir(), "token", "create", "watcher"});
  ASSERT_EQ(created.exit_code, 0) << created.err;
  const std::string secret(absl::StripAsciiWhitespace(created.out));
  ASSERT_FALSE(secret.empty());

  auto channel = grpc::CreateChannel(cp.address(), grpc::InsecureChannelCredentials());
  auto stub = herd::v1::Fleet::NewStub(channel);
  herd::v1::WatchMetricsRequest req;  // the whole fleet: no host, so nothing is written
  grpc::ClientContext revoked_ctx, kept_ctx;
  revoked_ctx.AddMetadata("authorization", "Bearer " + secret);
  kept_ctx.AddMetadata("authorization", "Bearer " + ReadTrimmed(cp.ViewerTokenFile()));
  for (auto* c : {&revoked_ctx, &kept_ctx}) {
    c->set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(30));
  }
  auto revoked = stub->WatchMetrics(&revoked_ctx, req);
  auto kept = stub->WatchMetrics(&kept_ctx, req);
  // Both streams are open (the control plane sends their headers once it has accepted
  // them), and a few rounds of checks pass without ending either.
  revoked->WaitForInitialMetadata();
  kept->WaitForInitialMetadata();
  absl::SleepFor(absl::Milliseconds(600));

  CmdResult revoke = herd::testing::Run({controlplane, "--data", cp.data_dir(), "token", "revoke", "watcher"});
  ASSERT_EQ(revoke.exit_code, 0) << revoke.err;
  const absl::Time t0 = absl::Now();
  herd::v1::HostMetrics m;
  EXPECT_FALSE(revoked->Read(&m));
  grpc::Status st = revoked->Finish();
  EXPECT_EQ(st.error_code(), grpc::StatusCode::UNAUTHENTICATED) << st.error_message();
  // "revoked", not "unknown token": the stream was open, and ended.
  EXPECT_THAT(st.error_message(), HasSubstr("revoked"));
  EXPECT_LT(absl::Now() - t0, absl::Seconds(10));

  // The other token's stream is still open after more rounds: only a cancel ends it.
  absl::SleepFor(absl::Milliseconds(600));
  kept_ctx.TryCancel();
  EXPECT_FALSE(kept->Read(&m));
  grpc::Status kept_st = kept->Finish();
  EXPECT_EQ(kept_st.error_code(), grpc::StatusCode::CANCELLED) << kept_st.error_message();
}

// Mutual TLS: the control plane with a server certificate and a client CA; agents and
// agentctl with the CA and client certificates; a client without a certificate is refused.
class FleetTlsTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = cp_.Path("pki");
    const std::string pki = MakeTestPki(dir_);
    ASSERT_TRUE(pki.empty()) << pki;
    ASSERT_TRUE(cp_.Start({"--tls-cert", dir_ + "/server.pem", "--tls-key", dir_ + "/server.key",
                           "--client-ca", dir_ + "/ca.pem"}))
        << cp_.last_error();
  }
  std::vector<std::string> ClientTls() const {
    return {"--tls-ca", dir_ + "/ca.pem", "--tls-cert", dir_ + "/client.pem", "--tls-key",
            dir_ + "/client.key"};
  }
  ControlPlaneHarness cp_;
  std::string dir_;
};

TEST_F(FleetTlsTest, AgentsAndClientsConnectWithCertificatesOnly) {
  AgentHarness agent;
  std::vector<std::string> args = cp_.AgentArgs("env=tls");
  for (const auto& a : ClientTls()) args.push_back(a);
  ASSERT_TRUE(agent.StartAgent(args)) << agent.last_error();
  std::vector<std::string> hosts_cmd = ClientTls();
  hosts_cmd.push_back("hosts");
  ASSERT_TRUE(WaitFor([&] {
    CmdResult r = cp_.Ctl(hosts_cmd);
    return r.exit_code == 0 && absl::StrContains(r.out, "env=tls") && absl::StrContains(r.out, "online");
  })) << cp_.Ctl(hosts_cmd).err;
  // Without a client certificate, or without TLS at all, nothing gets through.
  CmdResult no_cert = cp_.Ctl({"--tls-ca", dir_ + "/ca.pem", "hosts"});
  EXPECT_NE(no_cert.exit_code, 0);
  CmdResult plain = cp_.Ctl({"hosts"});
  EXPECT_NE(plain.exit_code, 0);
}

// A configuration the control plane accepts may still not fit the module's environment on a
// host (the effective config carries the module's own defaults too): the host rejects that
// version with the reason, keeps its module running on the last good values, and the control
// plane shows the rejection.
TEST(FleetConfigSize, AConfigThatWouldNotFitTheModulesEnvironmentIsRejectedByTheHost) {
  ControlPlaneHarness cp;
  ASSERT_TRUE(cp.Start({"--metrics-interval-ms", "200", "--max-config-value-bytes", "122880",
                        "--max-module-config-bytes", "122880"}))
      << cp.last_error();
  AgentHarness agent;
  ASSERT_TRUE(agent.StartAgent(cp.AgentArgs("env=test"))) << agent.last_error();
  const std::string dir = agent.Path("src/big");
  CmdResult gen = agent.Ctl({"generate", "big", "--lang", "python", "--dir", dir});
  ASSERT_EQ(gen.exit_code, 0) << gen.err;
  // A 20 KiB default: the module's effective configuration carries it beside the overrides.
  json manifest;
  {
    std::ifstream in(dir + "/package.json");
    manifest = json::parse(in, nullptr, false);
  }
  ASSERT_TRUE(manifest.is_object()) << "generated package.json does not parse";
  manifest["config"]["banner"] = std::string(20 * 1024, 'd');
  std::ofstream(dir + "/package.json", std::ios::trunc) << manifest.dump(2);
  CmdResult inst = agent.Ctl({"install", dir});
  ASSERT_EQ(inst.exit_code, 0) << inst.err;
  json info = agent.CtlJson({"info"});
  const std::string host = info.is_object() ? info.value("host_id", "") : "";
  ASSERT_FALSE(host.empty());
  ASSERT_TRUE(WaitFor([&] {
    json m = cp.CtlJson({"modules", "big"});
    return m.is_object() && m.contains("modules") && m["modules"].size() == 1;
  }, absl::Seconds(30)));
  ASSERT_TRUE(WaitFor([&] { return agent.State("big") == "online"; }));
  const int pid = agent.Unit("big").value("pid", 0);

  // 115 KiB of overrides: within the control plane's limit, over the kernel's with the
  // default beside them.
  ASSERT_EQ(cp.Ctl({"set", "big:blob", std::string(115 * 1024, 'v'), "--host", host, "--force"})
                .exit_code,
            0);
  auto rejections = [&] {
    json h = cp.Host(host);
    return h.is_object() && h.contains("config_rejections") ? h["config_rejections"] : json();
  };
  ASSERT_TRUE(WaitFor([&] { return !rejections().empty(); }, absl::Seconds(20)))
      << cp.Ctl({"hosts"}).out;
  EXPECT_THAT(rejections()[0]["reason"].get<std::string>(), HasSubstr("over the kernel's limit"));
  EXPECT_EQ(agent.State("big"), "online");
  EXPECT_EQ(agent.Unit("big").value("pid", 0), pid) << "a rejected snapshot restarts nothing";
}

// A real agentd told to group its batches (the threshold at 1 host): it sends several
// batches per message, and the control plane still keeps a point per interval.
TEST(FleetCadence, AnAgentToldToGroupItsBatchesSendsFewerMessagesAndEverySample) {
  ControlPlaneHarness cp;
  ASSERT_TRUE(cp.Start({"--metrics-interval-ms", "200", "--metrics-group-above", "1",
                        "--metrics-batches-per-message", "5", "--http", "127.0.0.1:0"}))
      << cp.last_error();
  AgentHarness agent;
  ASSERT_TRUE(agent.StartAgent(cp.AgentArgs("env=test"))) << agent.last_error();
  json info;
  ASSERT_TRUE(WaitFor([&] {
    info = agent.CtlJson({"info"});
    return info.is_object() && info.value("controlplane_connected", false);
  }, absl::Seconds(20))) << agent.last_error();
  const std::string host = info.value("host_id", "");
  const std::string viewer = ReadTrimmed(cp.ViewerTokenFile());
  auto counter = [&](const std::string& name) -> double {
    HttpReply r = HttpCall(cp.http_address(), "GET", "/metrics?scope=controlplane", "", viewer);
    for (absl::string_view line : absl::StrSplit(r.body, '\n')) {
      if (absl::ConsumePrefix(&line, name + " ")) return std::stod(std::string(line));
    }
    return -1;
  };
  // The fleet's cadence is checked every 5 s: by 7 s the agent was told.
  absl::SleepFor(absl::Seconds(7));
  const double batches0 = counter("herd_controlplane_metric_batches_total");
  const double messages0 = counter("herd_controlplane_agent_messages_total");
  absl::SleepFor(absl::Seconds(4));
  const double batches = counter("herd_controlplane_metric_batches_total") - batches0;
  const double messages = counter("herd_controlplane_agent_messages_total") - messages0;
  ASSERT_GE(batches0, 0);
  EXPECT_GE(batches, 10) << "4 s of batches every 200 ms";
  EXPECT_GE(batches, 3 * messages) << batches << " batches in " << messages << " messages";
  // Every sample is kept: the history's last points are an interval apart, not a group's.
  json s = cp.CtlJson({"series", host, "cpu"});
  ASSERT_TRUE(s.is_object() && s.contains("points")) << cp.last_error();
  const auto& points = s["points"];
  ASSERT_GE(points.size(), 10u);
  for (size_t i = points.size() - 8; i < points.size(); ++i) {
    const int64_t gap = points[i]["at_unix_ms"].get<int64_t>() -
                        points[i - 1]["at_unix_ms"].get<int64_t>();
    EXPECT_LT(gap, 600) << "point " << i;
  }
}

}  // namespace
}  // namespace herd::testing
