// Several control-plane replicas in one test process (issue 22): each a Hub, a FleetService
// routed through a PeerRouter, a PeerService and a rollout engine on a RoutedRequestRelay,
// served by a real gRPC server on 127.0.0.1:0; hosts attached through fake sessions whose
// requests an AgentResponder answers (as agents would, on a thread of their own); and a
// FakeReplicas directory per replica saying who holds which host. Every host's record is
// known to every replica (as etcd makes it): a host is attached to the other replica first,
// then moved to its holder.
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <chrono>
#include <condition_variable>
#include <deque>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "absl/cleanup/cleanup.h"
#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"
#include "common/clock.h"
#include "common/scheduler.h"
#include "controlplane/core/hub.h"
#include "controlplane/core/secrets.h"
#include "controlplane/fleet/fleet_service.h"
#include "controlplane/fleet/peer_links.h"
#include "controlplane/fleet/peer_router.h"
#include "controlplane/fleet/peer_service.h"
#include "controlplane/fleet/rollouts.h"
#include "controlplane/fleet/routed_request_relay.h"
#include "controlplane/store/store.h"
#include "grpcpp/grpcpp.h"
#include "tests/fakes/fake_host_session.h"
#include "tests/fakes/fake_replicas.h"
#include "tests/fakes/fake_scheduler.h"
#include "tests/fakes/temp_dir.h"

namespace herd::controlplane {
namespace {

using ::testing::ElementsAre;
using ::testing::HasSubstr;
using ::testing::UnorderedElementsAre;

// Polls `cond` (real time) until it holds or `max` passes.
bool WaitFor(const std::function<bool()>& cond, absl::Duration max = absl::Seconds(10)) {
  const absl::Time end = absl::Now() + max;
  while (absl::Now() < end) {
    if (cond()) return true;
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
  }
  return cond();
}

// Plays the agents: answers what their sessions are sent (actions, restarts, logs), on a
// thread of its own, as an agent's answer arrives on a gateway thread.
class AgentResponder {
 public:
  struct Sent {
    Hub* hub;
    std::string host;
    const HostSession* session;
    herd::v1::ControlMessage msg;
  };
  AgentResponder() : thread_([this] { Run(); }) {}
  ~AgentResponder() { Stop(); }
  void Stop() {
    {
      std::lock_guard<std::mutex> l(mu_);
      stopping_ = true;
    }
    cv_.notify_all();
    if (thread_.joinable()) thread_.join();
  }
  void Post(Sent s) {
    {
      std::lock_guard<std::mutex> l(mu_);
      if (stopping_) return;
      queue_.push_back(std::move(s));
    }
    cv_.notify_all();
  }

 private:
  void Run() {
    for (;;) {
      Sent s;
      {
        std::unique_lock<std::mutex> l(mu_);
        cv_.wait(l, [&] { return stopping_ || !queue_.empty(); });
        if (stopping_) return;
        s = std::move(queue_.front());
        queue_.pop_front();
      }
      herd::v1::AgentMessage answer;
      if (!Answer(s, answer)) continue;
      s.hub->OnMessage(s.host, s.session, answer);
    }
  }
  static bool Answer(const Sent& s, herd::v1::AgentMessage& answer) {
    const auto& m = s.msg;
    if (m.has_action()) {
      auto* r = answer.mutable_action_result();
      r->set_request_id(m.action().request_id());
      r->set_ok(true);
      r->set_reply_json(absl::StrCat(R"({"host":")", s.host, R"("})"));
    } else if (m.has_restart()) {
      auto* r = answer.mutable_restart_result();
      r->set_request_id(m.restart().request_id());
      for (const auto& unit : m.restart().units()) {
        auto* u = r->add_units();
        u->set_unit(unit);
        u->set_ok(true);
      }
    } else if (m.has_logs()) {
      auto* c = answer.mutable_log_chunk();
      c->set_request_id(m.logs().request_id());
      for (int i = 1; i <= 2; ++i) c->add_lines()->set_text(absl::StrCat(s.host, " line ", i));
      c->set_end(!m.logs().follow());
    } else {
      return false;
    }
    return true;
  }

