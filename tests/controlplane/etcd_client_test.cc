// The etcd client against a real etcd (Debian's etcd 3.4, started by EtcdHarness on
// loopback): KV, Txn, leases, watches across a restart and a compaction, auth, TLS, and the
// "no quorum" answer when a 3-member cluster loses two members.
#include "controlplane/etcd/etcd_client.h"

#include <gtest/gtest.h>

#include <memory>
#include <string>
#include <vector>

#include "absl/strings/str_join.h"
#include "absl/synchronization/mutex.h"
#include "tests/integration/agent_harness.h"
#include "tests/support/etcd_harness.h"

namespace herd::etcd {
namespace {

using herd::testing::EtcdHarness;
using herd::testing::WaitFor;

std::unique_ptr<Client> ConnectTo(const EtcdHarness& etcd, Options o = {}) {
  o.endpoints = etcd.EndpointList();
  auto client = Client::Connect(o);
  EXPECT_TRUE(client.ok()) << client.status();
  return client.ok() ? *std::move(client) : nullptr;
}

// Collects what a watch delivers, for the test's thread to wait on.
class WatchLog {
 public:
  void Add(const WatchBatch& batch) {
    absl::MutexLock lock(&mu_);
    batches_.push_back(batch);
    for (const WatchEvent& e : batch.events) {
      events_.push_back((e.type == WatchEvent::Type::kPut ? "put " : "del ") + e.kv.key + "=" +
                        e.kv.value);
    }
  }
  std::vector<std::string> events() {
    absl::MutexLock lock(&mu_);
    return events_;
  }
  std::vector<WatchBatch> batches() {
    absl::MutexLock lock(&mu_);
    return batches_;
  }
  bool WaitForEvents(size_t n) {
    return WaitFor([&] { return events().size() >= n; }, absl::Seconds(20));
  }
  std::function<void(const WatchBatch&)> Callback() {
    return [this](const WatchBatch& b) { Add(b); };
  }

 private:
  absl::Mutex mu_;
  std::vector<WatchBatch> batches_ ABSL_GUARDED_BY(mu_);
  std::vector<std::string> events_ ABSL_GUARDED_BY(mu_);
};

// One etcd for the tests that do not stop it; each test uses keys of its own.
class EtcdClientTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    etcd_ = new EtcdHarness();
    ASSERT_TRUE(etcd_->Start()) << etcd_->error();
  }
  static void TearDownTestSuite() {
    delete etcd_;
    etcd_ = nullptr;
  }
  void SetUp() override {
    ASSERT_NE(etcd_, nullptr);
    client_ = ConnectTo(*etcd_);
    ASSERT_NE(client_, nullptr);
  }
  static EtcdHarness* etcd_;
  std::unique_ptr<Client> client_;
};
EtcdHarness* EtcdClientTest::etcd_ = nullptr;

TEST_F(EtcdClientTest, PutGetAndRangeOverAPrefixSortedAndLimited) {
  for (const char* k : {"b", "a", "c"}) {
    ASSERT_TRUE(client_->Put(std::string("/kv/") + k, std::string("v") + k).ok());
  }
  ASSERT_TRUE(client_->Put("/kw", "outside").ok());
  auto a = client_->Get("/kv/a");
  ASSERT_TRUE(a.ok()) << a.status();
  ASSERT_TRUE(a->has_value());
  EXPECT_EQ((*a)->value, "va");
  EXPECT_EQ((*a)->version, 1);
  auto absent = client_->Get("/kv/zz");
  ASSERT_TRUE(absent.ok());
  EXPECT_FALSE(absent->has_value());

  RangeOptions o;
  o.range_end = PrefixEnd("/kv/");
  o.sort = RangeOptions::Sort::kKeyDescend;
  o.limit = 2;
  auto r = client_->Range("/kv/", o);
  ASSERT_TRUE(r.ok()) << r.status();
  ASSERT_EQ(r->kvs.size(), 2u);
  EXPECT_EQ(r->kvs[0].key, "/kv/c");
  EXPECT_EQ(r->kvs[1].key, "/kv/b");
  EXPECT_EQ(r->count, 3);
  EXPECT_TRUE(r->more);
  EXPECT_GT(r->revision, 0);
}

