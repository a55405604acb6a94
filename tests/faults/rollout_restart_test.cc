// The control plane killed (SIGKILL) in the middle of a rollout, while the first batch's
// host is restarting behind a slow health gate, then started again on the same data.
//
// What controlplane/fleet/rollouts.cc defines: a rollout found RUNNING at start is ABORTED
// ("the control plane restarted while it ran") and not resumed; hosts never told to restart
// are SKIPPED. Asserted: that record; every agent reconnects; no host is left with its module
// stopped (the one mid-restart finishes its restart on its own); the hosts of later batches
// were not touched; and a new rollout over every host succeeds. See tests/faults/README.md.
#include <map>
#include <memory>
#include <string>

#include "absl/strings/match.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/faults/fault_env.h"
#include "tests/integration/agent_harness.h"

namespace herd::testing {
namespace {

using ::testing::HasSubstr;
using json = nlohmann::json;

constexpr int kAgents = 3;

TEST(FaultRollout, ControlPlaneKilledMidRolloutAbortsItLeavesNoHostStoppedAndANewRolloutWorks) {
  Stopwatch took("FaultRollout");
  const std::vector<std::string> cp_args = {"--lease", "2s", "--metrics-interval-ms", "200"};
  ControlPlaneHarness cp;
  ASSERT_TRUE(cp.Start(cp_args)) << cp.last_error();
  std::unique_ptr<AgentHarness> agents[kAgents];
  std::string ids[kAgents];
  for (int i = 0; i < kAgents; ++i) {
    agents[i] = std::make_unique<AgentHarness>();
    ASSERT_TRUE(agents[i]->StartAgent(cp.AgentArgs("fault=rollout"))) << agents[i]->last_error();
    absl::Status s = InstallSvc(*agents[i]);
    ASSERT_TRUE(s.ok()) << s.message();
    ids[i] = agents[i]->CtlJson({"info"}).value("host_id", "");
    ASSERT_FALSE(ids[i].empty());
  }
  auto all_online = [&] {
    json m = cp.CtlJson({"modules", "svc"});
    if (!m.is_object() || !m.contains("modules") || m["modules"].size() != kAgents) return false;
    for (const auto& x : m["modules"]) {
      if (!x.value("online", false)) return false;
    }
    json hosts = cp.CtlJson({"hosts"});
    if (!hosts.is_object() || hosts["hosts"].size() != kAgents) return false;
    for (const auto& h : hosts["hosts"]) {
      if (!h.value("online", false)) return false;
    }
    return true;
  };
  ASSERT_TRUE(WaitFor(all_online, absl::Seconds(60))) << cp.Ctl({"modules"}).out;
  auto pid = [&](int i) {
    json u = agents[i]->Unit("svc");
    return u.is_null() ? 0 : u.value("pid", 0);
  };
  std::map<std::string, int> before;  // host id → svc pid
  for (int i = 0; i < kAgents; ++i) before[ids[i]] = pid(i);

  // One host per batch, and a health gate far longer than the test waits: the first batch
  // is still in progress when the control plane dies.
  CmdResult r = cp.Ctl({"restart", "svc", "--all-hosts", "--batch", "1", "--wait-healthy", "60s",
                        "--no-wait"});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  std::string first_host;
  ASSERT_TRUE(WaitFor([&] {
    json list = cp.CtlJson({"rollouts"});
    if (!list.is_object() || list["rollouts"].empty()) return false;
    const json& h0 = list["rollouts"][0]["hosts"][0];
    first_host = h0.value("host_id", "");
    return h0.value("state", "") == "restarting";
  }, absl::Seconds(20))) << cp.Ctl({"rollouts"}).out;
  int first = -1;
  for (int i = 0; i < kAgents; ++i) {
    if (ids[i] == first_host) first = i;
  }
  ASSERT_GE(first, 0) << first_host;
  // The host has restarted its module and is waiting out the health gate.
  ASSERT_TRUE(WaitFor([&] {
    int p = pid(first);
    return p > 0 && p != before[first_host];
  }, absl::Seconds(20))) << agents[first]->Ctl({"list"}).out;

  cp.Kill();
  // Cut off, every host keeps its module running.
  absl::SleepFor(absl::Seconds(1));
  for (int i = 0; i < kAgents; ++i) {
    EXPECT_EQ(agents[i]->State("svc"), "online") << "host " << i << " while the control plane "
                                                 << "is down: " << agents[i]->Ctl({"list"}).out;
  }
  ASSERT_TRUE(cp.Start(cp_args)) << cp.last_error();

  // The rollout is recorded as aborted, with the reason; its later hosts never restarted.
  json list = cp.CtlJson({"rollouts"});
  ASSERT_TRUE(list.is_object() && !list["rollouts"].empty()) << cp.last_error();
  const json ro = list["rollouts"][0];
  EXPECT_EQ(ro.value("state", ""), "aborted") << ro.dump();
  EXPECT_THAT(ro.value("reason", ""), HasSubstr("restarted"));
  for (const auto& h : ro["hosts"]) {
    const std::string state = h.value("state", "");
    EXPECT_NE(state, "pending") << h.dump();
    EXPECT_NE(state, "restarting") << h.dump();
    if (h.value("host_id", "") != first_host) {
      EXPECT_EQ(state, "skipped") << h.dump();
    }
  }
  // Every agent reconnects; no module is left stopped anywhere.
  ASSERT_TRUE(WaitFor(all_online, absl::Seconds(60)))
      << cp.Ctl({"hosts"}).out << cp.Ctl({"modules"}).out;
  for (int i = 0; i < kAgents; ++i) {
    EXPECT_EQ(agents[i]->State("svc"), "online") << agents[i]->Ctl({"list"}).out;
    if (i != first) {
      EXPECT_EQ(pid(i), before[ids[i]]) << "host " << i << " was not in batch 0";
    }
  }

  // A new rollout over every host goes through.
  std::map<int, int> mid;
  for (int i = 0; i < kAgents; ++i) mid[i] = pid(i);
  CmdResult again = cp.Ctl({"restart", "svc", "--all-hosts", "--batch", "2", "--wait-healthy",
                            "1s"});
  ASSERT_EQ(again.exit_code, 0) << again.out << again.err;
  EXPECT_THAT(again.out, HasSubstr("succeeded"));
  json after = cp.CtlJson({"rollouts"});
  ASSERT_TRUE(after.is_object()) << cp.last_error();
  EXPECT_EQ(after["rollouts"][0].value("state", ""), "succeeded")
      << after["rollouts"][0].dump();
  for (int i = 0; i < kAgents; ++i) {
    EXPECT_NE(pid(i), mid[i]) << "host " << i << " was not restarted by the new rollout";
    EXPECT_EQ(agents[i]->State("svc"), "online");
  }
}

}  // namespace
}  // namespace herd::testing