  std::mutex mu_;
  std::condition_variable cv_;
  std::deque<Sent> queue_;
  bool stopping_ = false;
  std::thread thread_;
};

// An agent's stream on one replica: records what it is sent, and has it answered.
class AgentSession final : public herd::testing::FakeHostSession {
 public:
  AgentSession(AgentResponder& responder, Hub& hub, std::string host)
      : responder_(responder), hub_(hub), host_(std::move(host)) {}
  bool Send(herd::v1::ControlMessage msg) override {
    responder_.Post({&hub_, host_, this, msg});
    return FakeHostSession::Send(std::move(msg));
  }
  std::vector<std::string> cancelled() const {
    std::vector<std::string> out;
    for (const auto& m : sent()) {
      if (m.has_cancel()) out.push_back(m.cancel().request_id());
    }
    return out;
  }
  std::vector<std::string> log_requests() const {
    std::vector<std::string> out;
    for (const auto& m : sent()) {
      if (m.has_logs()) out.push_back(m.logs().request_id());
    }
    return out;
  }

 private:
  AgentResponder& responder_;
  Hub& hub_;
  const std::string host_;
};

// One control-plane replica, served on 127.0.0.1:0.
struct Replica {
  explicit Replica(const std::string& replica_id) : id(replica_id), dir(replica_id) {}

  void Start() {
    auto s = OpenSqliteStore(tmp.Path("herd.db"));
    ASSERT_TRUE(s.ok()) << s.status();
    store = std::move(*s);
    ASSERT_TRUE(store->PutSetting("join_token_sha256", Sha256Hex("jt")).ok());
    // The same tokens on every replica, as one etcd store gives them.
    ASSERT_TRUE(store->AddToken({"viewer", Role::kViewer, Sha256Hex("v_secret")}).ok());
    ASSERT_TRUE(store->AddToken({"ops", Role::kOperator, Sha256Hex("o_secret")}).ok());
    // A host that left is offline 1 ms later (the tests move the clock): a replica's record
    // of a host held elsewhere says offline, its holder says online.
    HubOptions hub_options;
    hub_options.lease = absl::Milliseconds(1);
    hub = std::make_unique<Hub>(*store, clock, hub_options);
    ASSERT_TRUE(hub->Start().ok());
    PeerLinkOptions options;
    options.call_timeout = absl::Seconds(5);
    links = std::make_unique<PeerLinks>(dir, grpc::InsecureChannelCredentials(), options);
    router = std::make_unique<PeerRouter>(*links, *hub, hub->relay(), hub->audit(), sched);
    routed = std::make_unique<RoutedRequestRelay>(hub->relay(), *links);
    rollouts = std::make_unique<RolloutEngine>(*hub, *routed, *hub, *store, timers);
    ASSERT_TRUE(rollouts->Start().ok());
    fleet = std::make_unique<FleetService>(FleetBackends::Of(*hub), *store, *rollouts, sched);
    fleet->RouteThrough(router.get());
    peer = std::make_unique<PeerService>(*links, hub->relay());
    grpc::ServerBuilder builder;
    int port = 0;
    builder.AddListeningPort("127.0.0.1:0", grpc::InsecureServerCredentials(), &port);
    builder.RegisterService(fleet.get());
    builder.RegisterService(peer.get());
    server = builder.BuildAndStart();
    ASSERT_TRUE(server && port > 0);
    address = absl::StrCat("127.0.0.1:", port);
  }
  // Calls out first (every replica's), then calls in, then the rest.
  void StopCalls() {
    if (router) router->Stop();
    if (routed) routed->Stop();
  }
  void Stop() {
    if (server) server->Shutdown(std::chrono::system_clock::now() + std::chrono::seconds(1));
    if (rollouts) rollouts->Stop();
    if (hub) hub->Stop();
  }
  std::unique_ptr<herd::v1::Fleet::Stub> FleetStub() const {
    return herd::v1::Fleet::NewStub(
        grpc::CreateChannel(address, grpc::InsecureChannelCredentials()));
  }

