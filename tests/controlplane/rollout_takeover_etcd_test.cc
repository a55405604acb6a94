// Rollouts across replicas on a real etcd (Debian's, started by EtcdHarness on loopback): two
// engines, each with its own etcd client, lease and EtcdRolloutOwnership; the owner's lease is
// revoked mid-rollout (what etcd does when its TTL runs out after a kill -9), and the other
// replica must see its key go through a real watch, win the key, and finish the rollout with
// each host told once. The engines' steps run on FakeSchedulers the test drives; etcd's watch
// threads post into them, so the test waits (bounded) for what etcd delivers.
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <chrono>
#include <functional>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "common/clock.h"
#include "controlplane/cluster/cluster.h"
#include "controlplane/cluster/rollout_ownership.h"
#include "controlplane/etcd/etcd_client.h"
#include "controlplane/fleet/rollouts.h"
#include "tests/controlplane/rollout_records_on_etcd.h"
#include "tests/fakes/fake_fleet.h"
#include "tests/fakes/fake_scheduler.h"
#include "tests/support/etcd_harness.h"

namespace herd::controlplane {
namespace {

using herd::v1::Rollout;
using ::testing::ElementsAre;
using ::testing::HasSubstr;
using testing::FakeScheduler;

constexpr char kPrefix[] = "/herd-rollouts-test";

class Replica final : public ReplicaDirectory {
 public:
  explicit Replica(std::string id) : id_(std::move(id)) {}
  const std::string& self_id() const override { return id_; }
  std::vector<ReplicaInfo> Peers() const override { return {}; }
  std::optional<ReplicaInfo> HolderOf(const std::string&) const override { return {}; }
  std::string peer_secret() const override { return ""; }
  int64_t lease_id() const override { return lease_; }
  int64_t lease_ = 0;

 private:
  std::string id_;
};

struct Node {
  Node(const std::string& id, std::unique_ptr<etcd::Client> client,
       testing::FakeFleetHosts& hosts, testing::FakeFleetAudit& audit)
      : etcd(std::move(client)),
        dir(id),
        owners(*etcd, dir, EtcdRolloutOwnership::Options{kPrefix, absl::Seconds(5), absl::ZeroDuration()}),
        store(*etcd, kPrefix) {
    engine = std::make_unique<RolloutEngine>(hosts, relay, audit, store, sched, owners);
  }
  ~Node() { engine.reset(); }
  std::vector<std::string> Calls() const {
    std::vector<std::string> out;
    for (const auto& c : relay.restarts()) out.push_back(absl::StrJoin(c.host_ids, ","));
    return out;
  }
  // Runs the steps etcd's watches post until `done` holds; false after 15 s.
  bool RunUntil(const std::function<bool()>& done) {
    const auto until = std::chrono::steady_clock::now() + std::chrono::seconds(15);
    while (std::chrono::steady_clock::now() < until) {
      sched.RunDue();
      if (done()) return true;
      std::this_thread::sleep_for(std::chrono::milliseconds(10));
    }
    return false;
  }

  std::unique_ptr<etcd::Client> etcd;
  Replica dir;
  EtcdRolloutOwnership owners;
  RolloutRecordsOnEtcd store;
  FakeClock clock;
  FakeScheduler sched{clock};
  testing::FakeFleetRelay relay;
  std::unique_ptr<RolloutEngine> engine;
};

TEST(RolloutTakeoverEtcdTest, AnotherReplicaFinishesTheRolloutOfAnOwnerWhoseLeaseEnded) {
  testing::EtcdHarness harness;
  ASSERT_TRUE(harness.Start()) << harness.error();
  etcd::Options options;
  options.endpoints = harness.EndpointList();
  testing::FakeFleetHosts hosts;
  for (int i = 0; i < 5; ++i) hosts.Add({absl::StrCat("h", i), "", {"app"}, {}});
  testing::FakeFleetAudit audit;
  std::vector<std::unique_ptr<Node>> nodes;
  for (const char* id : {"a", "b"}) {
    auto client = etcd::Client::Connect(options);
    ASSERT_TRUE(client.ok()) << client.status();
    nodes.push_back(std::make_unique<Node>(id, std::move(*client), hosts, audit));
    auto lease = nodes.back()->etcd->LeaseGrant(absl::Seconds(60));
    ASSERT_TRUE(lease.ok()) << lease.status();
    nodes.back()->dir.lease_ = *lease;
    ASSERT_TRUE(nodes.back()->engine->Start().ok());
    nodes.back()->sched.RunDue();
  }
  Node& a = *nodes[0];
  Node& b = *nodes[1];

  herd::v1::FleetRestartRequest req;
  req.mutable_target()->set_all(true);
  req.set_module("app");
  req.set_batch_size(2);
  auto created = a.engine->Create(req, Actor{"alice", Role::kOperator, ""});
  ASSERT_TRUE(created.ok()) << created.status();
  a.sched.RunDue();
  ASSERT_THAT(a.Calls(), ElementsAre("h0,h1"));
  auto owner = b.owners.OwnerOf(created->id());
  ASSERT_TRUE(owner.ok()) << owner.status();
  EXPECT_EQ(*owner, "a");

  // a dies: etcd ends its lease (its scheduler never runs again).
  ASSERT_TRUE(a.etcd->LeaseRevoke(a.dir.lease_id()).ok());
  ASSERT_TRUE(b.RunUntil([&] { return !b.relay.restarts().empty(); }))
      << "replica b never took the rollout over";
  EXPECT_THAT(b.Calls(), ElementsAre("h2,h3"));
  for (const char* h : {"h2", "h3"}) ASSERT_TRUE(b.relay.Succeed(h));
  ASSERT_TRUE(b.RunUntil([&] { return b.relay.restarts().size() == 2; }));
  ASSERT_TRUE(b.relay.Succeed("h4"));
  ASSERT_TRUE(b.RunUntil([&] { return b.engine->counts().succeeded == 1; }));

  auto done = b.store.GetRollout(created->id());
  ASSERT_TRUE(done.ok()) << done.status();
  EXPECT_EQ(done->state(), herd::v1::ROLLOUT_STATE_SUCCEEDED);
  EXPECT_THAT(done->reason(), HasSubstr("taken over by replica b from replica a"));
  EXPECT_EQ(done->hosts(0).state(), herd::v1::ROLLOUT_HOST_STATE_INTERRUPTED);
  EXPECT_EQ(done->hosts(1).state(), herd::v1::ROLLOUT_HOST_STATE_INTERRUPTED);
  EXPECT_THAT(a.Calls(), ElementsAre("h0,h1"));
  EXPECT_THAT(b.Calls(), ElementsAre("h2,h3", "h4"));
  owner = b.owners.OwnerOf(created->id());
  ASSERT_TRUE(owner.ok());
  EXPECT_EQ(*owner, "");  // released after the final record
  nodes.clear();
}

}  // namespace
}  // namespace herd::controlplane
