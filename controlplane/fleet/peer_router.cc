#include "controlplane/fleet/peer_router.h"

#include <utility>

#include "absl/strings/str_cat.h"
#include "controlplane/core/host_registry.h"
#include "controlplane/fleet/fleet_service.h"
#include "nlohmann/json.hpp"

namespace herd::controlplane {
namespace {

using json = nlohmann::json;

absl::Status FromGrpc(const grpc::Status& s) {
  return absl::Status(static_cast<absl::StatusCode>(s.error_code()), s.error_message());
}

// A peer that could not be reached (rather than one that answered with an error): the error
// then names it, since the caller asked another replica.
grpc::Status Named(const ReplicaInfo& peer, const grpc::Status& s) {
  const auto code = s.error_code();
  if (code != grpc::StatusCode::UNAVAILABLE && code != grpc::StatusCode::DEADLINE_EXCEEDED) {
    return s;
  }
  return grpc::Status(code, absl::StrCat("replica ", peer.id, " (", peer.address,
                                         "), which holds this host's stream, did not answer: ",
                                         s.error_message()));
}

// Which entry of a host wins in a merged listing: its holder's, then one from a peer that
// answered for it (the directory here may lag a move), then the record here.
enum Rank { kRecord = 0, kClaimed = 1, kHolder = 2 };

}  // namespace

// A listing merged by host id (under mu): the entry of the highest rank wins.
template <typename Entry>
struct PeerRouter::ListGather {
  absl::Mutex mu;
  std::map<std::string, std::pair<int, Entry>> by_host;
  Unreachable unreachable;
  size_t left = 0;
  std::function<void(std::map<std::string, std::pair<int, Entry>>, Unreachable)> finish;

  void Add(const std::string& host_id, int rank, Entry e) {
    auto it = by_host.find(host_id);
    if (it == by_host.end()) {
      by_host.emplace(host_id, std::make_pair(rank, std::move(e)));
    } else if (it->second.first < rank) {
      it->second = {rank, std::move(e)};
    }
  }
  // One part answered (or failed); the last runs `finish`, outside the lock.
  void PartDone() {
    decltype(finish) f;
    {
      absl::MutexLock l(&mu);
      if (--left > 0) return;
      f = std::move(finish);
    }
    if (f) f(std::move(by_host), std::move(unreachable));
  }
};

// An action's results, one per host in the target's order (under mu).
struct PeerRouter::ActionGather {
  absl::Mutex mu;
  herd::v1::FleetActionResponse resp;
  std::map<std::string, int> position;  // host id → its result
  size_t left = 0;
  std::function<void(absl::StatusOr<herd::v1::FleetActionResponse>)> done;

  // A part's answer for the hosts at `index`: their results, or its error for each.
  void Merge(const std::vector<size_t>& index,
             const absl::StatusOr<herd::v1::FleetActionResponse>& r, const std::string& why) {
    decltype(done) d;
    herd::v1::FleetActionResponse out;
    {
      absl::MutexLock l(&mu);
      if (r.ok()) {
        std::set<int> answered;
        for (const auto& result : r->results()) {
          auto it = position.find(result.host_id());
          if (it == position.end()) continue;
          *resp.mutable_results(it->second) = result;
          answered.insert(it->second);
        }
        for (size_t i : index) {
          if (answered.count(static_cast<int>(i))) continue;
          resp.mutable_results(static_cast<int>(i))
              ->set_error(absl::StrCat(why, "no result for this host"));
        }
      } else {
        for (size_t i : index) {
          resp.mutable_results(static_cast<int>(i))
              ->set_error(absl::StrCat(why, r.status().message()));
        }
      }
      if (--left > 0) return;
      d = std::move(done);
      out = std::move(resp);
    }
    if (d) d(std::move(out));
  }
};

struct PeerRouter::Watch {
  ForwardedCall call;
  herd::v1::WatchMetricsRequest req;
  std::set<std::string> hosts;  // empty: every host
  MetricsFeed::MetricsWatcher watcher;
  // Under the router's mu_: the stream open to each peer, and whether Unwatch ran.
  std::map<std::string, std::shared_ptr<grpc::ClientContext>> streams;
  bool closed = false;
};

// A log forwarded from the host's holder: each line as it comes, then its end.
class PeerRouter::LogsCall final : public grpc::ClientReadReactor<herd::v1::LogLine> {
 public:
  LogsCall(PeerRouter& router, ReplicaInfo peer, PeerLinks::Slot slot, std::string id,
           std::function<void(const herd::v1::LogChunk&)> on_lines,
           std::function<void(absl::Status)> on_end)
      : router_(router),
        peer_(std::move(peer)),
        slot_(std::move(slot)),
        id_(std::move(id)),
        on_lines_(std::move(on_lines)),
        on_end_(std::move(on_end)) {}
  void OnReadDone(bool ok) override {
    if (!ok) return;
    herd::v1::LogChunk chunk;
    *chunk.add_lines() = std::move(line_);
    on_lines_(chunk);
    StartRead(&line_);
  }
  void OnDone(const grpc::Status& s) override {
    on_end_(FromGrpc(Named(peer_, s)));
    {
      absl::MutexLock l(&router_.mu_);
      router_.logs_.erase(id_);
    }
    router_.Untrack(ctx.get());
    delete this;
  }
  void Start(herd::v1::Fleet::Stub& stub) {
    stub.async()->StreamLogs(ctx.get(), &req, this);
    StartRead(&line_);
    StartCall();
  }

