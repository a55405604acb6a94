#include "controlplane/fleet/fleet_service.h"

#include <algorithm>
#include <deque>
#include <set>

#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"
#include "controlplane/core/secrets.h"
#include "controlplane/fleet/host_pages.h"
#include "controlplane/fleet/peer_router.h"
#include "controlplane/fleet/queued_writer.h"
#include "controlplane/gateway/gateway_service.h"

namespace herd::controlplane {
namespace {

// A unary reactor that finishes with `s`.
grpc::ServerUnaryReactor* Done(grpc::CallbackServerContext* ctx, const absl::Status& s) {
  auto* r = ctx->DefaultReactor();
  r->Finish(ToGrpc(s));
  return r;
}

// The peers' side of a merged WatchMetrics (PeerRouter::WatchPeers); none without a router.
struct PeerWatch {
  PeerRouter* router = nullptr;
  ForwardedCall call;
  herd::v1::WatchMetricsRequest req;
};

class MetricsWriter final : public QueuedWriter<herd::v1::HostMetrics> {
 public:
  // Watches once open (`refused` ok); otherwise ends at once with it.
  MetricsWriter(MetricsFeed& feed, std::set<std::string> hosts, StreamContext c,
                absl::Status refused, PeerWatch peers = {})
      : QueuedWriter(c.ctx, c.limits, c.clock, c.tokens, "WatchMetrics"),
        feed_(feed),
        tokens_(c.tokens),
        router_(peers.router),
        guard_(std::make_shared<WriterGuard<MetricsWriter>>()) {
    {
      absl::MutexLock l(&guard_->mu);
      guard_->self = this;
    }
    if (refused.ok()) {
      auto slot = tokens_.Add(c.token_hash, c.who, EndThrough(guard_), PollThrough(guard_));
      if (slot.ok()) {
        token_id_ = *slot;
      } else {
        refused = slot.status();
      }
    }
    if (!refused.ok()) {
      End(ToGrpc(refused));
      return;
    }
    auto push = [g = guard_](const herd::v1::HostMetrics& m) {
      absl::MutexLock l(&g->mu);
      if (g->self) g->self->Push(m);
    };
    if (router_) peer_id_ = router_->WatchPeers(peers.call, peers.req, hosts, push);
    id_ = feed_.WatchMetrics(std::move(hosts), push);
  }
  void OnCancel() override {
    feed_.Unwatch(id_);
    if (router_) router_->Unwatch(peer_id_);
    End(grpc::Status::CANCELLED);
  }
  void OnDone() override {
    tokens_.Remove(token_id_);
    feed_.Unwatch(id_);
    if (router_) router_->Unwatch(peer_id_);
    {
      absl::MutexLock l(&guard_->mu);
      guard_->self = nullptr;
    }
    delete this;
  }

 private:
  MetricsFeed& feed_;
  StreamTokens& tokens_;
  PeerRouter* const router_;
  std::shared_ptr<WriterGuard<MetricsWriter>> guard_;
  uint64_t id_ = 0;
  uint64_t peer_id_ = 0;
  uint64_t token_id_ = 0;
};

class RolloutWriter final : public QueuedWriter<herd::v1::Rollout> {
 public:
  RolloutWriter(RolloutEngine& engine, const std::string& id, StreamContext c)
      : QueuedWriter(c.ctx, c.limits, c.clock, c.tokens, "WatchRollout"),
        engine_(engine),
        tokens_(c.tokens),
        guard_(std::make_shared<WriterGuard<RolloutWriter>>()) {
    {
      absl::MutexLock l(&guard_->mu);
      guard_->self = this;
    }
    auto slot = tokens_.Add(c.token_hash, c.who, EndThrough(guard_), PollThrough(guard_));
    if (!slot.ok()) {
      End(ToGrpc(slot.status()));
      return;
    }
    token_id_ = *slot;
    auto w = engine_.Watch(id, [g = guard_](const herd::v1::Rollout& r) {
      absl::MutexLock l(&g->mu);
      if (!g->self) return;
      g->self->Push(r);
      if (r.state() != herd::v1::ROLLOUT_STATE_RUNNING) g->self->End(grpc::Status::OK);
    });
    if (!w.ok()) {
      End(ToGrpc(w.status()));
    } else {
      absl::MutexLock l(&mu_);
      id_ = *w;
    }
  }
  void OnCancel() override { End(grpc::Status::CANCELLED); }
  void OnDone() override {
    uint64_t id;
    {
      absl::MutexLock l(&mu_);
      id = id_;
    }
    if (id) engine_.Unwatch(id);
    tokens_.Remove(token_id_);
    {
      absl::MutexLock l(&guard_->mu);
      guard_->self = nullptr;
    }
    delete this;
  }

