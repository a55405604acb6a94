// The Uplink over several control plane replicas (--controlplane A,B,C): the order it dials
// them in, failover when a replica ends the stream, the jitter that spreads a dead replica's
// agents, and the backoff once a whole round failed. FakeUplinkTransport plays the replicas,
// FakeScheduler the time: no socket, no sleep.
#include <stdlib.h>

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <memory>
#include <set>
#include <string>
#include <vector>

#include "agent/uplink/uplink.h"
#include "common/controlplane_addresses.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/fakes/fake_scheduler.h"
#include "tests/fakes/fake_uplink_transport.h"

namespace herd::agent {
namespace {

using herd::testing::FakeScheduler;
using herd::testing::FakeUplinkTransport;
using ::testing::ElementsAre;
using ::testing::HasSubstr;
using Phase = Uplink::Phase;

const std::vector<std::string> kReplicas = {"a.test:8443", "b.test:8443", "c.test:8443"};

// Nothing to answer: these tests look at dials and delays only.
class SilentHandler final : public UplinkHandler {
 public:
  std::vector<herd::v1::ModuleInventory> Inventory() override { return {}; }
  uint64_t AckedConfigVersion() override { return 0; }
  void OnConfig(const herd::v1::ConfigSnapshot&, std::function<void(herd::v1::ConfigAck)>) override {}
  void OnAction(const herd::v1::ActionRequest&,
                std::function<void(herd::v1::ActionResult)>) override {}
  void OnRestart(const herd::v1::RestartRequest&,
                 std::function<void(herd::v1::RestartResult)>) override {}
  void OnLogs(const herd::v1::HostLogsRequest&, std::function<void(herd::v1::LogChunk)>) override {}
  void OnCancel(const std::string&) override {}
  void OnWelcome(const herd::v1::Welcome&) override {}
};

void WriteFile(const std::string& path, const std::string& text) {
  std::ofstream f(path, std::ios::trunc);
  f << text;
}

// A host id whose first dial goes to kReplicas[index].
std::string HostIdStartingAt(size_t index) {
  for (int i = 0;; ++i) {
    std::string id = "h_test" + std::to_string(i);
    if (ReplicaDialOrder(id, kReplicas).front() == index) return id;
  }
}
// A host id that dials kReplicas in list order: a, b, c.
std::string HostIdInListOrder() {
  for (int i = 0;; ++i) {
    std::string id = "h_test" + std::to_string(i);
    if (ReplicaDialOrder(id, kReplicas) == std::vector<size_t>{0, 1, 2}) return id;
  }
}

class UplinkFailoverTest : public ::testing::Test {
 protected:
  void SetUp() override {
    char tmpl[] = "/tmp/herd-uplink-failover-XXXXXX";
    ASSERT_NE(mkdtemp(tmpl), nullptr);
    home_ = tmpl;
    WriteFile(home_ + "/join-token", "hj_join\n");
    WriteFile(home_ + "/host_id", HostIdInListOrder() + "\n");  // a.test, b.test, c.test
    options_.addresses = kReplicas;
    options_.home = home_;
    options_.join_token_file = home_ + "/join-token";
    options_.backoff_initial = absl::Milliseconds(500);
    options_.backoff_max = absl::Seconds(30);
    options_.failover_spread = absl::Seconds(2);
    options_.jitter_seed = 42;
  }
  void TearDown() override {
    uplink_.reset();
    std::filesystem::remove_all(home_);
  }

  void Start() {
    uplink_ = std::make_unique<Uplink>(options_, handler_, sched_, transport_);
    ASSERT_TRUE(uplink_->Start().ok());
    sched_.RunDue();
    ASSERT_EQ(uplink_->phase(), Phase::kHelloSent);
  }
  void Welcome() {
    transport_.Welcome("hc_1");
    sched_.RunDue();
    ASSERT_EQ(uplink_->phase(), Phase::kStreaming);
  }
  void End(absl::Status status) {
    transport_.End(std::move(status));
    sched_.RunDue();
    ASSERT_EQ(uplink_->phase(), Phase::kBackoff);
  }
  // Waits out the planned delay; the dial it makes fails at once.
  absl::Duration FailNextDial() {
    const absl::Duration wait = sched_.NextIn();
    transport_.FailNextDial(absl::UnavailableError("connection refused"));
    sched_.Advance(wait);
    return wait;
  }
  std::vector<std::string> DialedAddresses() {
    std::vector<std::string> out;
    for (size_t i = 0; i < transport_.dial_count(); ++i) out.push_back(transport_.dial(i).address);
    return out;
  }

