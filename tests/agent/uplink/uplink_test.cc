// The Uplink's state machine driven through FakeUplinkTransport (the test plays the control
// plane) and FakeScheduler (simulated time): no socket, no thread, no sleep.
#include "agent/uplink/uplink.h"

#include <stdlib.h>
#include <sys/stat.h>

#include <filesystem>
#include <fstream>
#include <functional>
#include <string>
#include <vector>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/fakes/fake_scheduler.h"
#include "tests/fakes/fake_uplink_transport.h"

namespace herd::agent {
namespace {

using herd::testing::FakeScheduler;
using herd::testing::FakeUplinkTransport;
using herd::v1::AgentMessage;
using herd::v1::ControlMessage;
using ::testing::HasSubstr;
using Phase = Uplink::Phase;

// Records what the Uplink asks; answers later, when the test calls the kept callbacks.
class RecordingHandler final : public UplinkHandler {
 public:
  std::vector<herd::v1::ModuleInventory> Inventory() override {
    ++inventory_calls;
    return inventory;
  }
  uint64_t AckedConfigVersion() override { return acked_version; }
  void OnConfig(const herd::v1::ConfigSnapshot& snap,
                std::function<void(herd::v1::ConfigAck)> done) override {
    configs.push_back(snap);
    config_done.push_back(std::move(done));
  }
  void OnAction(const herd::v1::ActionRequest& req,
                std::function<void(herd::v1::ActionResult)> done) override {
    actions.push_back(req);
    action_done.push_back(std::move(done));
  }
  void OnRestart(const herd::v1::RestartRequest& req,
                 std::function<void(herd::v1::RestartResult)> done) override {
    restarts.push_back(req);
    restart_done.push_back(std::move(done));
  }
  void OnLogs(const herd::v1::HostLogsRequest& req,
              std::function<void(herd::v1::LogChunk)> send) override {
    logs.push_back(req);
    log_send.push_back(std::move(send));
  }
  void OnCancel(const std::string& request_id) override { cancels.push_back(request_id); }
  void OnWelcome(const herd::v1::Welcome& welcome) override { welcomes.push_back(welcome); }

  std::vector<herd::v1::ModuleInventory> inventory;
  int inventory_calls = 0;
  uint64_t acked_version = 0;
  std::vector<herd::v1::ConfigSnapshot> configs;
  std::vector<std::function<void(herd::v1::ConfigAck)>> config_done;
  std::vector<herd::v1::ActionRequest> actions;
  std::vector<std::function<void(herd::v1::ActionResult)>> action_done;
  std::vector<herd::v1::RestartRequest> restarts;
  std::vector<std::function<void(herd::v1::RestartResult)>> restart_done;
  std::vector<herd::v1::HostLogsRequest> logs;
  std::vector<std::function<void(herd::v1::LogChunk)>> log_send;
  std::vector<std::string> cancels;
  std::vector<herd::v1::Welcome> welcomes;
};

std::string ReadFile(const std::string& path) {
  std::ifstream f(path);
  return std::string(std::istreambuf_iterator<char>(f), std::istreambuf_iterator<char>());
}

void WriteFile(const std::string& path, const std::string& text) {
  std::ofstream f(path, std::ios::trunc);
  f << text;
}

class UplinkTest : public ::testing::Test {
 protected:
  void SetUp() override {
    char tmpl[] = "/tmp/herd-uplink-test-XXXXXX";
    ASSERT_NE(mkdtemp(tmpl), nullptr);
    home_ = tmpl;
    WriteFile(home_ + "/join-token", "hj_join\n");
    options_.addresses = {"cp.test:8443"};
    options_.home = home_;
    options_.join_token_file = home_ + "/join-token";
    options_.labels = {{"env", "test"}};
  }
  void TearDown() override {
    uplink_.reset();
    std::filesystem::remove_all(home_);
  }

  std::string CredentialPath() const { return home_ + "/host-credential"; }

