// RolloutEngine on fakes of the hub's interfaces (tests/fakes/fake_fleet.h), a FakeScheduler
// and a SQLite store in a temporary directory: no hub, no agents, no sockets, no sleeps. The
// test answers each host's restart when it chooses and runs the steps that follow
// (FakeScheduler::RunDue), so every path of a rollout is driven one step at a time.
#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <stdlib.h>

#include <atomic>
#include <filesystem>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "common/clock.h"
#include "common/scheduler.h"
#include "controlplane/fleet/rollouts.h"
#include "controlplane/store/store.h"
#include "tests/fakes/fake_fleet.h"
#include "tests/fakes/fake_scheduler.h"
#include "tests/fakes/temp_dir.h"

namespace herd::controlplane {
namespace {

using herd::v1::Rollout;
using herd::v1::RolloutHostState;
using ::testing::ElementsAre;
using ::testing::HasSubstr;
using testing::FakeScheduler;

// A rollout's host states in one string, e.g. "DONE RESTARTING PENDING".
std::string States(const Rollout& r) {
  std::vector<std::string> out;
  for (const auto& h : r.hosts()) {
    std::string name = herd::v1::RolloutHostState_Name(h.state());
    out.push_back(name.substr(std::string("ROLLOUT_HOST_STATE_").size()));
  }
  return absl::StrJoin(out, " ");
}

class RolloutsTest : public ::testing::Test {
 protected:
  void SetUp() override {
    auto store = OpenSqliteStore(tmp_.Path("herd.db"));
    ASSERT_TRUE(store.ok()) << store.status();
    store_ = std::move(*store);
    for (int i = 0; i < 5; ++i) {
      hosts_.Add({absl::StrCat("h", i), absl::StrCat("host-", i), {"app"}, {}});
    }
    hosts_.Add({"h9", "no-app", {"other"}, {}});
    engine_ = std::make_unique<RolloutEngine>(hosts_, relay_, audit_, *store_, sched_);
    ASSERT_TRUE(engine_->Start().ok());
  }
  void TearDown() override {
    engine_.reset();
    store_.reset();
  }

  static herd::v1::FleetRestartRequest Request(uint32_t batch_size = 0) {
    herd::v1::FleetRestartRequest req;
    req.mutable_target()->set_all(true);
    req.set_module("app");
    req.set_batch_size(batch_size);
    return req;
  }
  // Creates the rollout and runs its first step.
  Rollout Start(const herd::v1::FleetRestartRequest& req) {
    auto r = engine_->Create(req, actor_);
    EXPECT_TRUE(r.ok()) << r.status();
    sched_.RunDue();
    return r.ok() ? *r : Rollout();
  }
  Rollout Stored(const std::string& id) {
    auto r = store_->GetRollout(id);
    EXPECT_TRUE(r.ok()) << r.status();
    return r.ok() ? *r : Rollout();
  }
  // The host ids of each RestartOnHosts call so far, e.g. {"h0,h1", "h2,h3"}.
  std::vector<std::string> Calls() const {
    std::vector<std::string> out;
    for (const auto& c : relay_.restarts()) out.push_back(absl::StrJoin(c.host_ids, ","));
    return out;
  }

