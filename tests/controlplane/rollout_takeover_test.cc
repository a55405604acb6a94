// Rollouts across replicas (issue 22): RolloutEngines on FakeSchedulers, each with an
// EtcdRolloutOwnership over one FakeEtcd, sharing one store that keeps rollouts in that etcd
// as EtcdStore does (<p>/rollouts/<id>, a serialized herd.v1.Rollout). A replica "dies" when
// the test expires its lease and never runs its scheduler again; watches are delivered when the
// test says (FakeEtcd::DeliverWatches), so every interleaving is chosen, none is timed.
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <algorithm>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "common/clock.h"
#include "controlplane/cluster/cluster.h"
#include "controlplane/cluster/rollout_ownership.h"
#include "controlplane/fleet/rollouts.h"
#include "controlplane/store/store.h"
#include "tests/fakes/fake_etcd.h"
#include "tests/fakes/fake_fleet.h"
#include "tests/fakes/fake_scheduler.h"
#include "tests/controlplane/rollout_records_on_etcd.h"

namespace herd::controlplane {
namespace {

using herd::v1::Rollout;
using ::testing::ElementsAre;
using ::testing::HasSubstr;
using testing::FakeEtcd;
using testing::FakeScheduler;

constexpr char kPrefix[] = "/herd";
constexpr absl::Duration kScan = absl::Seconds(5);
constexpr absl::Duration kGrace = absl::Seconds(2);

// "DONE INTERRUPTED RESTARTING PENDING ..."
std::string States(const Rollout& r) {
  std::vector<std::string> out;
  for (const auto& h : r.hosts()) {
    out.push_back(herd::v1::RolloutHostState_Name(h.state()).substr(19));
  }
  return absl::StrJoin(out, " ");
}

// A replica's directory as far as rollouts care: its id and its lease, set by the test.
class TestReplica final : public ReplicaDirectory {
 public:
  explicit TestReplica(std::string id) : id_(std::move(id)) {}
  const std::string& self_id() const override { return id_; }
  std::vector<ReplicaInfo> Peers() const override { return {}; }
  std::optional<ReplicaInfo> HolderOf(const std::string&) const override { return {}; }
  std::string peer_secret() const override { return ""; }
  int64_t lease_id() const override { return lease_; }
  void set_lease(int64_t lease) { lease_ = lease; }

 private:
  std::string id_;
  int64_t lease_ = 0;
};

// One control-plane replica: its lease, ownership, relay (its hosts' answers), scheduler and
// engine; the store, hosts and audit log are the fleet's.
struct Node {
  Node(const std::string& id, FakeEtcd& etcd, testing::FakeFleetHosts& hosts,
       testing::FakeFleetAudit& audit, Store& store)
      : dir(id), owners(etcd, dir, EtcdRolloutOwnership::Options{kPrefix, kScan, kGrace}) {
    dir.set_lease(*etcd.LeaseGrant(absl::Seconds(10)));
    engine = std::make_unique<RolloutEngine>(hosts, relay, audit, store, sched, owners);
  }
  std::vector<std::string> Calls() const {
    std::vector<std::string> out;
    for (const auto& c : relay.restarts()) out.push_back(absl::StrJoin(c.host_ids, ","));
    return out;
  }