  // Shared with whoever may cancel it: a cancel runs outside the router's lock (gRPC may run
  // this reactor's OnDone inside TryCancel), so the context must outlive the reactor.
  const std::shared_ptr<grpc::ClientContext> ctx = std::make_shared<grpc::ClientContext>();
  herd::v1::FleetLogsRequest req;

 private:
  PeerRouter& router_;
  const ReplicaInfo peer_;
  PeerLinks::Slot slot_;
  const std::string id_;
  std::function<void(const herd::v1::LogChunk&)> on_lines_;
  std::function<void(absl::Status)> on_end_;
  herd::v1::LogLine line_;
};

// One peer's part of a merged watch.
class PeerRouter::MetricsCall final : public grpc::ClientReadReactor<herd::v1::HostMetrics> {
 public:
  MetricsCall(PeerRouter& router, std::shared_ptr<Watch> watch, ReplicaInfo peer,
              PeerLinks::Slot slot)
      : router_(router), watch_(std::move(watch)), peer_(std::move(peer)), slot_(std::move(slot)) {}
  void OnReadDone(bool ok) override {
    if (!ok) return;
    watch_->watcher(batch_);
    StartRead(&batch_);
  }
  void OnDone(const grpc::Status& s) override {
    if (!s.ok() && s.error_code() != grpc::StatusCode::CANCELLED) {
      router_.NoteUnreachable(peer_, "WatchMetrics", s);
    }
    {
      absl::MutexLock l(&router_.mu_);
      auto it = watch_->streams.find(peer_.id);
      if (it != watch_->streams.end() && it->second == ctx) watch_->streams.erase(it);
    }
    router_.Untrack(ctx.get());
    delete this;
  }
  void Start(herd::v1::Fleet::Stub& stub) {
    stub.async()->WatchMetrics(ctx.get(), &watch_->req, this);
    StartRead(&batch_);
    StartCall();
  }

  const std::shared_ptr<grpc::ClientContext> ctx = std::make_shared<grpc::ClientContext>();