  herd::testing::ScopedTempDir tmp_;
  FakeClock clock_;
  FakeScheduler sched_{clock_};
  testing::FakeFleetHosts hosts_;
  testing::FakeFleetRelay relay_;
  testing::FakeFleetAudit audit_;
  std::unique_ptr<Store> store_;
  std::unique_ptr<RolloutEngine> engine_;
  Actor actor_{"alice", Role::kOperator, ""};
};

// ---------------------------------------------------------------------------------------
// Batches

TEST_F(RolloutsTest, HostsRestartBatchByBatchEachAfterThePreviousAnswered) {
  Rollout r = Start(Request(2));
  EXPECT_EQ(r.batches(), 3u);
  EXPECT_EQ(r.batch_size(), 2u);
  EXPECT_THAT(Calls(), ElementsAre("h0,h1"));
  EXPECT_EQ(States(Stored(r.id())), "RESTARTING RESTARTING PENDING PENDING PENDING");
  // One answer of two: the batch is not over.
  ASSERT_TRUE(relay_.Succeed("h1"));
  sched_.RunDue();
  EXPECT_THAT(Calls(), ElementsAre("h0,h1"));
  ASSERT_TRUE(relay_.Succeed("h0"));
  sched_.RunDue();
  EXPECT_THAT(Calls(), ElementsAre("h0,h1", "h2,h3"));
  Rollout now = Stored(r.id());
  EXPECT_EQ(States(now), "DONE DONE RESTARTING RESTARTING PENDING");
  EXPECT_EQ(now.current_batch(), 1u);
  ASSERT_TRUE(relay_.Succeed("h2"));
  ASSERT_TRUE(relay_.Succeed("h3"));
  sched_.RunDue();
  EXPECT_THAT(Calls(), ElementsAre("h0,h1", "h2,h3", "h4"));
  ASSERT_TRUE(relay_.Succeed("h4"));
  sched_.RunDue();
  Rollout done = Stored(r.id());
  EXPECT_EQ(done.state(), herd::v1::ROLLOUT_STATE_SUCCEEDED);
  EXPECT_EQ(States(done), "DONE DONE DONE DONE DONE");
  EXPECT_EQ(done.finished_at_unix_ms(), absl::ToUnixMillis(clock_.Now()));
  EXPECT_EQ(engine_->counts().succeeded, 1u);
  EXPECT_EQ(engine_->counts().running, 0u);
  // The module, and only the hosts that have it.
  for (const auto& c : relay_.restarts()) {
    EXPECT_THAT(c.units, ElementsAre("app"));
    EXPECT_EQ(c.rollout_id, r.id());
  }
}

TEST_F(RolloutsTest, APercentageOfTheHostsRoundsUp) {
  auto req = Request();
  req.set_batch_percent(40);  // of 5 hosts: 2
  Rollout r = Start(req);
  EXPECT_EQ(r.batch_size(), 2u);
  EXPECT_EQ(r.batches(), 3u);
  EXPECT_THAT(Calls(), ElementsAre("h0,h1"));
  req.set_batch_percent(1);  // never less than one host
  EXPECT_EQ(engine_->Create(req, actor_)->batch_size(), 1u);
  req.set_batch_percent(100);
  EXPECT_EQ(engine_->Create(req, actor_)->batches(), 1u);
}

TEST_F(RolloutsTest, MaxUnavailableBoundsTheHostsOfABatchRestartingAtOnce) {
  auto req = Request(4);
  req.set_max_unavailable(3);
  Rollout r = Start(req);
  EXPECT_THAT(Calls(), ElementsAre("h0,h1,h2"));
  for (const char* h : {"h0", "h1", "h2"}) ASSERT_TRUE(relay_.Succeed(h));
  sched_.RunDue();
  // The batch's fourth host, on its own; the next batch only after it.
  EXPECT_THAT(Calls(), ElementsAre("h0,h1,h2", "h3"));
  EXPECT_EQ(Stored(r.id()).current_batch(), 0u);
  ASSERT_TRUE(relay_.Succeed("h3"));
  sched_.RunDue();
  EXPECT_THAT(Calls(), ElementsAre("h0,h1,h2", "h3", "h4"));
  EXPECT_EQ(Stored(r.id()).current_batch(), 1u);
}

TEST_F(RolloutsTest, EachHostIsAskedToStayHealthyForTheWait) {
  auto req = Request(5);
  req.set_wait_healthy_ms(2500);
  Start(req);
  ASSERT_EQ(relay_.restarts().size(), 1u);
  EXPECT_EQ(relay_.restarts()[0].wait_healthy_ms, 2500u);
  // 1 s unless given.
  Rollout r = Start(Request(5));
  EXPECT_EQ(r.wait_healthy_ms(), 1000u);
  EXPECT_EQ(relay_.restarts().back().wait_healthy_ms, 1000u);
}

// ---------------------------------------------------------------------------------------
// Failures

TEST_F(RolloutsTest, TheFailureThresholdFailsTheRolloutAndSkipsTheRest) {
  auto req = Request(1);
  req.set_failure_threshold(2);
  Rollout r = Start(req);
  ASSERT_TRUE(relay_.Fail("h0", "exited with 3 during the wait"));
  sched_.RunDue();
  ASSERT_TRUE(relay_.Succeed("h1"));  // one failure of two: it goes on
  sched_.RunDue();
  ASSERT_TRUE(relay_.TimeOut("h2"));
  sched_.RunDue();
  Rollout done = Stored(r.id());
  EXPECT_EQ(done.state(), herd::v1::ROLLOUT_STATE_FAILED);
  EXPECT_EQ(done.reason(), "2 host(s) failed (threshold 2)");
  EXPECT_EQ(States(done), "FAILED DONE FAILED SKIPPED SKIPPED");
  EXPECT_EQ(done.hosts(0).error(), "exited with 3 during the wait");
  EXPECT_THAT(done.hosts(2).error(), HasSubstr("did not answer in time"));
  EXPECT_THAT(Calls(), ElementsAre("h0", "h1", "h2"));
  EXPECT_EQ(engine_->counts().failed, 1u);
}

TEST_F(RolloutsTest, OneFailureIsEnoughByDefault) {
  Rollout r = Start(Request(2));
  ASSERT_TRUE(relay_.Succeed("h0"));
  ASSERT_TRUE(relay_.Fail("h1"));
  sched_.RunDue();
  Rollout done = Stored(r.id());
  EXPECT_EQ(done.state(), herd::v1::ROLLOUT_STATE_FAILED);
  EXPECT_EQ(States(done), "DONE FAILED SKIPPED SKIPPED SKIPPED");
}

// The hub answers for a host that is offline inside RestartOnHosts, before the step that
// told it has stored anything: the answer still comes after the RESTARTING record.
TEST_F(RolloutsTest, AnOfflineHostFailsAtOnceAndInOrder) {
  relay_.AnswerAtOnce("h0", absl::UnavailableError("host h0 is offline"));
  auto r = engine_->Create(Request(1), actor_);
  ASSERT_TRUE(r.ok());
  std::vector<std::string> seen;
  ASSERT_TRUE(engine_->Watch(r->id(), [&](const Rollout& x) { seen.push_back(States(x)); }).ok());
  sched_.RunDue();
  Rollout done = Stored(r->id());
  EXPECT_EQ(done.state(), herd::v1::ROLLOUT_STATE_FAILED);
  EXPECT_EQ(done.hosts(0).error(), "host h0 is offline");
  EXPECT_THAT(seen, ElementsAre("PENDING PENDING PENDING PENDING PENDING",
                                "RESTARTING PENDING PENDING PENDING PENDING",
                                "FAILED PENDING PENDING PENDING PENDING",
                                "FAILED SKIPPED SKIPPED SKIPPED SKIPPED"));
}

// A host told through another replica that went away before giving its result (ABORTED from
// the routed relay) may have restarted: INTERRUPTED, not a failure, and the rollout goes on.
TEST_F(RolloutsTest, AHostWhoseResultWasLostIsInterruptedNotFailed) {
  Rollout r = Start(Request(5));
  ASSERT_TRUE(relay_.Answer("h0", absl::AbortedError("replica b did not give its result")));
  for (const char* h : {"h1", "h2", "h3", "h4"}) ASSERT_TRUE(relay_.Succeed(h));
  sched_.RunDue();
  Rollout done = Stored(r.id());
  EXPECT_EQ(done.state(), herd::v1::ROLLOUT_STATE_SUCCEEDED);
  EXPECT_EQ(States(done), "INTERRUPTED DONE DONE DONE DONE");
  EXPECT_EQ(done.hosts(0).error(), "replica b did not give its result");
}

TEST_F(RolloutsTest, AHostThatRestartedNothingFailed) {
  Rollout r = Start(Request(5));
  ASSERT_TRUE(relay_.Answer("h0", herd::v1::RestartResult()));
  for (const char* h : {"h1", "h2", "h3", "h4"}) ASSERT_TRUE(relay_.Succeed(h));
  sched_.RunDue();
  EXPECT_EQ(Stored(r.id()).hosts(0).error(), "the host restarted nothing");
}

// ---------------------------------------------------------------------------------------
// Stopping

TEST_F(RolloutsTest, StopAbortsInterruptingHostsToldAndSkippingTheRest) {
  Rollout r = Start(Request(2));
  ASSERT_TRUE(relay_.Succeed("h0"));  // answered; h1 is still restarting
  engine_->Stop();
  Rollout done = Stored(r.id());
  EXPECT_EQ(done.state(), herd::v1::ROLLOUT_STATE_ABORTED);
  EXPECT_EQ(done.reason(), "the control plane stopped while it ran");
  EXPECT_EQ(States(done), "DONE INTERRUPTED SKIPPED SKIPPED SKIPPED");
  EXPECT_THAT(done.hosts(1).error(), HasSubstr("before the host answered"));
  EXPECT_EQ(engine_->counts().aborted, 1u);
  EXPECT_EQ(engine_->counts().running, 0u);
  // An answer after the stop changes nothing and tells no one else.
  ASSERT_TRUE(relay_.Succeed("h1"));
  sched_.RunDue();
  EXPECT_EQ(States(Stored(r.id())), "DONE INTERRUPTED SKIPPED SKIPPED SKIPPED");
  EXPECT_THAT(Calls(), ElementsAre("h0,h1"));
  // Nothing new starts.
  EXPECT_EQ(engine_->Create(Request(), actor_).status().code(), absl::StatusCode::kUnavailable);
}

TEST_F(RolloutsTest, StopBeforeTheFirstStepTouchesNoHost) {
  auto r = engine_->Create(Request(2), actor_);
  ASSERT_TRUE(r.ok());
  engine_->Stop();
  sched_.RunDue();
  Rollout done = Stored(r->id());
  EXPECT_EQ(done.state(), herd::v1::ROLLOUT_STATE_ABORTED);
  EXPECT_EQ(States(done), "SKIPPED SKIPPED SKIPPED SKIPPED SKIPPED");
  EXPECT_TRUE(relay_.restarts().empty());
}

// Stopped while the group's answers are in but not yet filed: they count, and a failure
// that reaches the threshold says so.
TEST_F(RolloutsTest, AnswersInWhenStoppedAreFiled) {
  Rollout r = Start(Request(2));
  ASSERT_TRUE(relay_.Succeed("h0"));
  ASSERT_TRUE(relay_.Fail("h1"));
  engine_->Stop();  // the step that would file them has not run
  Rollout done = Stored(r.id());
  EXPECT_EQ(done.state(), herd::v1::ROLLOUT_STATE_FAILED);
  EXPECT_EQ(States(done), "DONE FAILED SKIPPED SKIPPED SKIPPED");
}

TEST_F(RolloutsTest, ARolloutLeftRunningIsAbortedAtStart) {
  Rollout r = Start(Request(2));
  // As if the process died here: a new engine on the same store.
  RolloutEngine next(hosts_, relay_, audit_, *store_, sched_);
  ASSERT_TRUE(next.Start().ok());
  Rollout done = Stored(r.id());
  EXPECT_EQ(done.state(), herd::v1::ROLLOUT_STATE_ABORTED);
  EXPECT_THAT(done.reason(), HasSubstr("restarted while it ran"));
  EXPECT_EQ(States(done), "INTERRUPTED INTERRUPTED SKIPPED SKIPPED SKIPPED");
  EXPECT_EQ(next.counts().aborted, 1u);
}

// ---------------------------------------------------------------------------------------
// Watchers, reads, counts

TEST_F(RolloutsTest, AWatcherSeesEveryChangeInOrderOnce) {
  auto req = Request(1);
  req.set_max_unavailable(1);
  auto created = engine_->Create(req, actor_);
  ASSERT_TRUE(created.ok());
  std::vector<std::string> seen;
  std::vector<herd::v1::RolloutState> states;
  auto w = engine_->Watch(created->id(), [&](const Rollout& r) {
    seen.push_back(States(r));
    states.push_back(r.state());
  });
  ASSERT_TRUE(w.ok());
  sched_.RunDue();
  ASSERT_TRUE(relay_.Succeed("h0"));
  sched_.RunDue();
  ASSERT_TRUE(relay_.Succeed("h1"));
  sched_.RunDue();
  engine_->Stop();
  EXPECT_THAT(seen, ElementsAre("PENDING PENDING PENDING PENDING PENDING",
                                "RESTARTING PENDING PENDING PENDING PENDING",
                                "DONE PENDING PENDING PENDING PENDING",
                                "DONE RESTARTING PENDING PENDING PENDING",
                                "DONE DONE PENDING PENDING PENDING",
                                "DONE DONE RESTARTING PENDING PENDING",
                                "DONE DONE INTERRUPTED SKIPPED SKIPPED"));
  EXPECT_EQ(states.back(), herd::v1::ROLLOUT_STATE_ABORTED);
  // A finished rollout's watcher gets its last state.
  std::vector<std::string> late;
  ASSERT_TRUE(engine_->Watch(created->id(), [&](const Rollout& r) { late.push_back(States(r)); })
                  .ok());
  EXPECT_THAT(late, ElementsAre("DONE DONE INTERRUPTED SKIPPED SKIPPED"));
  engine_->Unwatch(*w);
}

TEST_F(RolloutsTest, AnUnwatchedWatcherHearsNothingMore) {
  Rollout r = Start(Request(5));
  int calls = 0;
  auto w = engine_->Watch(r.id(), [&](const Rollout&) { ++calls; });
  ASSERT_TRUE(w.ok());
  EXPECT_EQ(calls, 1);
  engine_->Unwatch(*w);
  for (const char* h : {"h0", "h1", "h2", "h3", "h4"}) ASSERT_TRUE(relay_.Succeed(h));
  sched_.RunDue();
  EXPECT_EQ(calls, 1);
}

TEST_F(RolloutsTest, GetAndListShowTheLatestState) {
  Rollout r = Start(Request(5));
  auto got = engine_->Get(r.id());
  ASSERT_TRUE(got.ok());
  EXPECT_EQ(States(*got), "RESTARTING RESTARTING RESTARTING RESTARTING RESTARTING");
  auto list = engine_->List(0);
  ASSERT_TRUE(list.ok());
  ASSERT_EQ(list->size(), 1u);
  EXPECT_EQ(list->front().id(), r.id());
  auto missing = engine_->Get("ro-nope");
  EXPECT_EQ(missing.status().code(), absl::StatusCode::kNotFound);
  EXPECT_THAT(std::string(missing.status().message()), HasSubstr("agentctl rollouts"));
  EXPECT_EQ(engine_->Watch("ro-nope", [](const Rollout&) {}).status().code(),
            absl::StatusCode::kNotFound);
}

TEST_F(RolloutsTest, CountsRunningAndFinishedRollouts) {
  Rollout a = Start(Request(5));
  Rollout b = Start(Request(5));
  EXPECT_EQ(engine_->counts().running, 2u);
  for (const char* h : {"h0", "h1", "h2", "h3", "h4"}) ASSERT_TRUE(relay_.Succeed(h));
  for (const char* h : {"h0", "h1", "h2", "h3"}) ASSERT_TRUE(relay_.Succeed(h));
  ASSERT_TRUE(relay_.Fail("h4"));
  sched_.RunDue();
  RolloutEngine::Counts c = engine_->counts();
  EXPECT_EQ(c.running, 0u);
  EXPECT_EQ(c.succeeded, 1u);
  EXPECT_EQ(c.failed, 1u);
  EXPECT_EQ(c.aborted, 0u);
  EXPECT_EQ(Stored(a.id()).state(), herd::v1::ROLLOUT_STATE_SUCCEEDED);
  EXPECT_EQ(Stored(b.id()).state(), herd::v1::ROLLOUT_STATE_FAILED);
}

// ---------------------------------------------------------------------------------------
// Requests refused

TEST_F(RolloutsTest, BadRequestsAreRefusedWithWhy) {
  auto req = Request();
  req.clear_module();
  EXPECT_EQ(engine_->Create(req, actor_).status().code(), absl::StatusCode::kInvalidArgument);
  req = Request();
  req.clear_target();
  EXPECT_THAT(std::string(engine_->Create(req, actor_).status().message()), HasSubstr("all"));
  req = Request(2);
  req.set_batch_percent(10);
  EXPECT_THAT(std::string(engine_->Create(req, actor_).status().message()),
              HasSubstr("not both"));
  req = Request();
  req.set_batch_percent(101);
  EXPECT_EQ(engine_->Create(req, actor_).status().code(), absl::StatusCode::kInvalidArgument);
  req = Request();
  req.set_module("nowhere");
  auto none = engine_->Create(req, actor_);
  EXPECT_EQ(none.status().code(), absl::StatusCode::kNotFound);
  EXPECT_THAT(std::string(none.status().message()), HasSubstr("agentctl modules"));
  hosts_.FailWith(absl::UnavailableError("directory down"));
  EXPECT_EQ(engine_->Create(Request(), actor_).status().code(), absl::StatusCode::kUnavailable);
  sched_.RunDue();
  EXPECT_TRUE(relay_.restarts().empty());
  EXPECT_TRUE(audit_.entries().empty());
  EXPECT_EQ(engine_->counts().running, 0u);
}

TEST_F(RolloutsTest, ACreatedRolloutIsAuditedAndStoredBeforeAnyHostIsTold) {
  auto req = Request(2);
  req.mutable_target()->mutable_hosts()->add_ids("h3");
  req.mutable_target()->mutable_hosts()->add_ids("host-1");
  auto r = engine_->Create(req, actor_);
  ASSERT_TRUE(r.ok());
  EXPECT_EQ(States(Stored(r->id())), "PENDING PENDING");
  EXPECT_EQ(Stored(r->id()).hosts(0).hostname(), "host-1");
  EXPECT_TRUE(relay_.restarts().empty());
  ASSERT_EQ(audit_.entries().size(), 1u);
  EXPECT_EQ(audit_.entries()[0].actor(), "alice");
  EXPECT_EQ(audit_.entries()[0].action(), "rollout.create");
  EXPECT_THAT(audit_.entries()[0].detail_json(), HasSubstr(r->id()));
  EXPECT_EQ(r->created_by(), "alice");
  EXPECT_EQ(r->created_at_unix_ms(), absl::ToUnixMillis(clock_.Now()));
  sched_.RunDue();
  EXPECT_THAT(Calls(), ElementsAre("h1,h3"));
}

// ---------------------------------------------------------------------------------------
// Threads: steps on a scheduler thread, answers from another, Stop from a third (the test's).
// Asserts only what holds whichever comes first (run it under the sanitizers).

TEST(RolloutsThreadsTest, AnswersRacingStopLeaveAFinishedRecord) {
  herd::testing::ScopedTempDir tmp("herd_rollouts_threads");
  const std::string dir = tmp.path();
  auto store = OpenSqliteStore(dir + "/herd.db");
  ASSERT_TRUE(store.ok()) << store.status();
  testing::FakeFleetHosts hosts;
  for (int i = 0; i < 40; ++i) hosts.Add({absl::StrCat("h", i), "", {"app"}, {}});
  testing::FakeFleetRelay relay;
  testing::FakeFleetAudit audit;
  FakeClock clock;  // steps are due at once: the scheduler thread never waits on it
  ThreadScheduler sched(clock, "rollout-test");
  std::string id;
  {
    RolloutEngine engine(hosts, relay, audit, **store, sched);
    ASSERT_TRUE(engine.Start().ok());
    herd::v1::FleetRestartRequest req;
    req.mutable_target()->set_all(true);
    req.set_module("app");
    req.set_batch_size(4);
    req.set_failure_threshold(100);
    auto r = engine.Create(req, Actor{"alice", Role::kOperator, ""});
    ASSERT_TRUE(r.ok());
    id = r->id();
    std::atomic<bool> stop{false};
    std::thread answers([&] {
      int n = 0;
      while (!stop.load()) {
        for (const auto& h : relay.told()) {
          if (++n % 3 == 0) {
            relay.Fail(h);
          } else {
            relay.Succeed(h);
          }
        }
        std::this_thread::yield();
      }
    });
    relay.WaitForRestarts(1);
    engine.Stop();
    stop = true;
    answers.join();
    EXPECT_EQ(engine.counts().running, 0u);
  }
  const size_t calls = relay.restarts().size();
  for (const auto& h : relay.told()) relay.Succeed(h);  // late answers reach no engine
  sched.Stop();
  EXPECT_EQ(relay.restarts().size(), calls);
  auto done = (*store)->GetRollout(id);
  ASSERT_TRUE(done.ok());
  EXPECT_NE(done->state(), herd::v1::ROLLOUT_STATE_RUNNING);
  for (const auto& h : done->hosts()) {
    EXPECT_NE(h.state(), herd::v1::ROLLOUT_HOST_STATE_PENDING) << h.host_id();
    EXPECT_NE(h.state(), herd::v1::ROLLOUT_HOST_STATE_RESTARTING) << h.host_id();
  }
  store->reset();
}

}  // namespace
}  // namespace herd::controlplane