 private:
  RolloutEngine& engine_;
  StreamTokens& tokens_;
  uint64_t token_id_ = 0;
  std::shared_ptr<WriterGuard<RolloutWriter>> guard_;
  absl::Mutex mu_;
  uint64_t id_ ABSL_GUARDED_BY(mu_) = 0;
};

// Where a log's lines come from: this replica's relay, or the host's holder (PeerRouter):
// RequestRelay's StreamLogs and CancelLogs.
struct LogSource {
  std::function<std::string(const herd::v1::FleetLogsRequest&,
                            std::function<void(const herd::v1::LogChunk&)>,
                            std::function<void(absl::Status)>)>
      open;
  std::function<void(const std::string&)> cancel;
};

class LogsWriter final : public QueuedWriter<herd::v1::LogLine> {
 public:
  LogsWriter(LogSource source, const herd::v1::FleetLogsRequest& req, StreamContext c)
      : QueuedWriter(c.ctx, c.limits, c.clock, c.tokens, "StreamLogs"),
        source_(std::move(source)),
        tokens_(c.tokens) {
    // Keep ourselves alive until both the stream and the hub are done with us.
    state_ = std::make_shared<State>();
    {
      absl::MutexLock l(&state_->mu);
      state_->self = this;
    }
    auto slot = tokens_.Add(c.token_hash, c.who, EndThrough(state_), PollThrough(state_));
    if (!slot.ok()) {
      End(ToGrpc(slot.status()));
      return;
    }
    token_id_ = *slot;
    auto st = state_;
    request_id_ = source_.open(
        req,
        [st](const herd::v1::LogChunk& c) {
          absl::MutexLock l(&st->mu);
          if (!st->self) return;
          for (const auto& line : c.lines()) st->self->Push(line);
        },
        [st](absl::Status s) {
          absl::MutexLock l(&st->mu);
          if (st->self) st->self->End(ToGrpc(s));
        });
  }
  void OnCancel() override {
    if (!request_id_.empty()) source_.cancel(request_id_);
    End(grpc::Status::CANCELLED);
  }
  void OnDone() override {
    tokens_.Remove(token_id_);
    {
      absl::MutexLock l(&state_->mu);
      state_->self = nullptr;
    }
    if (!request_id_.empty()) source_.cancel(request_id_);
    delete this;
  }