  std::string home_;
  UplinkOptions options_;
  FakeClock clock_;
  FakeScheduler sched_{clock_};
  FakeUplinkTransport transport_{sched_};
  SilentHandler handler_;
  std::unique_ptr<Uplink> uplink_;
};

TEST_F(UplinkFailoverTest, DialsTheReplicasInTheHostsOwnOrderRoundAfterRound) {
  const std::string id = HostIdStartingAt(1);
  WriteFile(home_ + "/host_id", id + "\n");
  const std::vector<size_t> order = ReplicaDialOrder(id, kReplicas);
  ASSERT_EQ(order.size(), 3u);
  ASSERT_EQ(order[0], 1u);
  Start();
  End(absl::UnavailableError("connection refused"));
  for (int i = 0; i < 4; ++i) FailNextDial();
  std::vector<std::string> expected;
  for (int i = 0; i < 5; ++i) expected.push_back(kReplicas[order[i % 3]]);
  EXPECT_EQ(DialedAddresses(), expected);
  // Every replica once per round.
  EXPECT_EQ(std::set<size_t>(order.begin(), order.end()), (std::set<size_t>{0, 1, 2}));
}

TEST_F(UplinkFailoverTest, HostsSpreadOverTheReplicasByTheirIds) {
  std::vector<int> per_replica(kReplicas.size());
  for (int i = 0; i < 300; ++i) {
    ++per_replica.at(ReplicaDialOrder("h_" + std::to_string(i), kReplicas).front());
  }
  for (int n : per_replica) EXPECT_GT(n, 70) << "300 hosts over 3 replicas";
  EXPECT_THAT(ReplicaDialOrder("h_any", {"a:1"}), ElementsAre(0u));
  EXPECT_TRUE(ReplicaDialOrder("h_any", {}).empty());
}

// A dead replica's hosts go to their own next choices, so the survivors share them instead of
// the replica after it in the list taking them all.
TEST_F(UplinkFailoverTest, ADeadReplicasHostsSpreadEvenlyOverTheOthers) {
  std::vector<int> next_of_b(kReplicas.size());
  int on_b = 0;
  for (int i = 0; i < 3000; ++i) {
    const std::vector<size_t> order = ReplicaDialOrder("h_" + std::to_string(i), kReplicas);
    if (order[0] != 1) continue;
    ++on_b;
    ++next_of_b.at(order[1]);
  }
  ASSERT_GT(on_b, 800);
  EXPECT_EQ(next_of_b[1], 0);
  EXPECT_GT(next_of_b[0], on_b * 2 / 5) << "a.test takes " << next_of_b[0] << " of " << on_b;
  EXPECT_GT(next_of_b[2], on_b * 2 / 5) << "c.test takes " << next_of_b[2] << " of " << on_b;
}

// The order depends on the addresses, not on where they are in the list; a replica added
// takes only the hosts that now rank it first (about 1/n), and no host moves between two
// replicas that stayed.
TEST_F(UplinkFailoverTest, TheOrderIgnoresTheListsOrderAndAnAddedReplicaMovesOnlyItsShare) {
  const std::vector<std::string> shuffled = {"c.test:8443", "a.test:8443", "b.test:8443"};
  const std::vector<std::string> four = {"a.test:8443", "b.test:8443", "c.test:8443",
                                         "d.test:8443"};
  int moved = 0;
  for (int i = 0; i < 2000; ++i) {
    const std::string id = "h_" + std::to_string(i);
    const std::string first = kReplicas[ReplicaDialOrder(id, kReplicas).front()];
    EXPECT_EQ(shuffled[ReplicaDialOrder(id, shuffled).front()], first) << id;
    const std::string now = four[ReplicaDialOrder(id, four).front()];
    if (now != first) {
      EXPECT_EQ(now, "d.test:8443") << id << " moved between two replicas that stayed";
      ++moved;
    }
  }
  EXPECT_GT(moved, 2000 / 4 - 150);
  EXPECT_LT(moved, 2000 / 4 + 150);
}

TEST_F(UplinkFailoverTest, ReplicaThatEndsTheStreamIsLeftForTheNextPromptly) {
  Start();
  Welcome();
  EXPECT_EQ(uplink_->state().address, "a.test:8443");
  sched_.Advance(absl::Minutes(5));  // a long, stable session on A
  End(absl::UnavailableError("Socket closed"));
  EXPECT_EQ(uplink_->state().address, "b.test:8443");  // the one dialled next
  EXPECT_LE(sched_.NextIn(), options_.failover_spread);
  sched_.Advance(sched_.NextIn());
  ASSERT_EQ(transport_.dial_count(), 2u);
  EXPECT_EQ(transport_.last().address, "b.test:8443");
  EXPECT_EQ(transport_.last().authorization(), "Bearer hc_1");  // the same credential
  Welcome();
  EXPECT_TRUE(uplink_->state().connected);
  EXPECT_EQ(uplink_->state().address, "b.test:8443");
}

TEST_F(UplinkFailoverTest, PromptWithinARoundAndBackingOffAfterEachFullRound) {
  Start();
  End(absl::UnavailableError("connection refused"));  // a failed: b next, promptly
  EXPECT_LE(FailNextDial(), options_.failover_spread);  // b failed: c next, promptly
  EXPECT_LE(FailNextDial(), options_.failover_spread);  // c failed: a full round
  absl::Duration step = options_.backoff_initial;
  for (int round = 0; round < 8; ++round) {
    const absl::Duration wait = FailNextDial();  // the round's first dial, after the backoff
    EXPECT_GE(wait, step / 2) << round;
    EXPECT_LE(wait, step) << round;
    step = std::min(step * 2, options_.backoff_max);
    EXPECT_LE(FailNextDial(), options_.failover_spread) << round;
    EXPECT_LE(FailNextDial(), options_.failover_spread) << round;
  }
  EXPECT_EQ(step, options_.backoff_max);  // capped
  EXPECT_EQ(transport_.dial_count(), 1u + 2u + 8u * 3u);
}

TEST_F(UplinkFailoverTest, StreamsEndingQuicklyCountAsFailuresSoTheyDoNotLoopHot) {
  options_.failover_spread = absl::Milliseconds(100);
  Start();
  absl::Duration step = options_.backoff_initial;
  for (int i = 0; i < 9; ++i) {
    Welcome();  // accepted...
    End(absl::AbortedError("the store has no quorum"));  // ...and ended at once
    if (i % 3 == 2) {  // every replica did it: a full round, so the growing backoff
      EXPECT_GE(sched_.NextIn(), step / 2) << i;
      step *= 2;
    } else {
      EXPECT_LE(sched_.NextIn(), options_.failover_spread) << i;
    }
    sched_.Advance(sched_.NextIn());
  }
  EXPECT_EQ(transport_.dial_count(), 10u);
}

TEST_F(UplinkFailoverTest, AStableSessionResetsTheBackoffAndTheRound) {
  Start();
  End(absl::UnavailableError("connection refused"));
  for (int i = 0; i < 11; ++i) FailNextDial();  // 12 failures, 4 rounds: the 4th step
  EXPECT_GE(sched_.NextIn(), absl::Seconds(2));
  sched_.Advance(sched_.NextIn());
  Welcome();
  sched_.Advance(Uplink::kStableSession + absl::Seconds(1));
  End(absl::UnavailableError("Socket closed"));
  // Lost after a stable session: the next replica at once, then the first backoff step.
  EXPECT_LE(FailNextDial(), options_.failover_spread);
  EXPECT_LE(FailNextDial(), options_.failover_spread);
  EXPECT_LE(sched_.NextIn(), options_.backoff_initial);
}

TEST_F(UplinkFailoverTest, OneAddressBacksOffAfterEveryFailureAsBefore) {
  options_.addresses = {"only.test:8443"};
  Start();
  End(absl::UnavailableError("connection refused"));
  absl::Duration step = options_.backoff_initial;
  for (int i = 0; i < 4; ++i) {
    const absl::Duration wait = FailNextDial();
    EXPECT_GE(wait, step / 2) << i;
    EXPECT_LE(wait, step) << i;
    step *= 2;
  }
  for (size_t i = 0; i < transport_.dial_count(); ++i) {
    EXPECT_EQ(transport_.dial(i).address, "only.test:8443");
  }
}

TEST_F(UplinkFailoverTest, NoAddressIsRefusedAtStart) {
  options_.addresses = {};
  Uplink uplink(options_, handler_, sched_, transport_);
  absl::Status s = uplink.Start();
  EXPECT_TRUE(absl::IsInvalidArgument(s)) << s;
  EXPECT_THAT(s.message(), HasSubstr("--controlplane"));
}

// 200 agents on one replica that dies at one instant: their redials spread over the whole
// failover window instead of arriving together, and none waits longer than the window.
TEST_F(UplinkFailoverTest, AgentsThatLostTheSameReplicaRedialSpreadOverTheWindow) {
  struct Agent {
    std::unique_ptr<FakeUplinkTransport> transport;
    std::unique_ptr<Uplink> uplink;
  };
  std::vector<Agent> agents;
  options_.jitter_seed = 0;  // from std::random_device, as agentd does
  for (int i = 0; i < 200; ++i) {
    Agent a;
    a.transport = std::make_unique<FakeUplinkTransport>(sched_);
    a.uplink = std::make_unique<Uplink>(options_, handler_, sched_, *a.transport);
    ASSERT_TRUE(a.uplink->Start().ok());
    agents.push_back(std::move(a));
  }
  sched_.RunDue();
  for (auto& a : agents) a.transport->Welcome("hc_1");
  sched_.Advance(absl::Minutes(1));
  for (auto& a : agents) a.transport->End(absl::UnavailableError("Socket closed"));
  const absl::Time died = clock_.Monotonic();
  sched_.RunDue();
  std::vector<absl::Duration> redial;
  for (auto& a : agents) {
    ASSERT_EQ(a.uplink->phase(), Phase::kBackoff);
    EXPECT_EQ(a.uplink->state().address, "b.test:8443");
  }
  // Each agent's redial time: advance in 10 ms steps and see who dialled.
  std::vector<bool> seen(agents.size());
  while (clock_.Monotonic() - died <= options_.failover_spread + absl::Milliseconds(10)) {
    sched_.Advance(absl::Milliseconds(10));
    for (size_t i = 0; i < agents.size(); ++i) {
      if (!seen[i] && agents[i].transport->dial_count() == 2) {
        seen[i] = true;
        redial.push_back(clock_.Monotonic() - died);
      }
    }
  }
  ASSERT_EQ(redial.size(), agents.size()) << "every agent redialled within the window";
  std::sort(redial.begin(), redial.end());
  EXPECT_LE(redial.back(), options_.failover_spread + absl::Milliseconds(10));
  // Spread: the fastest and slowest quarter are far apart, and no 10 ms slot holds many.
  EXPECT_LT(redial[agents.size() / 4], options_.failover_spread / 2);
  EXPECT_GT(redial[agents.size() * 3 / 4], options_.failover_spread / 2);
  std::map<int64_t, int> per_slot;
  for (auto d : redial) ++per_slot[absl::ToInt64Milliseconds(d) / 10];
  int most = 0;
  for (const auto& [slot, n] : per_slot) most = std::max(most, n);
  EXPECT_LE(most, 12) << "200 agents over 200 slots of 10 ms";
  for (auto& a : agents) a.uplink.reset();
}

}  // namespace
}  // namespace herd::agent