  TestReplica dir;
  EtcdRolloutOwnership owners;
  FakeClock clock;
  FakeScheduler sched{clock};
  testing::FakeFleetRelay relay;
  std::unique_ptr<RolloutEngine> engine;
};

class RolloutTakeoverTest : public ::testing::Test {
 protected:
  void SetUp() override {
    for (int i = 0; i < 5; ++i) hosts_.Add({absl::StrCat("h", i), "", {"app"}, {}});
    a_ = Start("a");
    b_ = Start("b");
  }
  void TearDown() override {
    b_.reset();
    a_.reset();
  }
  std::unique_ptr<Node> Start(const std::string& id) {
    auto n = std::make_unique<Node>(id, etcd_, hosts_, audit_, store_);
    EXPECT_TRUE(n->engine->Start().ok());
    n->sched.RunDue();  // the first scan
    return n;
  }
  // Creates a rollout on `n` (batches of 2) and runs its first step.
  Rollout Create(Node& n, uint32_t batch = 2, uint32_t max_unavailable = 0) {
    herd::v1::FleetRestartRequest req;
    req.mutable_target()->set_all(true);
    req.set_module("app");
    req.set_batch_size(batch);
    req.set_max_unavailable(max_unavailable);
    auto r = n.engine->Create(req, Actor{"alice", Role::kOperator, ""});
    EXPECT_TRUE(r.ok()) << r.status();
    n.sched.RunDue();
    return r.ok() ? *r : Rollout();
  }
  Rollout Stored(const std::string& id) {
    auto r = store_.GetRollout(id);
    EXPECT_TRUE(r.ok()) << r.status();
    return r.ok() ? *r : Rollout();
  }
  // The owner keys in etcd, by rollout id.
  std::map<std::string, std::string> Owners() const {
    std::map<std::string, std::string> out;
    const std::string p = absl::StrCat(kPrefix, "/rollout-owners/");
    for (const auto& [k, v] : etcd_.Dump(p)) out[k.substr(p.size())] = v;
    return out;
  }
  // `n` dies: etcd expires its lease (its owner keys go) and its scheduler never runs again.
  void Kill(Node& n) { etcd_.ExpireLease(n.dir.lease_id()); }
  // The watches delivered, what they posted run on each living node, and a takeover's grace
  // passed.
  void Deliver(std::initializer_list<Node*> living) {
    etcd_.DeliverWatches();
    for (Node* n : living) n->sched.RunDue();
    for (Node* n : living) n->sched.Advance(kGrace);
  }

