// ClusterSync: what other replicas wrote reaches this replica's hub. Two hubs share one store
// (an SQLite file opened twice stands in for etcd's keyspace: the hub is store-agnostic) and
// a FakeEtcd carries the change notices (<p>/hosts/, <p>/config/) that the etcd store writes
// alongside. No sleeps: watches are delivered by the test, the sync's thread waited for.
#include "controlplane/cluster/cluster_sync.h"

#include "controlplane/cluster/membership.h"

#include <gtest/gtest.h>

#include <chrono>
#include <thread>

#include <memory>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"
#include "common/clock.h"
#include "controlplane/core/hub.h"
#include "controlplane/core/secrets.h"
#include "tests/fakes/fake_etcd.h"
#include "tests/fakes/fake_host_session.h"
#include "tests/fakes/fake_scheduler.h"
#include "tests/fakes/no_quorum_store.h"
#include "tests/fakes/temp_dir.h"

namespace herd::controlplane {
namespace {

using herd::testing::FakeEtcd;
using herd::testing::FakeHostSession;

BackoffOptions FastRetry() {
  return BackoffOptions{.initial = absl::Milliseconds(1),
                        .max = absl::Milliseconds(5),
                        .multiplier = 2.0,
                        .jitter = 0};
}

herd::v1::Hello MakeHello(const std::string& id) {
  herd::v1::Hello h;
  h.set_host_id(id);
  h.set_hostname(id + ".example");
  auto* m = h.add_modules();
  m->set_name("app");
  m->set_version("1.0.0");
  m->set_defaults_json(R"({"level":"info"})");
  return h;
}

// One replica: its own store connection, hub and sync, over the shared file and FakeEtcd.
struct Replica {
  Replica(const std::string& db, FakeEtcd& etcd, bool read_unknown_hosts) {
    auto opened = OpenSqliteStore(db);
    EXPECT_TRUE(opened.ok()) << opened.status();
    store = std::move(*opened);
    HubOptions options;
    options.read_unknown_hosts = read_unknown_hosts;
    hub = std::make_unique<Hub>(*store, sched, options);
    EXPECT_TRUE(hub->Start().ok());
    ClusterSyncOptions so;
    so.retry = FastRetry();
    sync = std::make_unique<ClusterSync>(etcd, *store, *hub, so);
    EXPECT_TRUE(sync->Start().ok());
  }
  ~Replica() {
    sync->Stop();
    hub->Stop();
  }
  absl::StatusOr<herd::v1::FleetConfigChange> Set(const std::string& value) {
    herd::v1::FleetSetConfigRequest req;
    req.mutable_scope()->set_global(true);
    req.set_module("app");
    req.set_key("level");
    req.set_value(value);
    req.set_force(true);  // the module may be on hosts of other replicas only
    return hub->SetConfig(req, Actor{"test", Role::kOperator, ""});
  }

  FakeClock clock;
  herd::testing::FakeScheduler sched{clock};
  std::unique_ptr<Store> store;
  std::unique_ptr<Hub> hub;
  std::unique_ptr<ClusterSync> sync;
};

std::string Level(const herd::v1::ConfigSnapshot& snap) {
  auto m = snap.modules().find("app");
  if (m == snap.modules().end()) return "<none>";
  auto v = m->second.values().find("level");
  return v == m->second.values().end() ? "<none>" : v->second;
}

class ClusterSyncTest : public ::testing::Test {
 protected:
  void SetUp() override {
    db_ = tmp_.Path("herd.db");
    auto store = OpenSqliteStore(db_);
    ASSERT_TRUE(store.ok());
    ASSERT_TRUE((*store)->PutSetting("join_token_sha256", Sha256Hex("jt")).ok());
  }
  // What the etcd store writes with every config change / host record (the sync watches
  // the prefixes, whatever the keys' encoding).
  void NoticeConfig() { ASSERT_TRUE(etcd_.Put("/herd/config/revision", "x").ok()); }
  void NoticeHost(const std::string& id, const std::string& value = "") {
    ASSERT_TRUE(etcd_.Put("/herd/hosts/" + id, value).ok());
  }
  std::shared_ptr<FakeHostSession> Attach(Replica& r, const std::string& id,
                                          const std::string& bearer = "jt") {
    auto session = std::make_shared<FakeHostSession>();
    absl::Status s = r.hub->Connect(bearer, MakeHello(id), session);
    EXPECT_TRUE(s.ok()) << s;
    return session;
  }
  std::string Credential(const FakeHostSession& s) {
    for (const auto& m : s.sent()) {
      if (m.has_welcome()) return m.welcome().host_credential();
    }
    return "";
  }