 private:
  struct State {
    absl::Mutex mu;
    LogsWriter* self ABSL_GUARDED_BY(mu) = nullptr;
  };
  const LogSource source_;
  StreamTokens& tokens_;
  uint64_t token_id_ = 0;
  std::shared_ptr<State> state_;
  std::string request_id_;
};

// In local scope, a replica answers for the hosts it holds only.
template <typename T, typename Id>
void KeepHeldHere(std::vector<T>& items, const PeerLinks& links, Id id) {
  items.erase(std::remove_if(items.begin(), items.end(),
                             [&](const T& x) { return !links.HeldHere(id(x)); }),
              items.end());
}

// A peer that could not be reached (rather than one that answered with an error).
bool IsUnreachable(const grpc::Status& s) {
  return s.error_code() == grpc::StatusCode::UNAVAILABLE ||
         s.error_code() == grpc::StatusCode::DEADLINE_EXCEEDED ||
         s.error_code() == grpc::StatusCode::RESOURCE_EXHAUSTED;
}

}  // namespace

grpc::Status ToGrpc(const absl::Status& s) {
  if (s.ok()) return grpc::Status::OK;
  return grpc::Status(static_cast<grpc::StatusCode>(s.code()), std::string(s.message()));
}

StreamTokens::StreamTokens(Store& store, Scheduler& scheduler, absl::Duration every, size_t max,
                           size_t max_per_token)
    : store_(store),
      clock_(scheduler.clock()),
      max_(max),
      max_per_token_(max_per_token),
      log_(Logger("fleet")),
      checker_(scheduler, std::max(every, absl::Milliseconds(10)), [this] { Check(); }) {
  checker_.Start();
}

StreamTokens::~StreamTokens() { checker_.Stop(); }

absl::StatusOr<uint64_t> StreamTokens::Add(std::string token_hash, const std::string& who,
                                           End end, Poll poll) {
  if (token_hash.empty()) return 0;  // a stream refused at its opening: nothing to watch
  absl::MutexLock l(&mu_);
  auto it = per_token_.find(token_hash);
  const size_t mine = it == per_token_.end() ? 0 : it->second;
  if (mine >= max_per_token_ || open_.size() >= max_) {
    const bool token_full = mine >= max_per_token_;
    refused_.fetch_add(1, std::memory_order_relaxed);
    // A client retrying in a loop must not flood the log: once per 10 s, with the count.
    const absl::Time now = clock_.Monotonic();
    ++refused_unlogged_;
    if (now - refused_logged_at_ >= absl::Seconds(10)) {
      log_->warn("event=stream_refused token={} open_for_token={} open={} reason={} "
                 "refused_since_last_log={}",
                 who, mine, open_.size(), token_full ? "token_slots" : "server_slots",
                 refused_unlogged_);
      refused_logged_at_ = now;
      refused_unlogged_ = 0;
    }
    return absl::ResourceExhaustedError(
        token_full
            ? absl::StrCat("token \"", who, "\" has ", max_per_token_,
                           " streams open already (the most one token may hold, "
                           "--max-streams-per-token): end some (watches, log follows, "
                           "dashboard views), or use another token")
            : absl::StrCat("the control plane serves ", max_,
                           " streams already (--max-streams): try again later"));
  }
  ++per_token_[token_hash];
  const uint64_t id = next_++;
  open_[id] = {std::move(token_hash), std::move(end), std::move(poll)};
  return id;
}

void StreamTokens::Remove(uint64_t id) {
  absl::MutexLock l(&mu_);
  auto it = open_.find(id);
  if (it == open_.end()) return;
  auto t = per_token_.find(it->second.token_hash);
  if (t != per_token_.end() && --t->second == 0) per_token_.erase(t);
  open_.erase(it);
}

StreamTokens::Counts StreamTokens::counts() const {
  Counts c;
  {
    absl::MutexLock l(&mu_);
    c.open = open_.size();
  }
  c.refused = refused_.load(std::memory_order_relaxed);
  c.dropped = dropped_.load(std::memory_order_relaxed);
  c.stalled = stalled_.load(std::memory_order_relaxed);
  return c;
}

void StreamTokens::Check() {
  std::set<std::string> hashes;
  std::vector<Poll> polls;
  {
    absl::MutexLock l(&mu_);
    for (const auto& [id, o] : open_) {
      hashes.insert(o.token_hash);
      if (o.poll) polls.push_back(o.poll);
    }
  }
  for (auto& p : polls) p();  // outside the lock: a stalled stream ends itself
  std::set<std::string> revoked;
  for (const auto& h : hashes) {
    auto t = store_.FindTokenBySecretHash(h);
    if (absl::IsNotFound(t.status())) {
      revoked.insert(h);
    } else if (!t.ok()) {
      log_->warn("event=stream_token_unchecked error=\"{}\"", t.status().message());
    }
  }
  if (revoked.empty()) return;
  std::vector<End> ends;
  {
    absl::MutexLock l(&mu_);
    for (auto it = open_.begin(); it != open_.end();) {
      if (revoked.count(it->second.token_hash)) {
        ends.push_back(std::move(it->second.end));
        auto t = per_token_.find(it->second.token_hash);
        if (t != per_token_.end() && --t->second == 0) per_token_.erase(t);
        it = open_.erase(it);
      } else {
        ++it;
      }
    }
  }
  if (!ends.empty()) {
    log_->info("event=streams_ended_token_revoked streams={}", ends.size());
  }
  const grpc::Status why(grpc::StatusCode::UNAUTHENTICATED,
                         "the token of this stream was revoked: open it again with a valid "
                         "token (--token-file / HERD_TOKEN)");
  for (auto& e : ends) e(why);  // outside the lock: an End may run the stream's callbacks
}

absl::StatusOr<Actor> FleetService::Authenticate(const grpc::ServerContextBase& ctx,
                                                 bool needs_operator) {
  // A peer secret that is not this cluster's fails the call, whatever it asks.
  if (router_) {
    if (auto local = router_->links().LocalScope(ctx); !local.ok()) return local.status();
  } else if (ctx.client_metadata().count(kPeerSecretHeader)) {
    return absl::UnauthenticatedError(
        "x-herd-peer-secret is for calls between control-plane replicas, and this one has no "
        "peers: leave the header out");
  }
  return AuthenticateToken(BearerToken(ctx), needs_operator);
}

bool FleetService::LocalScope(const grpc::ServerContextBase& ctx) const {
  // Authenticate has refused a secret that is not the cluster's: the header is the secret.
  return router_ && ctx.client_metadata().count(kPeerSecretHeader) > 0;
}

bool FleetService::Routes(const grpc::ServerContextBase& ctx) const {
  return router_ && !LocalScope(ctx);
}

std::optional<ReplicaInfo> FleetService::PeerHolding(const std::string& host) const {
  herd::v1::Target t;
  t.mutable_hosts()->add_ids(host);  // a hostname too
  auto ids = fleet_.hosts.ResolveTarget(t);
  if (!ids.ok() || ids->size() != 1) return router_->links().PeerHolding(host);
  return router_->links().PeerHolding(ids->front());
}

absl::StatusOr<Actor> FleetService::AuthenticateToken(const std::string& bearer,
                                                      bool needs_operator) {
  if (bearer.empty()) {
    return absl::UnauthenticatedError(
        "no token: pass --token-file (or HERD_TOKEN) with an API token of this control plane "
        "(its data directory holds operator-token and viewer-token)");
  }
  std::string hash = Sha256Hex(bearer);
  auto token = store_.FindTokenBySecretHash(hash);
  if (absl::IsNotFound(token.status())) {
    return absl::UnauthenticatedError("unknown token: check --token-file / HERD_TOKEN");
  }
  if (!token.ok()) return token.status();
  if (needs_operator && token->role != Role::kOperator) {
    return absl::PermissionDeniedError(absl::StrCat(
        "token \"", token->name, "\" is read-only (viewer): changes need an operator token"));
  }
  return Actor{token->name, token->role, std::move(hash)};
}

#define HERD_AUTH(needs_operator)                          \
  auto actor_or = Authenticate(*ctx, needs_operator);      \
  if (!actor_or.ok()) return Done(ctx, actor_or.status()); \
  const Actor& actor = *actor_or;                          \
  (void)actor;

grpc::ServerUnaryReactor* FleetService::ListHosts(grpc::CallbackServerContext* ctx,
                                                  const herd::v1::ListHostsRequest* req,
                                                  herd::v1::ListHostsResponse* resp) {
  HERD_AUTH(false);
  auto hosts = fleet_.hosts.ListHosts(req->target());
  if (!hosts.ok()) return Done(ctx, hosts.status());
  auto after = ParsePageToken(req->page_token());
  if (!after.ok()) return Done(ctx, after.status());
  if (LocalScope(*ctx)) {
    KeepHeldHere(*hosts, router_->links(), [](const herd::v1::Host& h) { return h.host_id(); });
  } else if (router_) {
    auto* reactor = ctx->DefaultReactor();
    router_->ListHosts(ForwardedCall::Of(*ctx), *req, std::move(*hosts),
                       [reactor, req, resp, after = *after](std::vector<herd::v1::Host> all,
                                                            PeerRouter::Unreachable unreachable) {
                         PageHosts(*req, after, all, resp);
                         for (auto& r : unreachable) resp->add_unreachable_replicas(r);
                         reactor->Finish(grpc::Status::OK);
                       });
    return reactor;
  }
  PageHosts(*req, *after, *hosts, resp);
  return Done(ctx, absl::OkStatus());
}

grpc::ServerUnaryReactor* FleetService::GetHost(grpc::CallbackServerContext* ctx,
                                                const herd::v1::GetHostRequest* req,
                                                herd::v1::HostDetail* resp) {
  HERD_AUTH(false);
  auto d = fleet_.hosts.GetHost(req->host_id());
  if (Routes(*ctx)) {
    if (auto holder = PeerHolding(req->host_id())) {
      // The holder has the live state; if it does not answer, the record here will do, and
      // the trailing metadata names the replica.
      auto* reactor = ctx->DefaultReactor();
      router_->GetHost(*holder, ForwardedCall::Of(*ctx), *req,
                       [ctx, reactor, resp, local = std::move(d), id = holder->id](
                           grpc::Status s, herd::v1::HostDetail detail) mutable {
                         if (s.ok()) {
                           *resp = std::move(detail);
                         } else if (IsUnreachable(s) && local.ok()) {
                           *resp = std::move(*local);
                           ctx->AddTrailingMetadata(kUnreachableReplicasHeader, id);
                           s = grpc::Status::OK;
                         }
                         reactor->Finish(s);
                       });
      return reactor;
    }
  }
  if (!d.ok()) return Done(ctx, d.status());
  *resp = std::move(*d);
  return Done(ctx, absl::OkStatus());
}

grpc::ServerUnaryReactor* FleetService::ListModules(grpc::CallbackServerContext* ctx,
                                                    const herd::v1::ListModulesRequest* req,
                                                    herd::v1::ListModulesResponse* resp) {
  HERD_AUTH(false);
  auto m = fleet_.hosts.ListModules(req->target(), req->module());
  if (!m.ok()) return Done(ctx, m.status());
  if (LocalScope(*ctx)) {
    KeepHeldHere(*m, router_->links(), [](const herd::v1::ModuleInstance& i) {
      return i.host_id();
    });
  } else if (router_) {
    auto* reactor = ctx->DefaultReactor();
    router_->ListModules(ForwardedCall::Of(*ctx), *req, std::move(*m),
                         [reactor, resp](std::vector<herd::v1::ModuleInstance> all,
                                         PeerRouter::Unreachable unreachable) {
                           for (auto& x : all) *resp->add_modules() = std::move(x);
                           for (auto& r : unreachable) resp->add_unreachable_replicas(r);
                           reactor->Finish(grpc::Status::OK);
                         });
    return reactor;
  }
  for (auto& x : *m) *resp->add_modules() = std::move(x);
  return Done(ctx, absl::OkStatus());
}

grpc::ServerUnaryReactor* FleetService::QuerySeries(grpc::CallbackServerContext* ctx,
                                                    const herd::v1::QuerySeriesRequest* req,
                                                    herd::v1::Series* resp) {
  HERD_AUTH(false);
  if (Routes(*ctx)) {
    if (auto holder = PeerHolding(req->host_id())) {
      auto* reactor = ctx->DefaultReactor();
      router_->QuerySeries(*holder, ForwardedCall::Of(*ctx), *req,
                           [reactor, resp](grpc::Status st, herd::v1::Series series) {
                             if (st.ok()) *resp = std::move(series);
                             reactor->Finish(st);
                           });
      return reactor;
    }
  }
  auto s = fleet_.hosts.QuerySeries(*req);
  if (!s.ok()) return Done(ctx, s.status());
  *resp = std::move(*s);
  return Done(ctx, absl::OkStatus());
}

grpc::ServerWriteReactor<herd::v1::HostMetrics>* FleetService::WatchMetrics(
    grpc::CallbackServerContext* ctx, const herd::v1::WatchMetricsRequest* req) {
  auto actor = Authenticate(*ctx, false);
  std::set<std::string> hosts;
  absl::Status err = actor.status();
  if (err.ok() && req->has_target() &&
      req->target().what_case() != herd::v1::Target::kAll) {
    auto ids = fleet_.hosts.ResolveTarget(req->target());
    if (ids.ok()) {
      hosts.insert(ids->begin(), ids->end());
      if (hosts.empty()) err = absl::NotFoundError("the target selects no host");
    } else {
      err = ids.status();
    }
  }
  // Watched only once open: a refused stream ends at once. Not in local scope: merged with
  // the peers' feeds.
  PeerWatch peers;
  if (err.ok() && Routes(*ctx)) peers = {router_, ForwardedCall::Of(*ctx), *req};
  return new MetricsWriter(
      fleet_.metrics, std::move(hosts),
      StreamContext{ctx, stream_tokens_, streams_.queue, clock_,
                    err.ok() ? actor->token_hash : std::string(), err.ok() ? actor->name : ""},
      err, std::move(peers));
}

grpc::ServerUnaryReactor* FleetService::GetConfig(grpc::CallbackServerContext* ctx,
                                                  const herd::v1::FleetGetConfigRequest* req,
                                                  herd::v1::FleetConfig* resp) {
  HERD_AUTH(false);
  auto c = fleet_.config.GetConfig(req->module(), req->host_id());
  if (!c.ok()) return Done(ctx, c.status());
  *resp = std::move(*c);
  return Done(ctx, absl::OkStatus());
}

grpc::ServerUnaryReactor* FleetService::SetConfig(grpc::CallbackServerContext* ctx,
                                                  const herd::v1::FleetSetConfigRequest* req,
                                                  herd::v1::FleetConfigChange* resp) {
  HERD_AUTH(true);
  auto c = fleet_.config.SetConfig(*req, actor);
  if (!c.ok()) return Done(ctx, c.status());
  *resp = std::move(*c);
  return Done(ctx, absl::OkStatus());
}

grpc::ServerUnaryReactor* FleetService::UnsetConfig(grpc::CallbackServerContext* ctx,
                                                    const herd::v1::FleetUnsetConfigRequest* req,
                                                    herd::v1::FleetConfigChange* resp) {
  HERD_AUTH(true);
  auto c = fleet_.config.UnsetConfig(*req, actor);
  if (!c.ok()) return Done(ctx, c.status());
  *resp = std::move(*c);
  return Done(ctx, absl::OkStatus());
}

grpc::ServerUnaryReactor* FleetService::Undeploy(grpc::CallbackServerContext* ctx,
                                                 const herd::v1::UndeployRequest* req,
                                                 herd::v1::DeployResponse* resp) {
  HERD_AUTH(true);
  auto r = fleet_.config.Undeploy(*req, actor);
  if (!r.ok()) return Done(ctx, r.status());
  *resp = std::move(*r);
  return Done(ctx, absl::OkStatus());
}

grpc::ServerUnaryReactor* FleetService::ListDeployments(
    grpc::CallbackServerContext* ctx, const herd::v1::ListDeploymentsRequest* req,
    herd::v1::ListDeploymentsResponse* resp) {
  HERD_AUTH(false);
  auto r = fleet_.config.ListDeployments(req->name());
  if (!r.ok()) return Done(ctx, r.status());
  *resp = std::move(*r);
  return Done(ctx, absl::OkStatus());
}

grpc::ServerUnaryReactor* FleetService::Restart(grpc::CallbackServerContext* ctx,
                                                const herd::v1::FleetRestartRequest* req,
                                                herd::v1::Rollout* resp) {
  HERD_AUTH(true);
  auto r = rollouts_.Create(*req, actor);
  if (!r.ok()) return Done(ctx, r.status());
  *resp = std::move(*r);
  return Done(ctx, absl::OkStatus());
}

grpc::ServerUnaryReactor* FleetService::ListRollouts(grpc::CallbackServerContext* ctx,
                                                     const herd::v1::ListRolloutsRequest* req,
                                                     herd::v1::ListRolloutsResponse* resp) {
  HERD_AUTH(false);
  auto r = rollouts_.List(req->limit());
  if (!r.ok()) return Done(ctx, r.status());
  for (auto& x : *r) *resp->add_rollouts() = std::move(x);
  return Done(ctx, absl::OkStatus());
}

grpc::ServerUnaryReactor* FleetService::GetRollout(grpc::CallbackServerContext* ctx,
                                                   const herd::v1::GetRolloutRequest* req,
                                                   herd::v1::Rollout* resp) {
  HERD_AUTH(false);
  auto r = rollouts_.Get(req->id());
  if (!r.ok()) return Done(ctx, r.status());
  *resp = std::move(*r);
  return Done(ctx, absl::OkStatus());
}

grpc::ServerWriteReactor<herd::v1::Rollout>* FleetService::WatchRollout(
    grpc::CallbackServerContext* ctx, const herd::v1::GetRolloutRequest* req) {
  auto actor = Authenticate(*ctx, false);
  if (!actor.ok()) {
    // A writer that only reports the error.
    class Refused final : public grpc::ServerWriteReactor<herd::v1::Rollout> {
     public:
      explicit Refused(grpc::Status s) { Finish(s); }
      void OnDone() override { delete this; }
    };
    return new Refused(ToGrpc(actor.status()));
  }
  return new RolloutWriter(
      rollouts_, req->id(),
      StreamContext{ctx, stream_tokens_, streams_.queue, clock_, actor->token_hash, actor->name});
}

grpc::ServerUnaryReactor* FleetService::TriggerAction(grpc::CallbackServerContext* ctx,
                                                      const herd::v1::FleetActionRequest* req,
                                                      herd::v1::FleetActionResponse* resp) {
  HERD_AUTH(true);
  auto* reactor = ctx->DefaultReactor();
  auto finish = [reactor, resp](absl::StatusOr<herd::v1::FleetActionResponse> r) {
    if (r.ok()) *resp = std::move(*r);
    reactor->Finish(ToGrpc(r.status()));
  };
  if (Routes(*ctx)) {
    router_->TriggerAction(ForwardedCall::Of(*ctx), *req, actor, std::move(finish));
  } else {
    Actor part = actor;
    part.audited = LocalScope(*ctx);  // the replica that forwarded it audited it, whole
    fleet_.relay.TriggerAction(*req, part, std::move(finish));
  }
  return reactor;
}

grpc::ServerWriteReactor<herd::v1::LogLine>* FleetService::StreamLogs(
    grpc::CallbackServerContext* ctx, const herd::v1::FleetLogsRequest* req) {
  auto actor = Authenticate(*ctx, false);
  if (!actor.ok()) {
    class Refused final : public grpc::ServerWriteReactor<herd::v1::LogLine> {
     public:
      explicit Refused(grpc::Status s) { Finish(s); }
      void OnDone() override { delete this; }
    };
    return new Refused(ToGrpc(actor.status()));
  }
  // Log lines are many and short: more of them, in the same bytes.
  StreamQueueLimits limits = streams_.queue;
  limits.max_messages = std::max<size_t>(limits.max_messages, 4096);
  RequestRelay& relay = fleet_.relay;
  LogSource source{[&relay](const herd::v1::FleetLogsRequest& r, auto on_lines, auto on_end) {
                     return relay.StreamLogs(r, std::move(on_lines), std::move(on_end));
                   },
                   [&relay](const std::string& id) { relay.CancelLogs(id); }};
  if (Routes(*ctx)) {
    if (auto holder = PeerHolding(req->host_id())) {
      PeerRouter* router = router_;
      source = {[router, holder = *holder, call = ForwardedCall::Of(*ctx)](
                    const herd::v1::FleetLogsRequest& r, auto on_lines, auto on_end) {
                  return router->StreamLogs(holder, call, r, std::move(on_lines),
                                            std::move(on_end));
                },
                [router](const std::string& id) { router->CancelLogs(id); }};
    }
  }
  return new LogsWriter(std::move(source), *req,
                        StreamContext{ctx, stream_tokens_, limits, clock_, actor->token_hash,
                                      actor->name});
}

grpc::ServerUnaryReactor* FleetService::ListAudit(grpc::CallbackServerContext* ctx,
                                                  const herd::v1::ListAuditRequest* req,
                                                  herd::v1::ListAuditResponse* resp) {
  HERD_AUTH(false);
  auto a = fleet_.audit.ListAudit(req->limit() == 0 ? 100 : req->limit());
  if (!a.ok()) return Done(ctx, a.status());
  for (auto& e : *a) *resp->add_entries() = std::move(e);
  return Done(ctx, absl::OkStatus());
}

grpc::ServerUnaryReactor* FleetService::WhoAmI(grpc::CallbackServerContext* ctx,
                                               const herd::v1::WhoAmIRequest*,
                                               herd::v1::WhoAmIResponse* resp) {
  HERD_AUTH(false);
  resp->set_name(actor.name);
  resp->set_role(actor.role == Role::kOperator ? "operator" : "viewer");
  return Done(ctx, absl::OkStatus());
}

}  // namespace herd::controlplane
