#include "controlplane/fleet/fleet_service.h"

#include <algorithm>
#include <deque>
#include <set>
#include <tuple>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"
#include "controlplane/core/secrets.h"
#include "controlplane/gateway/gateway_service.h"

namespace herd::controlplane {
namespace {

// A unary reactor that finishes with `s`.
grpc::ServerUnaryReactor* Done(grpc::CallbackServerContext* ctx, const absl::Status& s) {
  auto* r = ctx->DefaultReactor();
  r->Finish(ToGrpc(s));
  return r;
}

// A server-streaming reactor with a bounded queue (StreamQueue): writes are issued one at a
// time; a reader that falls behind loses the oldest messages (counted) rather than growing
// memory, and one that stops reading (the write in progress waits past the stall timeout
// while more arrive, or at a poll) has its stream ended with RESOURCE_EXHAUSTED.
template <typename T>
class QueuedWriter : public grpc::ServerWriteReactor<T> {
 public:
  // The stream's headers go out at once (gRPC holds them until the reactor is bound): a
  // client then knows the stream is open, before its first message.
  QueuedWriter(grpc::CallbackServerContext* ctx, StreamQueueLimits limits, const Clock& clock,
               StreamTokens& tokens, const char* what)
      : ctx_(ctx),
        tokens_(tokens),
        what_(what),
        queue_(limits, clock),
        stall_timeout_(limits.stall_timeout) {
    this->StartSendInitialMetadata();
  }

  // False once ending or finished.
  bool Push(const T& msg) {
    absl::MutexLock l(&mu_);
    if (finished_ || ending_) return false;
    const auto pushed = queue_.Push(msg);
    if (const uint64_t dropped = queue_.TakeDropped()) tokens_.CountDropped(dropped);
    switch (pushed) {
      case StreamQueue<T>::Pushed::kWrite:
        this->StartWrite(queue_.front());
        break;
      case StreamQueue<T>::Pushed::kQueued:
        break;
      case StreamQueue<T>::Pushed::kStalled:
        EndStalledLocked();
        return false;
    }
    return true;
  }
  // Ends the stream if its reader has stalled (StreamTokens' poll). One ended so that is
  // still open at the next poll (its status waits behind data its reader does not read) is
  // cancelled: until then a reader that comes back reads why it ended.
  void EndIfStalled() {
    absl::MutexLock l(&mu_);
    if (stalled_) {
      ctx_->TryCancel();
    } else if (!finished_ && queue_.Stalled()) {
      EndStalledLocked();
    }
  }
  // Finishes once everything queued is written; with `drop_queued`, once the write in
  // progress is (a stream whose token was revoked gets nothing more).
  void End(const grpc::Status& s, bool drop_queued = false) {
    absl::MutexLock l(&mu_);
    if (finished_ || ending_) return;
    ending_ = true;
    end_status_ = s;
    if (drop_queued) queue_.DropWaiting();
    if (!queue_.writing()) FinishLocked();
  }
  void OnWriteDone(bool ok) override {
    absl::MutexLock l(&mu_);
    if (!ok) {
      queue_.WriteFailed();
      if (!finished_) {
        finished_ = true;
        this->Finish(grpc::Status::CANCELLED);
      }
      return;
    }
    if (queue_.WriteDone()) {
      if (!finished_) {
        this->StartWrite(queue_.front());
        return;
      }
      queue_.WriteFailed();  // finished while stalled: nothing more goes out
      return;
    }
    if (ending_) FinishLocked();
  }

 protected:
  void FinishLocked() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    if (finished_) return;
    finished_ = true;
    this->Finish(end_status_);
  }
  bool finished() {
    absl::MutexLock l(&mu_);
    return finished_;
  }

