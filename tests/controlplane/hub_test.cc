// The hub against a real SQLite store, a fake clock and fake agent sessions: registration,
// sessions, online/offline, config resolution and pushes, acks, relayed requests, metrics,
// audit.
#include "controlplane/core/hub.h"
#include "controlplane/http/prometheus.h"

#include <algorithm>
#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <stdlib.h>

#include <atomic>
#include <chrono>
#include <filesystem>
#include <functional>
#include <map>
#include <set>
#include <memory>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"
#include "common/clock.h"
#include "controlplane/core/secrets.h"
#include "controlplane/store/store.h"
#include "tests/fakes/store_with_join_token.h"
#include "tests/fakes/fake_host_session.h"
#include "tests/fakes/fake_hub_store.h"
#include "tests/fakes/fake_scheduler.h"
#include "tests/fakes/temp_dir.h"

namespace herd::controlplane {
namespace {

using herd::v1::AgentMessage;
using herd::v1::ConfigSnapshot;
using herd::v1::ControlMessage;
using herd::v1::Hello;
using herd::v1::ModuleInventory;
using herd::v1::Scope;
using ::testing::ElementsAre;
using ::testing::HasSubstr;
using ::testing::IsEmpty;
using ::testing::StartsWith;
using Labels = std::map<std::string, std::string>;

// ---------------------------------------------------------------------------------------
// Fakes and helpers

using FakeSession = herd::testing::FakeHostSession;

// Collects a `done` callback's calls. Shared, so a late call (e.g. from Stop) stays safe.
template <typename T>
class Capture {
 public:
  std::function<void(absl::StatusOr<T>)> Fn() {
    return [this](absl::StatusOr<T> v) {
      absl::MutexLock l(&mu_);
      ++calls_;
      value_ = std::move(v);
    };
  }
  int calls() const {
    absl::MutexLock l(&mu_);
    return calls_;
  }
  absl::StatusOr<T> value() const {
    absl::MutexLock l(&mu_);
    return value_.value_or(absl::InternalError("not called"));
  }

