// The hub's components on their own (controlplane/core): the registry's target resolution
// and routes, the relay's deadlines and completion, the host-record writer's retries with a
// failing store; and the hub under a wall-clock step, all on a FakeClock and FakeScheduler
// (no sleeping: time moves when the test says).
#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <stdlib.h>

#include <filesystem>
#include <memory>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "common/clock.h"
#include "controlplane/core/host_record_writer.h"
#include "controlplane/core/host_registry.h"
#include "controlplane/core/host_request_relay.h"
#include "controlplane/core/hub.h"
#include "controlplane/core/secrets.h"
#include "controlplane/core/send_pool.h"
#include "controlplane/core/store_audit_log.h"
#include "tests/fakes/fake_host_session.h"
#include "tests/fakes/fake_hub_store.h"
#include "tests/fakes/fake_scheduler.h"
#include "tests/fakes/temp_dir.h"

namespace herd::controlplane {
namespace {

using herd::testing::FakeHostSession;
using herd::testing::FakeScheduler;
using herd::testing::FlakyHostsStore;
using ::testing::ElementsAre;
using ::testing::HasSubstr;

herd::v1::Target Hosts(const std::vector<std::string>& ids) {
  herd::v1::Target t;
  for (const auto& id : ids) t.mutable_hosts()->add_ids(id);
  return t;
}
herd::v1::Target Selector(const std::string& s) {
  herd::v1::Target t;
  t.set_selector(s);
  return t;
}

// A store in a temporary directory.
class TempStore {
 public:
  TempStore() {
    auto store = OpenSqliteStore(tmp_.Path("herd.db"));
    EXPECT_TRUE(store.ok()) << store.status();
    if (store.ok()) store_ = std::move(*store);
  }
  ~TempStore() {
    store_.reset();
  }
  std::unique_ptr<Store>& store() { return store_; }

 private:
  herd::testing::ScopedTempDir tmp_;
  std::unique_ptr<Store> store_;
};

// A registry with hosts added by hand (as Connect does), some with a session attached.
class RegistryTest : public ::testing::Test {
 protected:
  std::shared_ptr<FakeHostSession> Add(const std::string& id,
                                       std::map<std::string, std::string> labels,
                                       bool connected = true) {
    bool added = false;
    Entry e = registry_.FindOrAdd(id, id + ".example", 1, &added);
    EXPECT_TRUE(added);
    auto session = std::make_shared<FakeHostSession>();
    absl::MutexLock hl(&e->mu);
    e->s.record.labels = std::move(labels);
    if (connected) e->s.session = session;
    return session;
  }