  herd::testing::ScopedTempDir tmp_;
  std::string db_;
  FakeEtcd etcd_;
};

TEST_F(ClusterSyncTest, AConfigChangeOnAnotherReplicaReachesHostsHeldHereInVersionOrder) {
  Replica a(db_, etcd_, true), b(db_, etcd_, true);
  auto on_b = Attach(b, "h1");
  const size_t first = on_b->configs().size();
  ASSERT_TRUE(a.Set("debug").ok());
  NoticeConfig();
  etcd_.DeliverWatches();
  ASSERT_TRUE(b.sync->WaitApplied().ok());
  auto configs = on_b->configs();
  ASSERT_EQ(configs.size(), first + 1);
  EXPECT_EQ(Level(configs.back()), "debug");
  const uint64_t v1 = configs.back().version();
  // Two changes, one notice between them seen late: only the newest is sent, newer version.
  ASSERT_TRUE(a.Set("warn").ok());
  ASSERT_TRUE(a.Set("error").ok());
  NoticeConfig();
  NoticeConfig();
  etcd_.DeliverWatches();
  ASSERT_TRUE(b.sync->WaitApplied().ok());
  configs = on_b->configs();
  ASSERT_EQ(configs.size(), first + 2);
  EXPECT_EQ(Level(configs.back()), "error");
  EXPECT_GT(configs.back().version(), v1);
  EXPECT_GE(b.sync->stats().config_reloads, 2u);
}

TEST_F(ClusterSyncTest, ThisReplicasOwnChangeIsNotPushedTwice) {
  Replica b(db_, etcd_, true);
  auto on_b = Attach(b, "h1");
  ASSERT_TRUE(b.Set("debug").ok());
  const size_t after_own = on_b->configs().size();
  EXPECT_EQ(Level(on_b->last_config()), "debug");
  NoticeConfig();  // its own change, seen through the watch
  etcd_.DeliverWatches();
  ASSERT_TRUE(b.sync->WaitApplied().ok());
  EXPECT_EQ(on_b->configs().size(), after_own);
}

TEST_F(ClusterSyncTest, AHostRegisteredElsewhereIsKnownHereOffline) {
  Replica a(db_, etcd_, true), b(db_, etcd_, true);
  Attach(a, "h2");
  ASSERT_TRUE(a.hub->FlushHostRecords().ok());
  NoticeHost("h2");
  etcd_.DeliverWatches();
  ASSERT_TRUE(b.sync->WaitApplied().ok());
  auto host = b.hub->GetHost("h2");
  ASSERT_TRUE(host.ok()) << host.status();
  EXPECT_EQ(host->host().hostname(), "h2.example");
  EXPECT_EQ(b.sync->stats().hosts_stored, 1u);
  EXPECT_EQ(b.hub->stats().connected, 0u);
}

TEST_F(ClusterSyncTest, AHostHeldHereKeepsItsOwnState) {
  Replica a(db_, etcd_, true), b(db_, etcd_, true);
  Attach(b, "h1");
  ASSERT_TRUE(b.hub->FlushHostRecords().ok());
  // Another replica's older view of h1 (a stale write) reaches b.
  auto stale = a.store->GetHost("h1");
  ASSERT_TRUE(stale.ok());
  stale->hostname = "stale.example";
  ASSERT_TRUE(a.store->PutHost(*stale).ok());
  NoticeHost("h1");
  etcd_.DeliverWatches();
  ASSERT_TRUE(b.sync->WaitApplied().ok());
  EXPECT_EQ(b.hub->GetHost("h1")->host().hostname(), "h1.example");
}

TEST_F(ClusterSyncTest, ACredentialOfAHostRegisteredElsewhereIsReadFromTheStore) {
  Replica a(db_, etcd_, true), b(db_, etcd_, true), single(db_, etcd_, false);
  auto on_a = Attach(a, "h3");
  ASSERT_TRUE(a.hub->FlushHostRecords().ok());
  const std::string credential = Credential(*on_a);
  ASSERT_FALSE(credential.empty());
  // Before b's watch told it of h3: b reads it; a single node does not (refused, as ever).
  auto session = std::make_shared<FakeHostSession>();
  EXPECT_TRUE(b.hub->Connect(credential, MakeHello("h3"), session).ok());
  EXPECT_EQ(b.hub->stats().connected, 1u);
  EXPECT_EQ(single.hub->Connect(credential, MakeHello("h3"), session).code(),
            absl::StatusCode::kUnauthenticated);
  // A wrong credential for it is refused on b too.
  EXPECT_EQ(b.hub->Connect("nope", MakeHello("h3"), std::make_shared<FakeHostSession>()).code(),
            absl::StatusCode::kUnauthenticated);
}

TEST_F(ClusterSyncTest, QuorumLossKeepsStreamsAndConfigAndRecoversAlone) {
  Replica a(db_, etcd_, true), b(db_, etcd_, true);
  MembershipOptions mo;
  mo.self_id = "b";
  mo.address = "b.test:7443";
  mo.retry = FastRetry();
  EtcdMembership membership(etcd_, mo);
  b.hub->set_presence(&membership);
  ASSERT_TRUE(membership.Start().ok());
  auto h1 = Attach(b, "h1");
  ASSERT_TRUE(membership.FlushPresence().ok());
  ASSERT_TRUE(a.Set("debug").ok());
  NoticeConfig();
  const size_t configs = h1->configs().size();

  etcd_.SetQuorum(false);
  etcd_.DeliverWatches();  // silent while etcd has no leader
  auto h2 = Attach(b, "h2");  // agents still connect; their presence waits
  EXPECT_EQ(membership.FlushPresence().code(), absl::StatusCode::kUnavailable);
  EXPECT_FALSE(h1->closed());
  EXPECT_EQ(h1->configs().size(), configs);  // its config as it was

  etcd_.SetQuorum(true);
  etcd_.DeliverWatches();
  ASSERT_TRUE(b.sync->WaitApplied().ok());
  EXPECT_EQ(Level(h1->last_config()), "debug");
  EXPECT_EQ(Level(h2->last_config()), "debug");
  absl::Status flushed = membership.FlushPresence();
  for (int i = 0; i < 10 && !flushed.ok(); ++i) flushed = membership.FlushPresence();
  EXPECT_TRUE(flushed.ok()) << flushed;
  EXPECT_EQ(etcd_.Dump("/herd/presence/").at("/herd/presence/h2"), "b");
  EXPECT_FALSE(h1->closed());
  EXPECT_FALSE(h2->closed());
  b.hub->Stop();  // before the membership it reports to
}

// The hub alone while its store has no quorum (what the etcd store answers then).
TEST_F(ClusterSyncTest, WithoutQuorumTheHubKeepsItsStreamsServesReconnectsAndRetriesWrites) {
  auto sqlite = OpenSqliteStore(db_);
  ASSERT_TRUE(sqlite.ok());
  herd::testing::NoQuorumStore store(std::move(*sqlite));
  FakeClock clock;
  herd::testing::FakeScheduler sched{clock};
  HubOptions options;
  options.read_unknown_hosts = true;
  Hub hub(store, sched, options);
  ASSERT_TRUE(hub.Start().ok());
  auto first = std::make_shared<FakeHostSession>();
  ASSERT_TRUE(hub.Connect("jt", MakeHello("h1"), first).ok());
  const std::string credential = Credential(*first);

  store.no_quorum = true;
  clock.Advance(absl::Seconds(10));  // past the join token's cache
  // A reconnect (an agent whose replica died) is served from memory.
  auto again = std::make_shared<FakeHostSession>();
  absl::Status s = hub.Connect(credential, MakeHello("h1"), again);
  EXPECT_TRUE(s.ok()) << s;
  EXPECT_FALSE(again->closed());
  // A host this replica cannot tell about is not refused for good: UNAVAILABLE, retried.
  EXPECT_EQ(hub.Connect("hc_x", MakeHello("h9"), std::make_shared<FakeHostSession>()).code(),
            absl::StatusCode::kUnavailable);
  herd::v1::FleetSetConfigRequest req;
  req.mutable_scope()->set_global(true);
  req.set_module("app");
  req.set_key("level");
  req.set_value("debug");
  auto change = hub.SetConfig(req, Actor{"test", Role::kOperator, ""});
  EXPECT_EQ(change.status().code(), absl::StatusCode::kUnavailable);
  EXPECT_NE(change.status().message().find("no quorum"), std::string::npos);
  EXPECT_EQ(hub.FlushHostRecords().code(), absl::StatusCode::kUnavailable);

  store.no_quorum = false;
  sched.Advance(absl::Seconds(1));  // the writer's retry, on the writer's own thread: until it
  // has run, a flush answers with the last failure at once, so ask until it has (bounded).
  absl::Status flushed = hub.FlushHostRecords();
  for (int i = 0; i < 500 && !flushed.ok(); ++i) {
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
    flushed = hub.FlushHostRecords();
  }
  EXPECT_TRUE(flushed.ok()) << flushed;
  EXPECT_TRUE(hub.SetConfig(req, Actor{"test", Role::kOperator, ""}).ok());
  EXPECT_EQ(Level(again->last_config()), "debug");
  hub.Stop();
}

// Hellos for hosts unknown here each cost a store read before any credential is checked:
// bounded per second, the rest refused (UNAVAILABLE, retried by agents) until the next second.
TEST_F(ClusterSyncTest, StoreReadsForUnknownHostsAreBoundedPerSecond) {
  auto sqlite = OpenSqliteStore(db_);
  ASSERT_TRUE(sqlite.ok());
  FakeClock clock;
  herd::testing::FakeScheduler sched{clock};
  HubOptions options;
  options.read_unknown_hosts = true;
  ASSERT_TRUE((*sqlite)->PutSetting("join_token_sha256", Sha256Hex("jt")).ok());
  Hub hub(**sqlite, sched, options);
  ASSERT_TRUE(hub.Start().ok());
  auto hello = [&](int i) {
    return hub.Connect("hc_made_up", MakeHello(absl::StrCat("ghost", i)),
                       std::make_shared<FakeHostSession>());
  };
  int refused_as_unknown = 0, refused_busy = 0;
  for (int i = 0; i < 60; ++i) {
    const absl::Status s = hello(i);
    if (s.code() == absl::StatusCode::kUnauthenticated) ++refused_as_unknown;
    if (s.code() == absl::StatusCode::kUnavailable) ++refused_busy;
  }
  EXPECT_EQ(refused_as_unknown, 50);
  EXPECT_EQ(refused_busy, 10);
  // Hosts presenting the join token are not limited, in the same second: a fleet joining at
  // once must not be refused (a join reads nothing from the store: a host registered
  // elsewhere is known here through the sync).
  for (int i = 0; i < 120; ++i) {
    const absl::Status s = hub.Connect("jt", MakeHello(absl::StrCat("joining", i)),
                                       std::make_shared<FakeHostSession>());
    EXPECT_TRUE(s.ok()) << "join " << i << ": " << s;
  }
  clock.Advance(absl::Seconds(1));
  EXPECT_EQ(hello(61).code(), absl::StatusCode::kUnauthenticated);  // read again, not found
  hub.Stop();
}

// A fleet that records what the sync told it, and fails its reloads while told to.
class RecordingFleet final : public ReplicatedFleet {
 public:
  void HostStored(const HostRecord& r) override {
    absl::MutexLock l(&mu_);
    stored.push_back(r);
  }
  void HostStatusStored(const HostStatus& st) override {
    absl::MutexLock l(&mu_);
    statuses.push_back(st);
  }
  void HostDeleted(const std::string& id) override {
    absl::MutexLock l(&mu_);
    deleted.push_back(id);
  }
  absl::StatusOr<std::vector<std::string>> ReloadConfig() override {
    absl::MutexLock l(&mu_);
    ++reloads;
    if (fail) return absl::UnavailableError("the store has no quorum (injected)");
    return std::vector<std::string>{"h1"};
  }
  absl::Mutex mu_;
  std::vector<HostRecord> stored;
  std::vector<HostStatus> statuses;
  std::vector<std::string> deleted;
  int reloads = 0;
  bool fail = false;
};

TEST_F(ClusterSyncTest, AReloadThatFailsIsRetriedUntilTheStoreAnswers) {
  auto store = OpenSqliteStore(db_);
  ASSERT_TRUE(store.ok());
  RecordingFleet fleet;
  ClusterSyncOptions so;
  so.retry = FastRetry();
  ClusterSync sync(etcd_, **store, fleet, so);
  ASSERT_TRUE(sync.Start().ok());
  ASSERT_TRUE(sync.WaitApplied().ok());  // the start's own reload
  {
    absl::MutexLock l(&fleet.mu_);
    fleet.fail = true;
  }
  NoticeConfig();
  etcd_.DeliverWatches();
  EXPECT_EQ(sync.WaitApplied().code(), absl::StatusCode::kUnavailable);
  {
    absl::MutexLock l(&fleet.mu_);
    fleet.fail = false;
  }
  absl::Status s = sync.WaitApplied();
  for (int i = 0; i < 10 && !s.ok(); ++i) s = sync.WaitApplied();
  EXPECT_TRUE(s.ok()) << s;
  EXPECT_GE(sync.stats().failures, 1u);
  EXPECT_EQ(sync.stats().hosts_pushed, 2u);  // the start's and the retried one
}

TEST_F(ClusterSyncTest, HostRecordsAreDecodedWithTheStoresDecoderAndDeletesForwarded) {
  auto store = OpenSqliteStore(db_);
  ASSERT_TRUE(store.ok());
  RecordingFleet fleet;
  ClusterSyncOptions so;
  so.retry = FastRetry();
  so.decode_host = [](const etcd::KeyValue& kv) -> absl::StatusOr<HostRecord> {
    if (kv.value.empty()) return absl::DataLossError("empty");
    HostRecord r;
    r.host_id = kv.key.substr(kv.key.rfind('/') + 1);
    r.hostname = kv.value;
    return r;
  };
  ClusterSync sync(etcd_, **store, fleet, so);
  ASSERT_TRUE(sync.Start().ok());
  NoticeHost("h5", "five.example");  // not in the SQLite file: decoded, not read
  NoticeHost("h6", "");              // undecodable, and not stored: skipped
  ASSERT_TRUE(etcd_.Delete("/herd/hosts/h5").ok());
  etcd_.DeliverWatches();
  ASSERT_TRUE(sync.WaitApplied().ok());
  absl::MutexLock l(&fleet.mu_);
  // h5's put and delete were one after the other: the latest (the delete) is what counts,
  // unless the sync applied the put first.
  ASSERT_EQ(fleet.deleted.size(), 1u);
  EXPECT_EQ(fleet.deleted[0], "h5");
  for (const auto& r : fleet.stored) EXPECT_EQ(r.hostname, "five.example");
}

TEST_F(ClusterSyncTest, AStatusWrittenAfterTheRecordIsAppliedAlone) {
  auto store = OpenSqliteStore(db_);
  ASSERT_TRUE(store.ok());
  RecordingFleet fleet;
  ClusterSyncOptions so;
  so.retry = FastRetry();
  so.decode_host = [](const etcd::KeyValue& kv) -> absl::StatusOr<HostRecord> {
    HostRecord r;
    r.host_id = kv.key.substr(std::string("/herd/hosts/").size());
    r.hostname = kv.value;
    return r;
  };
  so.decode_status = [](const etcd::KeyValue& kv) -> absl::StatusOr<HostStatus> {
    HostStatus st;
    st.host_id = "h7";
    st.acked_config_version = std::stoull(kv.value);
    return st;
  };
  ClusterSync sync(etcd_, **store, fleet, so);
  ASSERT_TRUE(sync.Start().ok());
  NoticeHost("h7", "seven.example");
  ASSERT_TRUE(etcd_.Put("/herd/hosts/h7/status", "4").ok());
  etcd_.DeliverWatches();
  ASSERT_TRUE(sync.WaitApplied().ok());
  ASSERT_TRUE(etcd_.Put("/herd/hosts/h7/status", "5").ok());
  etcd_.DeliverWatches();
  ASSERT_TRUE(sync.WaitApplied().ok());
  absl::MutexLock l(&fleet.mu_);
  ASSERT_GE(fleet.stored.size(), 1u);
  EXPECT_EQ(fleet.stored.back().hostname, "seven.example");
  ASSERT_GE(fleet.statuses.size(), 1u);
  EXPECT_EQ(fleet.statuses.back().acked_config_version, 5u);
}

TEST_F(ClusterSyncTest, AnotherReplicasStatusMovesAnOfflineHostsAckedVersion) {
  Replica b(db_, etcd_, true);
  HostRecord r;
  r.host_id = "h8";
  r.hostname = "h8.example";
  r.acked_config_version = 2;
  b.hub->HostStored(r);
  b.hub->HostStatusStored(HostStatus{"h8", 0, 7});
  EXPECT_EQ(b.hub->GetHost("h8")->host().acked_config_version(), 7u);
  b.hub->HostStatusStored(HostStatus{"h8", 0, 3});  // older: never back
  EXPECT_EQ(b.hub->GetHost("h8")->host().acked_config_version(), 7u);
}

}  // namespace
}  // namespace herd::controlplane
