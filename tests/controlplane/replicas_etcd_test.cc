// Two replicas in one process over one real etcd (Debian's, on loopback, EtcdHarness): each
// its own etcd client, EtcdStore, Hub, EtcdMembership and ClusterSync, wired as the server
// wires them. A host attached to A is held by A as B sees it; a config change made through A
// reaches a host attached to B; A leaving (its lease revoked) releases its hosts on B, and a
// lease revoked under a running replica is replaced and its hosts put again.
//
// Waits are for what another process (etcd) and its watches deliver: each polls a condition
// with a deadline, never asserts on elapsed time.
#include <gtest/gtest.h>

#include <functional>
#include <memory>
#include <string>
#include <thread>

#include "common/clock.h"
#include "controlplane/cluster/cluster_sync.h"
#include "controlplane/cluster/membership.h"
#include "controlplane/core/hub.h"
#include "controlplane/core/secrets.h"
#include "controlplane/etcd/etcd_client.h"
#include "controlplane/store/etcd_layout.h"
#include "controlplane/store/etcd_store.h"
#include "tests/fakes/fake_host_session.h"
#include "tests/support/etcd_harness.h"

namespace herd::controlplane {
namespace {

using herd::testing::EtcdHarness;
using herd::testing::FakeHostSession;

// Polls `done` until it holds or 20 s passed (etcd's watch delivers in milliseconds).
bool Eventually(const std::function<bool()>& done) {
  for (int i = 0; i < 2000; ++i) {
    if (done()) return true;
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  return done();
}

BackoffOptions FastRetry() {
  return BackoffOptions{.initial = absl::Milliseconds(20),
                        .max = absl::Milliseconds(200),
                        .multiplier = 2.0,
                        .jitter = 0.5};
}

// One replica, wired as the server wires it (docs/controlplane.md, "Replicas").
struct Replica {
  Replica(const EtcdHarness& etcd, const std::string& id) {
    etcd::Options eo;
    eo.endpoints = etcd.EndpointList();
    auto c = etcd::Client::Connect(eo);
    EXPECT_TRUE(c.ok()) << c.status();
    client = std::move(*c);
    auto s = OpenEtcdStore(*client, "/herd");
    EXPECT_TRUE(s.ok()) << s.status();
    store = std::move(*s);
    HubOptions ho;
    ho.read_unknown_hosts = true;
    hub = std::make_unique<Hub>(*store, clock, ho);
    MembershipOptions mo;
    mo.self_id = id;
    mo.address = id + ".test:7443";
    mo.retry = FastRetry();
    membership = std::make_unique<EtcdMembership>(*client, mo);
    hub->set_presence(membership.get());
    ClusterSyncOptions so;
    so.retry = FastRetry();
    const EtcdKeys keys("/herd");
    so.decode_host = [](const etcd::KeyValue& kv) { return DecodeHostRecord(kv.key, kv.value); };
    so.decode_status = [keys](const etcd::KeyValue& kv) -> absl::StatusOr<HostStatus> {
      auto key = ParseHostKey(keys, kv.key);
      if (!key || !key->status) return absl::InvalidArgumentError("not a status key");
      return DecodeHostStatus(kv.key, key->host_id, kv.value);
    };
    sync = std::make_unique<ClusterSync>(*client, *store, *hub, so);
    // The order the server starts them in: the hub (hosts and config from the store), the
    // membership (the hub's presence reaches it from now on), the sync.
    absl::Status st = hub->Start();
    EXPECT_TRUE(st.ok()) << st;
    st = membership->Start();
    EXPECT_TRUE(st.ok()) << st;
    st = sync->Start();
    EXPECT_TRUE(st.ok()) << st;
  }
  ~Replica() {
    // The reverse: nothing applied to a stopped hub; the lease revoked last.
    sync->Stop();
    hub->Stop();
    membership->Stop();
  }
  std::shared_ptr<FakeHostSession> Attach(const std::string& host) {
    herd::v1::Hello hello;
    hello.set_host_id(host);
    hello.set_hostname(host + ".example");
    auto* m = hello.add_modules();
    m->set_name("app");
    m->set_version("1.0.0");
    m->set_defaults_json(R"({"level":"info"})");
    auto session = std::make_shared<FakeHostSession>();
    absl::Status s = hub->Connect("jt", hello, session);
    EXPECT_TRUE(s.ok()) << s;
    return session;
  }

  SystemClock clock;
  std::unique_ptr<etcd::Client> client;
  std::unique_ptr<Store> store;
  std::unique_ptr<Hub> hub;
  std::unique_ptr<EtcdMembership> membership;
  std::unique_ptr<ClusterSync> sync;
};

std::string Level(const herd::v1::ConfigSnapshot& snap) {
  auto m = snap.modules().find("app");
  if (m == snap.modules().end()) return "<none>";
  auto v = m->second.values().find("level");
  return v == m->second.values().end() ? "<none>" : v->second;
}

class ReplicasEtcdTest : public ::testing::Test {
 protected:
  void SetUp() override {
    ASSERT_TRUE(etcd_.Start()) << etcd_.error();
    etcd::Options eo;
    eo.endpoints = etcd_.EndpointList();
    auto c = etcd::Client::Connect(eo);
    ASSERT_TRUE(c.ok());
    auto s = OpenEtcdStore(**c, "/herd");
    ASSERT_TRUE(s.ok()) << s.status();
    ASSERT_TRUE((*s)->PutSetting("join_token_sha256", Sha256Hex("jt")).ok());
  }
  EtcdHarness etcd_;
};

TEST_F(ReplicasEtcdTest, TwoReplicasShareHostsPresenceAndConfig) {
  Replica a(etcd_, "A"), b(etcd_, "B");
  ASSERT_TRUE(Eventually([&] { return b.membership->Peers().size() == 1; }));
  EXPECT_EQ(b.membership->Peers()[0].address, "A.test:7443");

  // A host attached to A: held by A as B sees it, and known to B (offline there).
  auto h1 = a.Attach("h1");
  ASSERT_TRUE(a.membership->FlushPresence().ok());
  ASSERT_TRUE(Eventually([&] {
    auto holder = b.membership->HolderOf("h1");
    return holder && holder->id == "A";
  }));
  ASSERT_TRUE(a.hub->FlushHostRecords().ok());
  ASSERT_TRUE(Eventually([&] { return b.hub->GetHost("h1").ok(); }));
  EXPECT_EQ(b.hub->GetHost("h1")->host().hostname(), "h1.example");

  // A config change through A reaches a host attached to B.
  auto h2 = b.Attach("h2");
  herd::v1::FleetSetConfigRequest req;
  req.mutable_scope()->set_global(true);
  req.set_module("app");
  req.set_key("level");
  req.set_value("debug");
  auto change = a.hub->SetConfig(req, Actor{"test", Role::kOperator, ""});
  ASSERT_TRUE(change.ok()) << change.status();
  // The reply names the host A pushed, though A's own watch saw the change too (the watch's
  // reload waits for the change in flight, then finds it loaded).
  ASSERT_EQ(change->hosts_size(), 1);
  EXPECT_EQ(change->hosts(0), "h1");
  ASSERT_TRUE(Eventually([&] { return Level(h2->last_config()) == "debug"; }));
  EXPECT_EQ(Level(h1->last_config()), "debug");

  // A's lease revoked under it: the lease is replaced and h1 held by A again.
  const int64_t first = a.membership->lease_id();
  ASSERT_TRUE(a.client->LeaseRevoke(first).ok());
  ASSERT_TRUE(Eventually([&] {
    auto lease = a.membership->lease_id();
    auto holder = b.membership->HolderOf("h1");
    return lease != 0 && lease != first && holder && holder->id == "A" &&
           a.membership->stats().leases_replaced == 1 && a.membership->FlushPresence().ok();
  }));

  // A leaves: its lease is revoked, B sees its hosts released and the peer gone.
  a.membership->Stop();
  ASSERT_TRUE(Eventually([&] {
    return !b.membership->HolderOf("h1").has_value() && b.membership->Peers().empty();
  }));
  EXPECT_FALSE(h2->closed());
}

}  // namespace
}  // namespace herd::controlplane