  FakeClock clock_;
  HubOptions options_;
  HostRegistry registry_{clock_, options_};
};

TEST_F(RegistryTest, TargetsResolveByAllSelectorIdOrHostname) {
  Add("b", {{"env", "prod"}});
  Add("a", {{"env", "dev"}});
  Add("c", {{"env", "prod"}, {"zone", "x"}});
  EXPECT_THAT(*registry_.ResolveTarget(herd::v1::Target()), ElementsAre("a", "b", "c"));
  EXPECT_THAT(*registry_.ResolveTarget(Selector("env=prod")), ElementsAre("b", "c"));
  EXPECT_THAT(*registry_.ResolveTarget(Selector("env=prod,zone=x")), ElementsAre("c"));
  // By id or hostname, in the order asked, each host once.
  EXPECT_THAT(*registry_.ResolveTarget(Hosts({"c", "a.example", "a"})), ElementsAre("c", "a"));
}

TEST_F(RegistryTest, UnknownHostsAndBadSelectorsAreErrorsThatSayWhatToDo) {
  Add("a", {});
  auto unknown = registry_.ResolveTarget(Hosts({"a", "nope"}));
  EXPECT_EQ(unknown.status().code(), absl::StatusCode::kNotFound);
  EXPECT_THAT(unknown.status().message(), HasSubstr("no host \"nope\": see `agentctl hosts`"));
  EXPECT_EQ(registry_.ResolveTarget(Selector("=")).status().code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(registry_.GetHost("nope").status().code(), absl::StatusCode::kNotFound);
}

TEST_F(RegistryTest, ARouteKnowsTheHostAndItsSessionOnlyWhileAttached) {
  auto a = Add("a", {});
  Add("offline", {}, /*connected=*/false);
  EXPECT_FALSE(registry_.Route("nope").known);
  EXPECT_TRUE(registry_.Route("offline").known);
  EXPECT_EQ(registry_.Route("offline").session, nullptr);
  EXPECT_EQ(registry_.Route("a").session, a);
  // Only the attached session detaches the host.
  FakeHostSession other;
  EXPECT_FALSE(registry_.Detach("a", &other));
  EXPECT_TRUE(registry_.Detach("a", a.get()));
  EXPECT_EQ(registry_.Route("a").session, nullptr);
}

// ---------------------------------------------------------------------------------------
// The relay

class RelayTest : public RegistryTest {
 protected:
  RelayTest() {
    options_.request_grace = absl::Seconds(1);
    h1_ = Add("h1", {});
    h2_ = Add("h2", {});
  }
  // Restarts on the hosts; the results land in results_ (by index).
  void Restart(const std::vector<std::string>& ids, uint32_t wait_ms = 0) {
    results_.assign(ids.size(), absl::InternalError("not called"));
    relay_.RestartOnHosts(ids, {"app"}, wait_ms, "ro1",
                          [this](size_t i, absl::StatusOr<herd::v1::RestartResult> r) {
                            results_[i] = std::move(r);
                            ++calls_;
                          });
  }
  static herd::v1::AgentMessage Answer(const std::string& request_id) {
    herd::v1::AgentMessage m;
    m.mutable_restart_result()->set_request_id(request_id);
    return m;
  }

  TempStore store_;
  StoreAuditLog audit_{*store_.store(), clock_};
  SendPool sends_;  // no threads: sent at once
  HostRequestRelay relay_{registry_, sends_, audit_, clock_, options_};
  std::shared_ptr<FakeHostSession> h1_, h2_;
  std::vector<absl::StatusOr<herd::v1::RestartResult>> results_;
  int calls_ = 0;
};

TEST_F(RelayTest, AnAnswerCompletesItsRequestOnlyFromItsHost) {
  Restart({"h1", "h2"});
  ASSERT_EQ(h1_->restarts().size(), 1u);
  const std::string rid = h1_->restarts()[0].request_id();
  relay_.OnAnswer("h2", Answer(rid));  // not h2's request
  EXPECT_EQ(calls_, 0);
  relay_.OnAnswer("h1", Answer(rid));
  EXPECT_EQ(calls_, 1);
  EXPECT_TRUE(results_[0].ok());
  EXPECT_EQ(relay_.pending(), 1u);
  relay_.OnAnswer("h1", Answer(rid));  // once only
  EXPECT_EQ(calls_, 1);
}

TEST_F(RelayTest, RequestsExpireAtTheirTimeoutPlusGraceOnTheMonotonicClock) {
  Restart({"h1"}, /*wait_ms=*/1000);  // 1 s + 60 s, + 1 s grace
  clock_.StepWall(absl::Hours(2));
  relay_.ExpireOverdue();
  EXPECT_EQ(calls_, 0);
  clock_.Advance(absl::Seconds(62));
  relay_.ExpireOverdue();
  EXPECT_EQ(calls_, 0);  // at the deadline, not past it
  clock_.Advance(absl::Milliseconds(1));
  relay_.ExpireOverdue();
  ASSERT_EQ(calls_, 1);
  EXPECT_EQ(results_[0].status().code(), absl::StatusCode::kDeadlineExceeded);
}

TEST_F(RelayTest, UnknownOfflineAndUnreachableHostsFailAtOnce) {
  Add("off", {}, /*connected=*/false);
  h2_->set_fail_send(true);
  Restart({"nope", "off", "h2", "h1"});
  EXPECT_EQ(calls_, 3);
  EXPECT_EQ(results_[0].status().code(), absl::StatusCode::kNotFound);
  EXPECT_THAT(results_[1].status().message(), HasSubstr("host off is not connected"));
  EXPECT_THAT(results_[2].status().message(), HasSubstr("cannot take messages"));
  EXPECT_EQ(relay_.pending(), 1u);
}

TEST_F(RelayTest, TheEndOfTheStreamARequestWentOutOnFailsIt) {
  Restart({"h1", "h2"});
  relay_.OnStreamEnded("h1", h1_.get(), /*current=*/true);
  ASSERT_EQ(calls_, 1);
  EXPECT_THAT(results_[0].status().message(), HasSubstr("disconnected before answering"));
  // Another stream of h2's (not the one its request went on) fails nothing.
  FakeHostSession older;
  relay_.OnStreamEnded("h2", &older, /*current=*/false);
  EXPECT_EQ(calls_, 1);
  relay_.Stop();
  ASSERT_EQ(calls_, 2);
  EXPECT_EQ(results_[1].status().code(), absl::StatusCode::kUnavailable);
  // After Stop, new requests fail at once.
  Restart({"h1"});
  EXPECT_EQ(results_[0].status().code(), absl::StatusCode::kUnavailable);
}

// ---------------------------------------------------------------------------------------
// The host-record writer

class WriterTest : public RegistryTest {
 protected:
  WriterTest() {
    store_ = std::make_unique<FlakyHostsStore>(std::move(temp_.store()));
    writer_ = std::make_unique<HostRecordWriter>(*store_, registry_, sched_);
    writer_->Start();
  }
  ~WriterTest() override { writer_->Stop(); }

  TempStore temp_;
  FakeScheduler sched_{clock_};
  std::unique_ptr<FlakyHostsStore> store_;
  std::unique_ptr<HostRecordWriter> writer_;
};

TEST_F(WriterTest, AFailedWriteIsRetriedAfterABackoffThatDoublesAndResets) {
  Add("a", {});
  store_->fail_puts = true;
  EXPECT_EQ(writer_->MarkDirty("a", /*wait=*/true).code(), absl::StatusCode::kResourceExhausted);
  EXPECT_EQ(writer_->attempts(), 1u);
  // While it waits, the writer does not try again, and a flush answers with the failure.
  EXPECT_EQ(writer_->Flush().code(), absl::StatusCode::kResourceExhausted);
  sched_.Advance(absl::Milliseconds(999));
  EXPECT_EQ(writer_->attempts(), 1u);
  sched_.Advance(absl::Milliseconds(1));  // 1 s: the second try, which fails too
  writer_->WaitForAttempts(2);
  EXPECT_EQ(writer_->Flush().code(), absl::StatusCode::kResourceExhausted);
  store_->fail_puts = false;
  sched_.Advance(absl::Milliseconds(1999));
  EXPECT_EQ(writer_->attempts(), 2u);
  sched_.Advance(absl::Milliseconds(1));  // 2 s after: the third, which succeeds
  writer_->WaitForAttempts(3);
  EXPECT_TRUE(writer_->Flush().ok());
  EXPECT_TRUE(store_->GetHost("a").ok());
  // A success resets the backoff: the next failure waits 1 s again.
  store_->fail_puts = true;
  EXPECT_FALSE(writer_->MarkDirty("a", /*wait=*/true).ok());
  EXPECT_EQ(sched_.NextIn(), absl::Seconds(1));
}

TEST_F(WriterTest, StopWritesWhatIsQueuedEvenDuringABackoff) {
  Add("a", {});
  store_->fail_puts = true;
  ASSERT_FALSE(writer_->MarkDirty("a", /*wait=*/true).ok());
  store_->fail_puts = false;
  writer_->Stop();
  EXPECT_TRUE(store_->GetHost("a").ok());
  EXPECT_EQ(sched_.pending(), 0u);  // the retry's timer is gone
}

TEST_F(WriterTest, AcksWriteOnlyTheStatus) {
  Add("a", {});
  ASSERT_TRUE(writer_->MarkDirty("a", /*wait=*/true).ok());
  {
    Entry e = registry_.Find("a");
    absl::MutexLock hl(&e->mu);
    e->s.record.acked_config_version = 7;
    e->s.record.hostname = "renamed";  // not written with a status
  }
  ASSERT_TRUE(writer_->MarkDirty("a", /*wait=*/true, /*full=*/false).ok());
  EXPECT_EQ(store_->GetHost("a")->acked_config_version, 7u);
  EXPECT_EQ(store_->GetHost("a")->hostname, "a.example");
}

// MarkDirtyThen: no thread waits; each caller is answered by the write that took its record,
// and those queued during a write share the next one.
TEST_F(WriterTest, MarkDirtyThenAnswersOnceAWriteTookTheRecord) {
  for (const char* id : {"a", "b", "c"}) Add(id, {});
  std::mutex mu;
  std::map<std::string, absl::Status> answers;
  auto answer = [&](std::string id) {
    return [&, id](absl::Status s) {
      std::lock_guard<std::mutex> l(mu);
      answers[id] = s;
    };
  };
  auto answered = [&] {
    std::lock_guard<std::mutex> l(mu);
    return answers.size();
  };
  store_->Hold();
  writer_->MarkDirtyThen("a", answer("a"));
  store_->WaitForHeldPuts(1);  // a's write has begun, and waits on the store
  writer_->MarkDirtyThen("b", answer("b"));
  writer_->MarkDirtyThen("c", answer("c"));
  EXPECT_EQ(answered(), 0u);
  store_->Release();
  ASSERT_TRUE(writer_->Flush().ok());
  writer_->WaitForAttempts(2);
  ASSERT_EQ(answered(), 3u);
  for (const char* id : {"a", "b", "c"}) {
    EXPECT_TRUE(answers[id].ok()) << id << ": " << answers[id];
    EXPECT_TRUE(store_->GetHost(id).ok()) << id;
  }
  EXPECT_EQ(store_->put_calls, 2);  // a's, then b's and c's together
}

// While the store fails, the caller is answered at once with the failure (the record stays
// queued and is written once the store takes it); after Stop, on the caller's thread.
TEST_F(WriterTest, MarkDirtyThenAnswersAtOnceWhileTheStoreFailsAndAfterStop) {
  Add("a", {});
  Add("b", {});
  store_->fail_puts = true;
  ASSERT_FALSE(writer_->MarkDirty("a", /*wait=*/true).ok());
  std::optional<absl::Status> got;
  writer_->MarkDirtyThen("b", [&](absl::Status s) { got = s; });
  ASSERT_TRUE(got.has_value());
  EXPECT_EQ(got->code(), absl::StatusCode::kResourceExhausted);
  store_->fail_puts = false;
  sched_.Advance(absl::Seconds(1));  // the retry
  writer_->WaitForAttempts(2);
  EXPECT_TRUE(store_->GetHost("b").ok());

  writer_->Stop();
  Add("c", {});
  got.reset();
  writer_->MarkDirtyThen("c", [&](absl::Status s) { got = s; });
  ASSERT_TRUE(got.has_value());
  EXPECT_TRUE(got->ok()) << *got;
  EXPECT_TRUE(store_->GetHost("c").ok());
}

// ---------------------------------------------------------------------------------------
// The audit log's queue

// While the store is slow, AuditLater keeps at most its bound waiting (beside what its
// workers are appending): the rest is dropped and counted, never blocks the caller, and
// everything not dropped is written once the store takes it.
TEST(StoreAuditLogTest, PastItsBoundEntriesAreDroppedAndCountedAndTheRestWritten) {
  TempStore temp;
  FlakyHostsStore store(std::move(temp.store()));
  FakeClock clock;
  StoreAuditLog log(store, clock, /*max_queued=*/10);
  store.HoldAudit();
  constexpr int kMade = 400;
  for (int i = 0; i < kMade; ++i) {
    log.AuditLater("host:h", "host.register", absl::StrCat("{\"n\":", i, "}"));
  }
  // 10 queued, at most kWorkers × kAppendBatch taken by the workers.
  const int most_kept =
      10 + StoreAuditLog::kWorkers * static_cast<int>(StoreAuditLog::kAppendBatch);
  const auto dropped = static_cast<int>(log.dropped());
  EXPECT_GE(dropped, kMade - most_kept);
  EXPECT_LT(dropped, kMade);
  store.Release();
  auto listed = log.ListAudit(1000);  // waits for the queue
  ASSERT_TRUE(listed.ok()) << listed.status();
  EXPECT_EQ(static_cast<int>(listed->size()) + dropped, kMade);
}

// ---------------------------------------------------------------------------------------
// The hub under a wall-clock step

// An NTP step (an hour forward, then back) with hosts connected and requests of each kind
// pending: the sweep task keeps running and nothing expires, no stream is closed, no host
// goes offline; monotonic time still expires what is due.
TEST(HubTimeTest, SteppingTheWallClockByAnHourExpiresNothingAndClosesNoStream) {
  TempStore temp;
  ASSERT_TRUE(temp.store()->PutSetting("join_token_sha256", Sha256Hex("jt")).ok());
  FakeClock clock;
  FakeScheduler sched(clock);
  Hub hub(*temp.store(), sched, HubOptions{});
  ASSERT_TRUE(hub.Start().ok());
  std::vector<std::shared_ptr<FakeHostSession>> sessions;
  for (int i = 0; i < 3; ++i) {
    herd::v1::Hello hello;
    hello.set_host_id(absl::StrCat("h", i));
    sessions.push_back(std::make_shared<FakeHostSession>());
    ASSERT_TRUE(hub.Connect("jt", hello, sessions.back()).ok());
  }
  int restarts = 0, log_ends = 0, actions = 0;
  hub.RestartOnHosts({"h0", "h1"}, {"app"}, 0, "ro",
                     [&](size_t, absl::StatusOr<herd::v1::RestartResult>) { ++restarts; });
  herd::v1::FleetLogsRequest logs;
  logs.set_host_id("h2");
  logs.set_unit("app");
  logs.set_follow(true);
  hub.StreamLogs(logs, [](const herd::v1::LogChunk&) {}, [&](absl::Status) { ++log_ends; });
  herd::v1::FleetActionRequest action;
  action.mutable_target()->set_all(true);
  action.set_module("app");
  action.set_action("ping");
  action.set_timeout_ms(20000);
  hub.TriggerAction(action, Actor{"alice", Role::kOperator, ""},
                    [&](absl::StatusOr<herd::v1::FleetActionResponse>) { ++actions; });
  for (absl::Duration step : {absl::Hours(1), absl::Hours(-2), absl::Hours(1)}) {
    clock.StepWall(step);
    sched.Advance(absl::Seconds(6));  // sweeps run, a silence check among them
    EXPECT_EQ(restarts + log_ends + actions, 0) << "stepped " << step;
    for (const auto& s : sessions) EXPECT_FALSE(s->closed()) << "stepped " << step;
    EXPECT_EQ(hub.stats().online, 3u);
  }
  // 18 s in: the action (20 s + 5 s grace) expires by 25 s, the restarts (60 s + 5 s) later.
  sched.Advance(absl::Seconds(8));
  EXPECT_EQ(actions, 1);
  EXPECT_EQ(restarts, 0);
  hub.Stop();
  EXPECT_EQ(restarts, 2);
  EXPECT_EQ(log_ends, 1);
}

}  // namespace
}  // namespace herd::controlplane