  const std::string id;
  herd::testing::ScopedTempDir tmp;
  FakeClock clock;
  testing::FakeScheduler sched{clock};
  ThreadScheduler timers{clock, "test-rollouts"};
  herd::testing::FakeReplicas dir;
  std::unique_ptr<Store> store;
  std::unique_ptr<Hub> hub;
  std::unique_ptr<PeerLinks> links;
  std::unique_ptr<PeerRouter> router;
  std::unique_ptr<RoutedRequestRelay> routed;
  std::unique_ptr<RolloutEngine> rollouts;
  std::unique_ptr<FleetService> fleet;
  std::unique_ptr<PeerService> peer;
  std::unique_ptr<grpc::Server> server;
  std::string address;
};

herd::v1::Hello HelloWith(const std::string& id) {
  herd::v1::Hello h;
  h.set_host_id(id);
  h.set_hostname(id);
  auto* m = h.add_modules();
  m->set_name("app");
  m->set_version("1.0.0");
  m->set_defaults_json("{}");
  return h;
}

// A client context: `secret` as the bearer token, and a deadline only a broken test reaches.
std::unique_ptr<grpc::ClientContext> Ctx(const std::string& secret) {
  auto ctx = std::make_unique<grpc::ClientContext>();
  if (!secret.empty()) ctx->AddMetadata("authorization", "Bearer " + secret);
  ctx->set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(20));
  return ctx;
}

std::vector<std::string> HostIds(const herd::v1::ListHostsResponse& r) {
  std::vector<std::string> out;
  for (const auto& h : r.hosts()) out.push_back(h.host_id());
  return out;
}

// Two replicas: A holds h1, B holds h2 and h3.
class ReplicasTest : public ::testing::Test {
 protected:
  void SetUp() override {
    a_ = std::make_unique<Replica>("A");
    b_ = std::make_unique<Replica>("B");
    for (Replica* r : {a_.get(), b_.get()}) {
      r->Start();
      if (HasFatalFailure()) return;
    }
    for (Replica* r : {a_.get(), b_.get()}) {
      for (Replica* other : {a_.get(), b_.get()}) r->dir.SetReplica(other->id, other->address);
    }
    Attach("h1", *a_, *b_);
    Attach("h2", *b_, *a_);
    Attach("h3", *b_, *a_);
    for (Replica* r : {a_.get(), b_.get()}) r->clock.Advance(absl::Milliseconds(2));
  }
  void TearDown() override {
    responder_.Stop();
    for (Replica* r : {a_.get(), b_.get()}) {
      if (r) r->StopCalls();
    }
    for (Replica* r : {a_.get(), b_.get()}) {
      if (r) r->Stop();
    }
  }
  // The host's record reaches `other` (it connected there once), then its stream is held by
  // `holder`, as every directory says.
  void Attach(const std::string& host, Replica& holder, Replica& other) {
    auto before = std::make_shared<AgentSession>(responder_, *other.hub, host);
    ASSERT_TRUE(other.hub->Connect("jt", HelloWith(host), before).ok());
    other.hub->OnDisconnect(host, before.get());
    auto session = std::make_shared<AgentSession>(responder_, *holder.hub, host);
    ASSERT_TRUE(holder.hub->Connect("jt", HelloWith(host), session).ok());
    for (Replica* r : {a_.get(), b_.get()}) r->dir.Hold(host, holder.id);
    sessions_[host] = session;
  }
  // A metrics batch from `host` (app at `cpu` %) on the replica holding it.
  void SendBatch(Replica& holder, const std::string& host, double cpu) {
    herd::v1::AgentMessage m;
    auto* b = m.mutable_metrics();
    b->set_at_unix_ms(absl::ToUnixMillis(holder.clock.Now()));
    auto* u = b->add_units();
    u->set_name("app");
    u->set_is_module(true);
    u->mutable_usage()->set_cpu_percent(cpu);
    b->mutable_host()->set_cpu_percent(cpu);  // the whole host's too
    holder.hub->OnMessage(host, sessions_[host].get(), m);
  }

