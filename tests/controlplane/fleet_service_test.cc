// The control plane's gRPC-side pieces against a real SQLite store, a fake clock and fake
// agent sessions: rollouts (what is recorded when the control plane stops mid-rollout, and
// that a restart needs a target), the Fleet API's stream slots and stalled readers (one on a
// real loopback gRPC server), and the gateway's Hello deadline.
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
#include "tests/fakes/fake_scheduler.h"

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
    char tmpl[] = "/tmp/herd_services_test.XXXXXX";
    ASSERT_NE(mkdtemp(tmpl), nullptr);
    dir_ = tmpl;
    auto store = OpenSqliteStore(dir_ + "/herd.db");
    ASSERT_TRUE(store.ok()) << store.status();
    store_ = std::move(*store);
    ASSERT_TRUE(store_->PutSetting("join_token_sha256", Sha256Hex("jt")).ok());
    hub_ = std::make_unique<Hub>(*store_, clock_, HubOptions{});
    ASSERT_TRUE(hub_->Start().ok());
  }
  void TearDown() override {
    if (hub_) hub_->Stop();
    hub_.reset();
    store_.reset();
    std::error_code ec;
    std::filesystem::remove_all(dir_, ec);
  }
  std::shared_ptr<FakeSession> ConnectHost(const std::string& id, const std::string& module) {
    auto s = std::make_shared<FakeSession>();
    auto st = hub_->Connect("jt", HelloWith(id, module), s);
    EXPECT_TRUE(st.ok()) << st;
    return s;
  }

  std::string dir_;
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

}  // namespace
}  // namespace herd::controlplane