TEST_F(EtcdClientTest, TxnRunsSuccessOrFailureByItsCompares) {
  auto created = client_->Txn({Compare::Absent("/txn/owner")}, {Op::Put("/txn/owner", "me")},
                              {Op::Get("/txn/owner")});
  ASSERT_TRUE(created.ok()) << created.status();
  EXPECT_TRUE(created->succeeded);
  auto again = client_->Txn({Compare::Absent("/txn/owner")}, {Op::Put("/txn/owner", "you")},
                            {Op::Get("/txn/owner")});
  ASSERT_TRUE(again.ok()) << again.status();
  EXPECT_FALSE(again->succeeded);
  ASSERT_EQ(again->ranges.size(), 1u);
  ASSERT_EQ(again->ranges[0].kvs.size(), 1u);
  EXPECT_EQ(again->ranges[0].kvs[0].value, "me");
  const int64_t rev = again->ranges[0].kvs[0].mod_revision;
  auto cas = client_->Txn({Compare::ModRevisionIs("/txn/owner", rev),
                           Compare::ValueIs("/txn/owner", "me")},
                          {Op::Put("/txn/owner", "next"), Op::Delete("/txn/other")});
  ASSERT_TRUE(cas.ok()) << cas.status();
  EXPECT_TRUE(cas->succeeded);
  EXPECT_GT(cas->revision, rev);
  auto stale = client_->Txn({Compare::ModRevisionIs("/txn/owner", rev)}, {Op::Put("/txn/owner", "x")});
  ASSERT_TRUE(stale.ok());
  EXPECT_FALSE(stale->succeeded);
  EXPECT_EQ((*client_->Get("/txn/owner"))->value, "next");
  ASSERT_TRUE(client_->Put("/txn/second", "2").ok());
  auto read = client_->Txn({}, {Op::Get("/txn/", PrefixEnd("/txn/"))});
  ASSERT_TRUE(read.ok()) << read.status();
  ASSERT_EQ(read->ranges.size(), 1u);
  EXPECT_EQ(read->ranges[0].count, 2);
}

TEST_F(EtcdClientTest, DeleteRemovesAKeyOrARange) {
  for (const char* k : {"/del/a", "/del/b", "/del/c", "/delx"}) ASSERT_TRUE(client_->Put(k, "v").ok());
  auto one = client_->Delete("/del/a");
  ASSERT_TRUE(one.ok()) << one.status();
  EXPECT_EQ(*one, 1);
  auto rest = client_->Delete("/del/", PrefixEnd("/del/"));
  ASSERT_TRUE(rest.ok());
  EXPECT_EQ(*rest, 2);
  EXPECT_TRUE(client_->Get("/delx")->has_value());
  EXPECT_EQ(*client_->Delete("/del/a"), 0);
}

TEST_F(EtcdClientTest, KeysOfALeaseVanishWhenItIsRevokedOrExpires) {
  auto revoked = client_->LeaseGrant(absl::Seconds(60));
  ASSERT_TRUE(revoked.ok()) << revoked.status();
  ASSERT_TRUE(client_->Put("/lease/revoked", "v", *revoked).ok());
  EXPECT_EQ((*client_->Get("/lease/revoked"))->lease, *revoked);
  ASSERT_TRUE(client_->LeaseRevoke(*revoked).ok());
  EXPECT_FALSE(client_->Get("/lease/revoked")->has_value());
  EXPECT_EQ(client_->LeaseRevoke(*revoked).code(), absl::StatusCode::kNotFound);

  auto expiring = client_->LeaseGrant(absl::Seconds(1));
  ASSERT_TRUE(expiring.ok()) << expiring.status();
  ASSERT_TRUE(client_->Put("/lease/expiring", "v", *expiring).ok());
  EXPECT_TRUE(WaitFor([&] { return !client_->Get("/lease/expiring")->has_value(); },
                      absl::Seconds(15)));
}

TEST_F(EtcdClientTest, KeptLeaseOutlivesItsTtlAndIsReplacedWhenLost) {
  absl::Mutex mu;
  int lost = 0;
  std::vector<int64_t> renewed;
  auto kept = client_->KeepLease(
      absl::Seconds(2), [&] { absl::MutexLock l(&mu); ++lost; },
      [&](int64_t id) { absl::MutexLock l(&mu); renewed.push_back(id); });
  ASSERT_TRUE(kept.ok()) << kept.status();
  const int64_t first = (*kept)->id();
  ASSERT_NE(first, 0);
  ASSERT_TRUE(client_->Put("/kept/k", "v", first).ok());
  // Three TTLs: without the keepalives the key would be gone.
  absl::SleepFor(absl::Seconds(6));
  EXPECT_TRUE(client_->Get("/kept/k")->has_value());

  ASSERT_TRUE(client_->LeaseRevoke(first).ok());
  ASSERT_TRUE(WaitFor([&] { absl::MutexLock l(&mu); return !renewed.empty(); }, absl::Seconds(10)));
  absl::MutexLock l(&mu);
  EXPECT_EQ(lost, 1);
  EXPECT_NE(renewed[0], first);
  EXPECT_EQ((*kept)->id(), renewed[0]);
}

TEST_F(EtcdClientTest, DestroyingAKeptLeaseRevokesIt) {
  auto kept = client_->KeepLease(absl::Seconds(30), nullptr, nullptr);
  ASSERT_TRUE(kept.ok()) << kept.status();
  ASSERT_TRUE(client_->Put("/kept2/k", "v", (*kept)->id()).ok());
  kept->reset();
  EXPECT_FALSE(client_->Get("/kept2/k")->has_value());
}