 private:
  // Finished now, with what waits dropped: the write in progress may never complete (its
  // reader is not reading), so the status is not held behind it; the reader that comes back
  // reads what was in flight, then the status.
  void EndStalledLocked() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    const size_t waiting = queue_.size(), bytes = queue_.bytes();
    const absl::Duration waited = queue_.WriteWait();
    queue_.DropWaiting();
    tokens_.CountStalled();
    Logger("fleet")->warn(
        "event=stream_ended_stalled stream={} waited_s={} queued={} queued_bytes={} "
        "hint=\"the client stopped reading its stream; it was ended\"",
        what_, absl::ToInt64Seconds(waited), waiting, bytes);
    ending_ = true;
    finished_ = true;
    stalled_ = true;
    this->Finish(grpc::Status(
        grpc::StatusCode::RESOURCE_EXHAUSTED,
        absl::StrCat("the reader fell behind: nothing was read from this ", what_, " stream for ",
                     absl::FormatDuration(waited), " (the limit is ",
                     absl::FormatDuration(stall_timeout_), ") while ", waiting,
                     " messages waited; read the stream as it comes, and open it again")));
  }

  grpc::CallbackServerContext* const ctx_;
  StreamTokens& tokens_;
  const char* const what_;
  absl::Mutex mu_;
  bool stalled_ ABSL_GUARDED_BY(mu_) = false;  // ended by EndStalledLocked
  StreamQueue<T> queue_ ABSL_GUARDED_BY(mu_);
  const absl::Duration stall_timeout_;
  bool ending_ ABSL_GUARDED_BY(mu_) = false;
  bool finished_ ABSL_GUARDED_BY(mu_) = false;
  grpc::Status end_status_ ABSL_GUARDED_BY(mu_);
};

// Callbacks from the hub or the rollout engine run outside their locks, possibly while the
// stream ends: they reach the writer through this guard, which OnDone clears.
template <typename W>
struct WriterGuard {
  absl::Mutex mu;
  W* self ABSL_GUARDED_BY(mu) = nullptr;
};

// Ends the writer behind `guard`, if it is still there (StreamTokens' End).
template <typename G>
StreamTokens::End EndThrough(std::shared_ptr<G> guard) {
  return [guard = std::move(guard)](const grpc::Status& s) {
    absl::MutexLock l(&guard->mu);
    if (guard->self) guard->self->End(s, /*drop_queued=*/true);
  };
}

// Ends the writer behind `guard` if its reader stalled (StreamTokens' Poll).
template <typename G>
StreamTokens::Poll PollThrough(std::shared_ptr<G> guard) {
  return [guard = std::move(guard)] {
    absl::MutexLock l(&guard->mu);
    if (guard->self) guard->self->EndIfStalled();
  };
}

// What a stream needs to register itself.
struct StreamContext {
  grpc::CallbackServerContext* ctx;
  StreamTokens& tokens;
  StreamQueueLimits limits;
  const Clock& clock;
  std::string token_hash;  // empty: the stream was refused at its opening
  std::string who;         // the token's name
};

class MetricsWriter final : public QueuedWriter<herd::v1::HostMetrics> {
 public:
  // Watches once open (`refused` ok); otherwise ends at once with it.
  MetricsWriter(MetricsFeed& feed, std::set<std::string> hosts, StreamContext c,
                absl::Status refused)
      : QueuedWriter(c.ctx, c.limits, c.clock, c.tokens, "WatchMetrics"),
        feed_(feed),
        tokens_(c.tokens),
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
    id_ = feed_.WatchMetrics(std::move(hosts), [g = guard_](const herd::v1::HostMetrics& m) {
      absl::MutexLock l(&g->mu);
      if (g->self) g->self->Push(m);
    });
  }
  void OnCancel() override {
    feed_.Unwatch(id_);
    End(grpc::Status::CANCELLED);
  }
  void OnDone() override {
    tokens_.Remove(token_id_);
    feed_.Unwatch(id_);
    {
      absl::MutexLock l(&guard_->mu);
      guard_->self = nullptr;
    }
    delete this;
  }

 private:
  MetricsFeed& feed_;
  StreamTokens& tokens_;
  std::shared_ptr<WriterGuard<MetricsWriter>> guard_;
  uint64_t id_ = 0;
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

