// The control plane's gRPC-side pieces against a real SQLite store, a fake clock and fake
// agent sessions: rollouts with a real hub (what is recorded when the control plane stops
// mid-rollout, and that a restart needs a target), the Fleet API's stream slots and stalled
// readers (one on a real loopback gRPC server), the gateway's Hello deadline; and the Fleet
// API on fakes of the hub's interfaces (tests/fakes/fake_fleet.h) through an in-process
// channel, its periodic checks on a FakeScheduler. Rollouts on fakes: rollouts_test.cc.
#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <stdlib.h>

#include <chrono>
#include <filesystem>
#include <functional>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"
#include "common/clock.h"
#include "common/scheduler.h"
#include "controlplane/core/hub.h"
#include "controlplane/core/secrets.h"
#include "controlplane/fleet/fleet_service.h"
#include "controlplane/fleet/rollouts.h"
#include "controlplane/gateway/gateway_service.h"
#include "controlplane/store/store.h"
#include "grpcpp/grpcpp.h"
#include "tests/fakes/store_with_join_token.h"
#include "tests/fakes/fake_fleet.h"
#include "tests/fakes/fake_scheduler.h"
#include "tests/fakes/temp_dir.h"

namespace herd::controlplane {
namespace {

using ::testing::HasSubstr;

class FakeSession : public HostSession {
 public:
  bool Send(herd::v1::ControlMessage msg) override {
    absl::MutexLock l(&mu_);
    sent_.push_back(std::move(msg));
    return true;
  }
  void Close(const std::string& why) override {
    absl::MutexLock l(&mu_);
    closed_ = true;
    why_ = why;
  }
  std::string Peer() const override { return "10.0.0.9:5000"; }
  bool closed() const {
    absl::MutexLock l(&mu_);
    return closed_;
  }
  std::string why() const {
    absl::MutexLock l(&mu_);
    return why_;
  }
  std::vector<herd::v1::RestartRequest> restarts() const {
    absl::MutexLock l(&mu_);
    std::vector<herd::v1::RestartRequest> out;
    for (const auto& m : sent_) {
      if (m.has_restart()) out.push_back(m.restart());
    }
    return out;
  }