TEST_F(EtcdClientTest, WatchDeliversPutsAndDeletesInOrder) {
  WatchLog log;
  auto start = client_->Put("/w/start", "s");
  ASSERT_TRUE(start.ok());
  auto watch = client_->WatchRange("/w/", PrefixEnd("/w/"), *start + 1, log.Callback());
  ASSERT_TRUE(watch.ok()) << watch.status();
  ASSERT_TRUE(client_->Put("/w/a", "1").ok());
  ASSERT_TRUE(client_->Put("/w/b", "2").ok());
  ASSERT_TRUE(client_->Delete("/w/a").ok());
  ASSERT_TRUE(client_->Put("/wx", "outside").ok());
  ASSERT_TRUE(client_->Put("/w/a", "3").ok());
  ASSERT_TRUE(log.WaitForEvents(4));
  EXPECT_EQ(log.events(), (std::vector<std::string>{"put /w/a=1", "put /w/b=2", "del /w/a=",
                                                    "put /w/a=3"}));
  int64_t last = 0;
  for (const WatchBatch& b : log.batches()) {
    EXPECT_FALSE(b.compacted);
    EXPECT_GE(b.revision, last);
    last = b.revision;
  }
}

TEST_F(EtcdClientTest, CompactionEndsAWatchFromBeforeIt) {
  auto r1 = client_->Put("/c/k", "1");
  ASSERT_TRUE(r1.ok());
  ASSERT_TRUE(client_->Put("/c/k", "2").ok());
  auto r3 = client_->Put("/c/k", "3");
  ASSERT_TRUE(r3.ok());
  ASSERT_TRUE(client_->Compact(*r3).ok());
  RangeOptions old;
  old.revision = *r1;
  EXPECT_EQ(client_->Range("/c/k", old).status().code(), absl::StatusCode::kFailedPrecondition);
  WatchLog log;
  auto watch = client_->WatchRange("/c/", PrefixEnd("/c/"), *r1, log.Callback());
  ASSERT_TRUE(watch.ok());
  ASSERT_TRUE(WaitFor([&] { return !log.batches().empty(); }));
  WatchBatch b = log.batches().front();
  EXPECT_TRUE(b.compacted);
  EXPECT_EQ(b.error.code(), absl::StatusCode::kFailedPrecondition) << b.error;
  EXPECT_TRUE(log.events().empty());
}

TEST_F(EtcdClientTest, EtcdsOwnRefusalIsInvalidArgument) {
  // With the client's own bound lifted, etcd's --max-txn-ops (128) refuses the request.
  Options o;
  o.max_txn_ops = 1000;
  auto lax = ConnectTo(*etcd_, o);
  ASSERT_NE(lax, nullptr);
  std::vector<Op> ops;
  for (int i = 0; i < 129; ++i) ops.push_back(Op::Put("/many/" + std::to_string(i), "v"));
  auto txn = lax->Txn({}, ops);
  EXPECT_EQ(txn.status().code(), absl::StatusCode::kInvalidArgument) << txn.status();
  EXPECT_EQ(lax->RefusedRequests(), 0);
}

TEST_F(EtcdClientTest, AWatchOutlivesItsClient) {
  WatchLog log;
  auto start = client_->Put("/outlive/start", "s");
  ASSERT_TRUE(start.ok());
  auto watch = client_->WatchRange("/outlive/", PrefixEnd("/outlive/"), *start + 1, log.Callback());
  ASSERT_TRUE(watch.ok());
  client_.reset();
  auto other = ConnectTo(*etcd_);
  ASSERT_NE(other, nullptr);
  ASSERT_TRUE(other->Put("/outlive/k", "v").ok());
  ASSERT_TRUE(log.WaitForEvents(1));
  EXPECT_EQ(log.events(), std::vector<std::string>{"put /outlive/k=v"});
}

TEST(EtcdClientRestartTest, WatchResumesAfterEtcdRestartsWithoutLosingEvents) {
  EtcdHarness etcd;
  ASSERT_TRUE(etcd.Start()) << etcd.error();
  auto client = ConnectTo(etcd);
  ASSERT_NE(client, nullptr);
  WatchLog log;
  auto seed = client->Put("/seed", "s");
  ASSERT_TRUE(seed.ok()) << seed.status();
  auto watch = client->WatchRange("/r/", PrefixEnd("/r/"), *seed + 1, log.Callback());
  ASSERT_TRUE(watch.ok());
  ASSERT_TRUE(client->Put("/r/0", "before").ok());
  ASSERT_TRUE(log.WaitForEvents(1));
  const size_t before = log.events().size();
  etcd.KillMember(0);
  ASSERT_TRUE(etcd.RestartMember(0));
  // Written before the watch's stream is back: it must still deliver them, once each.
  for (int i = 1; i <= 3; ++i) {
    absl::Status last;
    ASSERT_TRUE(WaitFor([&] {
      last = client->Put("/r/" + std::to_string(i), "after").status();
      return last.ok();
    })) << last;
  }
  ASSERT_TRUE(log.WaitForEvents(before + 3));
  std::vector<std::string> events = log.events();
  ASSERT_EQ(events.size(), before + 3) << absl::StrJoin(events, ", ");
  EXPECT_EQ(std::vector<std::string>(events.begin() + before, events.end()),
            (std::vector<std::string>{"put /r/1=after", "put /r/2=after", "put /r/3=after"}));
}

}  // namespace
}  // namespace herd::etcd