  // Starts and runs the first dial: Hello written, waiting for Welcome.
  void Start() {
    uplink_ = std::make_unique<Uplink>(options_, handler_, sched_, transport_);
    ASSERT_TRUE(uplink_->Start().ok());
    sched_.RunDue();
    ASSERT_EQ(uplink_->phase(), Phase::kHelloSent);
  }
  void Welcome(const std::string& credential = "") {
    transport_.Welcome(credential);
    sched_.RunDue();
  }
  void End(absl::Status status) {
    transport_.End(std::move(status));
    sched_.RunDue();
  }
  // From backoff: the next dial, and its Welcome.
  void Reconnect() {
    ASSERT_EQ(uplink_->phase(), Phase::kBackoff);
    const size_t dials = transport_.dial_count();
    sched_.Advance(sched_.NextIn());
    ASSERT_EQ(transport_.dial_count(), dials + 1);
    Welcome();
    ASSERT_EQ(uplink_->phase(), Phase::kStreaming);
  }
  herd::v1::MetricsBatch Batch(int64_t at_ms) {
    herd::v1::MetricsBatch b;
    b.set_at_unix_ms(at_ms);
    return b;
  }
  int64_t NowMs() const { return absl::ToUnixMillis(clock_.Now()); }

  std::string home_;
  UplinkOptions options_;
  FakeClock clock_;
  FakeScheduler sched_{clock_};
  FakeUplinkTransport transport_{sched_};
  RecordingHandler handler_;
  std::unique_ptr<Uplink> uplink_;
};

TEST_F(UplinkTest, FirstDialPresentsTheJoinTokenSendsHelloAndSavesTheCredential) {
  handler_.inventory.emplace_back().set_name("svc");
  handler_.acked_version = 7;
  Start();
  ASSERT_EQ(transport_.dial_count(), 1u);
  EXPECT_EQ(transport_.last().address, "cp.test:8443");
  EXPECT_EQ(transport_.last().authorization(), "Bearer hj_join");
  ASSERT_EQ(transport_.last().written.size(), 1u);
  const herd::v1::Hello& hello = transport_.last().written[0].hello();
  EXPECT_EQ(hello.host_id(), uplink_->host_id());
  EXPECT_EQ(hello.labels().at("env"), "test");
  ASSERT_EQ(hello.modules_size(), 1);
  EXPECT_EQ(hello.modules(0).name(), "svc");
  EXPECT_EQ(hello.acked_config_version(), 7u);
  EXPECT_FALSE(uplink_->state().connected);

  Welcome("hc_secret");
  EXPECT_EQ(uplink_->phase(), Phase::kStreaming);
  EXPECT_TRUE(uplink_->state().connected);
  EXPECT_EQ(uplink_->state().connected_at_unix_ms, NowMs());
  EXPECT_EQ(handler_.welcomes.size(), 1u);
  EXPECT_EQ(ReadFile(CredentialPath()), "hc_secret\n");
  struct stat st {};
  ASSERT_EQ(stat(CredentialPath().c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 0777, 0600u);

  // The next connection presents the credential.
  End(absl::UnavailableError("gone"));
  Reconnect();
  EXPECT_EQ(transport_.last().authorization(), "Bearer hc_secret");
  EXPECT_EQ(transport_.last().overlapping_writes + transport_.dial(0).overlapping_writes, 0);
}

TEST_F(UplinkTest, StartRefusesWithoutCredentialOrJoinTokenAndBadTransportSettings) {
  options_.join_token_file = "";
  Uplink no_token(options_, handler_, sched_, transport_);
  absl::Status s = no_token.Start();
  EXPECT_THAT(s.message(), HasSubstr("--join-token-file"));

  options_.join_token_file = home_ + "/missing";
  Uplink unreadable(options_, handler_, sched_, transport_);
  EXPECT_THAT(unreadable.Start().message(), HasSubstr(home_ + "/missing"));

  options_.join_token_file = home_ + "/join-token";
  transport_.set_settings_error(absl::InvalidArgumentError("--tls-ca: no such file"));
  Uplink bad_tls(options_, handler_, sched_, transport_);
  EXPECT_THAT(bad_tls.Start().message(), HasSubstr("--tls-ca"));
  sched_.RunDue();
  EXPECT_EQ(transport_.dial_count(), 0u);
}

// A wrong join token: the control plane's refusal (which says what to do) is the agent's
// error; the agent keeps retrying with it, growing its delay.
TEST_F(UplinkTest, RefusedJoinTokenIsReportedAndRetried) {
  Start();
  End(absl::UnauthenticatedError("unknown join token: copy the control plane's join-token file"));
  EXPECT_EQ(uplink_->phase(), Phase::kBackoff);
  Uplink::State s = uplink_->state();
  EXPECT_FALSE(s.connected);
  EXPECT_THAT(s.last_error, HasSubstr("refused the stream"));
  EXPECT_THAT(s.last_error, HasSubstr("join token"));
  EXPECT_TRUE(transport_.last().released);
  sched_.Advance(sched_.NextIn());
  ASSERT_EQ(transport_.dial_count(), 2u);
  EXPECT_EQ(transport_.last().authorization(), "Bearer hj_join");
}

// The control plane's data was reset: our credential is refused, deleted, and the next dial
// registers again with the join token.
TEST_F(UplinkTest, RefusedCredentialIsDeletedAndTheJoinTokenUsedAgain) {
  WriteFile(CredentialPath(), "hc_old\n");
  Start();
  EXPECT_EQ(transport_.last().authorization(), "Bearer hc_old");
  End(absl::UnauthenticatedError("unknown host credential"));
  EXPECT_FALSE(std::filesystem::exists(CredentialPath()));
  EXPECT_THAT(uplink_->state().last_error, HasSubstr("refused the stream: unknown host credential"));
  sched_.Advance(sched_.NextIn());
  EXPECT_EQ(transport_.last().authorization(), "Bearer hj_join");
  Welcome("hc_new");
  EXPECT_EQ(ReadFile(CredentialPath()), "hc_new\n");
}

// Another refusal (the control plane is unreachable) keeps the credential.
TEST_F(UplinkTest, UnreachableControlPlaneKeepsTheCredential) {
  WriteFile(CredentialPath(), "hc_old\n");
  transport_.set_hold_writes(true);  // the Hello is still in flight: it fails with the call
  Start();
  End(absl::UnavailableError("failed to connect to all addresses"));
  EXPECT_TRUE(std::filesystem::exists(CredentialPath()));
  EXPECT_EQ(uplink_->state().last_error,
            "cannot reach cp.test:8443: failed to connect to all addresses");
}

TEST_F(UplinkTest, RejectedConfigIsNackedAndAcceptedOneAcked) {
  Start();
  Welcome();
  ControlMessage m;
  m.mutable_config()->set_version(4);
  transport_.Send(m);
  sched_.RunDue();
  ASSERT_EQ(handler_.configs.size(), 1u);
  EXPECT_EQ(handler_.configs[0].version(), 4u);
  herd::v1::ConfigAck nack;
  nack.set_version(4);
  nack.set_accepted(false);
  herd::v1::ConfigRejection* why = nack.add_rejections();
  why->set_module("svc");
  why->set_key("greeting");
  why->set_reason("not a string");
  handler_.config_done[0](nack);
  sched_.RunDue();
  auto acks = transport_.last().Written(AgentMessage::kConfigAck);
  ASSERT_EQ(acks.size(), 1u);
  EXPECT_FALSE(acks[0].config_ack().accepted());
  EXPECT_EQ(acks[0].config_ack().version(), 4u);
  ASSERT_EQ(acks[0].config_ack().rejections_size(), 1);
  EXPECT_EQ(acks[0].config_ack().rejections(0).key(), "greeting");
  EXPECT_EQ(acks[0].config_ack().rejections(0).reason(), "not a string");
}

TEST_F(UplinkTest, RequestsReachTheHandlerAndTheirAnswersTheStream) {
  Start();
  Welcome();
  ControlMessage a, r, l, c;
  a.mutable_action()->set_request_id("a1");
  r.mutable_restart()->set_request_id("r1");
  l.mutable_logs()->set_request_id("l1");
  c.mutable_cancel()->set_request_id("l1");
  for (const auto& m : {a, r, l, c}) transport_.Send(m);
  sched_.RunDue();
  ASSERT_EQ(handler_.actions.size(), 1u);
  ASSERT_EQ(handler_.restarts.size(), 1u);
  ASSERT_EQ(handler_.logs.size(), 1u);
  EXPECT_EQ(handler_.cancels, std::vector<std::string>{"l1"});
  herd::v1::ActionResult ar;
  ar.set_request_id("a1");
  handler_.action_done[0](ar);
  herd::v1::RestartResult rr;
  rr.set_request_id("r1");
  handler_.restart_done[0](rr);
  herd::v1::LogChunk chunk;
  chunk.set_request_id("l1");
  handler_.log_send[0](chunk);
  handler_.log_send[0](chunk);
  sched_.RunDue();
  const auto& d = transport_.last();
  ASSERT_EQ(d.Written(AgentMessage::kActionResult).size(), 1u);
  EXPECT_EQ(d.Written(AgentMessage::kActionResult)[0].action_result().request_id(), "a1");
  EXPECT_EQ(d.Written(AgentMessage::kRestartResult).size(), 1u);
  EXPECT_EQ(d.Written(AgentMessage::kLogChunk).size(), 2u);
  EXPECT_EQ(d.overlapping_writes, 0);
}

// A reply that comes after its connection broke (a slow action, a restart waiting for
// health) is not sent on the next one.
TEST_F(UplinkTest, ResultsOfAnOlderConnectionAreDropped) {
  Start();
  Welcome();
  ControlMessage a;
  a.mutable_action()->set_request_id("old");
  transport_.Send(a);
  sched_.RunDue();
  ASSERT_EQ(handler_.action_done.size(), 1u);
  End(absl::UnavailableError("gone"));
  // While disconnected, and after the reconnection: dropped.
  herd::v1::ActionResult late;
  late.set_request_id("old");
  handler_.action_done[0](late);
  Reconnect();
  handler_.action_done[0](late);
  a.mutable_action()->set_request_id("new");
  transport_.Send(a);
  sched_.RunDue();
  herd::v1::ActionResult fresh;
  fresh.set_request_id("new");
  handler_.action_done[1](fresh);
  sched_.RunDue();
  auto results = transport_.last().Written(AgentMessage::kActionResult);
  ASSERT_EQ(results.size(), 1u);
  EXPECT_EQ(results[0].action_result().request_id(), "new");
}

// Metrics made while disconnected wait in the ring (the oldest dropped and counted) and are
// sent after the reconnection, oldest first, marked replayed, the first with the count.
TEST_F(UplinkTest, BufferedMetricsAreReplayedAfterReconnectWithTheDroppedCount) {
  options_.buffer_batches = 3;
  Start();
  Welcome();
  End(absl::UnavailableError("gone"));
  for (int i = 1; i <= 5; ++i) uplink_->PushMetrics(Batch(NowMs() - 10 + i));
  EXPECT_EQ(uplink_->state().dropped_batches, 2u);
  EXPECT_EQ(uplink_->state().buffered_batches, 3u);
  EXPECT_TRUE(transport_.dial(0).Written(AgentMessage::kMetrics).empty());
  Reconnect();
  uplink_->PushMetrics(Batch(NowMs()));  // made on this connection
  sched_.RunDue();
  auto batches = transport_.last().Written(AgentMessage::kMetrics);
  ASSERT_EQ(batches.size(), 4u);
  for (int i = 0; i < 3; ++i) {
    EXPECT_TRUE(batches[i].metrics().replayed()) << i;
    EXPECT_LT(batches[i].metrics().at_unix_ms(), batches[i + 1].metrics().at_unix_ms());
  }
  EXPECT_EQ(batches[0].metrics().dropped_batches(), 2u);
  EXPECT_EQ(batches[1].metrics().dropped_batches(), 0u);
  EXPECT_FALSE(batches[3].metrics().replayed());
  EXPECT_EQ(uplink_->state().buffered_batches, 0u);
  EXPECT_EQ(uplink_->state().dropped_batches, 2u);  // a total
}

// Asked for groups of 3 (Welcome), the agent sends its batches 3 at a time in one
// MetricsBatches; a MetricsCadence of 1 sends what waits at once, and each batch alone after.
TEST_F(UplinkTest, BatchesGoInGroupsAsTheControlPlaneAsksAndACadenceChangeSendsWhatWaits) {
  Start();
  transport_.Welcome("", 1000, 3);
  sched_.RunDue();
  auto& d = transport_.last();
  uplink_->PushMetrics(Batch(NowMs()));
  uplink_->PushMetrics(Batch(NowMs() + 1));
  sched_.RunDue();
  EXPECT_TRUE(d.Written(AgentMessage::kMetricsBatches).empty());
  EXPECT_EQ(uplink_->state().buffered_batches, 2u);
  uplink_->PushMetrics(Batch(NowMs() + 2));
  sched_.RunDue();
  auto groups = d.Written(AgentMessage::kMetricsBatches);
  ASSERT_EQ(groups.size(), 1u);
  ASSERT_EQ(groups[0].metrics_batches().batches_size(), 3);
  for (int i = 0; i < 3; ++i) {
    EXPECT_EQ(groups[0].metrics_batches().batches(i).at_unix_ms(), NowMs() + i);
    EXPECT_FALSE(groups[0].metrics_batches().batches(i).replayed());
  }
  uplink_->PushMetrics(Batch(NowMs() + 3));
  sched_.RunDue();
  EXPECT_EQ(d.Written(AgentMessage::kMetricsBatches).size(), 1u);
  herd::v1::ControlMessage cadence;
  cadence.mutable_cadence()->set_metrics_batches_per_message(1);
  transport_.Send(cadence);
  sched_.RunDue();
  auto singles = d.Written(AgentMessage::kMetrics);
  ASSERT_EQ(singles.size(), 1u);
  EXPECT_EQ(singles[0].metrics().at_unix_ms(), NowMs() + 3);
  uplink_->PushMetrics(Batch(NowMs() + 4));
  sched_.RunDue();
  EXPECT_EQ(d.Written(AgentMessage::kMetrics).size(), 2u);
  EXPECT_EQ(uplink_->state().buffered_batches, 0u);
}

// A replay goes at once, in groups of at most kMaxBatchesPerMessage, the dropped count on the
// first batch, to a control plane that reads groups; one that does not (its Welcome says 0,
// BufferedMetricsAreReplayedAfterReconnectWithTheDroppedCount) gets them one by one.
TEST_F(UplinkTest, AReplayGoesAtOnceInGroupsToAControlPlaneThatReadsThem) {
  options_.buffer_batches = 65;
  Start();
  transport_.Welcome("", 1000, 5);
  sched_.RunDue();
  End(absl::UnavailableError("gone"));
  const int64_t t0 = NowMs() - 100;
  for (int i = 1; i <= 70; ++i) uplink_->PushMetrics(Batch(t0 + i));
  ASSERT_EQ(uplink_->phase(), Phase::kBackoff);
  sched_.Advance(sched_.NextIn());
  transport_.Welcome("", 1000, 5);
  sched_.RunDue();
  auto groups = transport_.last().Written(AgentMessage::kMetricsBatches);
  ASSERT_EQ(groups.size(), 2u);
  ASSERT_EQ(groups[0].metrics_batches().batches_size(),
            static_cast<int>(Uplink::kMaxBatchesPerMessage));
  ASSERT_EQ(groups[1].metrics_batches().batches_size(), 5);
  EXPECT_EQ(groups[0].metrics_batches().batches(0).dropped_batches(), 5u);
  EXPECT_EQ(groups[0].metrics_batches().batches(0).at_unix_ms(), t0 + 6);  // 5 dropped
  EXPECT_EQ(groups[1].metrics_batches().batches(4).at_unix_ms(), t0 + 70);
  for (const auto& g : groups) {
    for (const auto& b : g.metrics_batches().batches()) EXPECT_TRUE(b.replayed());
  }
  EXPECT_EQ(groups[1].metrics_batches().batches(0).dropped_batches(), 0u);
  EXPECT_EQ(uplink_->state().buffered_batches, 0u);
}

// An inventory change while the Hello waits for its Welcome is not lost: the Hello carried
// the inventory as it was, the change goes out once streaming.
TEST_F(UplinkTest, AnInventoryChangeBeforeTheWelcomeIsSentAfterIt) {
  Start();
  uplink_->InventoryChanged();
  sched_.RunDue();
  auto& d = transport_.last();
  ASSERT_EQ(d.written.size(), 1u);  // the Hello: nothing is written before the Welcome
  Welcome();
  ASSERT_EQ(d.written.size(), 2u);
  EXPECT_TRUE(d.written[1].has_inventory());
}

// Inventory first, then replies and events, then metrics; events are not kept for later.
TEST_F(UplinkTest, WritesOneAtATimeInventoryFirstThenControlThenMetrics) {
  Start();
  herd::v1::ModuleEvent ev;
  ev.set_unit("early");
  uplink_->PushEvent(ev);  // not connected: dropped
  Welcome();
  transport_.set_hold_writes(true);
  uplink_->PushMetrics(Batch(NowMs()));  // in flight
  uplink_->PushMetrics(Batch(NowMs()));
  ev.set_unit("svc");
  uplink_->PushEvent(ev);
  uplink_->InventoryChanged();
  sched_.RunDue();
  auto& d = transport_.last();
  ASSERT_EQ(d.written.size(), 2u);  // Hello, the first batch
  for (int i = 0; i < 3; ++i) {
    transport_.CompleteWrite();
    sched_.RunDue();
  }
  ASSERT_EQ(d.written.size(), 5u);
  EXPECT_TRUE(d.written[2].has_inventory());
  EXPECT_EQ(d.written[3].event().unit(), "svc");
  EXPECT_TRUE(d.written[4].has_metrics());
  EXPECT_EQ(d.overlapping_writes, 0);
}

// Delays grow from 0.5 s, doubling, with jitter in [step/2, step], up to 30 s; a session
// that lasted 30 s starts them again from 0.5 s.
TEST_F(UplinkTest, BackoffGrowsWhileDialsFailAndResetsAfterALongSession) {
  Start();
  End(absl::UnavailableError("down"));
  absl::Duration step = absl::Milliseconds(500);
  for (int i = 0; i < 9; ++i) {
    const absl::Duration wait = sched_.NextIn();
    EXPECT_GE(wait, step / 2) << i;
    EXPECT_LE(wait, step) << i;
    step = std::min(step * 2, absl::Seconds(30));
    transport_.FailNextDial(absl::UnavailableError("down"));
    sched_.Advance(wait);
  }
  EXPECT_EQ(transport_.dial_count(), 10u);
  EXPECT_GE(sched_.NextIn(), absl::Seconds(15));  // capped: 30 s with jitter
  sched_.Advance(sched_.NextIn());
  Welcome();
  sched_.Advance(absl::Seconds(31));
  End(absl::AbortedError("the host connected again on another stream"));
  EXPECT_LE(sched_.NextIn(), absl::Milliseconds(500));
  EXPECT_THAT(uplink_->state().last_error,
              HasSubstr("the control plane ended the stream: the host connected again"));
}

// A control plane that goes silent (a partition): writes stop completing, so metrics wait in
// the ring, the oldest dropped; the keepalive then ends the stream, the agent reconnects and
// sends what it kept with the count of what it lost.
TEST_F(UplinkTest, SilentControlPlaneFillsTheRingUntilKeepaliveEndsTheStream) {
  options_.buffer_batches = 4;
  Start();
  Welcome();
  transport_.set_hold_writes(true);
  for (int i = 0; i < 10; ++i) {
    uplink_->PushMetrics(Batch(NowMs()));
    sched_.Advance(absl::Seconds(1));
  }
  EXPECT_EQ(transport_.last().Written(AgentMessage::kMetrics).size(), 1u);  // stuck in flight
  EXPECT_EQ(uplink_->state().buffered_batches, 4u);
  EXPECT_EQ(uplink_->state().dropped_batches, 5u);
  EXPECT_TRUE(uplink_->state().connected);
  End(absl::UnavailableError("keepalive watchdog timeout"));
  EXPECT_FALSE(uplink_->state().connected);
  EXPECT_EQ(uplink_->state().last_error, "keepalive watchdog timeout");
  transport_.set_hold_writes(false);
  Reconnect();
  auto batches = transport_.last().Written(AgentMessage::kMetrics);
  ASSERT_EQ(batches.size(), 4u);
  EXPECT_EQ(batches[0].metrics().dropped_batches(), 5u);
  EXPECT_TRUE(batches[0].metrics().replayed());
}

// A failed write whose stream does not end by itself is cancelled after the grace.
TEST_F(UplinkTest, FailedWriteCancelsTheStreamAfterTheGrace) {
  Start();
  Welcome();
  transport_.set_hold_writes(true);
  uplink_->PushMetrics(Batch(NowMs()));
  transport_.CompleteWrite(false);
  sched_.RunDue();
  uplink_->PushMetrics(Batch(NowMs()));
  sched_.RunDue();
  EXPECT_EQ(transport_.last().written.size(), 2u);  // nothing written after the failure
  sched_.Advance(Uplink::kWriteFailureGrace - absl::Milliseconds(1));
  EXPECT_FALSE(transport_.last().cancelled);
  sched_.Advance(absl::Milliseconds(1));
  EXPECT_TRUE(transport_.last().cancelled);
  EXPECT_EQ(uplink_->phase(), Phase::kBackoff);
  EXPECT_EQ(uplink_->state().last_error, "the stream broke while sending");
}

TEST_F(UplinkTest, StreamClosedWithoutErrorIsReportedAndRetried) {
  Start();
  Welcome();
  End(absl::OkStatus());
  EXPECT_EQ(uplink_->state().last_error, "the control plane closed the stream");
  EXPECT_EQ(uplink_->phase(), Phase::kBackoff);
}

TEST_F(UplinkTest, AnswerOtherThanWelcomeEndsTheStream) {
  Start();
  ControlMessage m;
  m.mutable_config()->set_version(1);
  transport_.Send(m);
  sched_.RunDue();
  EXPECT_TRUE(transport_.dial(0).cancelled);
  EXPECT_TRUE(handler_.configs.empty());
  EXPECT_EQ(uplink_->phase(), Phase::kBackoff);
  EXPECT_THAT(uplink_->state().last_error, HasSubstr("with config instead of Welcome"));
}

// Stop in each state: nothing runs afterwards, no dial, no callback.
TEST_F(UplinkTest, StopBeforeStartAndWhileTheFirstDialIsPending) {
  Uplink never(options_, handler_, sched_, transport_);
  never.Stop();
  EXPECT_EQ(never.phase(), Phase::kStopped);
  uplink_ = std::make_unique<Uplink>(options_, handler_, sched_, transport_);
  ASSERT_TRUE(uplink_->Start().ok());
  uplink_->Stop();
  sched_.Advance(absl::Minutes(5));
  EXPECT_EQ(transport_.dial_count(), 0u);
  EXPECT_EQ(sched_.pending(), 0u);
}

TEST_F(UplinkTest, StopWhileHelloIsSent) {
  Start();
  uplink_->Stop();
  EXPECT_TRUE(transport_.last().released);
  transport_.Welcome();  // too late: no one listens
  sched_.Advance(absl::Minutes(5));
  EXPECT_EQ(uplink_->phase(), Phase::kStopped);
  EXPECT_FALSE(uplink_->state().connected);
  EXPECT_TRUE(handler_.welcomes.empty());
  EXPECT_EQ(transport_.dial_count(), 1u);
}

TEST_F(UplinkTest, StopWhileStreaming) {
  Start();
  Welcome();
  ControlMessage a;
  a.mutable_action()->set_request_id("a");
  transport_.Send(a);
  sched_.RunDue();
  uplink_->Stop();
  EXPECT_TRUE(transport_.last().released);
  EXPECT_FALSE(uplink_->state().connected);
  EXPECT_EQ(uplink_->state().last_error, "the agent is stopping");
  const size_t written = transport_.last().written.size();
  handler_.action_done[0](herd::v1::ActionResult());
  uplink_->PushMetrics(Batch(NowMs()));
  sched_.Advance(absl::Minutes(5));
  EXPECT_EQ(transport_.last().written.size(), written);
  EXPECT_EQ(transport_.dial_count(), 1u);
  EXPECT_EQ(sched_.pending(), 0u);
}

TEST_F(UplinkTest, StopDuringBackoff) {
  Start();
  End(absl::UnavailableError("down"));
  ASSERT_EQ(uplink_->phase(), Phase::kBackoff);
  uplink_->Stop();
  sched_.Advance(absl::Minutes(5));
  EXPECT_EQ(transport_.dial_count(), 1u);
  EXPECT_EQ(uplink_->state().last_error, "the control plane refused the stream: down");
}

// A reply arriving after the Uplink is gone does nothing (the handler may outlive it).
TEST_F(UplinkTest, ReplyAfterTheUplinkIsDestroyedIsIgnored) {
  Start();
  Welcome();
  ControlMessage a;
  a.mutable_action()->set_request_id("a");
  transport_.Send(a);
  sched_.RunDue();
  uplink_.reset();
  handler_.action_done[0](herd::v1::ActionResult());
  sched_.RunDue();
  EXPECT_TRUE(transport_.last().Written(AgentMessage::kActionResult).empty());
}

}  // namespace
}  // namespace herd::agent
