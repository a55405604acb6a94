// An agent cut off from its control plane for two minutes by a real partition: the agent
// runs in a network namespace of its own, joined to the control plane's by a veth pair, and
// an nft table in its namespace drops every packet in both directions (no RST, no ICMP: both
// ends keep their sockets and hear nothing), then is deleted.
//
// While cut off, the agent keeps supervising (a killed module is started again), its metrics
// buffer stays at its bound (--metrics-buffer) and counts what it drops; config set on the
// control plane meanwhile (three versions) is neither lost nor applied twice: after the heal
// the agent applies the latest version once and acks it. See tests/faults/README.md.
#include <signal.h>

#include <string>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/faults/fault_env.h"
#include "tests/integration/agent_harness.h"

namespace herd::testing {
namespace {

using json = nlohmann::json;

constexpr absl::Duration kPartition = absl::Seconds(120);
constexpr int kBuffer = 20;            // --metrics-buffer
constexpr int kIntervalMs = 500;       // --metrics-interval-ms

TEST(FaultPartition, AgentCutOffForMinutesKeepsSupervisingBoundsItsBufferGetsLatestConfigOnce) {
  Stopwatch took("FaultPartition");
  {
    absl::Status s = EnterPrivateNamespaces(/*network=*/true);
    ASSERT_TRUE(s.ok()) << s.message();
  }
  AgentNetwork net;
  {
    absl::Status s = net.Create();
    ASSERT_TRUE(s.ok()) << s.message();
  }
  ControlPlaneHarness cp;
  cp.set_listen_host(net.host_address());
  ASSERT_TRUE(cp.Start({"--lease", "2s", "--metrics-interval-ms", std::to_string(kIntervalMs),
                        "--silent-timeout", "10s", "--http", "127.0.0.1:0"}))
      << cp.last_error();
  const std::string viewer = ReadTrimmed(cp.ViewerTokenFile());
  auto prom = [&](const std::string& name) {
    HttpReply r = HttpCall(cp.http_address(), "GET", "/metrics", "", viewer);
    return r.status == 200 ? PromValue(r.body, name) : -1;
  };

  AgentHarness agent;
  agent.set_command_prefix(net.Prefix());
  std::vector<std::string> args = cp.AgentArgs("fault=partition");
  args.push_back("--metrics-buffer");
  args.push_back(std::to_string(kBuffer));
  ASSERT_TRUE(agent.StartAgent(args)) << agent.last_error();
  {
    absl::Status s = InstallSvc(agent);
    ASSERT_TRUE(s.ok()) << s.message();
  }
  const std::string id = agent.CtlJson({"info"}).value("host_id", "");
  ASSERT_FALSE(id.empty()) << agent.last_error();
  auto host = [&] { return cp.Host(id); };
  auto greeting_is = [&](const std::string& g) {
    CmdResult r = agent.Ctl({"action", "svc", "greet", "--param", "name=x"});
    return r.exit_code == 0 && absl::StrContains(r.out, g + ", x");
  };
  // A first config, applied and acked: the baseline.
  ASSERT_EQ(cp.Ctl({"set", "svc:greeting", "before", "--global"}).exit_code, 0);
  ASSERT_TRUE(WaitFor([&] {
    json h = host();
    return greeting_is("before") && h.is_object() && h.value("online", false) &&
           JsonStr(h, "acked_config_version") == JsonStr(h, "desired_config_version");
  }, absl::Seconds(60))) << cp.Ctl({"hosts"}).out << agent.Ctl({"conf", "svc"}).out;
  const std::string log = agent.output_path();
  const size_t connects_before = CountInFile(log, "event=connected ");
  const std::string acked_before = JsonStr(host(), "acked_config_version");

  // ---- The partition.
  ASSERT_TRUE(net.Cut().ok());
  const absl::Time cut_at = absl::Now();
  // Set at once: the control plane still has the stream and sends the snapshot into it.
  ASSERT_EQ(cp.Ctl({"set", "svc:greeting", "during-1", "--global"}).exit_code, 0);
  const size_t applied_before = CountInFile(log, "event=config_applied");

  // Each side finds out on its own: the control plane from the silence (--silent-timeout),
  // the agent from its keepalive (20 s + 10 s).
  EXPECT_TRUE(WaitFor([&] {
    json h = host();
    return h.is_object() && !h.value("online", false);
  }, absl::Seconds(45))) << "the control plane still shows the cut-off host online: "
                         << cp.Ctl({"hosts"}).out;
  fprintf(stderr, "[fault] the control plane saw the host offline after %.1f s\n",
          absl::ToDoubleSeconds(absl::Now() - cut_at));
  ASSERT_EQ(cp.Ctl({"set", "svc:greeting", "during-2", "--global"}).exit_code, 0);
  EXPECT_TRUE(WaitFor([&] {
    json info = agent.CtlJson({"info"});
    return info.is_object() && !info.value("controlplane_connected", false);
  }, absl::Seconds(60))) << "the agent still thinks it is connected: " << agent.Ctl({"info"}).out;
  fprintf(stderr, "[fault] the agent saw the stream broken after %.1f s\n",
          absl::ToDoubleSeconds(absl::Now() - cut_at));

  // The agent keeps supervising: its module, killed, is started again.
  json unit = agent.Unit("svc");
  const int old_pid = unit.is_null() ? 0 : unit.value("pid", 0);
  ASSERT_GT(old_pid, 0) << agent.Ctl({"list"}).out;
  kill(old_pid, SIGKILL);
  EXPECT_TRUE(WaitFor([&] {
    json u = agent.Unit("svc");
    return u.is_object() && u.value("pid", 0) > 0 && u.value("pid", 0) != old_pid &&
           agent.State("svc") == "online";
  }, absl::Seconds(30))) << agent.Ctl({"list"}).out;
  EXPECT_TRUE(WaitFor([&] { return greeting_is("before"); }, absl::Seconds(20)))
      << "the module's action, asked locally, must still answer with the config in force";

  // The latest value, set while the agent cannot hear it.
  ASSERT_EQ(cp.Ctl({"set", "svc:greeting", "during-3", "--global"}).exit_code, 0);

  // Until the heal: the agent stays up, its module stays up, drops are counted.
  int64_t dropped = 0;
  while (absl::Now() - cut_at < kPartition) {
    ASSERT_TRUE(ProcessAlive(agent.agent_pid())) << ReadFile(log);
    json info = agent.CtlJson({"info"});
    ASSERT_TRUE(info.is_object()) << agent.last_error();
    EXPECT_FALSE(info.value("controlplane_connected", false));
    dropped = JsonInt(info, "metrics_dropped");
    absl::SleepFor(absl::Seconds(5));
  }
  EXPECT_EQ(agent.State("svc"), "online");
  // ~240 batches were made while cut off; the first ones went into the dying stream, 20
  // are held: the rest were dropped, and counted.
  const int64_t made = absl::ToInt64Milliseconds(kPartition) / kIntervalMs;
  EXPECT_GE(dropped, made / 2) << "batches made while cut off: ~" << made;
  EXPECT_EQ(CountInFile(log, "event=config_applied"), applied_before)
      << "nothing can have been applied during the partition";
  const double batches_before_heal = prom("herd_controlplane_metric_batches_total");
  ASSERT_GE(batches_before_heal, 0) << "no /metrics";

  // ---- The heal.
  ASSERT_TRUE(net.Heal().ok());
  const absl::Time healed_at = absl::Now();
  // The agent's next attempt (its backoff is at most 30 s, an attempt into the void up to
  // 20 s more) gets through.
  ASSERT_TRUE(WaitFor([&] {
    json h = host();
    return h.is_object() && h.value("online", false) &&
           agent.CtlJson({"info"}).value("controlplane_connected", false);
  }, absl::Seconds(90))) << cp.Ctl({"hosts"}).out << agent.Ctl({"info"}).out;
  fprintf(stderr, "[fault] reconnected %.1f s after the heal\n",
          absl::ToDoubleSeconds(absl::Now() - healed_at));
  EXPECT_GT(CountInFile(log, "event=connected "), connects_before);

  // The buffer held at most its bound: the control plane received the 20 buffered batches
  // and what was made since the reconnection, not the whole partition's.
  {
    json h = host();
    const int64_t since_ms = absl::ToUnixMillis(absl::Now()) -
                             static_cast<int64_t>(JsonInt(h, "connected_at_unix_ms"));
    const double received = prom("herd_controlplane_metric_batches_total") - batches_before_heal;
    const double allowed = kBuffer + static_cast<double>(since_ms) / kIntervalMs + 4;
    fprintf(stderr, "[fault] dropped while cut off: %lld; received after the heal: %.0f "
            "(bound %.0f)\n", static_cast<long long>(dropped), received, allowed);
    EXPECT_LE(received, allowed) << "received " << received << " batches since the heal";
    EXPECT_GE(received, kBuffer) << "the buffered batches were not replayed";
  }
  // The drops reached the control plane (sent with the first batch after the reconnection).
  EXPECT_TRUE(WaitFor([&] {
    json h = host();
    return h.is_object() && JsonInt(h, "dropped_batches") > 0 &&
           JsonInt(h, "dropped_batches") == JsonInt(agent.CtlJson({"info"}), "metrics_dropped");
  }, absl::Seconds(10))) << cp.Ctl({"hosts"}).out << agent.Ctl({"info"}).out;

  // The latest config, applied once and acked; the snapshots in between never applied.
  // (A host's versions are numbered as they are sent to it: the one that went into the dead
  // stream is superseded, the latest gets the next number when the host is back.)
  std::string latest;
  ASSERT_TRUE(WaitFor([&] {
    json h = host();
    latest = JsonStr(h, "acked_config_version");
    return greeting_is("during-3") && h.is_object() &&
           latest == JsonStr(h, "desired_config_version") && latest != acked_before;
  }, absl::Seconds(30))) << cp.Ctl({"hosts"}).out << agent.Ctl({"conf", "svc"}).out;
  EXPECT_EQ(JsonStr(agent.CtlJson({"info"}), "config_version"), latest);
  absl::SleepFor(absl::Seconds(3));  // a duplicate snapshot would be applied by now
  EXPECT_EQ(CountInFile(log, "event=config_applied"), applied_before + 1) << ReadFile(log);
  EXPECT_EQ(CountInFile(log, absl::StrCat("event=config_applied version=", latest, " ")), 1u);
  json h = host();
  EXPECT_EQ(JsonStr(h, "desired_config_version"), latest) << "no version after the latest";
  EXPECT_TRUE(!h.contains("config_rejections") || h["config_rejections"].empty()) << h.dump();
  EXPECT_EQ(agent.State("svc"), "online");
}

}  // namespace
}  // namespace herd::testing