 private:
  mutable absl::Mutex mu_;
  int calls_ ABSL_GUARDED_BY(mu_) = 0;
  std::optional<absl::StatusOr<T>> value_ ABSL_GUARDED_BY(mu_);
};

// Polls `cond` (real time) until it holds or `max` passes.
bool WaitFor(const std::function<bool()>& cond, absl::Duration max = absl::Seconds(5)) {
  const absl::Time end = absl::Now() + max;
  while (absl::Now() < end) {
    if (cond()) return true;
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  return cond();
}

ModuleInventory Mod(const std::string& name, const std::string& defaults_json = "{}",
                    const std::string& version = "1.0.0") {
  ModuleInventory m;
  m.set_name(name);
  m.set_version(version);
  m.set_source(name);
  m.set_defaults_json(defaults_json);
  m.set_state(herd::v1::UNIT_STATE_ONLINE);
  return m;
}

Hello MakeHello(const std::string& id, const Labels& labels = {},
                const std::vector<ModuleInventory>& modules = {}) {
  Hello h;
  h.set_host_id(id);
  h.set_hostname(id + ".example");
  h.mutable_labels()->insert(labels.begin(), labels.end());
  h.set_agent_version("1.2.3");
  h.set_boot_id("boot-" + id);
  for (const auto& m : modules) *h.add_modules() = m;
  h.set_kernel("6.1.0");
  h.set_arch("x86_64");
  h.set_cpu_count(4);
  return h;
}

Scope Global() {
  Scope s;
  s.set_global(true);
  return s;
}
Scope Selector(const std::string& text) {
  Scope s;
  s.set_selector(text);
  return s;
}
Scope HostScope(const std::string& id) {
  Scope s;
  s.set_host_id(id);
  return s;
}

herd::v1::Target All() {
  herd::v1::Target t;
  t.set_all(true);
  return t;
}
herd::v1::Target Hosts(const std::vector<std::string>& ids) {
  herd::v1::Target t;
  for (const auto& id : ids) t.mutable_hosts()->add_ids(id);
  return t;
}

std::string ValueOf(const ConfigSnapshot& s, const std::string& module, const std::string& key) {
  auto m = s.modules().find(module);
  if (m == s.modules().end()) return "<absent>";
  auto v = m->second.values().find(key);
  return v == m->second.values().end() ? "<absent>" : v->second;
}
std::string SourceOf(const ConfigSnapshot& s, const std::string& module, const std::string& key) {
  auto m = s.modules().find(module);
  if (m == s.modules().end()) return "<absent>";
  auto v = m->second.sources().find(key);
  return v == m->second.sources().end() ? "<absent>" : v->second;
}

std::vector<std::string> HostsOf(const herd::v1::FleetConfigChange& c) {
  return {c.hosts().begin(), c.hosts().end()};
}

const char kAppDefaults[] = R"({"interval":1000,"name":"x","debug":false,"ratio":0.5})";

class HubTest : public ::testing::Test {
 protected:
  void SetUp() override {
    auto store = herd::testing::OpenStoreWithJoinToken(tmp_.Path("herd.db"), "jt");
    ASSERT_TRUE(store.ok()) << store.status();
    store_ = std::move(*store);
    options_.lease = absl::Seconds(10);
    options_.request_grace = absl::Seconds(1);
    options_.series.points = 5;
    options_.series.probe_points = 3;
    options_.events_kept = 3;
    StartHub();
  }

  void TearDown() override {
    if (hub_) hub_->Stop();
    hub_.reset();
    store_.reset();
  }

  void StartHub() {
    hub_ = std::make_unique<Hub>(*store_, sched_, options_);
    auto s = hub_->Start();
    ASSERT_TRUE(s.ok()) << s;
  }

  struct Conn {
    std::shared_ptr<FakeSession> session;
    std::string credential;
  };

  // Connects with `bearer` (the join token by default); expects success.
  Conn Connect(const Hello& hello, const std::string& bearer = "jt") {
    Conn c;
    c.session = std::make_shared<FakeSession>("10.0.0." + hello.host_id() + ":5000");
    auto s = hub_->Connect(bearer, hello, c.session);
    EXPECT_TRUE(s.ok()) << hello.host_id() << ": " << s;
    auto sent = c.session->sent();
    if (!sent.empty() && sent[0].has_welcome()) c.credential = sent[0].welcome().host_credential();
    return c;
  }

  absl::StatusOr<herd::v1::FleetConfigChange> Set(const Scope& scope, const std::string& module,
                                                  const std::string& key,
                                                  const std::string& value, bool force = false) {
    herd::v1::FleetSetConfigRequest req;
    *req.mutable_scope() = scope;
    req.set_module(module);
    req.set_key(key);
    req.set_value(value);
    req.set_force(force);
    clock_.Advance(absl::Milliseconds(1));  // distinct updated_at per override
    return hub_->SetConfig(req, actor_);
  }

  absl::StatusOr<herd::v1::FleetConfigChange> Unset(const Scope& scope, const std::string& module,
                                                    const std::string& key) {
    herd::v1::FleetUnsetConfigRequest req;
    *req.mutable_scope() = scope;
    req.set_module(module);
    req.set_key(key);
    return hub_->UnsetConfig(req, actor_);
  }

  herd::v1::Host HostInfo(const std::string& id) {
    auto hosts = hub_->ListHosts(Hosts({id}));
    EXPECT_TRUE(hosts.ok()) << hosts.status();
    if (!hosts.ok() || hosts->size() != 1) {
      ADD_FAILURE() << "no host " << id;
      return {};
    }
    return hosts->front();
  }

  void Send(const std::string& host_id, const Conn& c, const AgentMessage& m) {
    hub_->OnMessage(host_id, c.session.get(), m);
  }

  static AgentMessage Ack(uint64_t version, bool accepted,
                          std::vector<herd::v1::ConfigRejection> rejections = {}) {
    AgentMessage m;
    m.mutable_config_ack()->set_version(version);
    m.mutable_config_ack()->set_accepted(accepted);
    for (auto& r : rejections) *m.mutable_config_ack()->add_rejections() = r;
    return m;
  }

  static AgentMessage ActionReply(const std::string& request_id, bool ok,
                                  const std::string& reply) {
    AgentMessage m;
    auto* r = m.mutable_action_result();
    r->set_request_id(request_id);
    r->set_ok(ok);
    r->set_reply_json(reply);
    return m;
  }

  // A restart result for one unit, restarted as `pid`.
  static AgentMessage RestartReply(const std::string& request_id, const std::string& unit,
                                   int pid) {
    AgentMessage m;
    auto* r = m.mutable_restart_result();
    r->set_request_id(request_id);
    auto* u = r->add_units();
    u->set_unit(unit);
    u->set_ok(true);
    u->set_pid(pid);
    return m;
  }

  static AgentMessage Batch(int64_t at_ms, double host_cpu, double unit_cpu = 0,
                            bool replayed = false) {
    AgentMessage m;
    auto* b = m.mutable_metrics();
    b->set_at_unix_ms(at_ms);
    b->set_replayed(replayed);
    b->mutable_host()->set_cpu_percent(host_cpu);
    b->mutable_host()->set_memory_available_bytes(1000);
    b->mutable_host()->set_load1(0.5);
    auto* u = b->add_units();
    u->set_name("app");
    u->set_is_module(true);
    u->set_state(herd::v1::UNIT_STATE_ONLINE);
    u->set_pid(42);
    u->mutable_usage()->set_cpu_percent(unit_cpu);
    u->mutable_usage()->set_rss_bytes(100);
    auto* p = u->add_probes();
    p->set_name("reqs");
    p->set_value("7");
    p->set_number(7);
    p->set_numeric(true);
    auto* q = u->add_probes();
    q->set_name("status");
    q->set_value("ok");
    return m;
  }

  int64_t NowMs() const { return absl::ToUnixMillis(clock_.Now()); }

  herd::testing::ScopedTempDir tmp_;
  std::unique_ptr<Store> store_;
  FakeClock clock_;
  // The hub's timers (the sweep, the writer's retries) run when a test advances it.
  herd::testing::FakeScheduler sched_{clock_};
  HubOptions options_;
  std::unique_ptr<Hub> hub_;
  Actor actor_{"alice", Role::kOperator, ""};
};

// ---------------------------------------------------------------------------------------
// Registration and sessions

TEST_F(HubTest, JoinTokenGivesWelcomeWithCredentialThenSnapshot) {
  Conn c = Connect(MakeHello("h1", {{"env", "prod"}}, {Mod("app", kAppDefaults)}));
  auto sent = c.session->sent();
  ASSERT_EQ(sent.size(), 2u);
  ASSERT_TRUE(sent[0].has_welcome());
  const auto& w = sent[0].welcome();
  EXPECT_EQ(w.host_id(), "h1");
  EXPECT_THAT(w.host_credential(), StartsWith("hc_"));
  EXPECT_GT(w.host_credential().size(), 3u);
  EXPECT_EQ(w.lease_seconds(), 10u);
  EXPECT_EQ(w.metrics_interval_ms(), 1000u);
  EXPECT_FALSE(w.controlplane_version().empty());
  ASSERT_TRUE(sent[1].has_config());
  EXPECT_EQ(sent[1].config().version(), 1u);
  EXPECT_EQ(sent[1].config().modules_size(), 0);

  herd::v1::Host h = HostInfo("h1");
  EXPECT_TRUE(h.online());
  EXPECT_EQ(h.hostname(), "h1.example");
  EXPECT_EQ(h.labels().at("env"), "prod");
  EXPECT_EQ(h.agent_version(), "1.2.3");
  EXPECT_EQ(h.boot_id(), "boot-h1");
  EXPECT_EQ(h.modules(), 1u);
  EXPECT_EQ(h.kernel(), "6.1.0");
  EXPECT_EQ(h.arch(), "x86_64");
  EXPECT_EQ(h.cpu_count(), 4u);
  EXPECT_EQ(h.remote_address(), "10.0.0.h1:5000");
  EXPECT_EQ(h.connected_at_unix_ms(), NowMs());
  EXPECT_EQ(h.desired_config_version(), 1u);
  EXPECT_EQ(h.acked_config_version(), 0u);

  // Stored, with only the credential's hash.
  auto rec = store_->GetHost("h1");
  ASSERT_TRUE(rec.ok()) << rec.status();
  EXPECT_EQ(rec->credential_sha256, Sha256Hex(c.credential));
  EXPECT_EQ(rec->hostname, "h1.example");
  ASSERT_EQ(rec->modules.size(), 1u);
  EXPECT_EQ(rec->modules[0].name(), "app");
  EXPECT_EQ(rec->registered_at_unix_ms, NowMs());

  auto stats = hub_->stats();
  EXPECT_EQ(stats.hosts, 1u);
  EXPECT_EQ(stats.online, 1u);
  EXPECT_EQ(stats.connected, 1u);
  EXPECT_EQ(stats.config_pushes, 1u);
}

TEST_F(HubTest, SnapshotVersionFollowsTheAgentsAckedVersion) {
  Hello hello = MakeHello("h1");
  hello.set_acked_config_version(5);
  Conn c = Connect(hello);
  EXPECT_EQ(c.session->last_config().version(), 6u);
  EXPECT_EQ(HostInfo("h1").acked_config_version(), 5u);
}

TEST_F(HubTest, WrongTokenIsUnauthenticatedAndNothingIsSent) {
  for (const std::string bearer : {"nope", "", "JT", "jt "}) {
    auto s = std::make_shared<FakeSession>();
    auto st = hub_->Connect(bearer, MakeHello("h1"), s);
    EXPECT_EQ(st.code(), absl::StatusCode::kUnauthenticated) << "bearer \"" << bearer << "\"";
    EXPECT_THAT(s->sent(), IsEmpty());
  }
  auto hosts = hub_->ListHosts(All());
  ASSERT_TRUE(hosts.ok());
  EXPECT_THAT(*hosts, IsEmpty());
  EXPECT_FALSE(store_->GetHost("h1").ok());
}

TEST_F(HubTest, ReconnectWithCredentialIssuesNoNewCredential) {
  Conn first = Connect(MakeHello("h1"));
  ASSERT_FALSE(first.credential.empty());
  hub_->OnDisconnect("h1", first.session.get());

  Conn again = Connect(MakeHello("h1"), first.credential);
  auto sent = again.session->sent();
  ASSERT_EQ(sent.size(), 2u);
  ASSERT_TRUE(sent[0].has_welcome());
  EXPECT_EQ(sent[0].welcome().host_credential(), "");
  EXPECT_TRUE(sent[1].has_config());
  // The stored credential is unchanged, and it keeps working.
  EXPECT_EQ(store_->GetHost("h1")->credential_sha256, Sha256Hex(first.credential));
  Conn third = Connect(MakeHello("h1"), first.credential);
  EXPECT_TRUE(third.credential.empty());
}

TEST_F(HubTest, CredentialIsBoundToItsHost) {
  Conn h1 = Connect(MakeHello("h1"));
  Connect(MakeHello("h2"));
  auto s = std::make_shared<FakeSession>();
  // Another host's credential, and a credential for an unknown host.
  EXPECT_EQ(hub_->Connect(h1.credential, MakeHello("h2"), s).code(),
            absl::StatusCode::kUnauthenticated);
  EXPECT_EQ(hub_->Connect(h1.credential, MakeHello("h9"), s).code(),
            absl::StatusCode::kUnauthenticated);
  EXPECT_THAT(s->sent(), IsEmpty());
  EXPECT_FALSE(h1.session->closed());
}

TEST_F(HubTest, JoiningAgainReplacesTheCredential) {
  Conn first = Connect(MakeHello("h1"));
  Conn second = Connect(MakeHello("h1"));
  ASSERT_FALSE(second.credential.empty());
  EXPECT_NE(first.credential, second.credential);
  auto s = std::make_shared<FakeSession>();
  EXPECT_EQ(hub_->Connect(first.credential, MakeHello("h1"), s).code(),
            absl::StatusCode::kUnauthenticated);
  Connect(MakeHello("h1"), second.credential);
}

TEST_F(HubTest, InvalidHelloIsInvalidArgument) {
  std::vector<Hello> bad;
  for (const std::string& id : std::vector<std::string>{"../x", "", ".hidden", "-x", "a/b", "a b",
                                                         std::string(65, 'h')}) {
    bad.push_back(MakeHello(id));
  }
  bad.push_back(MakeHello("h1", {{"bad key", "v"}}));
  bad.push_back(MakeHello("h1", {{"env", "a*b"}}));
  bad.push_back(MakeHello("h1", {{"", "v"}}));
  bad.push_back(MakeHello("h1", {{"env", std::string(64, 'v')}}));
  Hello long_name = MakeHello("h1");
  long_name.set_hostname(std::string(256, 'n'));
  bad.push_back(long_name);
  for (const Hello& hello : bad) {
    auto s = std::make_shared<FakeSession>();
    auto st = hub_->Connect("jt", hello, s);
    EXPECT_EQ(st.code(), absl::StatusCode::kInvalidArgument) << hello.ShortDebugString();
    EXPECT_THAT(std::string(st.message()), HasSubstr("hello")) << hello.ShortDebugString();
    EXPECT_THAT(s->sent(), IsEmpty());
  }
  auto hosts = hub_->ListHosts(All());
  ASSERT_TRUE(hosts.ok());
  EXPECT_THAT(*hosts, IsEmpty());
  // The limits themselves are fine.
  Connect(MakeHello(std::string(64, 'h'), {{std::string(63, 'k'), std::string(63, 'v')}}));
}

TEST_F(HubTest, HelloLabelsAreCheckedOneByOne) {
  // Each label on its own must follow the rules: a value holding a comma (or spaces around
  // a key) must not slip through by reading as several labels once joined.
  for (const Labels& labels : std::vector<Labels>{{{"env", "prod,role=web"}},
                                                  {{" env", "prod"}},
                                                  {{"env", "prod "}}}) {
    auto s = std::make_shared<FakeSession>();
    auto st = hub_->Connect("jt", MakeHello("h1", labels), s);
    EXPECT_EQ(st.code(), absl::StatusCode::kInvalidArgument)
        << MakeHello("h1", labels).ShortDebugString();
    EXPECT_THAT(s->sent(), IsEmpty());
  }
}

TEST_F(HubTest, SecondConnectClosesTheFirstAndIgnoresIt) {
  Conn first = Connect(MakeHello("h1", {}, {Mod("app")}));
  Conn second = Connect(MakeHello("h1", {}, {Mod("app")}), first.credential);
  EXPECT_TRUE(first.session->closed());
  EXPECT_FALSE(first.session->close_reason().empty());
  EXPECT_FALSE(second.session->closed());

  // Messages and the disconnect of the stale session change nothing.
  Send("h1", first, Batch(NowMs(), 50, 5));
  Send("h1", first, Ack(1, true));
  hub_->OnDisconnect("h1", first.session.get());
  auto d = hub_->GetHost("h1");
  ASSERT_TRUE(d.ok());
  EXPECT_EQ(d->units_size(), 0);
  EXPECT_EQ(d->host().acked_config_version(), 0u);
  EXPECT_EQ(hub_->stats().batches_received, 0u);
  EXPECT_EQ(hub_->stats().connected, 1u);
  clock_.Advance(absl::Minutes(5));
  EXPECT_TRUE(HostInfo("h1").online());

  // The current session's are taken.
  Send("h1", second, Batch(NowMs(), 50, 5));
  EXPECT_EQ(hub_->stats().batches_received, 1u);
  EXPECT_EQ(hub_->GetHost("h1")->units_size(), 1);
}

TEST_F(HubTest, BatchDelayIsTimedFromTheBatchTimeForLiveBatchesOnly) {
  Conn c = Connect(MakeHello("h1"));
  Send("h1", c, Batch(NowMs() - 3000, 1));                      // 3 s late
  Send("h1", c, Batch(NowMs() + 2000, 1));                      // agent clock ahead: 0
  Send("h1", c, Batch(NowMs() - 600000, 1, 0, /*replayed=*/true));  // not counted
  Send("h1", c, Batch(NowMs() - 10LL * 86400 * 1000, 1));  // a clock 10 days behind: 120 s
  auto d = hub_->stats().batch_delay;
  EXPECT_EQ(d.count, 3u);
  ASSERT_EQ(d.bounds.size(), Hub::kBatchDelayBounds.size());
  EXPECT_EQ(d.cumulative[0], 1u);  // le 0.01 s
  EXPECT_EQ(d.bounds[7], 2.5);
  EXPECT_EQ(d.cumulative[7], 1u);
  EXPECT_EQ(d.bounds[8], 5.0);
  EXPECT_EQ(d.cumulative[8], 2u);
  EXPECT_EQ(d.cumulative.back(), 2u);  // le 60 s; the 120 s one is only in +Inf
  EXPECT_DOUBLE_EQ(d.sum_seconds, 123.0);
}

TEST_F(HubTest, MessagesForUnknownHostsAreIgnored) {
  auto s = std::make_shared<FakeSession>();
  hub_->OnMessage("ghost", s.get(), Batch(NowMs(), 1));
  hub_->OnDisconnect("ghost", s.get());
  EXPECT_EQ(hub_->stats().batches_received, 0u);
  EXPECT_EQ(hub_->stats().hosts, 0u);
}

TEST_F(HubTest, HostStaysOnlineForTheLeaseAfterDisconnect) {
  Conn c = Connect(MakeHello("h1"));
  EXPECT_TRUE(HostInfo("h1").online());
  hub_->OnDisconnect("h1", c.session.get());
  EXPECT_TRUE(HostInfo("h1").online());
  EXPECT_EQ(hub_->stats().connected, 0u);
  EXPECT_EQ(hub_->stats().online, 1u);
  clock_.Advance(absl::Seconds(9));
  EXPECT_TRUE(HostInfo("h1").online());
  clock_.Advance(absl::Seconds(2));
  EXPECT_FALSE(HostInfo("h1").online());
  EXPECT_EQ(hub_->stats().online, 0u);
  EXPECT_EQ(hub_->stats().hosts, 1u);

  Connect(MakeHello("h1"), c.credential);
  EXPECT_TRUE(HostInfo("h1").online());
  EXPECT_EQ(HostInfo("h1").connected_at_unix_ms(), NowMs());
}

// An agent that sends nothing for a minute (its host lost power or network: no FIN ever
// comes) has its stream closed; one that keeps sending batches keeps its stream.
TEST_F(HubTest, SilentStreamsAreClosed) {
  Conn quiet = Connect(MakeHello("h1"));
  Conn busy = Connect(MakeHello("h2"));
  for (int i = 0; i < 6; ++i) {
    clock_.Advance(absl::Seconds(10));
    Send("h2", busy, Batch(NowMs(), 10));
  }
  // 60 s without a message is not yet more than 60 s.
  sched_.RunDue();
  EXPECT_FALSE(quiet.session->closed());
  clock_.Advance(absl::Seconds(6));
  Send("h2", busy, Batch(NowMs(), 10));
  sched_.RunDue();
  ASSERT_TRUE(WaitFor([&] { return quiet.session->closed(); }));
  EXPECT_THAT(quiet.session->close_reason(), HasSubstr("no message from the agent in 66 s"));
  EXPECT_FALSE(busy.session->closed());
  // Until its stream has ended (the status may wait behind unread data), the sweeps that
  // follow (every 250 ms) neither close it again nor warn again.
  clock_.Advance(absl::Seconds(5));
  sched_.RunDue();
  EXPECT_EQ(quiet.session->closes(), 1);
  // A new stream of the same host that goes silent is closed in its turn.
  Conn again = Connect(MakeHello("h1"), quiet.credential);
  clock_.Advance(absl::Seconds(70));
  sched_.RunDue();
  ASSERT_TRUE(WaitFor([&] { return again.session->closed(); }));
  EXPECT_EQ(again.session->closes(), 1);
}

TEST_F(HubTest, HostsSurviveARestartOfTheHub) {
  Conn c = Connect(MakeHello("h1", {{"env", "prod"}}));
  hub_->Stop();
  EXPECT_TRUE(c.session->closed());
  clock_.Advance(absl::Minutes(1));
  StartHub();
  herd::v1::Host h = HostInfo("h1");
  EXPECT_FALSE(h.online());
  EXPECT_EQ(h.hostname(), "h1.example");
  EXPECT_EQ(h.labels().at("env"), "prod");
  // The credential still works after the restart.
  Connect(MakeHello("h1"), c.credential);
  EXPECT_TRUE(HostInfo("h1").online());
}

TEST_F(HubTest, ConnectAfterStopIsUnavailable) {
  hub_->Stop();
  auto s = std::make_shared<FakeSession>();
  EXPECT_EQ(hub_->Connect("jt", MakeHello("h1"), s).code(), absl::StatusCode::kUnavailable);
  EXPECT_THAT(s->sent(), IsEmpty());
}

// ---------------------------------------------------------------------------------------
// Config

class HubConfigTest : public HubTest {
 protected:
  void SetUp() override {
    HubTest::SetUp();
    h1_ = Connect(MakeHello("h1", {{"env", "prod"}, {"role", "web"}},
                            {Mod("app", kAppDefaults), Mod("other", R"({"level":1})")}));
    h2_ = Connect(MakeHello("h2", {{"env", "prod"}, {"role", "db"}}, {Mod("app", kAppDefaults)}));
    h3_ = Connect(MakeHello("h3", {{"env", "dev"}}, {Mod("app", kAppDefaults)}));
  }
  Conn h1_, h2_, h3_;
};

TEST_F(HubConfigTest, ScopesPushExactlyTheChangedHosts) {
  for (const Conn* c : {&h1_, &h2_, &h3_}) ASSERT_EQ(c->session->configs().size(), 1u);

  // Global: every host.
  auto ch = Set(Global(), "app", "interval", "2000");
  ASSERT_TRUE(ch.ok()) << ch.status();
  EXPECT_TRUE(ch->changed());
  EXPECT_EQ(ch->revision(), 1u);
  EXPECT_THAT(HostsOf(*ch), ElementsAre("h1", "h2", "h3"));
  for (const Conn* c : {&h1_, &h2_, &h3_}) {
    ASSERT_EQ(c->session->configs().size(), 2u);
    ConfigSnapshot s = c->session->last_config();
    EXPECT_EQ(s.version(), 2u);
    ASSERT_EQ(s.modules_size(), 1) << s.DebugString();  // "other" has no override
    EXPECT_EQ(ValueOf(s, "app", "interval"), "2000");
    EXPECT_EQ(SourceOf(s, "app", "interval"), "global");
  }

  // Selector (given untidy; stored and shown canonical): h1 only.
  ch = Set(Selector(" role=web , env=prod "), "app", "interval", "3000");
  ASSERT_TRUE(ch.ok()) << ch.status();
  EXPECT_EQ(ch->revision(), 2u);
  EXPECT_THAT(HostsOf(*ch), ElementsAre("h1"));
  ASSERT_EQ(h1_.session->configs().size(), 3u);
  EXPECT_EQ(h1_.session->last_config().version(), 3u);
  EXPECT_EQ(ValueOf(h1_.session->last_config(), "app", "interval"), "3000");
  EXPECT_EQ(SourceOf(h1_.session->last_config(), "app", "interval"),
            "selector:env=prod,role=web");
  EXPECT_EQ(h2_.session->configs().size(), 2u);
  EXPECT_EQ(h3_.session->configs().size(), 2u);

  // Host: h2 only.
  ch = Set(HostScope("h2"), "app", "interval", "4000");
  ASSERT_TRUE(ch.ok()) << ch.status();
  EXPECT_THAT(HostsOf(*ch), ElementsAre("h2"));
  ASSERT_EQ(h2_.session->configs().size(), 3u);
  EXPECT_EQ(h2_.session->last_config().version(), 3u);
  EXPECT_EQ(ValueOf(h2_.session->last_config(), "app", "interval"), "4000");
  EXPECT_EQ(SourceOf(h2_.session->last_config(), "app", "interval"), "host");
  EXPECT_EQ(h1_.session->configs().size(), 3u);
  EXPECT_EQ(h3_.session->configs().size(), 2u);

  // A global value for a module only h1 has: only h1, and only h1's snapshot names it.
  ch = Set(Global(), "other", "level", "5");
  ASSERT_TRUE(ch.ok()) << ch.status();
  EXPECT_THAT(HostsOf(*ch), ElementsAre("h1"));
  ConfigSnapshot s1 = h1_.session->last_config();
  EXPECT_EQ(s1.version(), 4u);
  EXPECT_EQ(s1.modules_size(), 2);
  EXPECT_EQ(ValueOf(s1, "other", "level"), "5");
  EXPECT_EQ(SourceOf(s1, "other", "level"), "global");
  EXPECT_EQ(ValueOf(s1, "app", "interval"), "3000");  // the whole state, every time
  EXPECT_EQ(h2_.session->last_config().modules().count("other"), 0u);
  EXPECT_EQ(h3_.session->last_config().modules().count("other"), 0u);

  // A new global value: h1 and h2 have more specific ones, so only h3 changes.
  ch = Set(Global(), "app", "interval", "2500");
  ASSERT_TRUE(ch.ok()) << ch.status();
  EXPECT_THAT(HostsOf(*ch), ElementsAre("h3"));
  EXPECT_EQ(h3_.session->last_config().version(), 3u);
  EXPECT_EQ(ValueOf(h3_.session->last_config(), "app", "interval"), "2500");
  EXPECT_EQ(h1_.session->configs().size(), 4u);
  EXPECT_EQ(h2_.session->configs().size(), 3u);

  // The same value again: no change, no push.
  ch = Set(Global(), "app", "interval", "2500");
  ASSERT_TRUE(ch.ok()) << ch.status();
  EXPECT_FALSE(ch->changed());
  EXPECT_THAT(HostsOf(*ch), IsEmpty());
  const uint64_t revision = ch->revision();
  EXPECT_EQ(h3_.session->configs().size(), 3u);

  // Unset h2's own value: it falls back to global.
  auto un = Unset(HostScope("h2"), "app", "interval");
  ASSERT_TRUE(un.ok()) << un.status();
  EXPECT_TRUE(un->changed());
  EXPECT_EQ(un->revision(), revision + 1);
  EXPECT_THAT(HostsOf(*un), ElementsAre("h2"));
  EXPECT_EQ(h2_.session->last_config().version(), 4u);
  EXPECT_EQ(ValueOf(h2_.session->last_config(), "app", "interval"), "2500");
  EXPECT_EQ(SourceOf(h2_.session->last_config(), "app", "interval"), "global");

  // Unsetting what is not there changes nothing.
  un = Unset(HostScope("h2"), "app", "interval");
  ASSERT_TRUE(un.ok()) << un.status();
  EXPECT_FALSE(un->changed());
  EXPECT_THAT(HostsOf(*un), IsEmpty());
  EXPECT_EQ(un->revision(), revision + 1);
  un = Unset(Selector("env=nowhere"), "app", "nothing");
  ASSERT_TRUE(un.ok()) << un.status();
  EXPECT_FALSE(un->changed());

  // Versions only ever increase per host.
  for (const Conn* c : {&h1_, &h2_, &h3_}) {
    auto cfgs = c->session->configs();
    for (size_t i = 1; i < cfgs.size(); ++i) {
      EXPECT_EQ(cfgs[i].version(), cfgs[i - 1].version() + 1);
    }
  }
  EXPECT_EQ(HostInfo("h1").desired_config_version(), 4u);
  EXPECT_EQ(HostInfo("h2").desired_config_version(), 4u);
  EXPECT_EQ(HostInfo("h3").desired_config_version(), 3u);
}

TEST_F(HubConfigTest, SelectorsOfEqualSpecificityNewestWins) {
  ASSERT_TRUE(Set(Selector("env=prod"), "app", "name", "by-env").ok());
  ASSERT_TRUE(Set(Selector("role=web"), "app", "name", "by-role").ok());
  EXPECT_EQ(ValueOf(h1_.session->last_config(), "app", "name"), "by-role");
  EXPECT_EQ(ValueOf(h2_.session->last_config(), "app", "name"), "by-env");
  // Setting env=prod again (a new value) makes it the newest.
  auto ch = Set(Selector("env=prod"), "app", "name", "by-env-2");
  ASSERT_TRUE(ch.ok());
  EXPECT_THAT(HostsOf(*ch), ElementsAre("h1", "h2"));
  EXPECT_EQ(ValueOf(h1_.session->last_config(), "app", "name"), "by-env-2");
}

TEST_F(HubConfigTest, HostScopeAcceptsAHostname) {
  auto ch = Set(HostScope("h3.example"), "app", "name", "three");
  ASSERT_TRUE(ch.ok()) << ch.status();
  EXPECT_THAT(HostsOf(*ch), ElementsAre("h3"));
  EXPECT_EQ(SourceOf(h3_.session->last_config(), "app", "name"), "host");
  auto un = Unset(HostScope("h3.example"), "app", "name");
  ASSERT_TRUE(un.ok()) << un.status();
  EXPECT_TRUE(un->changed());
  EXPECT_THAT(HostsOf(*un), ElementsAre("h3"));

  auto missing = Set(HostScope("nohost"), "app", "name", "x");
  EXPECT_EQ(missing.status().code(), absl::StatusCode::kNotFound);
}

TEST_F(HubConfigTest, ValidationAgainstInstalledDefaults) {
  auto st = Set(Global(), "nope", "k", "v");
  EXPECT_EQ(st.status().code(), absl::StatusCode::kNotFound);
  EXPECT_THAT(std::string(st.status().message()), HasSubstr("--force"));

  st = Set(Global(), "app", "bogus", "v");
  EXPECT_EQ(st.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(std::string(st.status().message()), HasSubstr("does not declare"));

  st = Set(Global(), "app", "interval", "abc");
  EXPECT_EQ(st.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(std::string(st.status().message()), HasSubstr("--force"));
  EXPECT_THAT(std::string(st.status().message()), HasSubstr("an integer"));
  EXPECT_EQ(Set(Global(), "app", "interval", "1.5").status().code(),
            absl::StatusCode::kInvalidArgument);

  st = Set(Global(), "app", "debug", "maybe");
  EXPECT_EQ(st.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(std::string(st.status().message()), HasSubstr("a boolean"));

  st = Set(Global(), "app", "ratio", "lots");
  EXPECT_EQ(st.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(std::string(st.status().message()), HasSubstr("a number"));
  EXPECT_EQ(Set(Global(), "app", "ratio", "inf").status().code(),
            absl::StatusCode::kInvalidArgument);

  // Nothing was stored or pushed.
  EXPECT_EQ(*store_->ConfigRevision(), 0u);
  EXPECT_EQ(h1_.session->configs().size(), 1u);

  // Values of the right type.
  EXPECT_TRUE(Set(Global(), "app", "interval", " 42 ").ok());
  EXPECT_TRUE(Set(Global(), "app", "debug", "yes").ok());
  EXPECT_TRUE(Set(Global(), "app", "ratio", "1e3").ok());
  EXPECT_TRUE(Set(Global(), "app", "name", "anything at all").ok());

  // With force, each refused one is accepted and stored as given.
  auto forced = Set(Global(), "app", "interval", "abc", /*force=*/true);
  ASSERT_TRUE(forced.ok()) << forced.status();
  EXPECT_THAT(HostsOf(*forced), ElementsAre("h1", "h2", "h3"));
  EXPECT_EQ(ValueOf(h2_.session->last_config(), "app", "interval"), "abc");
  forced = Set(Global(), "app", "bogus", "v", /*force=*/true);
  ASSERT_TRUE(forced.ok()) << forced.status();
  EXPECT_EQ(ValueOf(h1_.session->last_config(), "app", "bogus"), "v");
  // A module no host has: stored, nobody's config changes.
  forced = Set(Global(), "nope", "k", "v", /*force=*/true);
  ASSERT_TRUE(forced.ok()) << forced.status();
  EXPECT_TRUE(forced->changed());
  EXPECT_THAT(HostsOf(*forced), IsEmpty());
}

TEST_F(HubConfigTest, BadRequestsAreInvalidArgument) {
  herd::v1::FleetSetConfigRequest req;
  req.set_module("app");
  req.set_key("interval");
  req.set_value("1");
  // No scope.
  EXPECT_EQ(hub_->SetConfig(req, actor_).status().code(), absl::StatusCode::kInvalidArgument);
  Scope not_global;
  not_global.set_global(false);
  EXPECT_EQ(Set(not_global, "app", "interval", "1").status().code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(Set(Selector("env"), "app", "interval", "1").status().code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(Set(HostScope(""), "app", "interval", "1").status().code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(Set(Global(), "../x", "interval", "1", true).status().code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(Set(Global(), "app", "", "1", true).status().code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(Set(Global(), "app", "name", std::string(32767, 'v'), true).status().code(),
            absl::StatusCode::kInvalidArgument);
  herd::v1::FleetUnsetConfigRequest un;
  un.set_module("app");
  un.set_key("interval");
  EXPECT_EQ(hub_->UnsetConfig(un, actor_).status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(*store_->ConfigRevision(), 0u);
}

TEST_F(HubConfigTest, OfflineHostGetsTheNewConfigWhenItConnects) {
  hub_->OnDisconnect("h3", h3_.session.get());
  auto change = Set(Selector("env=dev"), "app", "name", "dev");
  ASSERT_TRUE(change.ok());
  EXPECT_EQ(h3_.session->configs().size(), 1u);  // not sent to a closed stream
  // Reported as changed although it is away.
  EXPECT_THAT(change->hosts(), ::testing::Contains("h3"));

  Hello hello = MakeHello("h3", {{"env", "dev"}}, {Mod("app", kAppDefaults)});
  Conn again = Connect(hello, h3_.credential);
  ConfigSnapshot s = again.session->last_config();
  // Above every version it was sent before (1), so no version ever names two contents.
  EXPECT_EQ(s.version(), 2u);
  EXPECT_EQ(ValueOf(s, "app", "name"), "dev");
  EXPECT_EQ(SourceOf(s, "app", "name"), "selector:env=dev");
}

TEST_F(HubConfigTest, LabelsFromTheLatestHelloDecideTheSelectors) {
  ASSERT_TRUE(Set(Selector("env=dev"), "app", "name", "dev").ok());
  EXPECT_EQ(ValueOf(h1_.session->last_config(), "app", "name"), "<absent>");
  // h1 comes back as a dev host.
  Conn again = Connect(MakeHello("h1", {{"env", "dev"}}, {Mod("app", kAppDefaults)}),
                       h1_.credential);
  EXPECT_EQ(ValueOf(again.session->last_config(), "app", "name"), "dev");
}

TEST_F(HubConfigTest, AcksUpdateTheAckedVersionAndRejectionsAreRecorded) {
  Send("h1", h1_, Ack(1, true));
  EXPECT_EQ(HostInfo("h1").acked_config_version(), 1u);
  ASSERT_TRUE(hub_->FlushHostRecords().ok());  // records are written behind
  EXPECT_EQ(store_->GetHost("h1")->acked_config_version, 1u);

  ASSERT_TRUE(Set(Global(), "app", "interval", "abc", /*force=*/true).ok());
  ASSERT_EQ(h1_.session->last_config().version(), 2u);
  herd::v1::ConfigRejection r;
  r.set_module("app");
  r.set_key("interval");
  r.set_reason("not an integer");
  Send("h1", h1_, Ack(2, false, {r}));
  herd::v1::Host h = HostInfo("h1");
  EXPECT_EQ(h.acked_config_version(), 1u);
  EXPECT_EQ(h.desired_config_version(), 2u);
  ASSERT_EQ(h.config_rejections_size(), 1);
  EXPECT_EQ(h.config_rejections(0).module(), "app");
  EXPECT_EQ(h.config_rejections(0).key(), "interval");
  EXPECT_EQ(h.config_rejections(0).reason(), "not an integer");
  EXPECT_EQ(hub_->stats().config_nacks, 1u);

  // Fixed: the next version is sent and the rejection (about version 2) is gone at once; a
  // late rejection of version 2 does not bring it back; version 3 is accepted.
  ASSERT_TRUE(Set(Global(), "app", "interval", "5").ok());
  ASSERT_EQ(h1_.session->last_config().version(), 3u);
  EXPECT_EQ(HostInfo("h1").config_rejections_size(), 0);
  Send("h1", h1_, Ack(2, false, {r}));
  EXPECT_EQ(HostInfo("h1").config_rejections_size(), 0);
  Send("h1", h1_, Ack(3, true));
  h = HostInfo("h1");
  EXPECT_EQ(h.acked_config_version(), 3u);
  EXPECT_EQ(h.config_rejections_size(), 0);
  // An old ack does not move it back.
  Send("h1", h1_, Ack(2, true));
  EXPECT_EQ(HostInfo("h1").acked_config_version(), 3u);

  // On reconnect, the next snapshot follows the acked version.
  Conn again = Connect(MakeHello("h1", {{"env", "prod"}, {"role", "web"}},
                                 {Mod("app", kAppDefaults)}),
                       h1_.credential);
  EXPECT_EQ(again.session->last_config().version(), 4u);
}

TEST_F(HubTest, InventoryAddingAModuleTriggersASnapshot) {
  Conn c = Connect(MakeHello("h1"));
  ASSERT_EQ(c.session->configs().size(), 1u);
  auto ch = Set(Global(), "newmod", "k", "v", /*force=*/true);
  ASSERT_TRUE(ch.ok()) << ch.status();
  EXPECT_THAT(HostsOf(*ch), IsEmpty());  // not installed anywhere yet
  EXPECT_EQ(c.session->configs().size(), 1u);

  AgentMessage inv;
  *inv.mutable_inventory()->add_modules() = Mod("newmod", R"({"k":"a"})");
  Send("h1", c, inv);
  ASSERT_EQ(c.session->configs().size(), 2u);
  ConfigSnapshot s = c.session->last_config();
  EXPECT_EQ(s.version(), 2u);
  EXPECT_EQ(ValueOf(s, "newmod", "k"), "v");
  EXPECT_EQ(SourceOf(s, "newmod", "k"), "global");
  auto d = hub_->GetHost("h1");
  ASSERT_TRUE(d.ok());
  ASSERT_EQ(d->modules_size(), 1);
  EXPECT_EQ(d->modules(0).name(), "newmod");
  ASSERT_TRUE(hub_->FlushHostRecords().ok());  // records are written behind
  ASSERT_EQ(store_->GetHost("h1")->modules.size(), 1u);

  // The same inventory again: nothing new to send.
  Send("h1", c, inv);
  EXPECT_EQ(c.session->configs().size(), 2u);

  // What only the dashboard shows (widget, actions, issues) is kept in memory, bounded, and
  // neither stored nor re-resolved.
  herd::v1::ModuleInventory* m = inv.mutable_inventory()->mutable_modules(0);
  m->mutable_widget()->set_logo(std::string(10000, 'x'));
  m->add_actions()->set_name("flush");
  for (int i = 0; i < 9; ++i) m->add_recent_issues()->set_message(absl::StrCat("issue ", i));
  Send("h1", c, inv);
  EXPECT_EQ(c.session->configs().size(), 2u);
  d = hub_->GetHost("h1");
  ASSERT_EQ(d->modules(0).actions_size(), 1);
  EXPECT_EQ(d->modules(0).widget().logo().size(), 4096u);
  ASSERT_EQ(d->modules(0).recent_issues_size(), 5);
  EXPECT_EQ(d->modules(0).recent_issues(4).message(), "issue 8");
  ASSERT_TRUE(hub_->FlushHostRecords().ok());  // records are written behind
  EXPECT_TRUE(store_->GetHost("h1")->modules[0].actions().empty());

  // Uninstalled: a snapshot without it.
  AgentMessage none;
  none.mutable_inventory();
  Send("h1", c, none);
  ASSERT_EQ(c.session->configs().size(), 3u);
  EXPECT_EQ(c.session->last_config().modules_size(), 0);

  // Validation now knows the module only from what hosts report: gone.
  EXPECT_EQ(Set(Global(), "newmod", "k", "w").status().code(), absl::StatusCode::kNotFound);
}

// A deployment reaches its hosts in their snapshots (installed or not), is left out of the
// config listings, and ListDeployments shows each host with what its agent reported, bounded.
TEST_F(HubTest, DeploymentsTravelInSnapshotsAndAgentsReportsAreBounded) {
  Conn c = Connect(MakeHello("h1"));
  herd::v1::DeployRequest req;
  *req.mutable_scope() = Global();
  req.set_source("pm2-server-monit@3.0.0");
  auto d = hub_->Deploy(req, actor_);
  ASSERT_TRUE(d.ok()) << d.status();
  EXPECT_THAT(d->hosts(), ::testing::ElementsAre("h1"));
  ConfigSnapshot s = c.session->last_config();
  ASSERT_EQ(s.deployments().count("pm2-server-monit"), 1u);
  EXPECT_EQ(s.deployments().at("pm2-server-monit").version(), "3.0.0");
  EXPECT_EQ(s.modules_size(), 0);
  auto conf = hub_->GetConfig("", "");
  ASSERT_TRUE(conf.ok());
  EXPECT_EQ(conf->overrides_size(), 0) << "declarations are not config overrides";

  AgentMessage inv;
  for (int i = 0; i < 300; ++i) {
    herd::v1::DeploymentStatus* st = inv.mutable_inventory()->add_deployments();
    st->set_name(i == 0 ? "pm2-server-monit" : absl::StrCat("m", i));
    st->set_state("failed");
    st->set_error(std::string(10000, 'e'));
  }
  Send("h1", c, inv);
  auto list = hub_->ListDeployments("");
  ASSERT_TRUE(list.ok()) << list.status();
  ASSERT_EQ(list->deployments_size(), 1);
  ASSERT_EQ(list->deployments(0).hosts_size(), 1);
  const herd::v1::DeploymentHost& h = list->deployments(0).hosts(0);
  EXPECT_EQ(h.host_id(), "h1");
  EXPECT_TRUE(h.online());
  EXPECT_EQ(h.state(), "failed");
  EXPECT_EQ(h.error().size(), 2048u) << "an agent's error is cut";
  // Undeployed: the next snapshot wants nothing; again, and the error says where it is not.
  ASSERT_TRUE(hub_->Undeploy([&] {
                herd::v1::UndeployRequest u;
                *u.mutable_scope() = Global();
                u.set_name("pm2-server-monit");
                return u;
              }(), actor_).ok());
  EXPECT_TRUE(c.session->last_config().deployments().empty());
  herd::v1::UndeployRequest again;
  *again.mutable_scope() = Global();
  again.set_name("pm2-server-monit");
  auto gone = hub_->Undeploy(again, actor_);
  EXPECT_EQ(gone.status().code(), absl::StatusCode::kNotFound);
  EXPECT_THAT(std::string(gone.status().message()), HasSubstr("not deployed anywhere"));
}

TEST_F(HubConfigTest, GetConfigShowsEffectiveValuesWithSources) {
  ASSERT_TRUE(Set(Global(), "app", "interval", "2000").ok());
  ASSERT_TRUE(Set(HostScope("h1"), "app", "name", "one").ok());
  auto cfg = hub_->GetConfig("app", "h1");
  ASSERT_TRUE(cfg.ok()) << cfg.status();
  EXPECT_EQ(cfg->overrides_size(), 2);
  ASSERT_EQ(cfg->effective_size(), 1);
  std::map<std::string, herd::v1::ConfigEntry> entries;
  for (const auto& e : cfg->effective(0).entries()) entries[e.key()] = e;
  EXPECT_EQ(entries.at("interval").source(), "global");
  EXPECT_EQ(entries.at("interval").override_value(), "2000");
  EXPECT_EQ(entries.at("name").source(), "host");
  EXPECT_EQ(entries.at("debug").source(), "default");
  EXPECT_EQ(entries.at("debug").effective_json(), "false");
  // h2 does not see h1's host override.
  cfg = hub_->GetConfig("app", "h2");
  ASSERT_TRUE(cfg.ok());
  EXPECT_EQ(cfg->overrides_size(), 1);
  EXPECT_EQ(hub_->GetConfig("app", "nohost").status().code(), absl::StatusCode::kNotFound);
}

// ---------------------------------------------------------------------------------------
// Actions and restarts

class HubRelayTest : public HubTest {
 protected:
  void SetUp() override {
    HubTest::SetUp();
    h1_ = Connect(MakeHello("h1", {{"env", "prod"}}, {Mod("app")}));
    h2_ = Connect(MakeHello("h2", {{"env", "prod"}}, {Mod("app")}));
  }

  std::shared_ptr<Capture<herd::v1::FleetActionResponse>> Trigger(
      const herd::v1::Target& target, uint32_t timeout_ms = 5000) {
    herd::v1::FleetActionRequest req;
    *req.mutable_target() = target;
    req.set_module("app");
    req.set_action("ping");
    (*req.mutable_params())["x"] = "1";
    req.set_timeout_ms(timeout_ms);
    auto cap = std::make_shared<Capture<herd::v1::FleetActionResponse>>();
    hub_->TriggerAction(req, actor_, [cap](auto r) { cap->Fn()(std::move(r)); });
    return cap;
  }

  Conn h1_, h2_;
};

TEST_F(HubRelayTest, ActionFansOutAndGathersResultsInHostOrder) {
  auto cap = Trigger(All());
  auto a1 = h1_.session->actions();
  auto a2 = h2_.session->actions();
  ASSERT_EQ(a1.size(), 1u);
  ASSERT_EQ(a2.size(), 1u);
  EXPECT_EQ(a1[0].module(), "app");
  EXPECT_EQ(a1[0].action(), "ping");
  EXPECT_EQ(a1[0].params().at("x"), "1");
  EXPECT_EQ(a1[0].timeout_ms(), 5000u);
  EXPECT_FALSE(a1[0].request_id().empty());
  EXPECT_NE(a1[0].request_id(), a2[0].request_id());

  // h2 answers first; a reply with an unknown id is ignored, and so is one with h1's id
  // (request ids are not secret: only the host a request went to may answer it).
  Send("h2", h2_, ActionReply("r-unknown", true, "{}"));
  Send("h2", h2_, ActionReply(a1[0].request_id(), true, R"({"forged":1})"));
  AgentMessage r2 = ActionReply(a2[0].request_id(), false, "");
  r2.mutable_action_result()->set_error("busy");
  r2.mutable_action_result()->add_stream("line 1");
  r2.mutable_action_result()->add_stream("line 2");
  r2.mutable_action_result()->set_elapsed_ms(7);
  Send("h2", h2_, r2);
  EXPECT_EQ(cap->calls(), 0);
  Send("h1", h1_, ActionReply(a1[0].request_id(), true, R"({"pong":1})"));
  ASSERT_EQ(cap->calls(), 1);
  auto resp = cap->value();
  ASSERT_TRUE(resp.ok()) << resp.status();
  ASSERT_EQ(resp->results_size(), 2);
  EXPECT_EQ(resp->results(0).host_id(), "h1");
  EXPECT_EQ(resp->results(0).hostname(), "h1.example");
  EXPECT_TRUE(resp->results(0).ok());
  EXPECT_EQ(resp->results(0).reply_json(), R"({"pong":1})");
  EXPECT_EQ(resp->results(1).host_id(), "h2");
  EXPECT_FALSE(resp->results(1).ok());
  EXPECT_EQ(resp->results(1).error(), "busy");
  EXPECT_THAT(resp->results(1).stream(), ElementsAre("line 1", "line 2"));
  EXPECT_EQ(resp->results(1).elapsed_ms(), 7u);

  // A late duplicate changes nothing.
  Send("h1", h1_, ActionReply(a1[0].request_id(), true, "{}"));
  EXPECT_EQ(cap->calls(), 1);

  // The hosts' registrations are audited too, by the audit log's workers: they may be
  // listed before or after the trigger.
  auto audit = hub_->ListAudit(10);
  ASSERT_TRUE(audit.ok());
  auto trigger = std::find_if(audit->begin(), audit->end(),
                              [](const auto& e) { return e.action() == "action.trigger"; });
  ASSERT_NE(trigger, audit->end());
  EXPECT_EQ(trigger->actor(), "alice");
}

TEST_F(HubRelayTest, ResultsFollowTheTargetsOrder) {
  auto cap = Trigger(Hosts({"h2", "h1.example"}));
  Send("h1", h1_, ActionReply(h1_.session->actions().at(0).request_id(), true, "1"));
  Send("h2", h2_, ActionReply(h2_.session->actions().at(0).request_id(), true, "2"));
  ASSERT_EQ(cap->calls(), 1);
  auto resp = cap->value();
  ASSERT_TRUE(resp.ok());
  ASSERT_EQ(resp->results_size(), 2);
  EXPECT_EQ(resp->results(0).host_id(), "h2");
  EXPECT_EQ(resp->results(0).reply_json(), "2");
  EXPECT_EQ(resp->results(1).host_id(), "h1");
  EXPECT_EQ(resp->results(1).reply_json(), "1");
}

TEST_F(HubRelayTest, AnotherHostCannotAnswerForAHost) {
  auto cap = Trigger(Hosts({"h1"}));
  const std::string rid = h1_.session->actions().at(0).request_id();
  Send("h2", h2_, ActionReply(rid, true, "forged"));
  EXPECT_EQ(cap->calls(), 0);
  Send("h1", h1_, ActionReply(rid, true, "real"));
  ASSERT_EQ(cap->calls(), 1);
  EXPECT_EQ(cap->value()->results(0).reply_json(), "real");
}

TEST_F(HubRelayTest, OfflineHostGetsAnErrorResult) {
  hub_->OnDisconnect("h2", h2_.session.get());
  auto cap = Trigger(All());
  EXPECT_THAT(h2_.session->actions(), IsEmpty());
  EXPECT_EQ(cap->calls(), 0);
  Send("h1", h1_, ActionReply(h1_.session->actions().at(0).request_id(), true, "{}"));
  ASSERT_EQ(cap->calls(), 1);
  auto resp = cap->value();
  ASSERT_TRUE(resp.ok());
  EXPECT_TRUE(resp->results(0).ok());
  EXPECT_FALSE(resp->results(1).ok());
  EXPECT_THAT(resp->results(1).error(), HasSubstr("not connected"));
}

TEST_F(HubRelayTest, HostThatCannotTakeMessagesFailsAtOnce) {
  h2_.session->set_fail_send(true);
  auto cap = Trigger(Hosts({"h2"}));
  ASSERT_EQ(cap->calls(), 1);
  auto resp = cap->value();
  ASSERT_TRUE(resp.ok());
  EXPECT_THAT(resp->results(0).error(), HasSubstr("cannot take messages"));
}

TEST_F(HubRelayTest, HostThatNeverAnswersTimesOut) {
  auto cap = Trigger(All(), /*timeout_ms=*/1000);
  Send("h1", h1_, ActionReply(h1_.session->actions().at(0).request_id(), true, "{}"));
  // Past the timeout, within the grace: still waiting.
  clock_.Advance(absl::Milliseconds(1900));
  sched_.RunDue();
  EXPECT_EQ(cap->calls(), 0);
  // Past timeout + grace: the sweeper fails it.
  clock_.Advance(absl::Milliseconds(200));
  sched_.Advance(absl::Milliseconds(250));  // the sweep task's next round
  ASSERT_TRUE(WaitFor([&] { return cap->calls() > 0; }));
  EXPECT_EQ(cap->calls(), 1);
  auto resp = cap->value();
  ASSERT_TRUE(resp.ok());
  EXPECT_TRUE(resp->results(0).ok());
  EXPECT_FALSE(resp->results(1).ok());
  EXPECT_THAT(resp->results(1).error(), HasSubstr("did not answer in time"));
  // A reply after the deadline is ignored.
  Send("h2", h2_, ActionReply(h2_.session->actions().at(0).request_id(), true, "{}"));
  EXPECT_EQ(cap->calls(), 1);
}

TEST_F(HubRelayTest, DisconnectFailsTheHostsPendingRequest) {
  auto cap = Trigger(All());
  Send("h1", h1_, ActionReply(h1_.session->actions().at(0).request_id(), true, "{}"));
  hub_->OnDisconnect("h2", h2_.session.get());
  ASSERT_EQ(cap->calls(), 1);
  auto resp = cap->value();
  ASSERT_TRUE(resp.ok());
  EXPECT_THAT(resp->results(1).error(), HasSubstr("disconnected"));
}

TEST_F(HubRelayTest, StopFailsPendingRequestsAndClosesSessions) {
  auto cap = Trigger(Hosts({"h1"}));
  hub_->Stop();
  ASSERT_EQ(cap->calls(), 1);
  EXPECT_THAT(cap->value()->results(0).error(), HasSubstr("stopping"));
  EXPECT_TRUE(h1_.session->closed());
  EXPECT_TRUE(h2_.session->closed());
}

TEST_F(HubRelayTest, BadActionRequests) {
  herd::v1::FleetActionRequest req;
  req.set_module("app");
  auto cap = std::make_shared<Capture<herd::v1::FleetActionResponse>>();
  hub_->TriggerAction(req, actor_, cap->Fn());  // no action
  EXPECT_EQ(cap->value().status().code(), absl::StatusCode::kInvalidArgument);

  cap = Trigger(Hosts({"nohost"}));
  EXPECT_EQ(cap->value().status().code(), absl::StatusCode::kNotFound);
  herd::v1::Target none;
  none.set_selector("env=nowhere");
  cap = Trigger(none);
  EXPECT_EQ(cap->value().status().code(), absl::StatusCode::kNotFound);
  herd::v1::Target bad;
  bad.set_selector("env");
  cap = Trigger(bad);
  EXPECT_EQ(cap->value().status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(h1_.session->actions(), IsEmpty());
}

TEST_F(HubRelayTest, RestartOnHostRelaysAndCompletes) {
  auto cap = std::make_shared<Capture<herd::v1::RestartResult>>();
  hub_->RestartOnHosts({"h1"}, {"app", "web"}, 2000, "ro-1", [cap](size_t i, auto r) {
    EXPECT_EQ(i, 0u);
    cap->Fn()(std::move(r));
  });
  auto rs = h1_.session->restarts();
  ASSERT_EQ(rs.size(), 1u);
  EXPECT_THAT(rs[0].units(), ElementsAre("app", "web"));
  EXPECT_EQ(rs[0].wait_healthy_ms(), 2000u);
  EXPECT_EQ(rs[0].rollout_id(), "ro-1");
  EXPECT_FALSE(rs[0].request_id().empty());
  EXPECT_EQ(cap->calls(), 0);

  AgentMessage m;
  auto* rr = m.mutable_restart_result();
  rr->set_request_id(rs[0].request_id());
  auto* u1 = rr->add_units();
  u1->set_unit("app");
  u1->set_ok(true);
  u1->set_pid(42);
  auto* u2 = rr->add_units();
  u2->set_unit("web");
  u2->set_error("crashed");
  Send("h1", h1_, m);
  ASSERT_EQ(cap->calls(), 1);
  auto r = cap->value();
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(r->request_id(), rs[0].request_id());
  ASSERT_EQ(r->units_size(), 2);
  EXPECT_TRUE(r->units(0).ok());
  EXPECT_EQ(r->units(0).pid(), 42);
  EXPECT_FALSE(r->units(1).ok());
  EXPECT_EQ(r->units(1).error(), "crashed");
}

// Results of a RestartOnHosts call by host index; shared with the callback, which may still
// run (from the hub's Stop) after a failed assertion has left the test.
struct RestartResults {
  absl::Mutex mu;
  std::map<size_t, absl::StatusOr<herd::v1::RestartResult>> got ABSL_GUARDED_BY(mu);
  size_t count() {
    absl::MutexLock l(&mu);
    return got.size();
  }
  absl::StatusOr<herd::v1::RestartResult> at(size_t i) {
    absl::MutexLock l(&mu);
    auto it = got.find(i);
    return it == got.end() ? absl::InternalError("no result") : it->second;
  }
};
std::function<void(size_t, absl::StatusOr<herd::v1::RestartResult>)> Collect(
    std::shared_ptr<RestartResults> results) {
  return [results](size_t i, absl::StatusOr<herd::v1::RestartResult> r) {
    absl::MutexLock l(&results->mu);
    EXPECT_TRUE(results->got.emplace(i, std::move(r)).second) << "host " << i << " answered twice";
  };
}

// One call for hosts unknown, offline and online: each result lands at its own index.
TEST_F(HubRelayTest, RestartOnUnreachableHosts) {
  hub_->OnDisconnect("h2", h2_.session.get());
  auto results = std::make_shared<RestartResults>();
  hub_->RestartOnHosts({"nohost", "h2", "h1"}, {"app"}, 0, "ro", Collect(results));
  ASSERT_EQ(results->count(), 2u);  // h1 has its request and has not answered
  EXPECT_EQ(results->at(0).status().code(), absl::StatusCode::kNotFound);
  EXPECT_EQ(results->at(1).status().code(), absl::StatusCode::kUnavailable);
  EXPECT_EQ(h1_.session->restarts().size(), 1u);
  EXPECT_THAT(h2_.session->restarts(), IsEmpty());
  hub_->OnDisconnect("h1", h1_.session.get());
  ASSERT_EQ(results->count(), 3u);
  EXPECT_EQ(results->at(2).status().code(), absl::StatusCode::kUnavailable);
}

// A host that connects again on another stream cannot answer what its previous stream was
// sent (the agent drops those answers): such requests fail when that stream ends, not at
// their deadline, and a request sent on the new stream stays pending.
TEST_F(HubRelayTest, RequestsOfAReplacedStreamFailWhenItEnds) {
  auto old_results = std::make_shared<RestartResults>();
  hub_->RestartOnHosts({"h1"}, {"app"}, 0, "ro-old", Collect(old_results));
  ASSERT_EQ(h1_.session->restarts().size(), 1u);
  Conn again = Connect(MakeHello("h1", {{"env", "prod"}}, {Mod("app")}), h1_.credential);
  EXPECT_TRUE(h1_.session->closed());
  auto new_results = std::make_shared<RestartResults>();
  hub_->RestartOnHosts({"h1"}, {"app"}, 0, "ro-new", Collect(new_results));
  ASSERT_EQ(again.session->restarts().size(), 1u);
  EXPECT_EQ(old_results->count(), 0u);  // the old stream has not ended yet
  hub_->OnDisconnect("h1", h1_.session.get());
  ASSERT_EQ(old_results->count(), 1u);
  EXPECT_EQ(old_results->at(0).status().code(), absl::StatusCode::kUnavailable);
  EXPECT_THAT(old_results->at(0).status().message(), HasSubstr("connected again"));
  EXPECT_EQ(new_results->count(), 0u);
  EXPECT_TRUE(HostInfo("h1").online());
  Send("h1", again, RestartReply(again.session->restarts()[0].request_id(), "app", 7));
  ASSERT_EQ(new_results->count(), 1u);
  ASSERT_TRUE(new_results->at(0).ok()) << new_results->at(0).status();
  EXPECT_EQ(new_results->at(0)->units(0).pid(), 7);
}

// An action on more hosts than one hand-off: every host gets its request, and the response
// has each host's own reply at its place.
TEST_F(HubRelayTest, ActionOnHostsBeyondOneHandOff) {
  std::vector<Conn> conns;
  for (int i = 0; i < 300; ++i) {
    conns.push_back(Connect(MakeHello(absl::StrCat("m", i), {}, {Mod("app")})));
  }
  auto cap = Trigger(All());
  auto reply = [&](const std::string& id, Conn& c) {
    const auto a = c.session->actions();
    ASSERT_EQ(a.size(), 1u) << id;
    Send(id, c, ActionReply(a[0].request_id(), true, absl::StrCat("\"", id, "\"")));
  };
  reply("h1", h1_);
  reply("h2", h2_);
  for (int i = 0; i < 300; ++i) reply(absl::StrCat("m", i), conns[i]);
  ASSERT_EQ(cap->calls(), 1);
  auto resp = cap->value();
  ASSERT_TRUE(resp.ok()) << resp.status();
  ASSERT_EQ(resp->results_size(), 302);
  for (const auto& r : resp->results()) {
    EXPECT_TRUE(r.ok()) << r.host_id();
    EXPECT_EQ(r.reply_json(), absl::StrCat("\"", r.host_id(), "\""));
  }
}

// More hosts than one hand-off to the send threads (256): requests go out in several, and
// every result, answered or failed, still lands at its host's index.
TEST_F(HubRelayTest, RestartOnHostsBeyondOneHandOff) {
  constexpr int kOnline = 300;
  std::vector<Conn> conns;
  std::vector<std::string> ids;
  for (int i = 0; i < kOnline; ++i) {
    ids.push_back(absl::StrCat("m", i));
    conns.push_back(Connect(MakeHello(ids.back(), {}, {Mod("app")})));
    if (i % 60 == 30) ids.push_back(absl::StrCat("unknown-", i));  // NotFound, in between
  }
  auto results = std::make_shared<RestartResults>();
  hub_->RestartOnHosts(ids, {"app"}, 0, "ro-big", Collect(results));
  std::set<std::string> request_ids;
  for (int i = 0; i < kOnline; ++i) {
    const auto reqs = conns[i].session->restarts();
    ASSERT_EQ(reqs.size(), 1u) << "m" << i;
    EXPECT_TRUE(request_ids.insert(reqs[0].request_id()).second) << "request id reused";
    Send(absl::StrCat("m", i), conns[i], RestartReply(reqs[0].request_id(), "app", 10000 + i));
  }
  ASSERT_EQ(results->count(), ids.size());
  for (size_t k = 0; k < ids.size(); ++k) {
    auto r = results->at(k);
    if (absl::StartsWith(ids[k], "unknown-")) {
      EXPECT_EQ(r.status().code(), absl::StatusCode::kNotFound) << ids[k];
      continue;
    }
    ASSERT_TRUE(r.ok()) << ids[k] << ": " << r.status();
    ASSERT_EQ(r->units_size(), 1);
    EXPECT_EQ(absl::StrCat("m", r->units(0).pid() - 10000), ids[k]);
  }
}

// ---------------------------------------------------------------------------------------
// Metrics

TEST_F(HubTest, MetricsBatchIsVisibleEverywhere) {
  Conn c = Connect(MakeHello("h1", {}, {Mod("app", "{}", "2.0.0"), Mod("idle", "{}", "0.1.0")}));
  std::vector<herd::v1::HostMetrics> all_seen, h2_seen;
  absl::Mutex mu;
  uint64_t w_all = hub_->WatchMetrics({}, [&](const herd::v1::HostMetrics& m) {
    absl::MutexLock l(&mu);
    all_seen.push_back(m);
  });
  hub_->WatchMetrics({"h2"}, [&](const herd::v1::HostMetrics& m) {
    absl::MutexLock l(&mu);
    h2_seen.push_back(m);
  });
  const int64_t t = NowMs();
  Send("h1", c, Batch(t, 12.5, 3));

  auto d = hub_->GetHost("h1");
  ASSERT_TRUE(d.ok()) << d.status();
  EXPECT_DOUBLE_EQ(d->host().usage().cpu_percent(), 12.5);
  ASSERT_EQ(d->units_size(), 1);
  EXPECT_EQ(d->units(0).name(), "app");
  EXPECT_EQ(d->units(0).probes_size(), 2);
  EXPECT_EQ(d->host().last_seen_unix_ms(), t);

  auto mods = hub_->ListModules(All(), "app");
  ASSERT_TRUE(mods.ok()) << mods.status();
  ASSERT_EQ(mods->size(), 1u);
  EXPECT_EQ((*mods)[0].host_id(), "h1");
  EXPECT_TRUE((*mods)[0].online());
  EXPECT_EQ((*mods)[0].unit().pid(), 42);
  ASSERT_EQ((*mods)[0].unit().probes_size(), 2);
  EXPECT_EQ((*mods)[0].unit().probes(0).name(), "reqs");
  // A module without a sample is shown from the inventory.
  mods = hub_->ListModules(All(), "");
  ASSERT_TRUE(mods.ok());
  ASSERT_EQ(mods->size(), 2u);
  EXPECT_EQ((*mods)[1].unit().name(), "idle");
  EXPECT_TRUE((*mods)[1].unit().is_module());
  EXPECT_EQ((*mods)[1].unit().version(), "0.1.0");

  auto query = [&](const std::string& unit, const std::string& metric) {
    herd::v1::QuerySeriesRequest req;
    req.set_host_id("h1");
    req.set_unit(unit);
    req.set_metric(metric);
    return hub_->QuerySeries(req);
  };
  auto s = query("", "cpu");
  ASSERT_TRUE(s.ok()) << s.status();
  ASSERT_EQ(s->points_size(), 1);
  EXPECT_EQ(s->points(0).at_unix_ms(), t);
  EXPECT_DOUBLE_EQ(s->points(0).value(), 12.5);
  EXPECT_DOUBLE_EQ(query("", "memory_available")->points(0).value(), 1000);
  EXPECT_DOUBLE_EQ(query("", "load1")->points(0).value(), 0.5);
  EXPECT_DOUBLE_EQ(query("app", "cpu")->points(0).value(), 3);
  EXPECT_DOUBLE_EQ(query("app", "rss")->points(0).value(), 100);
  s = query("app", "probe:reqs");
  ASSERT_TRUE(s.ok()) << s.status();
  EXPECT_DOUBLE_EQ(s->points(0).value(), 7);
  EXPECT_EQ(s->unit(), "app");
  EXPECT_EQ(s->metric(), "probe:reqs");
  EXPECT_EQ(query("app", "probe:status").status().code(), absl::StatusCode::kNotFound);
  EXPECT_EQ(query("nounit", "cpu").status().code(), absl::StatusCode::kNotFound);
  herd::v1::QuerySeriesRequest other;
  other.set_host_id("nohost");
  other.set_metric("cpu");
  EXPECT_EQ(hub_->QuerySeries(other).status().code(), absl::StatusCode::kNotFound);

  {
    absl::MutexLock l(&mu);
    ASSERT_EQ(all_seen.size(), 1u);
    EXPECT_EQ(all_seen[0].host_id(), "h1");
    EXPECT_EQ(all_seen[0].hostname(), "h1.example");
    EXPECT_EQ(all_seen[0].batch().at_unix_ms(), t);
    EXPECT_EQ(all_seen[0].batch().units_size(), 1);
    EXPECT_THAT(h2_seen, IsEmpty());
  }
  hub_->Unwatch(w_all);
  Send("h1", c, Batch(t + 1000, 13));
  {
    absl::MutexLock l(&mu);
    EXPECT_EQ(all_seen.size(), 1u);
  }
  EXPECT_EQ(hub_->stats().batches_received, 2u);
}

// A group of batches (MetricsBatches) is each of its batches in turn: every one in the
// history and handed to watchers; past kMaxBatchesPerGroup the rest is cut and counted.
TEST_F(HubTest, AGroupOfBatchesIsRecordedBatchByBatch) {
  Conn c = Connect(MakeHello("h1"));
  std::vector<int64_t> seen;
  absl::Mutex mu;
  hub_->WatchMetrics({}, [&](const herd::v1::HostMetrics& m) {
    absl::MutexLock l(&mu);
    seen.push_back(m.batch().at_unix_ms());
  });
  const int64_t t0 = NowMs() - 10000;
  AgentMessage group;
  for (int i = 0; i < 3; ++i) {
    *group.mutable_metrics_batches()->add_batches() = Batch(t0 + i * 1000, i + 1).metrics();
  }
  Send("h1", c, group);
  herd::v1::QuerySeriesRequest req;
  req.set_host_id("h1");
  req.set_metric("cpu");
  auto s = hub_->QuerySeries(req);
  ASSERT_TRUE(s.ok()) << s.status();
  ASSERT_EQ(s->points_size(), 3);
  for (int i = 0; i < 3; ++i) {
    EXPECT_EQ(s->points(i).at_unix_ms(), t0 + i * 1000);
    EXPECT_DOUBLE_EQ(s->points(i).value(), i + 1);
  }
  EXPECT_DOUBLE_EQ(hub_->GetHost("h1")->host().usage().cpu_percent(), 3);  // the latest
  EXPECT_EQ(hub_->stats().batches_received, 3u);
  {
    absl::MutexLock l(&mu);
    EXPECT_THAT(seen, ElementsAre(t0, t0 + 1000, t0 + 2000));
  }

  AgentMessage big;
  for (size_t i = 0; i < Hub::kMaxBatchesPerGroup + 5; ++i) {
    *big.mutable_metrics_batches()->add_batches() = Batch(t0 + 3000 + i, 1).metrics();
  }
  Send("h1", c, big);
  EXPECT_EQ(hub_->stats().batches_received, 3u + Hub::kMaxBatchesPerGroup);
  EXPECT_EQ(hub_->stats().limited[static_cast<size_t>(Limit::kBatchBytes)], 5u);
}

TEST_F(HubTest, SeriesRingIsBoundedAndOrdered) {
  Conn c = Connect(MakeHello("h1"));
  const int64_t t0 = NowMs() - 10000;
  for (int i = 0; i < 8; ++i) Send("h1", c, Batch(t0 + i * 1000, i));
  herd::v1::QuerySeriesRequest req;
  req.set_host_id("h1");
  req.set_metric("cpu");
  auto s = hub_->QuerySeries(req);
  ASSERT_TRUE(s.ok()) << s.status();
  ASSERT_EQ(s->points_size(), 5);  // options_.series.points
  for (int i = 0; i < 5; ++i) {
    EXPECT_EQ(s->points(i).at_unix_ms(), t0 + (i + 3) * 1000);
    EXPECT_DOUBLE_EQ(s->points(i).value(), i + 3);
  }
  req.set_since_unix_ms(t0 + 6000);
  EXPECT_EQ(hub_->QuerySeries(req)->points_size(), 2);

  // A replayed batch older than the newest sample stays out of the history (which keeps one
  // time per sample, in order) and does not replace the latest sample.
  Send("h1", c, Batch(t0 + 3500, 99, 0, /*replayed=*/true));
  req.set_since_unix_ms(0);
  s = hub_->QuerySeries(req);
  ASSERT_EQ(s->points_size(), 5);
  EXPECT_EQ(s->points(0).at_unix_ms(), t0 + 3000);
  for (int i = 1; i < 5; ++i) {
    EXPECT_LT(s->points(i - 1).at_unix_ms(), s->points(i).at_unix_ms());
  }
  EXPECT_DOUBLE_EQ(hub_->GetHost("h1")->host().usage().cpu_percent(), 7);
}

// An agent whose clock runs ahead cannot freeze the history: its batch is placed at the
// control plane's time, and the next ones still land.
TEST_F(HubTest, BatchFromTheFutureIsPlacedAtTheControlPlanesTime) {
  Conn c = Connect(MakeHello("h1"));
  Send("h1", c, Batch(NowMs() + 3600 * 1000, 1));
  clock_.Advance(absl::Seconds(1));
  Send("h1", c, Batch(NowMs(), 2));
  herd::v1::QuerySeriesRequest req;
  req.set_host_id("h1");
  req.set_metric("cpu");
  auto s = hub_->QuerySeries(req);
  ASSERT_TRUE(s.ok()) << s.status();
  ASSERT_EQ(s->points_size(), 2);
  EXPECT_EQ(s->points(0).at_unix_ms(), NowMs() - 1000);
  EXPECT_DOUBLE_EQ(s->points(1).value(), 2);
}

TEST_F(HubTest, BatchWithoutTimeUsesTheClockAndDroppedBatchesAdd) {
  Conn c = Connect(MakeHello("h1"));
  clock_.Advance(absl::Seconds(3));
  AgentMessage m = Batch(0, 1);
  m.mutable_metrics()->set_dropped_batches(4);
  Send("h1", c, m);
  Send("h1", c, m);
  herd::v1::QuerySeriesRequest req;
  req.set_host_id("h1");
  req.set_metric("cpu");
  EXPECT_EQ(hub_->QuerySeries(req)->points(0).at_unix_ms(), NowMs());
  EXPECT_EQ(HostInfo("h1").dropped_batches(), 8u);
  EXPECT_EQ(hub_->stats().batches_dropped_by_agents, 8u);
}

TEST_F(HubTest, EventsAreKeptBounded) {
  Conn c = Connect(MakeHello("h1"));
  for (int i = 0; i < 5; ++i) {
    AgentMessage m;
    m.mutable_event()->set_unit("app");
    m.mutable_event()->set_kind(absl::StrCat("e", i));
    Send("h1", c, m);
  }
  auto d = hub_->GetHost("h1");
  ASSERT_TRUE(d.ok());
  ASSERT_EQ(d->events_size(), 3);  // options_.events_kept
  EXPECT_EQ(d->events(0).kind(), "e2");
  EXPECT_EQ(d->events(2).kind(), "e4");
}

// ---------------------------------------------------------------------------------------
// Audit

TEST_F(HubTest, AuditRecordsRegistrationAndConfigChanges) {
  Connect(MakeHello("h1", {}, {Mod("app", kAppDefaults)}));
  clock_.Advance(absl::Seconds(1));
  Conn c = Connect(MakeHello("h1", {}, {Mod("app", kAppDefaults)}));  // join token again
  clock_.Advance(absl::Seconds(1));
  ASSERT_TRUE(Set(Global(), "app", "interval", "2000").ok());
  ASSERT_TRUE(Set(Global(), "app", "interval", "2000").ok());  // unchanged: not audited
  clock_.Advance(absl::Seconds(1));
  ASSERT_TRUE(Unset(Global(), "app", "interval").ok());
  ASSERT_TRUE(Unset(Global(), "app", "interval").ok());  // unchanged: not audited
  // Reconnecting with the credential is not a registration.
  Connect(MakeHello("h1", {}, {Mod("app", kAppDefaults)}), c.credential);

  auto audit = hub_->ListAudit(100);
  ASSERT_TRUE(audit.ok()) << audit.status();
  std::vector<std::string> actions;
  for (const auto& e : *audit) actions.push_back(e.action());
  EXPECT_THAT(actions, ElementsAre("config.unset", "config.set", "host.reregister",
                                   "host.register"));
  const auto& reg = audit->back();
  EXPECT_EQ(reg.actor(), "host:h1");
  EXPECT_THAT(reg.detail_json(), HasSubstr("\"host_id\":\"h1\""));
  EXPECT_THAT(reg.detail_json(), HasSubstr("h1.example"));
  const auto& set = (*audit)[1];
  EXPECT_EQ(set.actor(), "alice");
  EXPECT_THAT(set.detail_json(), HasSubstr("\"module\":\"app\""));
  EXPECT_THAT(set.detail_json(), HasSubstr("\"key\":\"interval\""));
  EXPECT_THAT(set.detail_json(), HasSubstr("\"value\":\"2000\""));
  EXPECT_THAT(set.detail_json(), HasSubstr("\"scope\":\"global\""));
}

}  // namespace
}  // namespace herd::controlplane

namespace herd::controlplane {
namespace {

// The snapshot the /metrics exposition renders: every host with its latest units.
TEST_F(HubTest, SnapshotHasEveryHostWithItsLatestUnits) {
  Conn h1 = Connect(MakeHello("h1", {}, {Mod("app", kAppDefaults)}));
  Connect(MakeHello("h2"));
  Send("h1", h1, Batch(NowMs(), 10, 50));
  std::vector<herd::v1::HostDetail> all = hub_->Snapshot();
  ASSERT_EQ(all.size(), 2u);
  EXPECT_EQ(all[0].host().host_id(), "h1");
  ASSERT_EQ(all[0].units_size(), 1);
  EXPECT_EQ(all[0].units(0).name(), "app");
  EXPECT_EQ(all[1].units_size(), 0);
  SelfMetrics self;
  self.hub = hub_->stats();
  std::string text = RenderPrometheus(all, self, clock_.Now());
  EXPECT_THAT(text, ::testing::HasSubstr(
      "herd_probe_reqs{host=\"h1\",module=\"app\",probe=\"reqs\"} 7\n"));
  EXPECT_THAT(text, ::testing::HasSubstr("herd_controlplane_connected_agents 2\n"));
  // Two hellos and a batch.
  EXPECT_THAT(text, ::testing::HasSubstr("herd_controlplane_agent_messages_total 3\n"));
}

}  // namespace
}  // namespace herd::controlplane

namespace herd::controlplane {
namespace {

// ------------------------------------------------------------------ concurrency and scale

// Hosts with the same labels and modules share one resolution; a host with an override of
// its own must not take its neighbour's snapshot, nor give it its own.
TEST_F(HubTest, SameLabelsShareAResolutionButNotAHostOverride) {
  Conn a = Connect(MakeHello("a", {{"env", "prod"}}, {Mod("app", kAppDefaults)}));
  Conn b = Connect(MakeHello("b", {{"env", "prod"}}, {Mod("app", kAppDefaults)}));
  Conn c = Connect(MakeHello("c", {{"env", "prod"}}, {Mod("app", kAppDefaults)}));
  ASSERT_TRUE(Set(HostScope("b"), "app", "name", "bee").ok());
  auto ch = Set(Global(), "app", "name", "all");
  ASSERT_TRUE(ch.ok()) << ch.status();
  EXPECT_THAT(HostsOf(*ch), ::testing::ElementsAre("a", "c"));  // b's own value wins
  EXPECT_EQ(ValueOf(a.session->last_config(), "app", "name"), "all");
  EXPECT_EQ(ValueOf(b.session->last_config(), "app", "name"), "bee");
  EXPECT_EQ(SourceOf(b.session->last_config(), "app", "name"), "host");
  EXPECT_EQ(ValueOf(c.session->last_config(), "app", "name"), "all");
}

// Hosts with the same labels but other modules resolve apart (a push keys its resolutions by
// labels and the host's shared module list): a module's values reach only hosts that run it.
TEST_F(HubTest, SameLabelsOtherModulesResolveApart) {
  Conn a = Connect(MakeHello("a", {{"env", "prod"}}, {Mod("app", kAppDefaults)}));
  Conn b = Connect(MakeHello("b", {{"env", "prod"}}, {Mod("app", kAppDefaults), Mod("db")}));
  Conn c = Connect(MakeHello("c", {{"env", "prod"}}, {Mod("app", kAppDefaults)}));
  ASSERT_TRUE(Set(Global(), "db", "size", "9", /*force=*/true).ok());
  auto ch = Set(Global(), "app", "name", "all");
  ASSERT_TRUE(ch.ok()) << ch.status();
  EXPECT_THAT(HostsOf(*ch), ::testing::ElementsAre("a", "b", "c"));
  EXPECT_EQ(ValueOf(b.session->last_config(), "db", "size"), "9");
  EXPECT_EQ(a.session->last_config().modules().count("db"), 0u);
  EXPECT_EQ(c.session->last_config().modules().count("db"), 0u);
  for (const Conn* x : {&a, &b, &c}) {
    EXPECT_EQ(ValueOf(x->session->last_config(), "app", "name"), "all");
  }
}

// Agents' messages, listings, exposition and config changes from many threads at once: no
// deadlock, no lost batch, every host's config delivered.
TEST_F(HubTest, ConcurrentIngestListingsAndConfigChanges) {
  constexpr int kHosts = 16, kBatches = 200;
  std::vector<Conn> conns;
  for (int i = 0; i < kHosts; ++i) {
    conns.push_back(Connect(MakeHello(absl::StrCat("h", i), {{"env", i % 2 ? "a" : "b"}},
                                      {Mod("app", kAppDefaults)})));
  }
  std::atomic<bool> done{false};
  std::vector<std::thread> senders;
  for (int t = 0; t < 4; ++t) {
    senders.emplace_back([&, t] {
      for (int n = 0; n < kBatches; ++n) {
        for (int i = t; i < kHosts; i += 4) {
          Send(absl::StrCat("h", i), conns[i], Batch(NowMs(), n, 1));
          if (n % 50 == 0) Send(absl::StrCat("h", i), conns[i], Ack(1, true));
        }
      }
    });
  }
  std::thread reader([&] {
    while (!done) {
      EXPECT_EQ(hub_->Snapshot().size(), static_cast<size_t>(kHosts));
      herd::v1::Target env_a;
      env_a.set_selector("env=a");
      EXPECT_EQ(hub_->ListHosts(env_a)->size(), static_cast<size_t>(kHosts / 2));
      EXPECT_TRUE(hub_->GetHost("h3").ok());
    }
  });
  for (int v = 0; v < 5; ++v) {
    ASSERT_TRUE(Set(Selector("env=a"), "app", "name", absl::StrCat("v", v)).ok());
  }
  for (auto& s : senders) s.join();
  done = true;
  reader.join();
  EXPECT_EQ(hub_->stats().batches_received, static_cast<uint64_t>(kHosts * kBatches));
  for (int i = 1; i < kHosts; i += 2) {
    EXPECT_EQ(ValueOf(conns[i].session->last_config(), "app", "name"), "v4") << "h" << i;
  }
  EXPECT_EQ(ValueOf(conns[0].session->last_config(), "app", "name"), "<absent>");
  ASSERT_TRUE(hub_->FlushHostRecords().ok());
  EXPECT_EQ(store_->GetHost("h5")->acked_config_version, 1u);
}

// ------------------------------------------------------------------ records written behind

using herd::testing::FlakyHostsStore;

class HubWriteBehindTest : public HubTest {
 protected:
  void SetUp() override {
    HubTest::SetUp();
    hub_->Stop();
    hub_.reset();
    auto flaky = std::make_unique<FlakyHostsStore>(std::move(store_));
    flaky_ = flaky.get();
    store_ = std::move(flaky);
    StartHub();
  }
  FlakyHostsStore* flaky_ = nullptr;
};

// Many acks become few writes, and a failed write loses nothing: the records are written
// once the store takes them again.
TEST_F(HubWriteBehindTest, AcksAreGroupedAndSurviveAFailedWrite) {
  std::vector<Conn> conns;
  for (int i = 0; i < 20; ++i) conns.push_back(Connect(MakeHello(absl::StrCat("h", i))));
  ASSERT_TRUE(hub_->FlushHostRecords().ok());

  flaky_->fail_puts = true;
  for (int i = 0; i < 20; ++i) Send(absl::StrCat("h", i), conns[i], Ack(1, true));
  absl::Status failed = hub_->FlushHostRecords();
  EXPECT_EQ(failed.code(), absl::StatusCode::kResourceExhausted) << failed;
  EXPECT_EQ(store_->GetHost("h7")->acked_config_version, 0u);
  // The hub goes on meanwhile.
  EXPECT_EQ(HostInfo("h7").acked_config_version(), 1u);

  const int calls_before = flaky_->put_calls;
  flaky_->fail_puts = false;
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(10);
  while (store_->GetHost("h19")->acked_config_version != 1u &&
         std::chrono::steady_clock::now() < deadline) {
    sched_.Advance(absl::Seconds(1));  // the writer's retry (its backoff starts at 1 s)
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  for (int i = 0; i < 20; ++i) {
    EXPECT_EQ(store_->GetHost(absl::StrCat("h", i))->acked_config_version, 1u) << "h" << i;
  }
  // Retried together (acks: one status write), not one write per host.
  EXPECT_LE(flaky_->put_calls - calls_before, 2);  // a retry may have begun before the heal
}

// A registration is on disk before the agent gets its credential; with the store failing,
// the agent is still answered (the error is logged) and the record follows when it can.
TEST_F(HubWriteBehindTest, RegistrationIsStoredBeforeTheWelcome) {
  Conn a = Connect(MakeHello("a"));
  ASSERT_FALSE(a.credential.empty());
  auto rec = store_->GetHost("a");
  ASSERT_TRUE(rec.ok()) << rec.status();
  EXPECT_EQ(rec->credential_sha256, Sha256Hex(a.credential));

  flaky_->fail_puts = true;
  Conn b = Connect(MakeHello("b"));
  ASSERT_FALSE(b.credential.empty());
  EXPECT_EQ(store_->GetHost("b").status().code(), absl::StatusCode::kNotFound);
  flaky_->fail_puts = false;
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(10);
  while (!store_->GetHost("b").ok() && std::chrono::steady_clock::now() < deadline) {
    sched_.Advance(absl::Seconds(1));  // the writer's retry (its backoff starts at 1 s)
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  ASSERT_TRUE(store_->GetHost("b").ok());
  EXPECT_EQ(store_->GetHost("b")->credential_sha256, Sha256Hex(b.credential));
}

// A join waits for its credential's write without holding the caller (the gateway's gRPC
// thread): joins arriving meanwhile share the next write, a reconnect with a credential is
// answered at once, and past max_pending_joins a join is refused and counted.
TEST_F(HubWriteBehindTest, JoinsWaitForTheStoreOffTheCallersThreadUpToABound) {
  hub_->Stop();
  hub_.reset();
  options_.max_pending_joins = 3;
  StartHub();
  Conn known = Connect(MakeHello("known"));
  ASSERT_TRUE(hub_->FlushHostRecords().ok());

  flaky_->Hold();
  std::mutex mu;
  std::map<std::string, absl::Status> answers;
  std::vector<std::shared_ptr<FakeSession>> sessions;
  auto join = [&](const std::string& id, const std::string& bearer = "jt") {
    sessions.push_back(std::make_shared<FakeSession>("10.0.0.1:5000"));
    hub_->ConnectAsync(bearer, MakeHello(id), sessions.back(), [&, id](absl::Status s) {
      std::lock_guard<std::mutex> l(mu);
      answers[id] = s;
    });
  };
  auto answer = [&](const std::string& id) -> std::optional<absl::Status> {
    std::lock_guard<std::mutex> l(mu);
    auto it = answers.find(id);
    if (it == answers.end()) return std::nullopt;
    return it->second;
  };
  join("j1");
  flaky_->WaitForHeldPuts(1);  // j1's write waits on the store
  join("j2");
  join("j3");
  EXPECT_FALSE(answer("j1") || answer("j2") || answer("j3"));
  EXPECT_TRUE(sessions[0]->sent().empty());  // no Welcome before the credential is stored
  join("j4");  // the 4th waiting
  ASSERT_TRUE(answer("j4"));
  EXPECT_EQ(answer("j4")->code(), absl::StatusCode::kResourceExhausted);
  EXPECT_THAT(answer("j4")->message(), HasSubstr("too many hosts are registering at once"));
  EXPECT_EQ(hub_->stats().joins_refused, 1u);
  join("known", known.credential);  // a reconnect does not wait for the store
  ASSERT_TRUE(answer("known"));
  EXPECT_TRUE(answer("known")->ok()) << *answer("known");

  flaky_->Release();
  ASSERT_TRUE(hub_->FlushHostRecords().ok());
  for (const char* id : {"j1", "j2", "j3"}) {
    const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(10);
    while (!answer(id) && std::chrono::steady_clock::now() < deadline) {
      std::this_thread::sleep_for(std::chrono::milliseconds(5));
    }
    ASSERT_TRUE(answer(id)) << id;
    EXPECT_TRUE(answer(id)->ok()) << id << ": " << *answer(id);
    auto rec = store_->GetHost(id);
    ASSERT_TRUE(rec.ok()) << id;
    EXPECT_FALSE(rec->credential_sha256.empty());
  }
  ASSERT_FALSE(sessions[0]->sent().empty());
  EXPECT_TRUE(sessions[0]->sent().front().has_welcome());
  EXPECT_EQ(Sha256Hex(sessions[0]->sent().front().welcome().host_credential()),
            store_->GetHost("j1")->credential_sha256);
  // The bound is free again.
  Conn later = Connect(MakeHello("j5"));
  EXPECT_FALSE(later.credential.empty());
}

// Once metrics_group_above hosts are connected, every host is told to group its batches
// (a MetricsCadence, and the Welcome of those connecting after); a host watched by name is
// asked for each batch at once while watched; below 90 % of the threshold, back to 1.
TEST_F(HubTest, AFleetPastTheThresholdGroupsItsBatchesExceptAWatchedHost) {
  hub_->Stop();
  hub_.reset();
  options_.metrics_batches_per_message = 5;
  options_.metrics_group_above = 3;
  StartHub();
  auto cadences = [](const Conn& c) {
    std::vector<uint32_t> out;
    for (const auto& m : c.session->sent()) {
      if (m.has_cadence()) out.push_back(m.cadence().metrics_batches_per_message());
    }
    return out;
  };
  std::vector<Conn> conns;
  for (int i = 0; i < 3; ++i) conns.push_back(Connect(MakeHello(absl::StrCat("h", i))));
  EXPECT_EQ(conns[0].session->sent().front().welcome().metrics_batches_per_message(), 1u);
  sched_.Advance(absl::Seconds(6));  // the check runs every 5 s
  for (const Conn& c : conns) EXPECT_THAT(cadences(c), ElementsAre(5u));
  Conn late = Connect(MakeHello("h3"));
  EXPECT_EQ(late.session->sent().front().welcome().metrics_batches_per_message(), 5u);
  EXPECT_THAT(cadences(late), IsEmpty());

  const uint64_t w = hub_->WatchMetrics({"h1"}, [](const herd::v1::HostMetrics&) {});
  EXPECT_THAT(cadences(conns[1]), ElementsAre(5u, 1u));
  const uint64_t w_all = hub_->WatchMetrics({}, [](const herd::v1::HostMetrics&) {});
  EXPECT_THAT(cadences(conns[2]), ElementsAre(5u));  // a watch of every host changes nothing
  std::set<std::string> many = {"h2"};
  for (int i = 0; i < 100; ++i) many.insert(absl::StrCat("other", i));
  const uint64_t w_many = hub_->WatchMetrics(many, [](const herd::v1::HostMetrics&) {});
  EXPECT_THAT(cadences(conns[2]), ElementsAre(5u));  // nor does one of more than 100
  hub_->Unwatch(w_many);
  hub_->Unwatch(w_all);
  hub_->Unwatch(w);
  EXPECT_THAT(cadences(conns[1]), ElementsAre(5u, 1u, 5u));

  // 4 connected; down to 2 (below 90 % of 3): back to each batch alone.
  hub_->OnDisconnect("h0", conns[0].session.get());
  hub_->OnDisconnect("h3", late.session.get());
  sched_.Advance(absl::Seconds(6));
  EXPECT_THAT(cadences(conns[2]), ElementsAre(5u, 1u));
  EXPECT_THAT(cadences(conns[0]), ElementsAre(5u));  // gone: told nothing
}

// Stop writes what is still queued.
TEST_F(HubWriteBehindTest, StopWritesQueuedRecords) {
  Conn a = Connect(MakeHello("a"));
  Send("a", a, Ack(1, true));
  hub_->Stop();
  EXPECT_EQ(store_->GetHost("a")->acked_config_version, 1u);
}

}  // namespace
}  // namespace herd::controlplane

namespace herd::controlplane {
namespace {

// With send threads (as the server runs), messages reach each host in order, off the
// caller's thread, and a host that cannot take one still fails its request.
class HubSendThreadsTest : public HubTest {
 protected:
  void SetUp() override {
    options_.send_threads = 2;
    HubTest::SetUp();
  }
  static bool WaitFor(const std::function<bool()>& done) {
    const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(10);
    while (!done()) {
      if (std::chrono::steady_clock::now() > deadline) return false;
      std::this_thread::sleep_for(std::chrono::milliseconds(5));
    }
    return true;
  }
};

TEST_F(HubSendThreadsTest, EveryHostGetsItsMessagesInOrder) {
  std::vector<Conn> conns;
  for (int i = 0; i < 8; ++i) {
    conns.push_back(Connect(MakeHello(absl::StrCat("h", i), {}, {Mod("app", kAppDefaults)})));
  }
  for (int v = 0; v < 5; ++v) {
    ASSERT_TRUE(Set(Global(), "app", "name", absl::StrCat("v", v)).ok());
  }
  for (int i = 0; i < 8; ++i) {
    ASSERT_TRUE(WaitFor([&] { return conns[i].session->configs().size() == 6u; })) << "h" << i;
    const auto sent = conns[i].session->sent();
    ASSERT_TRUE(sent.front().has_welcome());  // the Welcome first, then versions 1..6
    const auto configs = conns[i].session->configs();
    for (size_t k = 0; k < configs.size(); ++k) EXPECT_EQ(configs[k].version(), k + 1);
    EXPECT_EQ(ValueOf(configs.back(), "app", "name"), "v4");
  }
}

TEST_F(HubSendThreadsTest, AHostThatCannotTakeTheRequestFailsIt) {
  Conn c = Connect(MakeHello("h1", {}, {Mod("app", kAppDefaults)}));
  ASSERT_TRUE(WaitFor([&] { return !c.session->sent().empty(); }));
  c.session->set_fail_send(true);
  auto got = std::make_shared<Capture<herd::v1::RestartResult>>();
  hub_->RestartOnHosts({"h1"}, {"app"}, 0, "", [got](size_t, auto r) { got->Fn()(std::move(r)); });
  ASSERT_TRUE(WaitFor([&] { return got->calls() == 1; }));
  EXPECT_EQ(got->value().status().code(), absl::StatusCode::kUnavailable) << got->value().status();
}

// A fleet-wide restart goes out in one hand-off to the send threads: every host gets exactly
// its own request, and its answer comes back at its index.
TEST_F(HubSendThreadsTest, RestartOnManyHostsMatchesEachAnswerToItsHost) {
  constexpr int kHosts = 40;
  std::vector<Conn> conns;
  std::vector<std::string> ids;
  for (int i = 0; i < kHosts; ++i) {
    ids.push_back(absl::StrCat("h", i));
    conns.push_back(Connect(MakeHello(ids.back(), {}, {Mod("app", kAppDefaults)})));
  }
  auto results = std::make_shared<RestartResults>();
  hub_->RestartOnHosts(ids, {"app"}, 0, "ro-many", Collect(results));
  std::set<std::string> request_ids;
  for (int i = 0; i < kHosts; ++i) {
    ASSERT_TRUE(WaitFor([&] { return conns[i].session->restarts().size() == 1u; })) << ids[i];
    const auto req = conns[i].session->restarts()[0];
    EXPECT_EQ(req.rollout_id(), "ro-many");
    EXPECT_TRUE(request_ids.insert(req.request_id()).second) << "request id reused";
    Send(ids[i], conns[i], RestartReply(req.request_id(), "app", 1000 + i));
  }
  ASSERT_EQ(results->count(), static_cast<size_t>(kHosts));
  for (int i = 0; i < kHosts; ++i) {
    auto r = results->at(i);
    ASSERT_TRUE(r.ok()) << r.status();
    ASSERT_EQ(r->units_size(), 1);
    EXPECT_EQ(r->units(0).pid(), 1000 + i) << ids[i];
  }
}

// ---------------------------------------------------------------------------------------
// Issue 20: what one host can make the control plane hold, and what other hosts keep.

// A batch of `units` units with `probes` numeric probes each.
AgentMessage BigBatch(int64_t at_ms, int units, int probes) {
  AgentMessage m;
  auto* b = m.mutable_metrics();
  b->set_at_unix_ms(at_ms);
  b->mutable_host()->set_cpu_percent(1);
  for (int i = 0; i < units; ++i) {
    auto* u = b->add_units();
    u->set_name(absl::StrCat("unit-", i));
    u->set_state(herd::v1::UNIT_STATE_ONLINE);
    for (int j = 0; j < probes; ++j) {
      auto* p = u->add_probes();
      p->set_name(absl::StrCat("p", j));
      p->set_numeric(true);
      p->set_number(j);
    }
  }
  return m;
}

class HubLimitsTest : public HubTest {
 protected:
  void SetUp() override {
    HubTest::SetUp();
    hub_->Stop();
    options_.limits.max_units = 50;
    options_.limits.max_probes_per_unit = 4;
    options_.limits.max_modules = 3;
    options_.series.max_series = 64;
    StartHub();
  }
};

TEST_F(HubLimitsTest, OneHostsOversizedBatchIsCutAndCountedAndOtherHostsKeepTheirData) {
  Conn normal = Connect(MakeHello("h2"));
  Conn flood = Connect(MakeHello("h1"));
  Send("h2", normal, Batch(NowMs(), 10, 3));
  for (int i = 0; i < 3; ++i) {
    clock_.Advance(absl::Seconds(1));
    Send("h1", flood, BigBatch(NowMs(), 5000, 10));
  }
  clock_.Advance(absl::Seconds(1));
  Send("h2", normal, Batch(NowMs(), 11, 4));

  auto big = hub_->GetHost("h1");
  ASSERT_TRUE(big.ok()) << big.status();
  ASSERT_EQ(big->units_size(), 50);
  EXPECT_EQ(big->units(0).name(), "unit-0");
  for (const auto& u : big->units()) EXPECT_EQ(u.probes_size(), 4) << u.name();
  const Hub::Stats st = hub_->stats();
  EXPECT_EQ(st.limited[static_cast<size_t>(Limit::kUnits)], 3u * 4950u);
  EXPECT_EQ(st.limited[static_cast<size_t>(Limit::kProbes)], 3u * 50u * 6u);
  // 50 units × (cpu, rss, 4 probes) + 3 host series: past the 64 series kept.
  EXPECT_GT(st.limited[static_cast<size_t>(Limit::kSeries)], 0u);

  // The other host: its latest batch, its series and its probes, whole.
  auto other = hub_->GetHost("h2");
  ASSERT_TRUE(other.ok());
  ASSERT_EQ(other->units_size(), 1);
  EXPECT_EQ(other->units(0).probes_size(), 2);
  herd::v1::QuerySeriesRequest q;
  q.set_host_id("h2");
  q.set_unit("app");
  q.set_metric("probe:reqs");
  auto series = hub_->QuerySeries(q);
  ASSERT_TRUE(series.ok()) << series.status();
  q.set_metric("cpu");
  series = hub_->QuerySeries(q);
  ASSERT_TRUE(series.ok()) << series.status();
  EXPECT_EQ(series->points_size(), 2);
}

TEST_F(HubLimitsTest, WatchersGetTheBoundedBatch) {
  Conn flood = Connect(MakeHello("h1"));
  std::atomic<int> units{-1};
  hub_->WatchMetrics({}, [&](const herd::v1::HostMetrics& m) { units = m.batch().units_size(); });
  Send("h1", flood, BigBatch(NowMs(), 500, 1));
  EXPECT_EQ(units.load(), 50);
}

TEST_F(HubLimitsTest, AnInventoryPastTheModuleLimitKeepsTheFirstModules) {
  std::vector<ModuleInventory> mods;
  for (int i = 0; i < 10; ++i) mods.push_back(Mod(absl::StrCat("m", i)));
  Conn c = Connect(MakeHello("h1", {}, mods));
  auto h = hub_->GetHost("h1");
  ASSERT_TRUE(h.ok());
  ASSERT_EQ(h->modules_size(), 3);
  EXPECT_EQ(h->modules(2).name(), "m2");
  EXPECT_EQ(hub_->stats().limited[static_cast<size_t>(Limit::kModules)], 7u);
  // An inventory update is bounded the same way.
  AgentMessage inv;
  for (const auto& m : mods) *inv.mutable_inventory()->add_modules() = m;
  Send("h1", c, inv);
  EXPECT_EQ(hub_->GetHost("h1")->modules_size(), 3);
  EXPECT_EQ(hub_->stats().limited[static_cast<size_t>(Limit::kModules)], 14u);
}

// An NTP step of the wall clock (an hour forward, then back) must not expire a relayed
// request nor close an agent's stream: deadlines and silences are on the monotonic clock.
TEST_F(HubTest, AWallClockStepExpiresNoRequestAndClosesNoStream) {
  Conn c = Connect(MakeHello("h1", {}, {Mod("app")}));
  herd::v1::FleetActionRequest req;
  *req.mutable_target() = All();
  req.set_module("app");
  req.set_action("ping");
  req.set_timeout_ms(30000);
  auto cap = std::make_shared<Capture<herd::v1::FleetActionResponse>>();
  hub_->TriggerAction(req, actor_, cap->Fn());
  ASSERT_EQ(c.session->actions().size(), 1u);
  for (absl::Duration step : {absl::Hours(1), absl::Hours(-2), absl::Hours(1)}) {
    clock_.Advance(absl::Seconds(6));  // past the 5 s between silence checks
    clock_.StepWall(step);
    hub_->Sweep();
    EXPECT_EQ(cap->calls(), 0) << "stepped " << step;
    EXPECT_FALSE(c.session->closed()) << "stepped " << step;
    EXPECT_TRUE(HostInfo("h1").online());
  }
  // Real time still counts: past the request's 30 s (+1 s grace) it expires, and past 60 s
  // of silence the stream is closed.
  clock_.Advance(absl::Seconds(14));
  hub_->Sweep();
  ASSERT_EQ(cap->calls(), 1);
  ASSERT_TRUE(cap->value().ok());
  EXPECT_THAT(cap->value()->results(0).error(), HasSubstr("did not answer in time"));
  clock_.Advance(absl::Seconds(30));
  hub_->Sweep();
  EXPECT_TRUE(c.session->closed());
}

// A host whose stream ended shows online for its lease, however the wall clock moves.
TEST_F(HubTest, AWallClockStepDoesNotChangeWhoIsOnline) {
  Conn c = Connect(MakeHello("h1"));
  hub_->OnDisconnect("h1", c.session.get());
  clock_.StepWall(absl::Hours(1));
  EXPECT_TRUE(HostInfo("h1").online());
  clock_.StepWall(absl::Hours(-2));
  EXPECT_TRUE(HostInfo("h1").online());
  clock_.Advance(absl::Seconds(11));  // the lease is 10 s here
  EXPECT_FALSE(HostInfo("h1").online());
}

TEST_F(HubTest, TheJoinTokenIsReadOnceForManyConnectsAndAgainAfterTheCache) {
  for (int i = 0; i < 20; ++i) Connect(MakeHello(absl::StrCat("h", i)));
  EXPECT_EQ(hub_->stats().join_token_reads, 1u);
  // A new join token written by another process (a restart adopting a new file) is taken
  // within the cache's time: the old one is refused from then on.
  ASSERT_TRUE(store_->PutSetting("join_token_sha256", Sha256Hex("jt2")).ok());
  clock_.Advance(absl::Seconds(6));
  auto s = hub_->Connect("jt", MakeHello("late"), std::make_shared<FakeSession>());
  EXPECT_EQ(s.code(), absl::StatusCode::kUnauthenticated);
  Connect(MakeHello("late"), "jt2");
  EXPECT_EQ(hub_->stats().join_token_reads, 2u);
}

// A restart or an action without a target is refused, not taken as the whole fleet: every
// host must be asked for (all: true).
TEST_F(HubRelayTest, ActionsNeedAnExplicitTarget) {
  herd::v1::Target all_false;
  all_false.set_all(false);
  herd::v1::Target no_ids;
  no_ids.mutable_hosts();
  for (const herd::v1::Target& t : {herd::v1::Target(), all_false, no_ids}) {
    auto cap = Trigger(t);
    ASSERT_EQ(cap->calls(), 1);
    EXPECT_EQ(cap->value().status().code(), absl::StatusCode::kInvalidArgument)
        << t.ShortDebugString();
  }
  EXPECT_THAT(h1_.session->actions(), IsEmpty());
  EXPECT_THAT(h2_.session->actions(), IsEmpty());
  EXPECT_THAT(std::string(Hub::CheckChangeTarget(herd::v1::Target()).message()),
              HasSubstr("all"));
  EXPECT_TRUE(Hub::CheckChangeTarget(All()).ok());
}

// Three 60 KiB values made a module's environment exceed the kernel's limit: a value, and a
// module's values together, are bounded at SetConfig (with --force too), with the numbers.
TEST_F(HubTest, ConfigValuesAndAModulesConfigAreBoundedInSize) {
  Connect(MakeHello("h1", {{"env", "prod"}}, {Mod("app", kAppDefaults)}));
  auto big = Set(Global(), "app", "name", std::string(40 * 1024, 'x'), /*force=*/true);
  ASSERT_EQ(big.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(std::string(big.status().message()), HasSubstr("40962 bytes"));
  EXPECT_THAT(std::string(big.status().message()), HasSubstr("32768"));
  // Quotes and control characters count as JSON escapes them.
  auto escaped = Set(Global(), "app", "name", std::string(6 * 1024, '\x01'), true);
  EXPECT_EQ(escaped.status().code(), absl::StatusCode::kInvalidArgument);

  const std::string v20(20 * 1024, 'v');
  ASSERT_TRUE(Set(Global(), "app", "a", v20, true).ok());
  // The same key at a narrower scope replaces it on some hosts: the widest counts once.
  ASSERT_TRUE(Set(Selector("env=prod"), "app", "a", v20, true).ok());
  ASSERT_TRUE(Set(Global(), "app", "b", v20, true).ok());
  // Replacing a value at its own scope is not counted twice.
  ASSERT_TRUE(Set(Global(), "app", "b", v20 + "w", true).ok());
  auto third = Set(HostScope("h1"), "app", "c", v20, true);
  ASSERT_EQ(third.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(std::string(third.status().message()), HasSubstr("49152"));
  EXPECT_THAT(std::string(third.status().message()), HasSubstr("agentctl conf app"));
  // Another module has its own room.
  Connect(MakeHello("h2", {}, {Mod("web")}));
  EXPECT_TRUE(Set(Global(), "web", "c", v20, true).ok());
}

// The agent nacks a version whose module then fails to start: shown like a bad value.
TEST_F(HubConfigTest, ANackForAModuleThatFailsToStartIsShownAsRejected) {
  ASSERT_TRUE(Set(Global(), "app", "interval", "5").ok());
  const uint64_t v = h1_.session->last_config().version();
  herd::v1::ConfigRejection r;
  r.set_module("app");
  r.set_reason("app did not start with this config: Argument list too long");
  Send("h1", h1_, Ack(v, false, {r}));
  herd::v1::Host h = HostInfo("h1");
  EXPECT_LT(h.acked_config_version(), v);
  EXPECT_EQ(h.desired_config_version(), v);
  ASSERT_EQ(h.config_rejections_size(), 1);
  EXPECT_THAT(h.config_rejections(0).reason(), HasSubstr("did not start"));
}

}  // namespace
}  // namespace herd::controlplane