class LogsWriter final : public QueuedWriter<herd::v1::LogLine> {
 public:
  LogsWriter(RequestRelay& relay, const herd::v1::FleetLogsRequest& req, StreamContext c)
      : QueuedWriter(c.ctx, c.limits, c.clock, c.tokens, "StreamLogs"),
        relay_(relay),
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
    request_id_ = relay_.StreamLogs(
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
    if (!request_id_.empty()) relay_.CancelLogs(request_id_);
    End(grpc::Status::CANCELLED);
  }
  void OnDone() override {
    tokens_.Remove(token_id_);
    {
      absl::MutexLock l(&state_->mu);
      state_->self = nullptr;
    }
    if (!request_id_.empty()) relay_.CancelLogs(request_id_);
    delete this;
  }

 private:
  struct State {
    absl::Mutex mu;
    LogsWriter* self ABSL_GUARDED_BY(mu) = nullptr;
  };
  RequestRelay& relay_;
  StreamTokens& tokens_;
  uint64_t token_id_ = 0;
  std::shared_ptr<State> state_;
  std::string request_id_;
};

// `query` is lower case; empty matches every host.
bool HostMatches(const herd::v1::Host& h, const std::string& query) {
  if (query.empty()) return true;
  auto has = [&](const std::string& text) {
    return absl::StrContains(absl::AsciiStrToLower(text), query);
  };
  if (has(h.host_id()) || has(h.hostname())) return true;
  for (const auto& [k, v] : h.labels()) {
    if (has(absl::StrCat(k, "=", v))) return true;
  }
  return false;
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
  return AuthenticateToken(BearerToken(ctx), needs_operator);
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
  size_t offset = 0;
  if (!req->page_token().empty() && !absl::SimpleAtoi(req->page_token(), &offset)) {
    return Done(ctx, absl::InvalidArgumentError(
                         "page_token is not one this API returned: pass next_page_token as is"));
  }
  std::vector<herd::v1::Host*> matching;
  const std::string query = absl::AsciiStrToLower(req->query());
  for (auto& h : *hosts) {
    if (HostMatches(h, query)) matching.push_back(&h);
  }
  std::sort(matching.begin(), matching.end(), [](const herd::v1::Host* a, const herd::v1::Host* b) {
    return std::tie(a->hostname(), a->host_id()) < std::tie(b->hostname(), b->host_id());
  });
  resp->set_total_size(static_cast<uint32_t>(matching.size()));
  resp->set_online_size(static_cast<uint32_t>(
      std::count_if(matching.begin(), matching.end(), [](auto* h) { return h->online(); })));
  const size_t end = req->page_size() == 0
                         ? matching.size()
                         : std::min(matching.size(), offset + req->page_size());
  for (size_t i = offset; i < end; ++i) *resp->add_hosts() = std::move(*matching[i]);
  if (end < matching.size()) resp->set_next_page_token(absl::StrCat(end));
  return Done(ctx, absl::OkStatus());
}

grpc::ServerUnaryReactor* FleetService::GetHost(grpc::CallbackServerContext* ctx,
                                                const herd::v1::GetHostRequest* req,
                                                herd::v1::HostDetail* resp) {
  HERD_AUTH(false);
  auto d = fleet_.hosts.GetHost(req->host_id());
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
  for (auto& x : *m) *resp->add_modules() = std::move(x);
  return Done(ctx, absl::OkStatus());
}

grpc::ServerUnaryReactor* FleetService::QuerySeries(grpc::CallbackServerContext* ctx,
                                                    const herd::v1::QuerySeriesRequest* req,
                                                    herd::v1::Series* resp) {
  HERD_AUTH(false);
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
  // Watched only once open: a refused stream ends at once.
  return new MetricsWriter(
      fleet_.metrics, std::move(hosts),
      StreamContext{ctx, stream_tokens_, streams_.queue, clock_,
                    err.ok() ? actor->token_hash : std::string(), err.ok() ? actor->name : ""},
      err);
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
  fleet_.relay.TriggerAction(*req, actor,
                             [reactor, resp](absl::StatusOr<herd::v1::FleetActionResponse> r) {
                               if (r.ok()) *resp = std::move(*r);
                               reactor->Finish(ToGrpc(r.status()));
                             });
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
  return new LogsWriter(fleet_.relay, *req,
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
