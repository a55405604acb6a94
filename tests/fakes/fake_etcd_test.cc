// FakeEtcd keeps the etcd semantics the store and replica tests rely on.
#include "tests/fakes/fake_etcd.h"

#include <gtest/gtest.h>

#include <string>
#include <vector>

namespace herd::testing {
namespace {

using herd::etcd::Compare;
using herd::etcd::Op;
using herd::etcd::WatchBatch;
using herd::etcd::WatchEvent;

TEST(FakeEtcdTest, TxnWritesShareOneRevisionAndComparesPickTheBranch) {
  FakeEtcd etcd;
  const int64_t start = etcd.revision();
  auto r = etcd.Txn({Compare::Absent("/a")}, {Op::Put("/a", "1"), Op::Put("/b", "2")});
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_TRUE(r->succeeded);
  EXPECT_EQ(r->revision, start + 1);
  auto again = etcd.Txn({Compare::Absent("/a")}, {Op::Put("/a", "x")}, {Op::Get("/a")});
  ASSERT_TRUE(again.ok());
  EXPECT_FALSE(again->succeeded);
  ASSERT_EQ(again->ranges.size(), 1u);
  EXPECT_EQ(again->ranges[0].kvs.at(0).value, "1");
  EXPECT_EQ(etcd.revision(), start + 1);  // a read-only branch writes nothing
  std::vector<Op> many(129, Op::Put("/c", "v"));
  EXPECT_EQ(etcd.Txn({}, many).status().code(), absl::StatusCode::kInvalidArgument);
}

TEST(FakeEtcdTest, ExpiredLeaseDeletesItsKeysAndKeptLeaseRenews) {
  FakeEtcd etcd;
  int lost = 0;
  int64_t renewed = 0;
  auto kept = etcd.KeepLease(absl::Seconds(5), [&] { ++lost; }, [&](int64_t id) { renewed = id; });
  ASSERT_TRUE(kept.ok());
  const int64_t first = (*kept)->id();
  ASSERT_TRUE(etcd.Put("/presence/h1", "r1", first).ok());
  etcd.ExpireLease(first);
  EXPECT_TRUE(etcd.Dump("/presence/").empty());
  EXPECT_EQ(lost, 1);
  EXPECT_NE(renewed, 0);
  EXPECT_NE(renewed, first);
  EXPECT_EQ((*kept)->id(), renewed);
  EXPECT_EQ(etcd.Put("/x", "v", first).status().code(), absl::StatusCode::kNotFound);
}

TEST(FakeEtcdTest, WatchReplaysFromARevisionAndReportsCompaction) {
  FakeEtcd etcd;
  const int64_t from = etcd.revision() + 1;
  ASSERT_TRUE(etcd.Put("/w/a", "1").ok());
  ASSERT_TRUE(etcd.Put("/other", "x").ok());
  ASSERT_TRUE(etcd.Delete("/w/a").ok());
  std::vector<WatchBatch> got;
  auto w = etcd.WatchRange("/w/", "/w0", from, [&](const WatchBatch& b) { got.push_back(b); });
  ASSERT_TRUE(w.ok());
  etcd.DeliverWatches();
  ASSERT_EQ(got.size(), 2u);
  EXPECT_EQ(got[0].events.at(0).type, WatchEvent::Type::kPut);
  EXPECT_EQ(got[1].events.at(0).type, WatchEvent::Type::kDelete);
  ASSERT_TRUE(etcd.Compact(etcd.revision()).ok());
  std::vector<WatchBatch> late;
  auto w2 = etcd.WatchRange("/w/", "/w0", from, [&](const WatchBatch& b) { late.push_back(b); });
  ASSERT_TRUE(w2.ok());
  etcd.DeliverWatches();
  ASSERT_EQ(late.size(), 1u);
  EXPECT_TRUE(late[0].compacted);
}

TEST(FakeEtcdTest, NoQuorumRefusesEveryCallUntilItReturns) {
  FakeEtcd etcd;
  etcd.SetQuorum(false);
  auto put = etcd.Put("/k", "v");
  EXPECT_EQ(put.status().code(), absl::StatusCode::kUnavailable);
  EXPECT_NE(put.status().message().find("no quorum"), std::string::npos);
  etcd.SetQuorum(true);
  EXPECT_TRUE(etcd.Put("/k", "v").ok());
}

}  // namespace
}  // namespace herd::testing