 private:
  PeerRouter& router_;
  const std::shared_ptr<Watch> watch_;
  const ReplicaInfo peer_;
  PeerLinks::Slot slot_;
  herd::v1::HostMetrics batch_;
};

PeerRouter::PeerRouter(PeerLinks& links, HostDirectory& hosts, RequestRelay& relay,
                       AuditLog& audit, Scheduler& scheduler, PeerRouterOptions options)
    : links_(links),
      hosts_(hosts),
      relay_(relay),
      audit_(audit),
      options_(options),
      log_(herd::Logger("peers")),
      limited_log_(log_),
      refresher_(scheduler, std::max(options.refresh, absl::Milliseconds(10)),
                 [this] { Refresh(); }) {
  refresher_.Start();
}

PeerRouter::~PeerRouter() { Stop(); }

void PeerRouter::Stop() {
  refresher_.Stop();
  std::vector<std::shared_ptr<grpc::ClientContext>> open;
  {
    absl::MutexLock l(&mu_);
    stopped_ = true;
    for (auto& [id, w] : watches_) w->closed = true;
    watches_.clear();
    for (const auto& [p, ctx] : open_) open.push_back(ctx);
  }
  // Outside the lock: gRPC may run a reactor's OnDone inside TryCancel.
  for (const auto& ctx : open) ctx->TryCancel();
  absl::MutexLock l(&mu_);
  mu_.Await(absl::Condition(
      +[](decltype(open_)* calls) { return calls->empty(); }, &open_));
}

bool PeerRouter::Track(const std::shared_ptr<grpc::ClientContext>& ctx) {
  absl::MutexLock l(&mu_);
  if (stopped_) return false;
  open_.emplace(ctx.get(), ctx);
  return true;
}

void PeerRouter::Untrack(grpc::ClientContext* ctx) {
  absl::MutexLock l(&mu_);
  open_.erase(ctx);
}

void PeerRouter::NoteUnreachable(const ReplicaInfo& peer, const char* what,
                                 const grpc::Status& s) {
  limited_log_.Warn("peer_call_failed",
                    absl::StrCat("replica=", peer.id, " address=", peer.address, " call=", what,
                                 " code=", static_cast<int>(s.error_code()), " error=\"",
                                 s.error_message(), "\""));
}

template <typename Req, typename Resp, typename Start>
void PeerRouter::Unary(const ReplicaInfo& peer, const ForwardedCall& call,
                       absl::Duration timeout, const Req& req, Start start,
                       std::function<void(grpc::Status, Resp)> done) {
  auto link = links_.Open(peer);
  if (!link.ok()) {
    done(ToGrpc(link.status()), Resp());
    return;
  }
  struct Call {
    std::shared_ptr<grpc::ClientContext> ctx = std::make_shared<grpc::ClientContext>();
    Req req;
    Resp resp;
    PeerLinks::Slot slot;
  };
  auto c = std::make_shared<Call>();
  c->req = req;
  c->slot = std::move(link->slot);
  links_.Prepare(*c->ctx, call, timeout);
  if (!Track(c->ctx)) {
    done(grpc::Status(grpc::StatusCode::UNAVAILABLE, "the control plane is stopping"), Resp());
    return;
  }
  // The callback owns the call; it is untracked only once `done` has run (Stop waits).
  start(*link->fleet, c->ctx.get(), &c->req, &c->resp,
        [this, c, done = std::move(done)](grpc::Status s) {
          done(s, std::move(c->resp));
          Untrack(c->ctx.get());
        });
}

template <typename Entry, typename Req, typename Resp, typename Ask, typename Take>
void PeerRouter::Scatter(const ForwardedCall& call, const Req& req,
                         std::shared_ptr<ListGather<Entry>> g, Ask ask, Take take) {
  const std::vector<ReplicaInfo> peers = links_.Peers();
  {
    absl::MutexLock l(&g->mu);
    g->left = peers.size() + 1;  // and this loop: nothing finishes before every call is made
  }
  for (const ReplicaInfo& peer : peers) {
    Unary<Req, Resp>(peer, call, links_.options().call_timeout, req, ask,
                     [this, g, peer, take](grpc::Status s, Resp resp) {
                       if (!s.ok()) NoteUnreachable(peer, "listing", s);
                       {
                         absl::MutexLock l(&g->mu);
                         if (s.ok()) {
                           take(*g, peer, resp);
                         } else {
                           g->unreachable.push_back(peer.id);
                         }
                       }
                       g->PartDone();
                     });
  }
  g->PartDone();
}

void PeerRouter::ListHosts(const ForwardedCall& call, const herd::v1::ListHostsRequest& req,
                           std::vector<herd::v1::Host> local,
                           std::function<void(std::vector<herd::v1::Host>, Unreachable)> done) {
  using herd::v1::Host;
  auto g = std::make_shared<ListGather<Host>>();
  {
    absl::MutexLock l(&g->mu);
    for (Host& h : local) {
      const std::string id = h.host_id();
      g->Add(id, links_.HeldHere(id) ? kHolder : kRecord, std::move(h));
    }
    // A peer returns only its page, so the records here stand for its other hosts in the
    // totals: a host whose holder (the directory, under that replica's lease) answered is
    // online, which the record here cannot know. An unreachable holder's stay as recorded.
    g->finish = [this, done = std::move(done)](
                    std::map<std::string, std::pair<int, Host>> by_host, Unreachable unreachable) {
      const std::set<std::string> silent(unreachable.begin(), unreachable.end());
      std::vector<Host> out;
      out.reserve(by_host.size());
      for (auto& [id, e] : by_host) {
        if (e.first == kRecord) {
          auto holder = links_.PeerHolding(id);
          if (holder && !silent.count(holder->id)) e.second.set_online(true);
        }
        out.push_back(std::move(e.second));
      }
      done(std::move(out), std::move(unreachable));
    };
  }
  // Each peer's page after the same key, of the hosts it holds: at most one page each, and
  // every host of the merged page is in its holder's (host_pages.h). The records here have
  // every host, so the totals and the page are cut here, from the merge.
  herd::v1::ListHostsRequest ask = req;
  Scatter<Host, herd::v1::ListHostsRequest, herd::v1::ListHostsResponse>(
      call, ask, g,
      [](herd::v1::Fleet::Stub& s, grpc::ClientContext* c, const herd::v1::ListHostsRequest* r,
         herd::v1::ListHostsResponse* o,
         std::function<void(grpc::Status)> f) { s.async()->ListHosts(c, r, o, std::move(f)); },
      [this](ListGather<Host>& gather, const ReplicaInfo& peer,
             herd::v1::ListHostsResponse& resp) {
        for (Host& h : *resp.mutable_hosts()) {
          auto holder = links_.PeerHolding(h.host_id());
          const int rank = holder && holder->id == peer.id ? kHolder : kClaimed;
          const std::string id = h.host_id();
          gather.Add(id, rank, std::move(h));
        }
      });
}

void PeerRouter::ListModules(
    const ForwardedCall& call, const herd::v1::ListModulesRequest& req,
    std::vector<herd::v1::ModuleInstance> local,
    std::function<void(std::vector<herd::v1::ModuleInstance>, Unreachable)> done) {
  using Instances = std::vector<herd::v1::ModuleInstance>;
  auto g = std::make_shared<ListGather<Instances>>();
  {
    absl::MutexLock l(&g->mu);
    std::map<std::string, Instances> mine;
    for (auto& m : local) mine[m.host_id()].push_back(std::move(m));
    for (auto& [id, ms] : mine) g->Add(id, links_.HeldHere(id) ? kHolder : kRecord, std::move(ms));
    g->finish = [done = std::move(done)](std::map<std::string, std::pair<int, Instances>> by_host,
                                         Unreachable unreachable) {
      Instances out;
      for (auto& [id, e] : by_host) {
        for (auto& m : e.second) out.push_back(std::move(m));
      }
      done(std::move(out), std::move(unreachable));
    };
  }
  Scatter<Instances, herd::v1::ListModulesRequest, herd::v1::ListModulesResponse>(
      call, req, g,
      [](herd::v1::Fleet::Stub& s, grpc::ClientContext* c, const herd::v1::ListModulesRequest* r,
         herd::v1::ListModulesResponse* o,
         std::function<void(grpc::Status)> f) { s.async()->ListModules(c, r, o, std::move(f)); },
      [this](ListGather<Instances>& gather, const ReplicaInfo& peer,
             herd::v1::ListModulesResponse& resp) {
        std::map<std::string, Instances> theirs;
        for (auto& m : *resp.mutable_modules()) theirs[m.host_id()].push_back(std::move(m));
        for (auto& [id, ms] : theirs) {
          auto holder = links_.PeerHolding(id);
          gather.Add(id, holder && holder->id == peer.id ? kHolder : kClaimed, std::move(ms));
        }
      });
}

void PeerRouter::GetHost(const ReplicaInfo& holder, const ForwardedCall& call,
                         const herd::v1::GetHostRequest& req,
                         std::function<void(grpc::Status, herd::v1::HostDetail)> done) {
  Unary<herd::v1::GetHostRequest, herd::v1::HostDetail>(
      holder, call, links_.options().call_timeout, req,
      [](herd::v1::Fleet::Stub& s, grpc::ClientContext* c, const herd::v1::GetHostRequest* r,
         herd::v1::HostDetail* o,
         std::function<void(grpc::Status)> f) { s.async()->GetHost(c, r, o, std::move(f)); },
      [holder, done = std::move(done)](grpc::Status s, herd::v1::HostDetail d) {
        done(Named(holder, s), std::move(d));
      });
}

void PeerRouter::QuerySeries(const ReplicaInfo& holder, const ForwardedCall& call,
                             const herd::v1::QuerySeriesRequest& req,
                             std::function<void(grpc::Status, herd::v1::Series)> done) {
  Unary<herd::v1::QuerySeriesRequest, herd::v1::Series>(
      holder, call, links_.options().call_timeout, req,
      [](herd::v1::Fleet::Stub& s, grpc::ClientContext* c, const herd::v1::QuerySeriesRequest* r,
         herd::v1::Series* o,
         std::function<void(grpc::Status)> f) { s.async()->QuerySeries(c, r, o, std::move(f)); },
      [holder, done = std::move(done)](grpc::Status s, herd::v1::Series series) {
        done(Named(holder, s), std::move(series));
      });
}

void PeerRouter::TriggerAction(
    const ForwardedCall& call, const herd::v1::FleetActionRequest& req, const Actor& actor,
    std::function<void(absl::StatusOr<herd::v1::FleetActionResponse>)> done) {
  // A request the relay refuses, or a target it cannot resolve, it reports as one replica
  // would; so does a target whose hosts no peer holds.
  absl::StatusOr<std::vector<std::string>> ids = absl::InvalidArgumentError("");
  if (!req.module().empty() && !req.action().empty() && CheckChangeTarget(req.target()).ok()) {
    ids = hosts_.ResolveTarget(req.target());
  }
  std::vector<size_t> here;
  std::map<std::string, std::pair<ReplicaInfo, std::vector<size_t>>> held;  // by peer id
  for (size_t i = 0; ids.ok() && i < ids->size(); ++i) {
    if (auto peer = links_.PeerHolding((*ids)[i])) {
      auto& group = held[peer->id];
      group.first = *peer;
      group.second.push_back(i);
    } else {
      here.push_back(i);  // this replica's, or held by none (the relay says "not connected")
    }
  }
  if (held.empty()) {
    relay_.TriggerAction(req, actor, std::move(done));
    return;
  }
  audit_.Audit(actor.name, "action.trigger",
               json{{"module", req.module()}, {"action", req.action()}, {"hosts", *ids}}.dump());
  auto g = std::make_shared<ActionGather>();
  {
    absl::MutexLock l(&g->mu);
    for (size_t i = 0; i < ids->size(); ++i) {
      g->resp.add_results()->set_host_id((*ids)[i]);
      g->position.emplace((*ids)[i], static_cast<int>(i));
    }
    g->left = held.size() + (here.empty() ? 0 : 1);
    g->done = std::move(done);
  }
  if (!here.empty()) {
    herd::v1::FleetActionRequest part = req;
    auto* target = part.mutable_target()->mutable_hosts();
    for (size_t i : here) target->add_ids((*ids)[i]);
    Actor audited = actor;
    audited.audited = true;  // the entry above covers every host
    relay_.TriggerAction(part, audited,
                         [g, here](absl::StatusOr<herd::v1::FleetActionResponse> r) {
                           g->Merge(here, r, "");
                         });
  }
  for (auto& [id, group] : held) {
    herd::v1::FleetActionRequest part = req;
    auto* target = part.mutable_target()->mutable_hosts();
    for (size_t i : group.second) target->add_ids((*ids)[i]);
    ForwardAction(group.first, call, part, std::move(group.second), g);
  }
}

void PeerRouter::ForwardAction(const ReplicaInfo& peer, const ForwardedCall& call,
                               const herd::v1::FleetActionRequest& req,
                               std::vector<size_t> index, std::shared_ptr<ActionGather> g) {
  const absl::Duration timeout =
      absl::Milliseconds(req.timeout_ms() > 0 ? req.timeout_ms() : 30000) +
      options_.action_grace;
  Unary<herd::v1::FleetActionRequest, herd::v1::FleetActionResponse>(
      peer, call, timeout, req,
      [](herd::v1::Fleet::Stub& s, grpc::ClientContext* c, const herd::v1::FleetActionRequest* r,
         herd::v1::FleetActionResponse* o,
         std::function<void(grpc::Status)> f) { s.async()->TriggerAction(c, r, o, std::move(f)); },
      [this, peer, index = std::move(index), g](grpc::Status s,
                                                herd::v1::FleetActionResponse resp) {
        if (!s.ok()) NoteUnreachable(peer, "TriggerAction", s);
        g->Merge(index,
                 s.ok() ? absl::StatusOr<herd::v1::FleetActionResponse>(std::move(resp))
                        : absl::StatusOr<herd::v1::FleetActionResponse>(FromGrpc(s)),
                 absl::StrCat("replica ", peer.id, " (which holds this host's stream): "));
      });
}

std::string PeerRouter::StreamLogs(const ReplicaInfo& holder, const ForwardedCall& call,
                                   const herd::v1::FleetLogsRequest& req,
                                   std::function<void(const herd::v1::LogChunk&)> on_lines,
                                   std::function<void(absl::Status)> on_end) {
  std::string id;
  {
    absl::MutexLock l(&mu_);
    id = absl::StrCat("peer-logs-", next_id_++);
  }
  auto link = links_.Open(holder);
  if (!link.ok()) {
    on_end(link.status());
    return id;
  }
  auto* c = new LogsCall(*this, holder, std::move(link->slot), id, std::move(on_lines), on_end);
  c->req = req;
  links_.Prepare(*c->ctx, call, absl::InfiniteDuration());
  {
    absl::MutexLock l(&mu_);
    if (stopped_) {
      delete c;
      c = nullptr;
    } else {
      open_.emplace(c->ctx.get(), c->ctx);
      logs_[id] = c->ctx;
    }
  }
  if (!c) {
    on_end(absl::UnavailableError("the control plane is stopping"));
    return id;
  }
  c->Start(*link->fleet);
  return id;
}

void PeerRouter::CancelLogs(const std::string& id) {
  std::shared_ptr<grpc::ClientContext> ctx;
  {
    absl::MutexLock l(&mu_);
    auto it = logs_.find(id);
    if (it == logs_.end()) return;
    ctx = it->second;
  }
  ctx->TryCancel();  // outside the lock: OnDone may run inside it
}

uint64_t PeerRouter::WatchPeers(const ForwardedCall& call,
                                const herd::v1::WatchMetricsRequest& req,
                                std::set<std::string> hosts,
                                MetricsFeed::MetricsWatcher watcher) {
  auto w = std::make_shared<Watch>();
  w->call = call;
  w->req = req;
  w->hosts = std::move(hosts);
  w->watcher = std::move(watcher);
  uint64_t id;
  {
    absl::MutexLock l(&mu_);
    id = next_id_++;
    watches_[id] = w;
  }
  OpenWatchStreams(w);
  return id;
}

void PeerRouter::Unwatch(uint64_t id) {
  std::vector<std::shared_ptr<grpc::ClientContext>> streams;
  {
    absl::MutexLock l(&mu_);
    auto it = watches_.find(id);
    if (it == watches_.end()) return;
    it->second->closed = true;
    for (const auto& [peer, ctx] : it->second->streams) streams.push_back(ctx);
    watches_.erase(it);
  }
  for (const auto& ctx : streams) ctx->TryCancel();  // outside the lock: see CancelLogs
}

size_t PeerRouter::watch_streams() const {
  absl::MutexLock l(&mu_);
  size_t n = 0;
  for (const auto& [id, w] : watches_) n += w->streams.size();
  return n;
}

void PeerRouter::OpenWatchStreams(const std::shared_ptr<Watch>& w) {
  const bool every_host = w->req.target().what_case() != herd::v1::Target::kHosts;
  std::set<std::string> holders;  // of the watched hosts, when the watch names them
  if (!every_host) {
    for (const auto& h : w->hosts) {
      if (auto p = links_.PeerHolding(h)) holders.insert(p->id);
    }
  }
  for (const ReplicaInfo& peer : links_.Peers()) {
    if (!every_host && !holders.count(peer.id)) continue;
    {
      absl::MutexLock l(&mu_);
      if (w->closed || stopped_ || w->streams.count(peer.id)) continue;
    }
    auto link = links_.Open(peer);
    if (!link.ok()) continue;  // counted and logged; the next round tries again
    auto* c = new MetricsCall(*this, w, peer, std::move(link->slot));
    links_.Prepare(*c->ctx, w->call, absl::InfiniteDuration());
    {
      absl::MutexLock l(&mu_);
      if (w->closed || stopped_ || w->streams.count(peer.id)) {
        delete c;
        continue;
      }
      w->streams[peer.id] = c->ctx;
      open_.emplace(c->ctx.get(), c->ctx);
    }
    c->Start(*link->fleet);
  }
}

void PeerRouter::Refresh() {
  links_.Peers();  // drops the channels of peers that left
  std::vector<std::shared_ptr<Watch>> watches;
  {
    absl::MutexLock l(&mu_);
    for (const auto& [id, w] : watches_) watches.push_back(w);
  }
  for (const auto& w : watches) OpenWatchStreams(w);
}

}  // namespace herd::controlplane
