#include "controlplane/fleet/rollouts.h"

#include <algorithm>
#include <cstddef>
#include <mutex>
#include <optional>

#include "absl/functional/any_invocable.h"
#include "absl/strings/str_cat.h"
#include "controlplane/core/host_registry.h"  // CheckChangeTarget (a pure rule: no registry is used)
#include "controlplane/core/secrets.h"
#include "controlplane/fleet/rollouts_internal.h"
#include "nlohmann/json.hpp"

namespace herd::controlplane {

using herd::v1::RestartResult;
using herd::v1::Rollout;
using herd::v1::RolloutHost;

namespace {

// Why a host's restart failed; empty when it succeeded.
std::string RestartError(const absl::StatusOr<RestartResult>& res) {
  if (!res.ok()) return std::string(res.status().message());
  std::string error;
  for (const auto& u : res->units()) {
    if (!u.ok()) error = u.error().empty() ? "restart failed" : u.error();
  }
  if (res->units_size() == 0) error = "the host restarted nothing";
  return error;
}

// A rollout that ends before its hosts are done: those never told to restart are SKIPPED;
// those told that did not answer are INTERRUPTED (they may well have restarted: skipped
// would say they were not touched).
void CloseUnfinishedHosts(Rollout& r) {
  for (auto& h : *r.mutable_hosts()) {
    if (h.state() == herd::v1::ROLLOUT_HOST_STATE_PENDING) {
      h.set_state(herd::v1::ROLLOUT_HOST_STATE_SKIPPED);
    } else if (h.state() == herd::v1::ROLLOUT_HOST_STATE_RESTARTING) {
      h.set_state(herd::v1::ROLLOUT_HOST_STATE_INTERRUPTED);
      h.set_error("told to restart, but the control plane stopped before the host answered: "
                  "check the module on the host (agentctl host)");
    }
  }
}

std::string ThresholdReason(uint32_t failures, uint32_t threshold) {
  return absl::StrCat(failures, " host(s) failed (threshold ", threshold, ")");
}

}  // namespace

RolloutEngine::RolloutEngine(HostDirectory& hosts, RequestRelay& relay, AuditLog& audit,
                             Store& store, Scheduler& scheduler)
    : RolloutEngine(hosts, relay, audit, store, scheduler, *new SingleNodeOwnership()) {
  single_node_.reset(&owners_);
}

RolloutEngine::RolloutEngine(HostDirectory& hosts, RequestRelay& relay, AuditLog& audit,
                             Store& store, Scheduler& scheduler, RolloutOwnership& owners)
    : owners_(owners),
      hosts_(hosts),
      relay_(relay),
      audit_(audit),
      store_(store),
      scheduler_(scheduler),
      clock_(scheduler.clock()),
      log_(herd::Logger("rollouts")),
      life_(std::make_shared<Life>(this, scheduler)) {}

RolloutEngine::~RolloutEngine() { Stop(); }

absl::Status RolloutEngine::Start() {
  if (owners_.shared()) return StartShared();
  auto all = store_.ListRollouts(1000);
  if (!all.ok()) return all.status();
  for (auto r : *all) {
    if (r.state() != herd::v1::ROLLOUT_STATE_RUNNING) continue;
    r.set_state(herd::v1::ROLLOUT_STATE_ABORTED);
    r.set_reason("the control plane restarted while it ran");
    r.set_finished_at_unix_ms(absl::ToUnixMillis(clock_.Now()));
    CloseUnfinishedHosts(r);
    if (auto s = store_.PutRollout(r); !s.ok()) return s;
    absl::MutexLock l(&mu_);
    CountFinished(r.state());
  }
  return absl::OkStatus();
}

void RolloutEngine::Stop() {
  {
    absl::MutexLock l(&mu_);
    stopping_ = true;  // no rollout is created, and no step tells hosts, from now on
  }
  {
    absl::MutexLock s(&step_mu_);
    std::vector<std::string> ids;
    if (owners_.shared()) {
      StopShared();  // handed over, not aborted: another replica goes on
    } else {
      absl::MutexLock l(&mu_);
      for (const auto& [id, r] : running_) ids.push_back(id);
    }
    for (const auto& id : ids) {
      Active* a = FindActive(id);
      if (a == nullptr) continue;
      ApplyAnswers(*a);  // the answers in already count
      if (a->failures >= a->r.failure_threshold()) {
        Finish(id, herd::v1::ROLLOUT_STATE_FAILED,
               ThresholdReason(a->failures, a->r.failure_threshold()));
      } else {
        Finish(id, herd::v1::ROLLOUT_STATE_ABORTED, "the control plane stopped while it ran");
      }
    }
  }
  owners_.Stop();
  life_->Close();
}

Rollout RolloutEngine::NewRollout(const herd::v1::FleetRestartRequest& req, const Actor& actor,
                                  const std::vector<std::pair<std::string, std::string>>& hosts,
                                  uint32_t batch) const {
  Rollout r;
  auto suffix = NewSecret("");
  r.set_id(absl::StrCat("ro-", absl::ToUnixSeconds(clock_.Now()), "-",
                        suffix.ok() ? suffix->substr(0, 6) : "0"));
  r.set_module(req.module());
  *r.mutable_target() = req.target();
  r.set_state(herd::v1::ROLLOUT_STATE_RUNNING);
  r.set_batch_size(batch);
  r.set_max_unavailable(req.max_unavailable() > 0 ? req.max_unavailable() : batch);
  r.set_wait_healthy_ms(req.wait_healthy_ms() > 0 ? req.wait_healthy_ms() : 1000);
  r.set_failure_threshold(req.failure_threshold() > 0 ? req.failure_threshold() : 1);
  r.set_created_at_unix_ms(absl::ToUnixMillis(clock_.Now()));
  r.set_created_by(actor.name);
  uint32_t i = 0;
  for (const auto& [id, name] : hosts) {
    RolloutHost* h = r.add_hosts();
    h->set_host_id(id);
    h->set_hostname(name);
    h->set_batch(i++ / batch);
    h->set_state(herd::v1::ROLLOUT_HOST_STATE_PENDING);
  }
  r.set_batches(static_cast<uint32_t>((hosts.size() + batch - 1) / batch));
  return r;
}

absl::StatusOr<Rollout> RolloutEngine::Create(const herd::v1::FleetRestartRequest& req,
                                              const Actor& actor) {
  const absl::Time called = clock_.Monotonic();
  if (req.module().empty()) return absl::InvalidArgumentError("give the module to restart");
  if (auto s = CheckChangeTarget(req.target()); !s.ok()) return s;
  if (req.batch_size() > 0 && req.batch_percent() > 0) {
    return absl::InvalidArgumentError("give a batch size or a percentage, not both");
  }
  if (req.batch_percent() > 100) return absl::InvalidArgumentError("--batch percentage above 100");
  auto with_module = hosts_.HostsWithModule(req.target(), req.module());
  if (!with_module.ok()) return with_module.status();
  const std::vector<std::pair<std::string, std::string>>& hosts = *with_module;  // id, hostname
  if (hosts.empty()) {
    return absl::NotFoundError(absl::StrCat("no selected host has a module named \"",
                                            req.module(), "\": see `agentctl modules`"));
  }
  uint32_t batch = req.batch_size();
  if (req.batch_percent() > 0) {
    batch = static_cast<uint32_t>((hosts.size() * req.batch_percent() + 99) / 100);
  }
  batch = std::max<uint32_t>(batch, 1);
  return Launch(NewRollout(req, actor, hosts, batch), actor, called);
}

absl::StatusOr<Rollout> RolloutEngine::CreateDeploy(
    const herd::v1::DeployRequest& req, herd::v1::RolloutDeploy deploy,
    const std::vector<std::pair<std::string, std::string>>& hosts, const Actor& actor) {
  const absl::Time called = clock_.Monotonic();
  if (mover_ == nullptr) return absl::UnimplementedError("deploy rollouts are not served here");
  if (hosts.empty()) return absl::InvalidArgumentError("a deploy rollout needs hosts");
  if (req.batch_size() > 0 && req.batch_percent() > 0) {
    return absl::InvalidArgumentError("give a batch size or a percentage, not both");
  }
  if (req.batch_percent() > 100) return absl::InvalidArgumentError("--batch percentage above 100");
  uint32_t batch = req.batch_size();
  if (req.batch_percent() > 0) {
    batch = static_cast<uint32_t>((hosts.size() * req.batch_percent() + 99) / 100);
  }
  batch = std::max<uint32_t>(batch, 1);
  herd::v1::FleetRestartRequest as_restart;
  as_restart.set_module(req.name());
  // The target shown is the declaration's scope (its hosts are the rollout's hosts).
  const herd::v1::Scope& scope = deploy.scope();
  if (scope.has_selector()) {
    as_restart.mutable_target()->set_selector(scope.selector());
  } else if (scope.what_case() == herd::v1::Scope::kHostId) {
    as_restart.mutable_target()->mutable_hosts()->add_ids(scope.host_id());
  } else {
    as_restart.mutable_target()->set_all(true);
  }
  as_restart.set_max_unavailable(req.max_unavailable());
  as_restart.set_wait_healthy_ms(req.wait_healthy_ms() > 0 ? req.wait_healthy_ms() : 10000);
  as_restart.set_failure_threshold(req.failure_threshold());
  Rollout r = NewRollout(as_restart, actor, hosts, batch);
  deploy.set_host_timeout_ms(req.host_timeout_ms() > 0 ? req.host_timeout_ms() : 300000);
  deploy.set_no_rollback(req.no_rollback());
  *r.mutable_deploy() = std::move(deploy);
  return Launch(std::move(r), actor, called);
}

std::optional<std::string> RolloutEngine::RunningDeploy(const std::string& module,
                                                        const std::string& scope_text) const {
  absl::MutexLock l(&mu_);
  for (const auto& [id, r] : running_) {
    if (r.has_deploy() && r.module() == module && ScopeText(r.deploy().scope()) == scope_text) {
      return id;
    }
  }
  return std::nullopt;
}

absl::StatusOr<Rollout> RolloutEngine::Launch(Rollout r, const Actor& actor, absl::Time called) {
  const size_t hosts = static_cast<size_t>(r.hosts_size());
  const uint32_t batch = r.batch_size();
  // Owned before it is stored RUNNING: no other replica may find it without an owner.
  if (auto s = owners_.Acquire(r.id()); !s.ok()) return s;
  if (auto s = store_.PutRollout(r); !s.ok()) {
    owners_.Release(r.id());
    return s;
  }
  nlohmann::json detail{{"id", r.id()}, {"module", r.module()}, {"hosts", hosts},
                        {"batch_size", batch}};
  if (r.has_deploy()) {
    detail["scope"] = ScopeText(r.deploy().scope());
    detail["from_version"] = r.deploy().from_version();
    detail["to_version"] = r.deploy().to_version();
  }
  audit_.Audit(actor.name, r.has_deploy() ? "rollout.deploy" : "rollout.create", detail.dump());
  {
    absl::MutexLock l(&mu_);
    if (stopping_) {
      owners_.Release(r.id());
      return absl::UnavailableError("the control plane is stopping");
    }
    running_[r.id()] = r;
  }
  life_->Post([id = r.id()](RolloutEngine& e) { e.Begin(id); });
  log_->info("event=rollout_started id={} module={} kind={} hosts={} batch={} create_ms={}",
             r.id(), r.module(), r.has_deploy() ? "deploy" : "restart", hosts, batch,
             absl::ToInt64Milliseconds(clock_.Monotonic() - called));
  return r;
}

RolloutEngine::Active* RolloutEngine::FindActive(const std::string& id) {
  if (auto it = active_.find(id); it != active_.end()) return it->second.get();
  // Created, and its first step not run yet: it starts from its published state.
  absl::MutexLock l(&mu_);
  auto it = running_.find(id);
  if (it == running_.end()) return nullptr;
  auto a = std::make_unique<Active>();
  a->r = it->second;
  return active_.emplace(id, std::move(a)).first->second.get();
}

void RolloutEngine::Begin(const std::string& id) {
  absl::MutexLock s(&step_mu_);
  if (Active* a = FindActive(id)) {
    a->confirmed = false;
    Next(*a);
  }
}

void RolloutEngine::Next(Active& a) {
  {
    absl::MutexLock l(&mu_);
    if (stopping_) return;  // Stop, waiting for step_mu_, aborts it
  }
  if (!Owned(a)) return;
  while (true) {
    if (!a.batch_open) {
      if (a.batch >= a.r.batches()) {
        Finish(a.r.id(), herd::v1::ROLLOUT_STATE_SUCCEEDED, "");
        return;
      }
      a.members.clear();
      // Its hosts not done yet (all of them, unless taken over from another replica).
      for (int i = 0; i < a.r.hosts_size(); ++i) {
        if (a.r.hosts(i).batch() == a.batch &&
            a.r.hosts(i).state() == herd::v1::ROLLOUT_HOST_STATE_PENDING) {
          a.members.push_back(i);
        }
      }
      a.next = 0;
      a.batch_open = true;
      a.r.set_current_batch(a.batch);
    }
    if (a.next < a.members.size()) {
      // At most max_unavailable hosts of the batch at once.
      const size_t end =
          std::min(a.members.size(), a.next + std::max<uint32_t>(a.r.max_unavailable(), 1));
      std::vector<int> group(a.members.begin() + static_cast<std::ptrdiff_t>(a.next),
                             a.members.begin() + static_cast<std::ptrdiff_t>(end));
      a.next = end;
      TellGroup(a, std::move(group));
      return;
    }
    a.batch_open = false;
    ++a.batch;
  }
}

void RolloutEngine::TellGroup(Active& a, std::vector<int> group) {
  std::vector<std::string> ids;
  ids.reserve(group.size());
  for (int k : group) {
    a.r.mutable_hosts(k)->set_state(herd::v1::ROLLOUT_HOST_STATE_RESTARTING);
    ids.push_back(a.r.hosts(k).host_id());
  }
  if (owners_.shared() && !StoreBeforeTelling(a, group)) return;
  a.group = std::move(group);
  a.inbox = std::make_shared<Inbox>(a.group.size());
  // The requests go out first, then the record says so (storing a fleet-wide rollout takes
  // tens of milliseconds that no host should wait for). It is stored: should the control
  // plane die before the answers, Start() tells the hosts that were asked (interrupted: they
  // may have restarted) from those that were not (skipped). The group's last answer posts
  // the next step, which runs after this one: watchers see RESTARTING before the results.
  const absl::Time sending = clock_.Monotonic();
  auto answer = [life = life_, inbox = a.inbox, id = a.r.id()](
                    size_t i, absl::StatusOr<RestartResult> res) {
    if (!inbox->Put(i, std::move(res))) return;
    life->Post([id, inbox](RolloutEngine& e) { e.OnAnswered(id, inbox.get()); });
  };
  if (a.r.has_deploy()) {
    if (mover_ != nullptr) {
      mover_->Move(a.r, ids, std::move(answer));
    } else {
      for (size_t i = 0; i < ids.size(); ++i) {
        answer(i, absl::UnimplementedError("deploy rollouts are not served here"));
      }
    }
  } else {
    relay_.RestartOnHosts(ids, {a.r.module()}, a.r.wait_healthy_ms(), a.r.id(),
                          std::move(answer));
  }
  log_->info("event=rollout_batch_sent id={} batch={} hosts={} send_ms={}", a.r.id(), a.batch,
             ids.size(), absl::ToInt64Milliseconds(clock_.Monotonic() - sending));
  Publish(a.r);
}

// Replicas: the record says RESTARTING before any host of the group is told, so that a
// replica taking the rollout over (this one killed right after telling them) finds them
// told and marks them INTERRUPTED instead of telling them again. If it cannot be stored, the
// group is not told: the rollout stalls and the next scan (Sweep) goes on from there.
bool RolloutEngine::StoreBeforeTelling(Active& a, const std::vector<int>& group) {
  auto stored = store_.PutRollout(a.r);
  if (stored.ok()) return true;
  for (int k : group) a.r.mutable_hosts(k)->set_state(herd::v1::ROLLOUT_HOST_STATE_PENDING);
  a.next -= group.size();
  a.confirmed = false;
  if (!a.stalled) {
    log_->warn("event=rollout_stalled id={} error=\"{}\" hint=\"its next group is told once "
               "the record says so\"",
               a.r.id(), stored.message());
  }
  a.stalled = true;
  return false;
}

bool RolloutEngine::ApplyAnswers(Active& a) {
  if (!a.inbox) return true;
  bool all = true;
  for (size_t k = 0; k < a.group.size(); ++k) {
    RolloutHost* h = a.r.mutable_hosts(a.group[k]);
    auto res = a.inbox->Take(k);
    if (!res.has_value()) {
      if (h->state() == herd::v1::ROLLOUT_HOST_STATE_RESTARTING) all = false;
      continue;
    }
    const std::string error = RestartError(*res);
    if (error.empty()) {
      h->set_state(herd::v1::ROLLOUT_HOST_STATE_DONE);
    } else if (absl::IsAborted(res->status())) {
      // Told, and the replica relaying it went away before the result (RoutedRequestRelay):
      // it may have restarted. As after a takeover: INTERRUPTED, not counted as a failure.
      h->set_state(herd::v1::ROLLOUT_HOST_STATE_INTERRUPTED);
      h->set_error(error);
    } else {
      h->set_state(herd::v1::ROLLOUT_HOST_STATE_FAILED);
      h->set_error(error);
      ++a.failures;
    }
  }
  return all;
}

void RolloutEngine::OnAnswered(const std::string& id, const Inbox* inbox) {
  absl::MutexLock s(&step_mu_);
  auto it = active_.find(id);
  if (it == active_.end() || it->second->inbox.get() != inbox) return;  // stopped meanwhile
  it->second->confirmed = false;
  Continue(*it->second);
}

void RolloutEngine::Continue(Active& a) {
  if (!Owned(a)) return;
  ApplyAnswers(a);
  Publish(a.r);
  if (a.failures >= a.r.failure_threshold()) {
    Finish(a.r.id(), herd::v1::ROLLOUT_STATE_FAILED,
           ThresholdReason(a.failures, a.r.failure_threshold()));
    return;
  }
  Next(a);
}

void RolloutEngine::Finish(const std::string& id, herd::v1::RolloutState state,
                           const std::string& reason) {
  auto it = active_.find(id);
  if (it == active_.end()) return;
  if (!Owned(*it->second)) return;  // another replica finishes it (or a later scan, stalled)
  std::unique_ptr<Active> a = std::move(it->second);
  active_.erase(it);
  Rollout& r = a->r;
  if (state != herd::v1::ROLLOUT_STATE_SUCCEEDED) {
    CloseUnfinishedHosts(r);
    r.set_reason(reason);
  }
  if (!a->takeover_note.empty()) {  // replicas: what takeovers did stays said
    r.set_reason(state == herd::v1::ROLLOUT_STATE_SUCCEEDED
                     ? a->takeover_note
                     : absl::StrCat(reason, "; ", a->takeover_note));
  }
  r.set_state(state);
  r.set_finished_at_unix_ms(absl::ToUnixMillis(clock_.Now()));
  if (r.has_deploy() && mover_ != nullptr) mover_->Finished(r);
  log_->info("event=rollout_finished id={} state={} failures={} reason=\"{}\"", r.id(),
             herd::v1::RolloutState_Name(r.state()), a->failures, r.reason());
  Publish(r);
  owners_.Release(id);  // after the final record: whoever sees the key go reads it finished
}

void RolloutEngine::Publish(const Rollout& r) {
  if (auto s = store_.PutRollout(r); !s.ok()) {
    log_->error("event=rollout_not_saved id={} error=\"{}\"", r.id(), s.message());
  }
  const bool finished = r.state() != herd::v1::ROLLOUT_STATE_RUNNING;
  std::vector<Watcher> ws;
  absl::MutexLock w(&watch_mu_);
  {
    absl::MutexLock l(&mu_);
    // Stored first: a finished rollout leaves the running set only once Get can read it.
    if (auto it = running_.find(r.id()); it != running_.end()) {
      if (finished) {
        running_.erase(it);
        CountFinished(r.state());
      } else {
        it->second = r;
      }
    }
    for (const auto& [wid, watch] : watchers_) {
      if (watch.first == r.id()) ws.push_back(watch.second);
    }
    if (!ws.empty() && owners_.shared()) delivered_[r.id()] = Progress(r);
  }
  for (auto& fn : ws) fn(r);
}

absl::StatusOr<Rollout> RolloutEngine::Get(const std::string& id) const {
  {
    absl::MutexLock l(&mu_);
    auto it = running_.find(id);
    if (it != running_.end()) return it->second;
  }
  auto r = store_.GetRollout(id);
  if (absl::IsNotFound(r.status())) {
    return absl::NotFoundError(absl::StrCat("no rollout \"", id, "\": see `agentctl rollouts`"));
  }
  return r;
}

absl::StatusOr<std::vector<Rollout>> RolloutEngine::List(size_t limit) const {
  auto stored = store_.ListRollouts(limit == 0 ? 20 : limit);
  if (!stored.ok()) return stored;
  // A running rollout's latest state is in memory (published states are stored too, but
  // the record may be a write behind).
  absl::MutexLock l(&mu_);
  for (auto& r : *stored) {
    auto it = running_.find(r.id());
    if (it != running_.end()) r = it->second;
  }
  return stored;
}

absl::StatusOr<uint64_t> RolloutEngine::Watch(const std::string& id, Watcher watcher) {
  uint64_t wid;
  {
    // A running rollout: its state now, under watch_mu_, so that every later change comes
    // after it, once.
    absl::MutexLock w(&watch_mu_);
    std::optional<Rollout> now;
    {
      absl::MutexLock l(&mu_);
      wid = next_watcher_++;
      watchers_[wid] = {id, watcher};
      if (auto it = running_.find(id); it != running_.end()) now = it->second;
      if (now.has_value() && owners_.shared()) delivered_[id] = Progress(*now);
    }
    if (now.has_value()) {
      watcher(*now);
      return wid;
    }
  }
  // Not running: finished (its last state is stored, and no change follows) or unknown. The
  // store is read outside watch_mu_, which no one waits on across the disk.
  auto stored = Get(id);
  if (!stored.ok()) {
    Unwatch(wid);
    return stored.status();
  }
  if (owners_.shared()) {
    absl::MutexLock l(&mu_);
    uint64_t& d = delivered_[id];
    d = std::max(d, Progress(*stored));
  }
  watcher(*stored);
  return wid;
}

void RolloutEngine::Unwatch(uint64_t id) {
  absl::MutexLock l(&mu_);
  auto it = watchers_.find(id);
  if (it == watchers_.end()) return;
  const std::string rollout = it->second.first;
  watchers_.erase(it);
  for (const auto& [wid, watch] : watchers_) {
    if (watch.first == rollout) return;
  }
  delivered_.erase(rollout);
}

void RolloutEngine::CountFinished(herd::v1::RolloutState state) {
  switch (state) {
    case herd::v1::ROLLOUT_STATE_SUCCEEDED:
      ++finished_.succeeded;
      break;
    case herd::v1::ROLLOUT_STATE_FAILED:
      ++finished_.failed;
      break;
    case herd::v1::ROLLOUT_STATE_ABORTED:
      ++finished_.aborted;
      break;
    default:
      break;
  }
}

RolloutEngine::Counts RolloutEngine::counts() const {
  absl::MutexLock l(&mu_);
  Counts c = finished_;
  c.running = running_.size();
  return c;
}

}  // namespace herd::controlplane
