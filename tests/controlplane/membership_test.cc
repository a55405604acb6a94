// EtcdMembership on FakeEtcd: presence written in batched Txns off the caller's thread, deletes
// guarded by the value, a lost lease's keys put again, HolderOf and Peers from the watches, the
// peer secret made once, writes retried while etcd has no quorum. No sleeps: the presence
// thread is waited for with FlushPresence, the watches delivered with DeliverWatches.
#include "controlplane/cluster/membership.h"

#include <gtest/gtest.h>

#include <memory>
#include <string>

#include "absl/strings/str_cat.h"
#include "tests/fakes/fake_etcd.h"

namespace herd::controlplane {
namespace {

using herd::testing::FakeEtcd;

MembershipOptions Options(const std::string& id) {
  MembershipOptions o;
  o.self_id = id;
  o.address = absl::StrCat(id, ".test:7443");
  // Retries come at once: the tests wait for them, never for time.
  o.retry = BackoffOptions{.initial = absl::Milliseconds(1),
                           .max = absl::Milliseconds(5),
                           .multiplier = 2.0,
                           .jitter = 0};
  return o;
}

class MembershipTest : public ::testing::Test {
 protected:
  std::unique_ptr<EtcdMembership> Join(const std::string& id) {
    auto m = std::make_unique<EtcdMembership>(etcd_, Options(id));
    auto s = m->Start();
    EXPECT_TRUE(s.ok()) << s;
    return m;
  }
  std::string Presence(const std::string& host) {
    auto kv = etcd_.Get("/herd/presence/" + host);
    if (!kv.ok() || !kv->has_value()) return "<absent>";
    return (*kv)->value;
  }
  int64_t LeaseOf(const std::string& key) {
    auto kv = etcd_.Get(key);
    return kv.ok() && kv->has_value() ? (*kv)->lease : -1;
  }

