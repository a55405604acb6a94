#include "controlplane/core/host_request_relay.h"

#include <algorithm>
#include <utility>

#include "absl/strings/str_cat.h"
#include "controlplane/core/secrets.h"
#include "nlohmann/json.hpp"

namespace herd::controlplane {

using herd::v1::AgentMessage;
using herd::v1::ControlMessage;
using json = nlohmann::json;

namespace {
// Request ids are unique, not secret: an answer counts only from the host its request went to.
// A prefix drawn once per relay keeps an answer to an earlier run's request from matching one
// of this run's. (A random draw per request was a quarter of a fleet-wide rollout's dispatch.)
std::string NewRequestPrefix() {
  auto s = NewSecret("");
  return s.ok() ? s->substr(0, 8) : absl::StrCat(absl::ToUnixNanos(absl::Now()));
}
}  // namespace

// What a fan-out action gathers: one result per host, in the target's order.
struct HostRequestRelay::ActionGather {
  absl::Mutex mu;
  herd::v1::FleetActionResponse resp ABSL_GUARDED_BY(mu);
  size_t left ABSL_GUARDED_BY(mu) = 0;
  std::function<void(absl::StatusOr<herd::v1::FleetActionResponse>)> done ABSL_GUARDED_BY(mu);
};

HostRequestRelay::HostRequestRelay(HostRegistry& registry, SendPool& sends, AuditLog& audit,
                                   const Clock& clock, const HubOptions& options)
    : registry_(registry),
      sends_(sends),
      audit_(audit),
      clock_(clock),
      options_(options),
      log_(herd::Logger("hub")),
      request_prefix_(NewRequestPrefix()) {}

std::string HostRequestRelay::NewRequestId() {
  const uint64_t n = next_request_.fetch_add(1, std::memory_order_relaxed);
  return absl::StrCat("r", request_prefix_, "-", n);
}

size_t HostRequestRelay::pending() const {
  absl::MutexLock l(&pending_mu_);
  return pending_.size();
}

void HostRequestRelay::AddPending(std::vector<Request>& requests,
                                  const std::vector<HostRoute>& routes,
                                  std::vector<std::function<void()>>& failures) {
  absl::MutexLock l(&pending_mu_);
  const absl::Time now = clock_.Monotonic();
  for (size_t i = 0; i < requests.size(); ++i) {
    Request& r = requests[i];
    if (!routes[i].known) {
      pending_.erase(r.request_id);
      failures.push_back([done = std::move(r.done), id = r.host_id] {
        done(absl::NotFoundError(absl::StrCat("no host ", id, ": see `agentctl hosts`")));
      });
      continue;
    }
    Pending& p = pending_[r.request_id];
    p.kind = r.kind;
    p.host_id = r.host_id;
    p.deadline = now + r.timeout + options_.request_grace;
    p.done = std::move(r.done);
  }
}

void HostRequestRelay::RelayAll(std::vector<Request> requests) {
  // Which hosts are known (their sessions are read after the requests are pending).
  std::vector<HostRoute> routes(requests.size());
  for (size_t i = 0; i < requests.size(); ++i) {
    routes[i].known = registry_.Find(requests[i].host_id) != nullptr;
  }
  // Run once every lock is released: what could not be sent.
  std::vector<std::function<void()>> failures;
  // Pending first, then the session: a disconnect from here on finds the request and fails
  // it; one before finds no session below. (A log request is registered already, with its
  // line callback.)
  AddPending(requests, routes, failures);
  std::vector<SendPool::Outgoing> out;
  out.reserve(requests.size());
  // Request id (in `requests`), stream.
  std::vector<std::pair<const std::string*, const HostSession*>> sent_on;
  sent_on.reserve(requests.size());
  for (size_t i = 0; i < requests.size(); ++i) {
    if (!routes[i].known) continue;
    Request& r = requests[i];
    if (stopped_) {  // Stop has failed the pending requests already: these too
      failures.push_back([this, id = r.request_id] {
        Complete(id, absl::UnavailableError("the control plane is stopping"));
      });
      continue;
    }
    std::shared_ptr<HostSession> session = registry_.Route(r.host_id).session;
    if (!session) {
      failures.push_back([this, id = r.request_id, host = r.host_id] {
        Complete(id, absl::UnavailableError(absl::StrCat("host ", host, " is not connected")));
      });
      continue;
    }
    sent_on.emplace_back(&r.request_id, session.get());
    out.push_back({r.host_id, std::move(session), std::move(r.msg),
                   [this, host_id = r.host_id, request_id = r.request_id] {
                     Complete(request_id, absl::UnavailableError(absl::StrCat(
                                              "host ", host_id,
                                              " cannot take messages now (stream "
                                              "closed or backed up)")));
                   }});
  }
  // Before the hand-off: once a stream has ended (its OnStreamEnded has run), sends to it
  // fail and complete their request; until then, its OnStreamEnded finds them by stream.
  if (!sent_on.empty()) {
    absl::MutexLock l(&pending_mu_);
    for (const auto& [id, session] : sent_on) {
      auto it = pending_.find(*id);
      if (it != pending_.end()) it->second.session = session;
    }
  }
  sends_.PostAll(std::move(out));
  for (auto& f : failures) f();
}

void HostRequestRelay::RelayWhenFull(std::vector<Request>& requests) {
  if (requests.size() < kHandOff) return;
  RelayAll(std::move(requests));
  requests.clear();
  requests.reserve(kHandOff);
}

void HostRequestRelay::Complete(const std::string& request_id, absl::StatusOr<AgentMessage> r) {
  Done done;
  {
    absl::MutexLock l(&pending_mu_);
    auto it = pending_.find(request_id);
    if (it == pending_.end()) return;
    done = std::move(it->second.done);
    pending_.erase(it);
  }
  if (done) done(std::move(r));
}

void HostRequestRelay::OnAnswer(const std::string& host_id, const AgentMessage& msg) {
  const std::string& rid = msg.has_action_result()    ? msg.action_result().request_id()
                           : msg.has_restart_result() ? msg.restart_result().request_id()
                                                      : msg.log_chunk().request_id();
  std::function<void(const herd::v1::LogChunk&)> log_lines;
  {
    absl::MutexLock l(&pending_mu_);
    auto p = pending_.find(rid);
    // Only the host a request went to may answer it.
    if (p == pending_.end() || p->second.host_id != host_id) return;
    if (msg.has_log_chunk() && !msg.log_chunk().end() && p->second.on_lines) {
      log_lines = p->second.on_lines;  // called below, outside the lock
    }
  }
  if (log_lines) {
    log_lines(msg.log_chunk());
  } else {
    Complete(rid, msg);
  }
}

void HostRequestRelay::OnStreamEnded(const std::string& host_id, const HostSession* session,
                                     bool current) {
  // The requests that went out on this stream (also when the host has replaced it: a newer
  // stream's stay pending). Those not handed over yet fail as their send does: the session
  // is detached before this runs.
  std::vector<std::string> failed;
  {
    absl::MutexLock l(&pending_mu_);
    for (const auto& [id, p] : pending_) {
      if (p.host_id == host_id && p.session == session) failed.push_back(id);
    }
  }
  const std::string why =
      current ? absl::StrCat("host ", host_id, " disconnected before answering")
              : absl::StrCat("host ", host_id,
                             " connected again on another stream before answering (the agent "
                             "drops answers to what its previous stream asked)");
  for (const auto& id : failed) Complete(id, absl::UnavailableError(why));
}

void HostRequestRelay::ExpireOverdue() {
  std::vector<std::string> expired;
  {
    absl::MutexLock l(&pending_mu_);
    const absl::Time now = clock_.Monotonic();
    for (const auto& [id, p] : pending_) {
      if (p.deadline < now) expired.push_back(id);
    }
  }
  for (const auto& id : expired) {
    Complete(id, absl::DeadlineExceededError("the host did not answer in time"));
  }
}

void HostRequestRelay::Stop() {
  stopped_ = true;
  std::map<std::string, Pending> pending;
  {
    absl::MutexLock l(&pending_mu_);
    pending.swap(pending_);
  }
  for (auto& [id, p] : pending) {
    if (p.done) p.done(absl::UnavailableError("the control plane is stopping"));
  }
}

// ---------------------------------------------------------------------------------------
// Actions, restarts, logs

HostRequestRelay::Done HostRequestRelay::GatherAction(std::shared_ptr<ActionGather> g, size_t i,
                                                      const AgentLimits& limits) {
  // A host's answer is held until every host has answered: bounded like a batch.
  const size_t max_reply = limits.max_batch_bytes;
  const size_t max_text = limits.max_text_bytes;
  return [g = std::move(g), i, max_reply, max_text](absl::StatusOr<AgentMessage> r) {
    std::function<void(absl::StatusOr<herd::v1::FleetActionResponse>)> finish;
    herd::v1::FleetActionResponse resp;
    {
      absl::MutexLock l(&g->mu);
      auto* out = g->resp.mutable_results(static_cast<int>(i));
      if (!r.ok()) {
        out->set_error(std::string(r.status().message()));
      } else {
        const auto& ar = r->action_result();
        out->set_ok(ar.ok());
        out->set_error(ar.error().substr(0, max_text));
        if (ar.reply_json().size() <= max_reply) {
          out->set_reply_json(ar.reply_json());
        } else {
          out->set_ok(false);
          out->set_error(absl::StrCat("the reply took ", ar.reply_json().size(),
                                      " bytes, more than the ", max_reply,
                                      " kept per host (--max-batch-bytes)"));
        }
        size_t stream_bytes = 0;
        for (const auto& line : ar.stream()) {
          stream_bytes += line.size();
          if (stream_bytes > max_reply) break;  // the first lines are kept
          out->add_stream(line);
        }
        out->set_elapsed_ms(ar.elapsed_ms());
      }
      if (--g->left == 0) {
        finish = std::move(g->done);
        resp = g->resp;
      }
    }
    if (finish) finish(std::move(resp));
  };
}

void HostRequestRelay::TriggerAction(
    const herd::v1::FleetActionRequest& req, const Actor& actor,
    std::function<void(absl::StatusOr<herd::v1::FleetActionResponse>)> done) {
  if (req.module().empty() || req.action().empty()) {
    done(absl::InvalidArgumentError("give a module and an action"));
    return;
  }
  if (auto s = CheckChangeTarget(req.target()); !s.ok()) {
    done(s);
    return;
  }
  auto ids = registry_.ResolveTarget(req.target());
  if (!ids.ok()) {
    done(ids.status());
    return;
  }
  if (ids->empty()) {
    done(absl::NotFoundError("the target selects no host: see `agentctl hosts`"));
    return;
  }
  if (!actor.audited) {
    audit_.Audit(actor.name, "action.trigger",
                 json{{"module", req.module()}, {"action", req.action()}, {"hosts", *ids}}.dump());
  }
  const uint32_t timeout_ms = req.timeout_ms() > 0 ? req.timeout_ms() : 30000;
  auto g = std::make_shared<ActionGather>();
  {
    absl::MutexLock l(&g->mu);
    g->left = ids->size();
    g->done = std::move(done);
    // Results in host order, whatever order they arrive in.
    for (const auto& id : *ids) {
      auto* r = g->resp.add_results();
      r->set_host_id(id);
      if (Entry e = registry_.Find(id)) {
        absl::MutexLock hl(&e->mu);
        r->set_hostname(e->s.record.hostname);
      }
    }
  }
  std::vector<Request> requests;
  requests.reserve(std::min(ids->size(), kHandOff));
  for (size_t i = 0; i < ids->size(); ++i) {
    ControlMessage m;
    std::string rid = NewRequestId();
    auto* a = m.mutable_action();
    a->set_request_id(rid);
    a->set_module(req.module());
    a->set_action(req.action());
    a->mutable_params()->insert(req.params().begin(), req.params().end());
    a->set_timeout_ms(timeout_ms);
    requests.push_back({(*ids)[i], std::move(m), Kind::kAction, std::move(rid),
                        absl::Milliseconds(timeout_ms), GatherAction(g, i, options_.limits)});
    RelayWhenFull(requests);
  }
  RelayAll(std::move(requests));
}

void HostRequestRelay::RestartOnHosts(
    const std::vector<std::string>& host_ids, const std::vector<std::string>& units,
    uint32_t wait_healthy_ms, const std::string& rollout_id,
    std::function<void(size_t, absl::StatusOr<herd::v1::RestartResult>)> done) {
  auto shared_done = std::make_shared<decltype(done)>(std::move(done));
  std::vector<Request> requests;
  requests.reserve(std::min(host_ids.size(), kHandOff));
  for (size_t i = 0; i < host_ids.size(); ++i) {
    ControlMessage m;
    std::string rid = NewRequestId();
    auto* r = m.mutable_restart();
    r->set_request_id(rid);
    for (const auto& u : units) r->add_units(u);
    r->set_wait_healthy_ms(wait_healthy_ms);
    r->set_rollout_id(rollout_id);
    // A restart takes the unit's stop time plus the wait; allow a minute on top.
    requests.push_back({host_ids[i], std::move(m), Kind::kRestart, std::move(rid),
                        absl::Milliseconds(wait_healthy_ms) + absl::Seconds(60),
                        [shared_done, i](absl::StatusOr<AgentMessage> r) {
                          if (!r.ok()) {
                            (*shared_done)(i, r.status());
                          } else {
                            (*shared_done)(i, std::move(*r->mutable_restart_result()));
                          }
                        }});
    RelayWhenFull(requests);
  }
  RelayAll(std::move(requests));
}

std::string HostRequestRelay::StreamLogs(const herd::v1::FleetLogsRequest& req,
                                         std::function<void(const herd::v1::LogChunk&)> on_lines,
                                         std::function<void(absl::Status)> on_end) {
  std::string rid = NewRequestId();
  herd::v1::Target t;
  t.mutable_hosts()->add_ids(req.host_id());
  auto ids = registry_.ResolveTarget(t);
  if (!ids.ok()) {
    on_end(ids.status());
    return rid;
  }
  ControlMessage m;
  auto* l = m.mutable_logs();
  l->set_request_id(rid);
  l->set_unit(req.unit());
  l->set_lines(req.lines());
  l->set_follow(req.follow());
  {
    // Registered before the request goes out, so no chunk can come back before it is set.
    absl::MutexLock lock(&pending_mu_);
    Pending p;
    p.kind = Kind::kLogs;
    p.host_id = ids->front();
    p.on_lines = on_lines;
    pending_[rid] = std::move(p);
  }
  std::vector<Request> one;
  one.push_back({ids->front(), std::move(m), Kind::kLogs, rid,
                 req.follow() ? absl::InfiniteDuration() : absl::Seconds(30),
                 [on_lines, on_end](absl::StatusOr<AgentMessage> r) {
                   if (!r.ok()) {
                     on_end(r.status());
                     return;
                   }
                   const auto& c = r->log_chunk();
                   if (c.lines_size() > 0) on_lines(c);
                   on_end(c.error().empty() ? absl::OkStatus() : absl::NotFoundError(c.error()));
                 }});
  RelayAll(std::move(one));
  return rid;
}

void HostRequestRelay::CancelLogs(const std::string& request_id) {
  std::string host_id;
  {
    absl::MutexLock l(&pending_mu_);
    auto it = pending_.find(request_id);
    if (it == pending_.end()) return;
    host_id = it->second.host_id;
    it->second.done = nullptr;  // the caller is gone: nothing to report
    pending_.erase(it);
  }
  if (std::shared_ptr<HostSession> session = registry_.Route(host_id).session) {
    ControlMessage m;
    m.mutable_cancel()->set_request_id(request_id);
    sends_.Post(host_id, std::move(session), std::move(m));
  }
}

}  // namespace herd::controlplane