  FakeEtcd etcd_;
  RolloutRecordsOnEtcd store_{etcd_, kPrefix};
  testing::FakeFleetHosts hosts_;
  testing::FakeFleetAudit audit_;
  std::unique_ptr<Node> a_, b_;
};

TEST_F(RolloutTakeoverTest, ARolloutIsOwnedByTheReplicaThatCreatedItUntilItFinishes) {
  Rollout r = Create(*a_, 5);
  EXPECT_THAT(Owners(), ElementsAre(std::make_pair(r.id(), "a")));
  for (const char* h : {"h0", "h1", "h2", "h3", "h4"}) ASSERT_TRUE(a_->relay.Succeed(h));
  a_->sched.RunDue();
  EXPECT_EQ(Stored(r.id()).state(), herd::v1::ROLLOUT_STATE_SUCCEEDED);
  EXPECT_TRUE(Owners().empty());
  // The others see the key go, read the rollout finished, and leave it.
  Deliver({a_.get(), b_.get()});
  EXPECT_TRUE(b_->relay.restarts().empty());
  EXPECT_TRUE(Owners().empty());
  EXPECT_EQ(a_->engine->counts().succeeded, 1u);
  EXPECT_EQ(b_->engine->counts().succeeded, 0u);
}

TEST_F(RolloutTakeoverTest, AnOwnerThatDiesMidGroupIsTakenOverAndNoHostRestartsTwice) {
  Rollout r = Create(*a_, 2, 1);  // batches of 2, one host at a time
  ASSERT_TRUE(a_->relay.Succeed("h0"));
  a_->sched.RunDue();  // h1 told; the owner dies before it answers
  EXPECT_EQ(States(Stored(r.id())), "DONE RESTARTING PENDING PENDING PENDING");
  Kill(*a_);
  etcd_.DeliverWatches();
  b_->sched.RunDue();
  Rollout taken = Stored(r.id());
  EXPECT_EQ(taken.state(), herd::v1::ROLLOUT_STATE_RUNNING);
  EXPECT_EQ(States(taken), "DONE INTERRUPTED PENDING PENDING PENDING");
  // Its grace first (the dead owner's agents are finding another replica): nobody told yet.
  b_->sched.Advance(kGrace - absl::Milliseconds(1));
  EXPECT_TRUE(b_->relay.restarts().empty());
  b_->sched.Advance(absl::Milliseconds(1));
  EXPECT_EQ(States(Stored(r.id())), "DONE INTERRUPTED RESTARTING PENDING PENDING");
  EXPECT_THAT(taken.hosts(1).error(), HasSubstr("told to restart by replica a"));
  EXPECT_THAT(taken.hosts(1).error(), HasSubstr("not restarted again"));
  EXPECT_THAT(taken.reason(), HasSubstr("taken over by replica b from replica a at batch 2 of 3"));
  EXPECT_THAT(Owners(), ElementsAre(std::make_pair(r.id(), "b")));
  EXPECT_THAT(b_->Calls(), ElementsAre("h2"));
  for (const char* h : {"h2", "h3", "h4"}) {
    ASSERT_TRUE(b_->relay.Succeed(h));
    b_->sched.RunDue();
  }
  Rollout done = Stored(r.id());
  EXPECT_EQ(done.state(), herd::v1::ROLLOUT_STATE_SUCCEEDED);
  EXPECT_EQ(States(done), "DONE INTERRUPTED DONE DONE DONE");
  EXPECT_THAT(done.reason(), HasSubstr("1 host(s) told to restart before it never answered: "
                                       "INTERRUPTED, not restarted again (h1)"));
  // Each host told once, across both replicas.
  EXPECT_THAT(done.reason(), ::testing::StartsWith("taken over"));  // said once
  EXPECT_THAT(a_->Calls(), ElementsAre("h0", "h1"));
  EXPECT_THAT(b_->Calls(), ElementsAre("h2", "h3", "h4"));
  EXPECT_TRUE(Owners().empty());
  // The takeover is in the audit log, with the hosts it interrupted.
  ASSERT_EQ(audit_.entries().size(), 2u);
  EXPECT_EQ(audit_.entries()[1].action(), "rollout.takeover");
  EXPECT_EQ(audit_.entries()[1].actor(), "replica:b");
  EXPECT_THAT(audit_.entries()[1].detail_json(), HasSubstr("\"interrupted\":[\"h1\"]"));
  EXPECT_THAT(audit_.entries()[1].detail_json(), HasSubstr("\"from\":\"a\""));
}

// The record says a group is restarting before any of its hosts is told, so that a replica
// taking over after the owner died right after telling them never tells them again unknowingly.
TEST_F(RolloutTakeoverTest, AGroupIsStoredRestartingBeforeItsHostsAreTold) {
  std::vector<std::string> stored_when_told;
  a_->relay.set_on_restart([&](const testing::FakeFleetRelay::Restart& call) {
    auto r = store_.GetRollout(call.rollout_id);
    stored_when_told.push_back(r.ok() ? States(*r) : r.status().ToString());
  });
  Rollout r = Create(*a_);
  ASSERT_TRUE(a_->relay.Succeed("h0"));
  ASSERT_TRUE(a_->relay.Succeed("h1"));
  a_->sched.RunDue();
  EXPECT_THAT(a_->Calls(), ElementsAre("h0,h1", "h2,h3"));
  EXPECT_THAT(stored_when_told, ElementsAre("RESTARTING RESTARTING PENDING PENDING PENDING",
                                            "DONE DONE RESTARTING RESTARTING PENDING"));
}

// Halfway through a batch: its hosts already done or told are not told again; the ones it
// had not reached are.
TEST_F(RolloutTakeoverTest, ABatchCutHalfwayGoesOnWithTheHostsNotToldYet) {
  Rollout r = Create(*a_, 4, 1);  // h0..h3 in one batch, one at a time
  ASSERT_TRUE(a_->relay.Succeed("h0"));
  a_->sched.RunDue();  // h1 told
  Kill(*a_);
  Deliver({b_.get()});
  EXPECT_EQ(States(Stored(r.id())), "DONE INTERRUPTED RESTARTING PENDING PENDING");
  EXPECT_EQ(Stored(r.id()).current_batch(), 0u);
  for (const char* h : {"h2", "h3", "h4"}) {
    ASSERT_TRUE(b_->relay.Succeed(h));
    b_->sched.RunDue();
  }
  EXPECT_THAT(a_->Calls(), ElementsAre("h0", "h1"));
  EXPECT_THAT(b_->Calls(), ElementsAre("h2", "h3", "h4"));
  EXPECT_EQ(Stored(r.id()).state(), herd::v1::ROLLOUT_STATE_SUCCEEDED);
}

TEST_F(RolloutTakeoverTest, OnlyOneReplicaWinsATakeover) {
  auto c = Start("c");
  Rollout r = Create(*a_);
  Kill(*a_);
  Deliver({b_.get(), c.get()});
  const size_t told = b_->relay.restarts().size() + c->relay.restarts().size();
  EXPECT_EQ(told, 1u);  // one replica told the next batch; the other lost the key
  EXPECT_EQ(Owners().size(), 1u);
  EXPECT_EQ(States(Stored(r.id())), "INTERRUPTED INTERRUPTED RESTARTING RESTARTING PENDING");
  c.reset();
}

// The owner's lease ended while it was cut off (no watch told it yet): the survivor's scan
// takes the rollout over, and the old owner, when its hosts answer, asks etcd before its next
// step, finds the key another's, and stops: it tells no one and writes nothing.
TEST_F(RolloutTakeoverTest, AnOwnerThatLostItsKeyNeverStepsAgain) {
  Rollout r = Create(*a_);
  Deliver({a_.get(), b_.get()});  // b has seen it RUNNING
  Kill(*a_);
  b_->sched.Advance(kScan + kGrace);  // the key's deletion not delivered: the scan finds it
  EXPECT_THAT(b_->Calls(), ElementsAre("h2,h3"));
  const std::string stored = Stored(r.id()).SerializeAsString();
  ASSERT_TRUE(a_->relay.Succeed("h0"));
  ASSERT_TRUE(a_->relay.Succeed("h1"));
  a_->sched.RunDue();
  EXPECT_THAT(a_->Calls(), ElementsAre("h0,h1"));
  EXPECT_EQ(Stored(r.id()).SerializeAsString(), stored);
  EXPECT_EQ(a_->engine->counts().running, 0u);
  EXPECT_THAT(Owners(), ElementsAre(std::make_pair(r.id(), "b")));
}

// A watch that etcd compacted missed the rollout and its owner's death: once the watches are
// back, the store is read again and the rollout taken over.
TEST_F(RolloutTakeoverTest, AfterACompactedWatchTheStoreIsReadAgain) {
  Rollout r = Create(*a_);
  Kill(*a_);
  ASSERT_TRUE(etcd_.Compact(etcd_.revision()).ok());
  Deliver({b_.get()});  // b's watches end: compacted
  EXPECT_TRUE(b_->relay.restarts().empty());
  b_->sched.Advance(kScan + kGrace);
  EXPECT_THAT(b_->Calls(), ElementsAre("h2,h3"));
  EXPECT_THAT(Owners(), ElementsAre(std::make_pair(r.id(), "b")));
}

// Its lease replaced (etcd expired it; the replica got a new one): the replica stops stepping
// under the old one, then wins the key again under the new lease and goes on from the record.
TEST_F(RolloutTakeoverTest, AReplicaWhoseLeaseWasReplacedTakesItsRolloutBack) {
  b_.reset();
  Rollout r = Create(*a_);
  Kill(*a_);
  a_->dir.set_lease(*etcd_.LeaseGrant(absl::Seconds(10)));
  Deliver({a_.get()});
  EXPECT_THAT(Owners(), ElementsAre(std::make_pair(r.id(), "a")));
  EXPECT_THAT(Stored(r.id()).reason(), HasSubstr("taken over by replica a from replica a"));
  EXPECT_THAT(a_->Calls(), ElementsAre("h0,h1", "h2,h3"));
  // The first group's late answers reach the old step, which is gone: they change nothing.
  ASSERT_TRUE(a_->relay.Succeed("h0"));
  ASSERT_TRUE(a_->relay.Succeed("h1"));
  a_->sched.RunDue();
  EXPECT_EQ(States(Stored(r.id())), "INTERRUPTED INTERRUPTED RESTARTING RESTARTING PENDING");
  EXPECT_THAT(a_->Calls(), ElementsAre("h0,h1", "h2,h3"));
}

TEST_F(RolloutTakeoverTest, WithoutQuorumARolloutWaitsAndGoesOnWhenItReturns) {
  Rollout r = Create(*a_);
  ASSERT_TRUE(a_->relay.Succeed("h0"));
  ASSERT_TRUE(a_->relay.Succeed("h1"));
  etcd_.SetQuorum(false);
  a_->sched.RunDue();
  EXPECT_THAT(a_->Calls(), ElementsAre("h0,h1"));  // not confirmed: nobody told
  a_->sched.Advance(kScan);
  EXPECT_THAT(a_->Calls(), ElementsAre("h0,h1"));
  etcd_.SetQuorum(true);
  a_->sched.Advance(kScan);
  EXPECT_THAT(a_->Calls(), ElementsAre("h0,h1", "h2,h3"));
  EXPECT_EQ(States(Stored(r.id())), "DONE DONE RESTARTING RESTARTING PENDING");
  EXPECT_TRUE(b_->relay.restarts().empty());
}

TEST_F(RolloutTakeoverTest, StopHandsARolloutOverInsteadOfAbortingIt) {
  Rollout r = Create(*a_);
  ASSERT_TRUE(a_->relay.Succeed("h0"));  // in, not filed yet: Stop files it
  a_->engine->Stop();
  Rollout handed = Stored(r.id());
  EXPECT_EQ(handed.state(), herd::v1::ROLLOUT_STATE_RUNNING);
  EXPECT_EQ(States(handed), "DONE RESTARTING PENDING PENDING PENDING");
  EXPECT_TRUE(Owners().empty());
  EXPECT_EQ(a_->engine->counts().aborted, 0u);
  Deliver({b_.get()});
  EXPECT_THAT(Owners(), ElementsAre(std::make_pair(r.id(), "b")));
  EXPECT_EQ(States(Stored(r.id())), "DONE INTERRUPTED RESTARTING RESTARTING PENDING");
}

TEST_F(RolloutTakeoverTest, AReplicaStartingFindsARolloutWithNoOwnerAndTakesItOver) {
  b_.reset();
  Rollout r = Create(*a_);
  Kill(*a_);
  etcd_.DeliverWatches();  // nobody else is there
  auto c = Start("c");      // its first scan, at start
  c->sched.Advance(kGrace);
  EXPECT_THAT(c->Calls(), ElementsAre("h2,h3"));
  EXPECT_THAT(Owners(), ElementsAre(std::make_pair(r.id(), "c")));
  EXPECT_THAT(Stored(r.id()).reason(), HasSubstr("from its previous owner"));
  c.reset();
}

TEST_F(RolloutTakeoverTest, AWatcherOnAnotherReplicaSeesEveryChangeOnceToTheEnd) {
  Rollout r = Create(*a_, 5);
  std::vector<std::string> seen;
  ASSERT_TRUE(b_->engine->Watch(r.id(), [&](const Rollout& x) {
    seen.push_back(absl::StrCat(herd::v1::RolloutState_Name(x.state()), ": ", States(x)));
  }).ok());
  Deliver({b_.get()});  // the writes so far: none newer than what Watch gave
  for (const char* h : {"h0", "h1", "h2"}) ASSERT_TRUE(a_->relay.Succeed(h));
  for (const char* h : {"h3", "h4"}) ASSERT_TRUE(a_->relay.Fail(h));
  a_->sched.RunDue();
  Deliver({a_.get(), b_.get()});
  EXPECT_THAT(seen, ElementsAre(
                        "ROLLOUT_STATE_RUNNING: RESTARTING RESTARTING RESTARTING RESTARTING "
                        "RESTARTING",
                        "ROLLOUT_STATE_RUNNING: DONE DONE DONE FAILED FAILED",
                        "ROLLOUT_STATE_FAILED: DONE DONE DONE FAILED FAILED"));
}

TEST_F(RolloutTakeoverTest, NoLeaseNoRollout) {
  a_->dir.set_lease(0);
  herd::v1::FleetRestartRequest req;
  req.mutable_target()->set_all(true);
  req.set_module("app");
  auto r = a_->engine->Create(req, Actor{"alice", Role::kOperator, ""});
  EXPECT_EQ(r.status().code(), absl::StatusCode::kUnavailable);
  EXPECT_THAT(std::string(r.status().message()), HasSubstr("holds no etcd lease"));
  EXPECT_TRUE(store_.ListRollouts(10)->empty());
  EXPECT_TRUE(Owners().empty());
}

// ---------------------------------------------------------------------------------------
// EtcdRolloutOwnership alone

TEST(EtcdRolloutOwnershipTest, TheOwnerKeyIsCreatedOnceUnderTheLeaseAndReleasedByItsOwner) {
  FakeEtcd etcd;
  TestReplica a("a"), b("b");
  a.set_lease(*etcd.LeaseGrant(absl::Seconds(10)));
  b.set_lease(*etcd.LeaseGrant(absl::Seconds(10)));
  EtcdRolloutOwnership oa(etcd, a, {kPrefix, kScan}), ob(etcd, b, {kPrefix, kScan});
  ASSERT_TRUE(oa.Acquire("ro-1").ok());
  ASSERT_TRUE(oa.Acquire("ro-1").ok());  // again: still ours
  auto lost = ob.Acquire("ro-1");
  EXPECT_EQ(lost.code(), absl::StatusCode::kAlreadyExists);
  EXPECT_THAT(std::string(lost.message()), HasSubstr("replica a"));
  auto kv = etcd.Get("/herd/rollout-owners/ro-1");
  ASSERT_TRUE(kv.ok() && kv->has_value());
  EXPECT_EQ((*kv)->value, "a");
  EXPECT_EQ((*kv)->lease, a.lease_id());
  EXPECT_TRUE(oa.StillOwned("ro-1"));
  EXPECT_FALSE(ob.StillOwned("ro-1"));
  EXPECT_EQ(*oa.Confirm("ro-1"), true);
  EXPECT_EQ(*ob.Confirm("ro-1"), false);
  EXPECT_EQ(*ob.OwnerOf("ro-1"), "a");
  ob.Release("ro-1");  // not b's: nothing happens
  EXPECT_EQ(*ob.OwnerOf("ro-1"), "a");
  oa.Release("ro-1");
  EXPECT_EQ(*ob.OwnerOf("ro-1"), "");
  EXPECT_FALSE(oa.StillOwned("ro-1"));
}

TEST(EtcdRolloutOwnershipTest, ANewLeaseEndsWhatTheOldOneOwned) {
  FakeEtcd etcd;
  TestReplica a("a");
  a.set_lease(*etcd.LeaseGrant(absl::Seconds(10)));
  EtcdRolloutOwnership oa(etcd, a, {kPrefix, kScan});
  ASSERT_TRUE(oa.Acquire("ro-1").ok());
  a.set_lease(*etcd.LeaseGrant(absl::Seconds(10)));
  EXPECT_FALSE(oa.StillOwned("ro-1"));
  EXPECT_EQ(*oa.Confirm("ro-1"), false);
}

TEST(EtcdRolloutOwnershipTest, AReleaseEtcdRefusedIsRetriedBySweep) {
  FakeEtcd etcd;
  TestReplica a("a");
  a.set_lease(*etcd.LeaseGrant(absl::Seconds(10)));
  EtcdRolloutOwnership oa(etcd, a, {kPrefix, kScan});
  ASSERT_TRUE(oa.Acquire("ro-1").ok());
  etcd.SetQuorum(false);
  oa.Release("ro-1");
  etcd.SetQuorum(true);
  EXPECT_EQ(*oa.OwnerOf("ro-1"), "a");
  oa.Sweep();
  EXPECT_EQ(*oa.OwnerOf("ro-1"), "");
}

TEST(EtcdRolloutOwnershipTest, AKeyThatGoesIsReportedWithItsLastOwner) {
  FakeEtcd etcd;
  TestReplica a("a"), b("b");
  a.set_lease(*etcd.LeaseGrant(absl::Seconds(10)));
  b.set_lease(*etcd.LeaseGrant(absl::Seconds(10)));
  EtcdRolloutOwnership oa(etcd, a, {kPrefix, kScan}), ob(etcd, b, {kPrefix, kScan});
  ASSERT_TRUE(oa.Acquire("ro-1").ok());
  std::vector<std::string> gone;
  RolloutOwnership::Events events;
  events.owner_gone = [&](const std::string& id, const std::string& previous) {
    gone.push_back(absl::StrCat(id, " from ", previous));
  };
  ASSERT_TRUE(ob.Start(events).ok());
  etcd.ExpireLease(a.lease_id());
  etcd.DeliverWatches();
  EXPECT_THAT(gone, ElementsAre("ro-1 from a"));
  ob.Stop();
}

}  // namespace
}  // namespace herd::controlplane