  FakeEtcd etcd_;
};

TEST_F(MembershipTest, JoiningPutsTheReplicaUnderItsLease) {
  auto a = Join("a");
  EXPECT_NE(a->lease_id(), 0);
  EXPECT_EQ(etcd_.Dump("/herd/replicas/").at("/herd/replicas/a"), "a.test:7443");
  EXPECT_EQ(LeaseOf("/herd/replicas/a"), a->lease_id());
  EXPECT_TRUE(a->Peers().empty());
}

TEST_F(MembershipTest, PresenceIsWrittenInTxnsOfAtMost128Operations) {
  EtcdMembership a(etcd_, Options("a"));
  // Queued before the thread runs: it finds 300 hosts and writes them in three Txns.
  for (int i = 0; i < 300; ++i) a.HostAttached(absl::StrCat("h", i));
  ASSERT_TRUE(a.Start().ok());
  ASSERT_TRUE(a.FlushPresence().ok());
  EXPECT_EQ(etcd_.Dump("/herd/presence/").size(), 300u);
  EXPECT_EQ(Presence("h7"), "a");
  EXPECT_EQ(LeaseOf("/herd/presence/h7"), a.lease_id());
  EXPECT_EQ(a.stats().txns, 3u);
  EXPECT_EQ(a.stats().ops, 300u);
  EXPECT_EQ(a.stats().queued, 0u);
}

TEST_F(MembershipTest, DetachDeletesOnlyAKeyThatStillNamesThisReplica) {
  auto a = Join("a");
  a->HostAttached("h1");
  a->HostAttached("h2");
  ASSERT_TRUE(a->FlushPresence().ok());
  // h2 moved to replica b before a saw its stream end.
  ASSERT_TRUE(etcd_.Put("/herd/presence/h2", "b").ok());
  a->HostDetached("h1");
  a->HostDetached("h2");
  ASSERT_TRUE(a->FlushPresence().ok());
  EXPECT_EQ(Presence("h1"), "<absent>");
  EXPECT_EQ(Presence("h2"), "b");
  EXPECT_EQ(a->stats().not_ours, 1u);
}

TEST_F(MembershipTest, TheLatestStateOfAHostWins) {
  EtcdMembership a(etcd_, Options("a"));
  a.HostAttached("h1");
  a.HostDetached("h1");
  a.HostAttached("h2");
  a.HostDetached("h2");
  a.HostAttached("h2");
  ASSERT_TRUE(a.Start().ok());
  ASSERT_TRUE(a.FlushPresence().ok());
  EXPECT_EQ(Presence("h1"), "<absent>");
  EXPECT_EQ(Presence("h2"), "a");
}

TEST_F(MembershipTest, HolderOfAndPeersFollowTheWatches) {
  auto a = Join("a");
  auto b = Join("b");
  etcd_.DeliverWatches();
  ASSERT_EQ(a->Peers().size(), 1u);
  EXPECT_EQ(a->Peers()[0].id, "b");
  EXPECT_EQ(a->Peers()[0].address, "b.test:7443");
  ASSERT_EQ(b->Peers().size(), 1u);
  EXPECT_EQ(b->Peers()[0].id, "a");

  a->HostAttached("h1");
  // Here at once (before etcd has it); on b once its watch says so.
  ASSERT_TRUE(a->HolderOf("h1").has_value());
  EXPECT_EQ(a->HolderOf("h1")->id, "a");
  EXPECT_FALSE(b->HolderOf("h1").has_value());
  ASSERT_TRUE(a->FlushPresence().ok());
  etcd_.DeliverWatches();
  ASSERT_TRUE(b->HolderOf("h1").has_value());
  EXPECT_EQ(b->HolderOf("h1")->id, "a");
  EXPECT_EQ(b->HolderOf("h1")->address, "a.test:7443");

  a->HostDetached("h1");
  EXPECT_FALSE(a->HolderOf("h1").has_value());
  ASSERT_TRUE(a->FlushPresence().ok());
  etcd_.DeliverWatches();
  EXPECT_FALSE(b->HolderOf("h1").has_value());
}

TEST_F(MembershipTest, AStoppedReplicasHostsAreReleased) {
  auto a = Join("a");
  auto b = Join("b");
  a->HostAttached("h1");
  ASSERT_TRUE(a->FlushPresence().ok());
  etcd_.DeliverWatches();
  ASSERT_TRUE(b->HolderOf("h1").has_value());
  a->Stop();  // revokes its lease: its keys go with it
  etcd_.DeliverWatches();
  EXPECT_FALSE(b->HolderOf("h1").has_value());
  EXPECT_TRUE(b->Peers().empty());
  EXPECT_EQ(a->lease_id(), 0);
}

TEST_F(MembershipTest, ALostLeaseIsReplacedAndEveryHeldHostPutAgain) {
  auto a = Join("a");
  auto b = Join("b");
  a->HostAttached("h1");
  a->HostAttached("h2");
  ASSERT_TRUE(a->FlushPresence().ok());
  const int64_t first = a->lease_id();
  // As etcd does after a TTL without keepalives: the keys go; KeptLease takes a new lease.
  // (The presence thread may put them again at once: what proves it did is the new lease.)
  etcd_.ExpireLease(first);
  ASSERT_TRUE(a->FlushPresence().ok());
  EXPECT_NE(a->lease_id(), first);
  EXPECT_EQ(a->stats().leases_replaced, 1u);
  EXPECT_EQ(Presence("h1"), "a");
  EXPECT_EQ(Presence("h2"), "a");
  EXPECT_EQ(LeaseOf("/herd/presence/h1"), a->lease_id());
  EXPECT_EQ(LeaseOf("/herd/replicas/a"), a->lease_id());
  etcd_.DeliverWatches();
  ASSERT_TRUE(b->HolderOf("h2").has_value());
  EXPECT_EQ(b->HolderOf("h2")->id, "a");
  ASSERT_EQ(b->Peers().size(), 1u);
}

TEST_F(MembershipTest, WritesAreRetriedWhileEtcdHasNoQuorum) {
  auto a = Join("a");
  etcd_.SetQuorum(false);
  a->HostAttached("h1");
  absl::Status s = a->FlushPresence();
  EXPECT_EQ(s.code(), absl::StatusCode::kUnavailable) << s;
  EXPECT_GE(a->stats().failures, 1u);
  EXPECT_EQ(Presence("h1"), "<absent>");
  etcd_.SetQuorum(true);
  // A later try (after a backoff) writes it, with nothing asked of anyone. (A flush may
  // still see the failure of a try that began before the quorum came back.)
  absl::Status flushed = a->FlushPresence();
  for (int i = 0; i < 10 && !flushed.ok(); ++i) flushed = a->FlushPresence();
  EXPECT_TRUE(flushed.ok()) << flushed;
  EXPECT_EQ(Presence("h1"), "a");
}

TEST_F(MembershipTest, ThePeerSecretIsMadeOnceAndShared) {
  auto a = Join("a");
  auto b = Join("b");
  EXPECT_FALSE(a->peer_secret().empty());
  EXPECT_EQ(a->peer_secret(), b->peer_secret());
  EXPECT_EQ(etcd_.Dump("/herd/cluster/").at("/herd/cluster/peer-secret"), a->peer_secret());
}

TEST_F(MembershipTest, StartFailsWithoutEtcdAndSaysWhere) {
  etcd_.SetQuorum(false);
  EtcdMembership a(etcd_, Options("a"));
  absl::Status s = a.Start();
  EXPECT_EQ(s.code(), absl::StatusCode::kUnavailable);
  EXPECT_NE(s.message().find("fake-etcd"), std::string::npos) << s;
  EXPECT_NE(s.message().find("replica a"), std::string::npos) << s;
}

TEST_F(MembershipTest, AnIdWithASlashIsRefused) {
  EtcdMembership a(etcd_, Options("a/b"));
  EXPECT_EQ(a.Start().code(), absl::StatusCode::kInvalidArgument);
}

}  // namespace
}  // namespace herd::controlplane
