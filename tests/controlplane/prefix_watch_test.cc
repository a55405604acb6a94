// PrefixWatch on FakeEtcd: a snapshot then the batches after it; a watch ended by compaction is
// read again and resumed from there, with nothing lost and nothing applied twice.
#include "controlplane/cluster/prefix_watch.h"

#include <gtest/gtest.h>

#include <map>
#include <mutex>
#include <string>

#include "tests/fakes/fake_etcd.h"

namespace herd::controlplane {
namespace {

using herd::testing::FakeEtcd;

// What a consumer knows of the prefix: key → value.
struct Mirror {
  std::mutex mu;
  std::map<std::string, std::string> keys;
  int snapshots = 0;
  PrefixWatch::Handlers Handlers() {
    return {[this](const etcd::RangeResult& all) {
              std::lock_guard<std::mutex> l(mu);
              ++snapshots;
              keys.clear();
              for (const auto& kv : all.kvs) keys[kv.key] = kv.value;
            },
            [this](const etcd::WatchBatch& batch) {
              std::lock_guard<std::mutex> l(mu);
              for (const auto& ev : batch.events) {
                if (ev.type == etcd::WatchEvent::Type::kPut) {
                  keys[ev.kv.key] = ev.kv.value;
                } else {
                  keys.erase(ev.kv.key);
                }
              }
            }};
  }
  std::map<std::string, std::string> Get() {
    std::lock_guard<std::mutex> l(mu);
    return keys;
  }
};

BackoffOptions Fast() { return {absl::Milliseconds(1), absl::Milliseconds(5), 2.0, 0}; }

TEST(RangeEndOfPrefixTest, IncrementsTheLastByteThatCanBe) {
  EXPECT_EQ(RangeEndOfPrefix("/herd/hosts/"), "/herd/hosts0");
  EXPECT_EQ(RangeEndOfPrefix(std::string("a\xff", 2)), "b");
  EXPECT_EQ(RangeEndOfPrefix(""), std::string(1, '\0'));
}

TEST(PrefixWatchTest, ASnapshotThenEveryChangeUnderThePrefixOnly) {
  FakeEtcd etcd;
  ASSERT_TRUE(etcd.Put("/p/a", "1").ok());
  Mirror m;
  PrefixWatch w(etcd, "/p/", m.Handlers(), Fast(), "test");
  ASSERT_TRUE(w.Start().ok());
  EXPECT_EQ(m.Get(), (std::map<std::string, std::string>{{"/p/a", "1"}}));
  ASSERT_TRUE(etcd.Put("/p/b", "2").ok());
  ASSERT_TRUE(etcd.Put("/q/x", "elsewhere").ok());
  ASSERT_TRUE(etcd.Delete("/p/a").ok());
  etcd.DeliverWatches();
  EXPECT_EQ(m.Get(), (std::map<std::string, std::string>{{"/p/b", "2"}}));
}

TEST(PrefixWatchTest, AWatchEndedByCompactionIsReadAgainAndResumed) {
  FakeEtcd etcd;
  Mirror m;
  PrefixWatch w(etcd, "/p/", m.Handlers(), Fast(), "test");
  ASSERT_TRUE(w.Start().ok());
  ASSERT_TRUE(etcd.Put("/p/a", "1").ok());
  ASSERT_TRUE(etcd.Put("/p/b", "2").ok());
  ASSERT_TRUE(etcd.Delete("/p/a").ok());
  // The history the watch would resume from is gone: it ends, compacted.
  ASSERT_TRUE(etcd.Compact(etcd.revision()).ok());
  etcd.DeliverWatches();
  ASSERT_TRUE(w.WaitResyncs(1));
  EXPECT_EQ(m.Get(), (std::map<std::string, std::string>{{"/p/b", "2"}}));
  EXPECT_EQ(m.snapshots, 2);
  // And it watches again from the re-read.
  ASSERT_TRUE(etcd.Put("/p/c", "3").ok());
  etcd.DeliverWatches();
  EXPECT_EQ(m.Get().count("/p/c"), 1u);
}

TEST(PrefixWatchTest, StartFailsWhenEtcdCannotAnswer) {
  FakeEtcd etcd;
  etcd.SetQuorum(false);
  Mirror m;
  PrefixWatch w(etcd, "/p/", m.Handlers(), Fast(), "test");
  absl::Status s = w.Start();
  EXPECT_EQ(s.code(), absl::StatusCode::kUnavailable);
  EXPECT_NE(s.message().find("/p/"), std::string::npos) << s;
}

}  // namespace
}  // namespace herd::controlplane