  AgentResponder responder_;
  std::unique_ptr<Replica> a_, b_;
  std::map<std::string, std::shared_ptr<AgentSession>> sessions_;
};

TEST_F(ReplicasTest, AListingOnAnyReplicaShowsEveryHostAsItsHolderSeesIt) {
  for (Replica* r : {a_.get(), b_.get()}) {
    herd::v1::ListHostsResponse hosts;
    ASSERT_TRUE(r->FleetStub()->ListHosts(Ctx("v_secret").get(), {}, &hosts).ok());
    EXPECT_THAT(HostIds(hosts), ElementsAre("h1", "h2", "h3")) << "on " << r->id;
    // Each replica's own record of the others' hosts says offline: the holders' say online.
    EXPECT_EQ(hosts.online_size(), 3u) << "on " << r->id;
    EXPECT_TRUE(hosts.unreachable_replicas().empty());
  }
  // Pages are cut after the merge: walked page by page from either replica, every host once,
  // each as its holder sees it (h2 and h3 are B's: their usage is known only there), with the
  // fleet's totals on every page.
  SendBatch(*b_, "h2", 12);
  SendBatch(*b_, "h3", 13);
  for (Replica* r : {a_.get(), b_.get()}) {
    herd::v1::ListHostsRequest page;
    page.set_page_size(1);
    std::vector<std::string> walked;
    for (int i = 0; i < 5; ++i) {
      herd::v1::ListHostsResponse resp;
      ASSERT_TRUE(r->FleetStub()->ListHosts(Ctx("v_secret").get(), page, &resp).ok());
      EXPECT_EQ(resp.total_size(), 3u) << "on " << r->id;
      EXPECT_EQ(resp.online_size(), 3u) << "on " << r->id;
      ASSERT_EQ(resp.hosts_size(), 1) << "on " << r->id;
      const auto& h = resp.hosts(0);
      walked.push_back(h.host_id());
      if (h.host_id() != "h1") {
        EXPECT_DOUBLE_EQ(h.usage().cpu_percent(), h.host_id() == "h2" ? 12 : 13) << "on " << r->id;
      }
      if (resp.next_page_token().empty()) break;
      page.set_page_token(resp.next_page_token());
    }
    EXPECT_THAT(walked, ElementsAre("h1", "h2", "h3")) << "on " << r->id;
  }

  herd::v1::ListModulesResponse modules;
  ASSERT_TRUE(a_->FleetStub()->ListModules(Ctx("v_secret").get(), {}, &modules).ok());
  std::set<std::string> online;
  for (const auto& m : modules.modules()) {
    if (m.online()) online.insert(m.host_id());
  }
  EXPECT_THAT(online, UnorderedElementsAre("h1", "h2", "h3"));
}

TEST_F(ReplicasTest, OneHostsReadsAreAnsweredByItsHolder) {
  SendBatch(*b_, "h2", 42);
  herd::v1::GetHostRequest get;
  get.set_host_id("h2");
  herd::v1::HostDetail detail;
  ASSERT_TRUE(a_->FleetStub()->GetHost(Ctx("v_secret").get(), get, &detail).ok());
  EXPECT_TRUE(detail.host().online());
  ASSERT_EQ(detail.units_size(), 1);
  EXPECT_EQ(detail.units(0).usage().cpu_percent(), 42);

  herd::v1::QuerySeriesRequest query;
  query.set_host_id("h2");
  query.set_unit("app");
  query.set_metric("cpu");
  herd::v1::Series series;
  ASSERT_TRUE(a_->FleetStub()->QuerySeries(Ctx("v_secret").get(), query, &series).ok());
  ASSERT_EQ(series.points_size(), 1);
  EXPECT_EQ(series.points(0).value(), 42);
  // The holder checks the role as usual: no token, no answer.
  EXPECT_EQ(a_->FleetStub()->GetHost(Ctx("").get(), get, &detail).error_code(),
            grpc::StatusCode::UNAUTHENTICATED);
}

TEST_F(ReplicasTest, ALogOfAHostOnAnotherReplicaIsForwardedAndItsCancelReachesTheHost) {
  herd::v1::FleetLogsRequest req;
  req.set_host_id("h2");
  req.set_unit("app");
  req.set_follow(true);
  auto ctx = Ctx("v_secret");
  auto stub = a_->FleetStub();
  auto stream = stub->StreamLogs(ctx.get(), req);
  herd::v1::LogLine line;
  ASSERT_TRUE(stream->Read(&line));
  EXPECT_EQ(line.text(), "h2 line 1");
  ASSERT_TRUE(stream->Read(&line));
  EXPECT_EQ(line.text(), "h2 line 2");
  ctx->TryCancel();
  while (stream->Read(&line)) {
  }
  EXPECT_EQ(stream->Finish().error_code(), grpc::StatusCode::CANCELLED);
  // The cancel went on to B, and from B to the host.
  ASSERT_TRUE(WaitFor([&] { return !sessions_["h2"]->cancelled().empty(); }));
  EXPECT_EQ(sessions_["h2"]->cancelled(), sessions_["h2"]->log_requests());
  ASSERT_TRUE(WaitFor([&] { return a_->links->counts().open_calls == 0u; }));
}

TEST_F(ReplicasTest, AnActionReachesEveryReplicasHostsAndIsAuditedOnce) {
  // h4 is known (its record) but its stream is held by no replica.
  auto gone = std::make_shared<AgentSession>(responder_, *a_->hub, "h4");
  ASSERT_TRUE(a_->hub->Connect("jt", HelloWith("h4"), gone).ok());
  a_->hub->OnDisconnect("h4", gone.get());

  herd::v1::FleetActionRequest req;
  req.mutable_target()->set_all(true);
  req.set_module("app");
  req.set_action("flush");
  herd::v1::FleetActionResponse resp;
  EXPECT_EQ(a_->FleetStub()->TriggerAction(Ctx("v_secret").get(), req, &resp).error_code(),
            grpc::StatusCode::PERMISSION_DENIED);
  ASSERT_TRUE(a_->FleetStub()->TriggerAction(Ctx("o_secret").get(), req, &resp).ok());
  ASSERT_EQ(resp.results_size(), 4);
  for (int i = 0; i < 3; ++i) {
    const auto& r = resp.results(i);
    EXPECT_TRUE(r.ok()) << r.host_id() << ": " << r.error();
    EXPECT_EQ(r.reply_json(), absl::StrCat(R"({"host":")", r.host_id(), R"("})"));
  }
  EXPECT_EQ(resp.results(3).host_id(), "h4");
  EXPECT_FALSE(resp.results(3).ok());
  EXPECT_THAT(resp.results(3).error(), HasSubstr("not connected"));
  EXPECT_EQ(sessions_["h2"]->actions().size(), 1u);

  auto triggers = [](Replica& r) {
    std::vector<std::string> out;
    auto entries = r.hub->ListAudit(100);
    EXPECT_TRUE(entries.ok());
    for (const auto& e : *entries) {
      if (e.action() == "action.trigger") out.push_back(e.detail_json());
    }
    return out;
  };
  EXPECT_THAT(triggers(*a_), ElementsAre(HasSubstr(R"(["h1","h2","h3","h4"])")));
  EXPECT_TRUE(triggers(*b_).empty());
}

TEST_F(ReplicasTest, ARolloutRestartsHostsHeldByAnotherReplica) {
  herd::v1::FleetRestartRequest req;
  req.mutable_target()->set_all(true);
  req.set_module("app");
  req.set_batch_size(3);
  herd::v1::Rollout created;
  ASSERT_TRUE(a_->FleetStub()->Restart(Ctx("o_secret").get(), req, &created).ok());
  ASSERT_EQ(created.hosts_size(), 3);
  ASSERT_TRUE(WaitFor([&] {
    auto r = a_->rollouts->Get(created.id());
    return r.ok() && r->state() != herd::v1::ROLLOUT_STATE_RUNNING;
  }));
  auto done = a_->rollouts->Get(created.id());
  ASSERT_TRUE(done.ok());
  EXPECT_EQ(done->state(), herd::v1::ROLLOUT_STATE_SUCCEEDED) << done->reason();
  for (const std::string host : {"h1", "h2", "h3"}) {
    EXPECT_EQ(sessions_[host]->restarts().size(), 1u) << host;
  }
}

TEST_F(ReplicasTest, WatchMetricsOnOneReplicaShowsTheBatchesOfHostsOnAnother) {
  auto ctx = Ctx("v_secret");
  auto stub = a_->FleetStub();
  auto stream = stub->WatchMetrics(ctx.get(), herd::v1::WatchMetricsRequest());
  stream->WaitForInitialMetadata();
  absl::Mutex mu;
  std::set<std::string> seen;
  std::thread reader([&] {
    herd::v1::HostMetrics m;
    while (stream->Read(&m)) {
      absl::MutexLock l(&mu);
      seen.insert(m.host_id());
    }
  });
  absl::Cleanup stop_reading = [&] {
    ctx->TryCancel();
    reader.join();
  };
  ASSERT_TRUE(WaitFor([&] { return a_->router->watch_streams() == 1u; }));
  // B's side of the watch opens on its own time: batches until one gets through.
  EXPECT_TRUE(WaitFor([&] {
    SendBatch(*a_, "h1", 1);
    SendBatch(*b_, "h3", 3);
    absl::MutexLock l(&mu);
    return seen.count("h1") && seen.count("h3");
  }));
  std::move(stop_reading).Invoke();
  stream->Finish();
  // The peer's stream ends with the watch.
  EXPECT_TRUE(WaitFor([&] { return a_->links->counts().open_calls == 0u; }));
}

TEST_F(ReplicasTest, AWrongPeerSecretIsRefusedAndCounted) {
  auto ctx = Ctx("v_secret");
  ctx->AddMetadata(kPeerSecretHeader, "not-the-secret");
  herd::v1::ListHostsResponse hosts;
  grpc::Status st = a_->FleetStub()->ListHosts(ctx.get(), {}, &hosts);
  EXPECT_EQ(st.error_code(), grpc::StatusCode::UNAUTHENTICATED);
  EXPECT_THAT(st.error_message(), HasSubstr("x-herd-peer-secret"));
  EXPECT_EQ(a_->links->counts().bad_secrets, 1u);

  // The replicas' own service: without the secret, or with another, nothing is restarted.
  auto peer = herd::v1::Peer::NewStub(
      grpc::CreateChannel(b_->address, grpc::InsecureChannelCredentials()));
  herd::v1::PeerRestartRequest restart;
  restart.add_host_ids("h2");
  restart.add_units("app");
  for (const std::string secret : {"", "not-the-secret"}) {
    grpc::ClientContext c;
    if (!secret.empty()) c.AddMetadata(kPeerSecretHeader, secret);
    auto results = peer->RestartOnHosts(&c, restart);
    herd::v1::PeerRestartResult r;
    EXPECT_FALSE(results->Read(&r));
    EXPECT_EQ(results->Finish().error_code(), grpc::StatusCode::UNAUTHENTICATED) << secret;
  }
  EXPECT_TRUE(sessions_["h2"]->restarts().empty());
}

TEST_F(ReplicasTest, OnlyTheSecretGivesLocalScope) {
  auto ask = [&](Replica& r, const char* secret) {
    auto ctx = Ctx("v_secret");
    if (secret) ctx->AddMetadata(kPeerSecretHeader, secret);
    herd::v1::ListHostsResponse hosts;
    grpc::Status st = r.FleetStub()->ListHosts(ctx.get(), {}, &hosts);
    return std::make_pair(st.error_code(), HostIds(hosts));
  };
  // With the secret: B's own hosts only. Without: the whole fleet. A header with anything
  // else (empty included) is refused, not taken for a client's own call.
  EXPECT_EQ(ask(*b_, "peer-secret"),
            std::make_pair(grpc::StatusCode::OK, std::vector<std::string>{"h2", "h3"}));
  EXPECT_EQ(ask(*b_, nullptr),
            std::make_pair(grpc::StatusCode::OK, std::vector<std::string>{"h1", "h2", "h3"}));
  EXPECT_EQ(ask(*b_, "").first, grpc::StatusCode::UNAUTHENTICATED);
  // A replica with no secret (alone in its cluster) takes no peer call at all.
  b_->dir.set_peer_secret("");
  EXPECT_EQ(ask(*b_, "").first, grpc::StatusCode::UNAUTHENTICATED);
  EXPECT_EQ(ask(*b_, "peer-secret").first, grpc::StatusCode::UNAUTHENTICATED);
}

TEST_F(ReplicasTest, ADeadReplicaLeavesAPartialListingThatNamesIt) {
  // C holds h5 (its record is here) and does not answer: nothing listens on its address.
  auto gone = std::make_shared<AgentSession>(responder_, *a_->hub, "h5");
  ASSERT_TRUE(a_->hub->Connect("jt", HelloWith("h5"), gone).ok());
  a_->hub->OnDisconnect("h5", gone.get());
  a_->clock.Advance(absl::Milliseconds(2));
  a_->dir.SetReplica("C", "127.0.0.1:1");
  a_->dir.Hold("h5", "C");

  herd::v1::ListHostsResponse hosts;
  ASSERT_TRUE(a_->FleetStub()->ListHosts(Ctx("v_secret").get(), {}, &hosts).ok());
  EXPECT_THAT(HostIds(hosts), ElementsAre("h1", "h2", "h3", "h5"));
  EXPECT_THAT(hosts.unreachable_replicas(), ElementsAre("C"));
  EXPECT_EQ(hosts.online_size(), 3u);
  herd::v1::ListModulesResponse modules;
  ASSERT_TRUE(a_->FleetStub()->ListModules(Ctx("v_secret").get(), {}, &modules).ok());
  EXPECT_THAT(modules.unreachable_replicas(), ElementsAre("C"));
  // One host's read: its record here, and the replica that did not answer named.
  grpc::ClientContext get_ctx;
  get_ctx.AddMetadata("authorization", "Bearer v_secret");
  herd::v1::GetHostRequest get;
  get.set_host_id("h5");
  herd::v1::HostDetail detail;
  ASSERT_TRUE(a_->FleetStub()->GetHost(&get_ctx, get, &detail).ok());
  EXPECT_EQ(detail.host().host_id(), "h5");
  auto trailing = get_ctx.GetServerTrailingMetadata().find(kUnreachableReplicasHeader);
  ASSERT_NE(trailing, get_ctx.GetServerTrailingMetadata().end());
  EXPECT_EQ(std::string(trailing->second.data(), trailing->second.size()), "C");
  // What only the holder has fails, and says which replica it asked.
  herd::v1::QuerySeriesRequest query;
  query.set_host_id("h5");
  query.set_metric("cpu");
  herd::v1::Series series;
  grpc::Status st = a_->FleetStub()->QuerySeries(Ctx("v_secret").get(), query, &series);
  EXPECT_EQ(st.error_code(), grpc::StatusCode::UNAVAILABLE);
  EXPECT_THAT(st.error_message(), HasSubstr("replica C"));
  herd::v1::FleetLogsRequest logs;
  logs.set_host_id("h5");
  logs.set_unit("app");
  auto logs_ctx = Ctx("v_secret");
  auto stub = a_->FleetStub();
  auto stream = stub->StreamLogs(logs_ctx.get(), logs);
  herd::v1::LogLine line;
  EXPECT_FALSE(stream->Read(&line));
  st = stream->Finish();
  EXPECT_EQ(st.error_code(), grpc::StatusCode::UNAVAILABLE);
  EXPECT_THAT(st.error_message(), HasSubstr("replica C"));
}

// Directories that disagree (each thinks the other holds h1) send a call one hop, not round.
TEST_F(ReplicasTest, DirectoriesThatDisagreeMakeNoCallLoop) {
  a_->dir.Hold("h1", "B");
  b_->dir.Hold("h1", "A");
  herd::v1::GetHostRequest get;
  get.set_host_id("h1");
  herd::v1::HostDetail detail;
  ASSERT_TRUE(a_->FleetStub()->GetHost(Ctx("v_secret").get(), get, &detail).ok());
  EXPECT_EQ(detail.host().host_id(), "h1");
  herd::v1::ListHostsResponse hosts;
  ASSERT_TRUE(a_->FleetStub()->ListHosts(Ctx("v_secret").get(), {}, &hosts).ok());
  EXPECT_THAT(HostIds(hosts), ElementsAre("h1", "h2", "h3"));
  EXPECT_EQ(a_->links->counts().forwarded_calls, 2u);
  EXPECT_EQ(b_->links->counts().forwarded_calls, 0u);
}

// ---------------------------------------------------------------------------------------
// PeerLinks alone: no server is dialled (a channel connects on its first call).

TEST(PeerLinksTest, CallsPastTheBoundAreRefusedAndCountedUntilASlotIsGivenBack) {
  herd::testing::FakeReplicas dir("A");
  dir.SetReplica("B", "127.0.0.1:1");
  PeerLinkOptions options;
  options.max_calls = 2;
  PeerLinks links(dir, grpc::InsecureChannelCredentials(), options);
  const ReplicaInfo b = links.Peers().at(0);
  auto first = links.Open(b);
  auto second = links.Open(b);
  ASSERT_TRUE(first.ok() && second.ok());
  auto third = links.Open(b);
  EXPECT_EQ(third.status().code(), absl::StatusCode::kResourceExhausted);
  EXPECT_THAT(std::string(third.status().message()), HasSubstr("2 calls open"));
  EXPECT_EQ(links.counts().refused_calls, 1u);
  EXPECT_EQ(links.counts().open_calls, 2u);
  first = absl::UnavailableError("done");  // its slot is given back
  EXPECT_TRUE(links.Open(b).ok());
  EXPECT_EQ(links.counts().forwarded_calls, 3u);
}

TEST(PeerLinksTest, OneChannelPerPeerDroppedWhenThePeerLeaves) {
  herd::testing::FakeReplicas dir("A");
  dir.SetReplica("A", "127.0.0.1:1");
  dir.SetReplica("B", "127.0.0.1:2");
  PeerLinks links(dir, grpc::InsecureChannelCredentials());
  auto peers = links.Peers();
  ASSERT_EQ(peers.size(), 1u);  // not itself
  auto one = links.Open(peers[0]);
  auto two = links.Open(peers[0]);
  ASSERT_TRUE(one.ok() && two.ok());
  EXPECT_EQ(one->fleet, two->fleet);
  EXPECT_EQ(links.counts().channels, 1u);
  // Moved: a new channel to the new address.
  dir.SetReplica("B", "127.0.0.1:3");
  auto moved = links.Open(links.Peers().at(0));
  ASSERT_TRUE(moved.ok());
  EXPECT_NE(moved->fleet, one->fleet);
  dir.RemoveReplica("B");
  EXPECT_TRUE(links.Peers().empty());
  EXPECT_EQ(links.counts().channels, 0u);
}

TEST(PeerLinksTest, AForwardedCallCarriesTheSecretTheBearerAndTheNearerDeadline) {
  herd::testing::FakeReplicas dir("A", "s3cret");
  PeerLinks links(dir, grpc::InsecureChannelCredentials());
  ForwardedCall call;
  call.authorization = "Bearer v_secret";
  call.deadline = absl::Now() + absl::Seconds(2);
  grpc::ClientContext ctx;
  links.Prepare(ctx, call, absl::Seconds(5));
  const absl::Time deadline = absl::FromChrono(ctx.deadline());
  EXPECT_LE(deadline, call.deadline);
  EXPECT_GT(deadline, absl::Now() + absl::Seconds(1));
  // A stream with no caller deadline has none.
  grpc::ClientContext stream;
  links.Prepare(stream, ForwardedCall{}, absl::InfiniteDuration());
  EXPECT_EQ(stream.deadline(), std::chrono::system_clock::time_point::max());
}

}  // namespace
}  // namespace herd::controlplane