 private:
  mutable absl::Mutex mu_;
  std::vector<herd::v1::ControlMessage> sent_ ABSL_GUARDED_BY(mu_);
  bool closed_ ABSL_GUARDED_BY(mu_) = false;
  std::string why_ ABSL_GUARDED_BY(mu_);
};

// Polls `cond` (real time) until it holds or `max` passes.
bool WaitFor(const std::function<bool()>& cond, absl::Duration max = absl::Seconds(10)) {
  const absl::Time end = absl::Now() + max;
  while (absl::Now() < end) {
    if (cond()) return true;
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  return cond();
}

herd::v1::Hello HelloWith(const std::string& id, const std::string& module) {
  herd::v1::Hello h;
  h.set_host_id(id);
  h.set_hostname(id);
  auto* m = h.add_modules();
  m->set_name(module);
  m->set_version("1.0.0");
  m->set_defaults_json("{}");
  return h;
}

class ServicesTest : public ::testing::Test {
 protected:
  void SetUp() override {
    auto store = herd::testing::OpenStoreWithJoinToken(tmp_.Path("herd.db"), "jt");
    ASSERT_TRUE(store.ok()) << store.status();
    store_ = std::move(*store);
    hub_ = std::make_unique<Hub>(*store_, clock_, HubOptions{});
    ASSERT_TRUE(hub_->Start().ok());
  }
  void TearDown() override {
    if (hub_) hub_->Stop();
    hub_.reset();
    store_.reset();
  }
  std::shared_ptr<FakeSession> ConnectHost(const std::string& id, const std::string& module) {
    auto s = std::make_shared<FakeSession>();
    auto st = hub_->Connect("jt", HelloWith(id, module), s);
    EXPECT_TRUE(st.ok()) << st;
    return s;
  }

  herd::testing::ScopedTempDir tmp_;
  FakeClock clock_;
  // Rollouts against the real hub run their steps on a thread, as in the server (their
  // steps are due at once: the fake clock need not move); the periodic checks of the
  // gateway and the Fleet API's streams run only when a test advances `sched_`.
  ThreadScheduler timers_{clock_, "test-timers"};
  testing::FakeScheduler sched_{clock_};
  std::unique_ptr<Store> store_;
  std::unique_ptr<Hub> hub_;
  Actor actor_{"tester", Role::kOperator, ""};
};

// ---------------------------------------------------------------------------------------
// Rollouts

// A host told to restart when the control plane stopped may well have restarted: it is
// recorded as interrupted (with why), not as skipped, which says it was never touched.
TEST_F(ServicesTest, ARolloutLeftRunningRecordsHostsToldToRestartAsInterrupted) {
  herd::v1::Rollout r;
  r.set_id("ro-1");
  r.set_module("app");
  r.set_state(herd::v1::ROLLOUT_STATE_RUNNING);
  auto* told = r.add_hosts();
  told->set_host_id("h1");
  told->set_state(herd::v1::ROLLOUT_HOST_STATE_RESTARTING);
  auto* later = r.add_hosts();
  later->set_host_id("h2");
  later->set_batch(1);
  later->set_state(herd::v1::ROLLOUT_HOST_STATE_PENDING);
  ASSERT_TRUE(store_->PutRollout(r).ok());
  RolloutEngine engine(*hub_, *hub_, *hub_, *store_, timers_);
  ASSERT_TRUE(engine.Start().ok());
  auto after = store_->GetRollout("ro-1");
  ASSERT_TRUE(after.ok());
  EXPECT_EQ(after->state(), herd::v1::ROLLOUT_STATE_ABORTED);
  EXPECT_EQ(after->hosts(0).state(), herd::v1::ROLLOUT_HOST_STATE_INTERRUPTED);
  EXPECT_THAT(after->hosts(0).error(), HasSubstr("before the host answered"));
  EXPECT_EQ(after->hosts(1).state(), herd::v1::ROLLOUT_HOST_STATE_SKIPPED);
}

// For that, the store must know which hosts were told: the hand-off is stored, not only
// published, before the answers come.
TEST_F(ServicesTest, ARolloutStoresWhichHostsWereToldToRestart) {
  auto session = ConnectHost("h1", "app");
  RolloutEngine engine(*hub_, *hub_, *hub_, *store_, timers_);
  ASSERT_TRUE(engine.Start().ok());
  herd::v1::FleetRestartRequest req;
  req.mutable_target()->set_all(true);
  req.set_module("app");
  auto r = engine.Create(req, actor_);
  ASSERT_TRUE(r.ok()) << r.status();
  ASSERT_TRUE(WaitFor([&] { return session->restarts().size() == 1u; }));
  ASSERT_TRUE(WaitFor([&] {
    auto stored = store_->GetRollout(r->id());
    return stored.ok() && stored->hosts(0).state() == herd::v1::ROLLOUT_HOST_STATE_RESTARTING;
  }));
  // The host answers; the rollout ends.
  herd::v1::AgentMessage answer;
  answer.mutable_restart_result()->set_request_id(session->restarts()[0].request_id());
  auto* u = answer.mutable_restart_result()->add_units();
  u->set_unit("app");
  u->set_ok(true);
  hub_->OnMessage("h1", session.get(), answer);
  ASSERT_TRUE(WaitFor([&] { return engine.counts().succeeded == 1u; }));
  engine.Stop();
}

TEST_F(ServicesTest, ARestartNeedsAnExplicitTarget) {
  auto session = ConnectHost("h1", "app");
  RolloutEngine engine(*hub_, *hub_, *hub_, *store_, timers_);
  ASSERT_TRUE(engine.Start().ok());
  herd::v1::FleetRestartRequest req;
  req.set_module("app");
  auto r = engine.Create(req, actor_);
  ASSERT_EQ(r.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(std::string(r.status().message()), HasSubstr("all"));
  req.mutable_target()->set_all(false);
  EXPECT_EQ(engine.Create(req, actor_).status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_TRUE(session->restarts().empty());
}

// ---------------------------------------------------------------------------------------
// Stream slots

TEST_F(ServicesTest, EachTokenHasItsShareOfStreamSlots) {
  StreamTokens tokens(*store_, sched_, absl::Hours(1), /*max=*/5, /*max_per_token=*/2);
  auto noop = [](const grpc::Status&) {};
  auto a1 = tokens.Add("hash-a", "alice", noop);
  auto a2 = tokens.Add("hash-a", "alice", noop);
  ASSERT_TRUE(a1.ok() && a2.ok());
  auto a3 = tokens.Add("hash-a", "alice", noop);
  ASSERT_EQ(a3.status().code(), absl::StatusCode::kResourceExhausted);
  EXPECT_THAT(std::string(a3.status().message()), HasSubstr("alice"));
  // Another token still gets its slots.
  ASSERT_TRUE(tokens.Add("hash-b", "bob", noop).ok());
  // A slot given back can be taken again.
  tokens.Remove(*a1);
  ASSERT_TRUE(tokens.Add("hash-a", "alice", noop).ok());
  // And the server's total holds too.
  ASSERT_TRUE(tokens.Add("hash-c", "carol", noop).ok());
  ASSERT_TRUE(tokens.Add("hash-c", "carol", noop).ok());
  EXPECT_EQ(tokens.Add("hash-d", "dave", noop).status().code(),
            absl::StatusCode::kResourceExhausted);
  const StreamTokens::Counts c = tokens.counts();
  EXPECT_EQ(c.open, 5u);
  EXPECT_EQ(c.refused, 2u);
}

// ---------------------------------------------------------------------------------------
// A Fleet stream whose reader stopped reading, on a real loopback server.

// A loopback Fleet server, and a WatchMetrics stream on it whose client stops reading.
class StalledWatchTest : public ServicesTest {
 protected:
  void SetUp() override {
    ServicesTest::SetUp();
    ApiToken token;
    token.name = "viewer";
    token.secret_sha256 = Sha256Hex("hv_secret");
    ASSERT_TRUE(store_->AddToken(token).ok());
    engine_ = std::make_unique<RolloutEngine>(*hub_, *hub_, *hub_, *store_, timers_);
    ASSERT_TRUE(engine_->Start().ok());
    FleetStreamOptions options;
    options.token_recheck = absl::Hours(1);  // rounds only when the test asks
    options.queue.stall_timeout = absl::Seconds(30);
    options.queue.max_bytes = 32 * 1024;  // a few batches: the backlog is cut meanwhile
    fleet_ = std::make_unique<FleetService>(FleetBackends::Of(*hub_), *store_, *engine_, sched_,
                                            options);
    grpc::ServerBuilder builder;
    int port = 0;
    builder.AddListeningPort("127.0.0.1:0", grpc::InsecureServerCredentials(), &port);
    builder.RegisterService(fleet_.get());
    server_ = builder.BuildAndStart();
    ASSERT_TRUE(server_ && port > 0);
    agent_ = ConnectHost("h1", "app");
    grpc::ChannelArguments args;
    args.SetInt(GRPC_ARG_HTTP2_BDP_PROBE, 0);  // the window stays at 64 KiB
    auto channel = grpc::CreateCustomChannel(absl::StrCat("127.0.0.1:", port),
                                             grpc::InsecureChannelCredentials(), args);
    stub_ = herd::v1::Fleet::NewStub(channel);
    ctx_.AddMetadata("authorization", "Bearer hv_secret");
    reader_ = stub_->WatchMetrics(&ctx_, herd::v1::WatchMetricsRequest());
    reader_->WaitForInitialMetadata();

    // Batches of ~8 KiB, never read: the writes back up, then one waits. Time passes (the
    // fake clock) only between batches, so the stream ends at the first push after its
    // write has waited 30 s.
    herd::v1::AgentMessage batch;
    auto* b = batch.mutable_metrics();
    for (int i = 0; i < 20; ++i) {
      auto* u = b->add_units();
      u->set_name(absl::StrCat("unit-", i));
      u->set_status_reason(std::string(400, 'r'));
    }
    ASSERT_TRUE(WaitFor([&] {
      for (int i = 0; i < 20; ++i) {
        b->set_at_unix_ms(absl::ToUnixMillis(clock_.Now()));
        hub_->OnMessage("h1", agent_.get(), batch);
      }
      if (fleet_->stream_counts().stalled > 0) return true;
      clock_.Advance(absl::Seconds(31));
      return false;
    }));
  }
  void TearDown() override {
    if (server_) server_->Shutdown();  // every stream's OnDone has run when it returns
    server_.reset();
    fleet_.reset();
    engine_.reset();
    ServicesTest::TearDown();
  }
  // Reads the stream to its end: its status.
  grpc::Status ReadToTheEnd() {
    herd::v1::HostMetrics m;
    while (reader_->Read(&m)) {
    }
    return reader_->Finish();
  }

  std::unique_ptr<RolloutEngine> engine_;
  std::unique_ptr<FleetService> fleet_;
  std::unique_ptr<grpc::Server> server_;
  std::shared_ptr<FakeSession> agent_;
  std::unique_ptr<herd::v1::Fleet::Stub> stub_;
  grpc::ClientContext ctx_;
  std::unique_ptr<grpc::ClientReader<herd::v1::HostMetrics>> reader_;
};

TEST_F(StalledWatchTest, AReaderThatStoppedReadingHasItsStreamEndedAndCounted) {
  const StreamTokens::Counts counts = fleet_->stream_counts();
  EXPECT_EQ(counts.stalled, 1u);
  EXPECT_GT(counts.dropped, 0u);  // the queue, bounded meanwhile, dropped its oldest
  // The reader that comes back reads what was in flight, then why its stream ended.
  grpc::Status st = ReadToTheEnd();
  EXPECT_EQ(st.error_code(), grpc::StatusCode::RESOURCE_EXHAUSTED);
  EXPECT_THAT(st.error_message(), HasSubstr("the reader fell behind"));
  ASSERT_TRUE(WaitFor([&] { return fleet_->stream_counts().open == 0u; }));
}

// Its status waits behind data its reader does not read, holding its slot: the next round
// of the streams' check cancels it.
TEST_F(StalledWatchTest, AStreamEndedForItsReaderIsCancelledIfItStaysOpen) {
  EXPECT_EQ(fleet_->stream_counts().open, 1u);
  fleet_->CheckStreams();
  ASSERT_TRUE(WaitFor([&] { return fleet_->stream_counts().open == 0u; }));
  EXPECT_EQ(ReadToTheEnd().error_code(), grpc::StatusCode::CANCELLED);
}

// ---------------------------------------------------------------------------------------
// The gateway's Hello deadline: a few seconds, on the monotonic clock.

TEST_F(ServicesTest, AStreamWithoutHelloIsEndedAfterTheDeadlineWhateverTheWallClockDoes) {
  GatewayService gateway(*hub_, sched_);  // 5 s by default
  auto session = std::make_shared<FakeSession>();
  const uint64_t id = gateway.AwaitHello(session);
  clock_.StepWall(absl::Hours(1));
  gateway.CheckStreams();
  EXPECT_FALSE(session->closed());
  clock_.StepWall(absl::Hours(-2));
  clock_.Advance(absl::Seconds(4));
  gateway.CheckStreams();
  EXPECT_FALSE(session->closed());
  clock_.Advance(absl::Seconds(2));
  gateway.CheckStreams();
  ASSERT_TRUE(session->closed());
  EXPECT_THAT(session->why(), HasSubstr("no Hello within 5s"));
  gateway.HelloDone(id);
}

// The stream watch is a PeriodicTask on the scheduler: advancing it is enough.
TEST_F(ServicesTest, TheGatewaysStreamWatchRunsEverySecondOnTheScheduler) {
  GatewayService gateway(*hub_, sched_);
  auto session = std::make_shared<FakeSession>();
  const uint64_t id = gateway.AwaitHello(session);
  sched_.Advance(absl::Seconds(5));
  EXPECT_FALSE(session->closed());
  sched_.Advance(absl::Seconds(1));
  EXPECT_TRUE(session->closed());
  gateway.HelloDone(id);
}

// ---------------------------------------------------------------------------------------
// The Fleet API on fakes of the hub's interfaces (tests/fakes/fake_fleet.h), through an
// in-process channel (no socket), with its periodic checks on a FakeScheduler.

class FleetApiTest : public ::testing::Test {
 protected:
  void SetUp() override {
    auto store = OpenSqliteStore(tmp_.Path("herd.db"));
    ASSERT_TRUE(store.ok()) << store.status();
    store_ = std::move(*store);
    ASSERT_TRUE(store_->AddToken({"viewer", Role::kViewer, Sha256Hex("v_secret")}).ok());
    ASSERT_TRUE(store_->AddToken({"ops", Role::kOperator, Sha256Hex("o_secret")}).ok());
    hosts_.Add({"h1", "web-1", {"app"}, {{"env", "prod"}}});
    hosts_.Add({"h2", "web-2", {"app"}, {{"env", "dev"}}});
    hosts_.Add({"h3", "db-1", {"db"}, {{"env", "prod"}}});
    engine_ = std::make_unique<RolloutEngine>(hosts_, relay_, audit_, *store_, sched_);
    ASSERT_TRUE(engine_->Start().ok());
    FleetStreamOptions options;
    options.token_recheck = absl::Seconds(10);
    fleet_ = std::make_unique<FleetService>(
        FleetBackends{hosts_, config_, relay_, metrics_, audit_}, *store_, *engine_, sched_,
        options);
    grpc::ServerBuilder builder;
    builder.RegisterService(fleet_.get());
    server_ = builder.BuildAndStart();
    ASSERT_NE(server_, nullptr);
    stub_ = herd::v1::Fleet::NewStub(server_->InProcessChannel(grpc::ChannelArguments()));
  }
  void TearDown() override {
    if (server_) server_->Shutdown();
    server_.reset();
    fleet_.reset();
    engine_.reset();
    store_.reset();
  }
  // A client context with `secret` as its bearer token, and a deadline that only a broken
  // test reaches.
  static std::unique_ptr<grpc::ClientContext> Ctx(const std::string& secret) {
    auto ctx = std::make_unique<grpc::ClientContext>();
    if (!secret.empty()) ctx->AddMetadata("authorization", "Bearer " + secret);
    ctx->set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(30));
    return ctx;
  }

  herd::testing::ScopedTempDir tmp_;
  FakeClock clock_;
  testing::FakeScheduler sched_{clock_};
  testing::FakeFleetHosts hosts_;
  testing::FakeFleetConfig config_;
  testing::FakeFleetRelay relay_;
  testing::FakeFleetMetrics metrics_;
  testing::FakeFleetAudit audit_;
  std::unique_ptr<Store> store_;
  std::unique_ptr<RolloutEngine> engine_;
  std::unique_ptr<FleetService> fleet_;
  std::unique_ptr<grpc::Server> server_;
  std::unique_ptr<herd::v1::Fleet::Stub> stub_;
};

TEST_F(FleetApiTest, ViewersReadOperatorsChange) {
  herd::v1::ListHostsResponse hosts;
  EXPECT_TRUE(stub_->ListHosts(Ctx("v_secret").get(), {}, &hosts).ok());
  EXPECT_EQ(hosts.total_size(), 3u);
  herd::v1::FleetSetConfigRequest set;
  set.set_module("app");
  set.set_key("level");
  herd::v1::FleetConfigChange change;
  grpc::Status st = stub_->SetConfig(Ctx("v_secret").get(), set, &change);
  EXPECT_EQ(st.error_code(), grpc::StatusCode::PERMISSION_DENIED);
  EXPECT_THAT(st.error_message(), HasSubstr("read-only"));
  EXPECT_EQ(stub_->SetConfig(Ctx("").get(), set, &change).error_code(),
            grpc::StatusCode::UNAUTHENTICATED);
  EXPECT_EQ(stub_->SetConfig(Ctx("wrong").get(), set, &change).error_code(),
            grpc::StatusCode::UNAUTHENTICATED);
  EXPECT_TRUE(config_.changes().empty());
  ASSERT_TRUE(stub_->SetConfig(Ctx("o_secret").get(), set, &change).ok());
  EXPECT_EQ(change.revision(), 2u);
  ASSERT_EQ(config_.changes().size(), 1u);
  EXPECT_EQ(config_.changes()[0].actor, "ops");
  herd::v1::FleetUnsetConfigRequest unset;
  unset.set_module("app");
  unset.set_key("level");
  ASSERT_TRUE(stub_->UnsetConfig(Ctx("o_secret").get(), unset, &change).ok());
  EXPECT_FALSE(config_.changes()[1].set);
  herd::v1::WhoAmIResponse me;
  ASSERT_TRUE(stub_->WhoAmI(Ctx("v_secret").get(), {}, &me).ok());
  EXPECT_EQ(me.name(), "viewer");
  EXPECT_EQ(me.role(), "viewer");
}

TEST_F(FleetApiTest, ListHostsFiltersSortsByHostnameAndPages) {
  herd::v1::ListHostsRequest req;
  req.set_query("PROD");  // a label, any case
  herd::v1::ListHostsResponse resp;
  ASSERT_TRUE(stub_->ListHosts(Ctx("v_secret").get(), req, &resp).ok());
  ASSERT_EQ(resp.hosts_size(), 2);
  EXPECT_EQ(resp.hosts(0).hostname(), "db-1");
  EXPECT_EQ(resp.hosts(1).hostname(), "web-1");
  req.clear_query();
  req.set_page_size(2);
  resp.Clear();
  ASSERT_TRUE(stub_->ListHosts(Ctx("v_secret").get(), req, &resp).ok());
  EXPECT_EQ(resp.hosts_size(), 2);
  EXPECT_EQ(resp.total_size(), 3u);
  ASSERT_FALSE(resp.next_page_token().empty());
  req.set_page_token(resp.next_page_token());
  resp.Clear();
  ASSERT_TRUE(stub_->ListHosts(Ctx("v_secret").get(), req, &resp).ok());
  ASSERT_EQ(resp.hosts_size(), 1);
  EXPECT_EQ(resp.hosts(0).hostname(), "web-2");
  EXPECT_TRUE(resp.next_page_token().empty());
  req.set_page_token("x");
  grpc::Status st = stub_->ListHosts(Ctx("v_secret").get(), req, &resp);
  EXPECT_EQ(st.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_THAT(st.error_message(), HasSubstr("next_page_token"));
  // The directory's errors come through as they are.
  hosts_.FailWith(absl::UnavailableError("directory down"));
  EXPECT_EQ(stub_->ListHosts(Ctx("v_secret").get(), {}, &resp).error_code(),
            grpc::StatusCode::UNAVAILABLE);
}

TEST_F(FleetApiTest, ARestartIsARolloutWatchedToItsEnd) {
  herd::v1::FleetRestartRequest req;
  req.mutable_target()->set_selector("env=prod");
  req.set_module("app");
  herd::v1::Rollout created;
  EXPECT_EQ(stub_->Restart(Ctx("v_secret").get(), req, &created).error_code(),
            grpc::StatusCode::PERMISSION_DENIED);
  ASSERT_TRUE(stub_->Restart(Ctx("o_secret").get(), req, &created).ok());
  ASSERT_EQ(created.hosts_size(), 1);
  EXPECT_EQ(created.hosts(0).host_id(), "h1");
  auto ctx = Ctx("v_secret");
  herd::v1::GetRolloutRequest get;
  get.set_id(created.id());
  auto watch = stub_->WatchRollout(ctx.get(), get);
  herd::v1::Rollout seen;
  ASSERT_TRUE(watch->Read(&seen));
  EXPECT_EQ(seen.state(), herd::v1::ROLLOUT_STATE_RUNNING);
  sched_.RunDue();
  ASSERT_TRUE(relay_.Succeed("h1"));
  sched_.RunDue();
  herd::v1::RolloutState last = herd::v1::ROLLOUT_STATE_RUNNING;
  while (watch->Read(&seen)) last = seen.state();
  EXPECT_EQ(last, herd::v1::ROLLOUT_STATE_SUCCEEDED);
  EXPECT_TRUE(watch->Finish().ok());
  herd::v1::ListRolloutsResponse list;
  ASSERT_TRUE(stub_->ListRollouts(Ctx("v_secret").get(), {}, &list).ok());
  ASSERT_EQ(list.rollouts_size(), 1);
  EXPECT_EQ(list.rollouts(0).state(), herd::v1::ROLLOUT_STATE_SUCCEEDED);
  herd::v1::ListAuditResponse audit;
  ASSERT_TRUE(stub_->ListAudit(Ctx("v_secret").get(), {}, &audit).ok());
  ASSERT_EQ(audit.entries_size(), 1);
  EXPECT_EQ(audit.entries(0).action(), "rollout.create");
  EXPECT_EQ(audit.entries(0).actor(), "ops");
}

TEST_F(FleetApiTest, WatchMetricsStreamsTheSelectedHostsOnly) {
  herd::v1::WatchMetricsRequest req;
  req.mutable_target()->mutable_hosts()->add_ids("web-2");
  auto ctx = Ctx("v_secret");
  auto stream = stub_->WatchMetrics(ctx.get(), req);
  metrics_.WaitUntilWatched(1);
  herd::v1::HostMetrics m;
  m.set_host_id("h1");
  metrics_.Publish(m);  // not selected
  m.set_host_id("h2");
  metrics_.Publish(m);
  herd::v1::HostMetrics got;
  ASSERT_TRUE(stream->Read(&got));
  EXPECT_EQ(got.host_id(), "h2");
  ctx->TryCancel();
  while (stream->Read(&got)) {
  }
  stream->Finish();
  // A target that selects an unknown host is refused.
  req.mutable_target()->mutable_hosts()->add_ids("nope");
  auto ctx2 = Ctx("v_secret");
  auto refused = stub_->WatchMetrics(ctx2.get(), req);
  EXPECT_FALSE(refused->Read(&got));
  EXPECT_EQ(refused->Finish().error_code(), grpc::StatusCode::NOT_FOUND);
}

// Tokens are looked up again every token_recheck, on the scheduler: a revoked one ends its
// streams at the next round, not before.
TEST_F(FleetApiTest, ARevokedTokenEndsItsStreamsAtTheNextCheck) {
  auto ctx = Ctx("v_secret");
  auto stream = stub_->WatchMetrics(ctx.get(), herd::v1::WatchMetricsRequest());
  stream->WaitForInitialMetadata();
  metrics_.WaitUntilWatched(1);
  ASSERT_TRUE(store_->DeleteToken("viewer").ok());
  clock_.StepWall(absl::Hours(1));  // the checks are on the monotonic clock: no round yet
  sched_.RunDue();
  EXPECT_EQ(fleet_->stream_counts().open, 1u);
  sched_.Advance(absl::Seconds(9));
  EXPECT_EQ(fleet_->stream_counts().open, 1u);
  sched_.Advance(absl::Seconds(1));
  EXPECT_EQ(fleet_->stream_counts().open, 0u);
  herd::v1::HostMetrics got;
  while (stream->Read(&got)) {
  }
  grpc::Status st = stream->Finish();
  EXPECT_EQ(st.error_code(), grpc::StatusCode::UNAUTHENTICATED);
  EXPECT_THAT(st.error_message(), HasSubstr("revoked"));
}

TEST_F(FleetApiTest, LogsAndActionsGoThroughTheRelay) {
  herd::v1::FleetLogsRequest logs;
  logs.set_host_id("h1");
  logs.set_unit("app");
  auto ctx = Ctx("v_secret");
  auto stream = stub_->StreamLogs(ctx.get(), logs);
  relay_.WaitUntilLogsOpen(1);
  relay_.SendLogs({"one", "two"});
  std::vector<std::string> lines;
  herd::v1::LogLine line;
  while (stream->Read(&line)) lines.push_back(line.text());
  EXPECT_TRUE(stream->Finish().ok());
  EXPECT_THAT(lines, ::testing::ElementsAre("one", "two"));

  herd::v1::FleetActionRequest action;
  action.mutable_target()->mutable_hosts()->add_ids("h2");
  action.set_module("app");
  action.set_action("flush");
  relay_.set_action_reply_json(R"({"flushed":3})");
  herd::v1::FleetActionResponse resp;
  EXPECT_EQ(stub_->TriggerAction(Ctx("v_secret").get(), action, &resp).error_code(),
            grpc::StatusCode::PERMISSION_DENIED);
  ASSERT_TRUE(stub_->TriggerAction(Ctx("o_secret").get(), action, &resp).ok());
  ASSERT_EQ(resp.results_size(), 1);
  EXPECT_EQ(resp.results(0).reply_json(), R"({"flushed":3})");
  ASSERT_EQ(relay_.actions().size(), 1u);
  EXPECT_EQ(relay_.actions()[0].first, "ops");
}

}  // namespace
}  // namespace herd::controlplane
