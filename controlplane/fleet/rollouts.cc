#include "controlplane/fleet/rollouts.h"

#include <algorithm>

#include "absl/strings/str_cat.h"
#include "absl/synchronization/blocking_counter.h"
#include "controlplane/core/secrets.h"
#include "nlohmann/json.hpp"

namespace herd::controlplane {

using herd::v1::Rollout;
using herd::v1::RolloutHost;

RolloutEngine::RolloutEngine(Hub& hub, Store& store, const Clock& clock)
    : hub_(hub), store_(store), clock_(clock), log_(herd::Logger("rollouts")) {}

RolloutEngine::~RolloutEngine() { Stop(); }

absl::Status RolloutEngine::Start() {
  auto all = store_.ListRollouts(1000);
  if (!all.ok()) return all.status();
  for (auto r : *all) {
    if (r.state() != herd::v1::ROLLOUT_STATE_RUNNING) continue;
    r.set_state(herd::v1::ROLLOUT_STATE_ABORTED);
    r.set_reason("the control plane restarted while it ran");
    r.set_finished_at_unix_ms(absl::ToUnixMillis(clock_.Now()));
    for (auto& h : *r.mutable_hosts()) {
      if (h.state() == herd::v1::ROLLOUT_HOST_STATE_PENDING) {
        h.set_state(herd::v1::ROLLOUT_HOST_STATE_SKIPPED);
      } else if (h.state() == herd::v1::ROLLOUT_HOST_STATE_RESTARTING) {
        // It was told to restart: it may well have (skipped would say it was not touched).
        h.set_state(herd::v1::ROLLOUT_HOST_STATE_INTERRUPTED);
        h.set_error("told to restart, but the control plane stopped before the host answered: "
                    "check the module on the host (agentctl host)");
      }
    }
    if (auto s = store_.PutRollout(r); !s.ok()) return s;
    absl::MutexLock l(&mu_);
    CountFinished(r.state());
  }
  return absl::OkStatus();
}

void RolloutEngine::Stop() {
  std::vector<std::thread> threads;
  {
    absl::MutexLock l(&mu_);
    stopping_ = true;
    threads.swap(threads_);
  }
  for (auto& t : threads) t.join();
}

absl::StatusOr<Rollout> RolloutEngine::Create(const herd::v1::FleetRestartRequest& req,
                                              const Actor& actor) {
  const absl::Time called = absl::Now();
  if (req.module().empty()) return absl::InvalidArgumentError("give the module to restart");
  if (auto s = Hub::CheckChangeTarget(req.target()); !s.ok()) return s;
  if (req.batch_size() > 0 && req.batch_percent() > 0) {
    return absl::InvalidArgumentError("give a batch size or a percentage, not both");
  }
  if (req.batch_percent() > 100) return absl::InvalidArgumentError("--batch percentage above 100");
  auto with_module = hub_.HostsWithModule(req.target(), req.module());
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
  if (auto s = store_.PutRollout(r); !s.ok()) return s;
  hub_.Audit(actor.name, "rollout.create",
             nlohmann::json{{"id", r.id()}, {"module", r.module()}, {"hosts", hosts.size()},
                            {"batch_size", batch}}
                 .dump());
  {
    absl::MutexLock l(&mu_);
    if (stopping_) return absl::UnavailableError("the control plane is stopping");
    running_[r.id()] = r;
    threads_.emplace_back([this, id = r.id()] { Run(id); });
  }
  log_->info("event=rollout_started id={} module={} hosts={} batch={} create_ms={}", r.id(),
             r.module(), hosts.size(), batch, absl::ToInt64Milliseconds(absl::Now() - called));
  return r;
}

void RolloutEngine::Publish(const Rollout& r) {
  if (auto s = store_.PutRollout(r); !s.ok()) {
    log_->error("event=rollout_not_saved id={} error=\"{}\"", r.id(), s.message());
  }
  std::vector<Watcher> ws;
  {
    absl::MutexLock l(&mu_);
    auto it = running_.find(r.id());
    if (it != running_.end()) it->second = r;
    for (const auto& [wid, w] : watchers_) {
      if (w.first == r.id()) ws.push_back(w.second);
    }
  }
  for (auto& w : ws) w(r);
}

void RolloutEngine::Run(std::string id) {
  Rollout r;
  {
    absl::MutexLock l(&mu_);
    r = running_.at(id);
  }
  uint32_t failures = 0;
  std::string stop_reason;
  for (uint32_t b = 0; b < r.batches() && stop_reason.empty(); ++b) {
    r.set_current_batch(b);
    std::vector<int> members;
    for (int i = 0; i < r.hosts_size(); ++i) {
      if (r.hosts(i).batch() == b) members.push_back(i);
    }
    // At most max_unavailable hosts of the batch at once.
    for (size_t start = 0; start < members.size() && stop_reason.empty();
         start += r.max_unavailable()) {
      size_t end = std::min(members.size(), start + r.max_unavailable());
      {
        absl::MutexLock l(&mu_);
        if (stopping_) {
          stop_reason = "the control plane stopped while it ran";
          break;
        }
      }
      for (size_t k = start; k < end; ++k) {
        r.mutable_hosts(members[k])->set_state(herd::v1::ROLLOUT_HOST_STATE_RESTARTING);
      }
      // The requests go out first, then the record says so (storing a fleet-wide rollout
      // takes tens of milliseconds that no host should wait for). It is stored: should the
      // control plane stop before the answers, Start() tells the hosts that were asked
      // (interrupted: they may have restarted) from those that were not (skipped).
      const absl::Time sending = absl::Now();
      absl::BlockingCounter left(static_cast<int>(end - start));
      absl::Mutex results_mu;
      std::map<int, absl::StatusOr<herd::v1::RestartResult>> results;
      std::vector<std::string> ids;
      ids.reserve(end - start);
      for (size_t k = start; k < end; ++k) ids.push_back(r.hosts(members[k]).host_id());
      hub_.RestartOnHosts(ids, {r.module()}, r.wait_healthy_ms(), r.id(),
                          [&](size_t i, absl::StatusOr<herd::v1::RestartResult> res) {
                            {
                              absl::MutexLock l(&results_mu);
                              results.emplace(members[start + i], std::move(res));
                            }
                            left.DecrementCount();
                          });
      log_->info("event=rollout_batch_sent id={} batch={} hosts={} send_ms={}", r.id(), b,
                 end - start, absl::ToInt64Milliseconds(absl::Now() - sending));
      Publish(r);
      left.Wait();
      for (auto& [idx, res] : results) {
        RolloutHost* h = r.mutable_hosts(idx);
        std::string error;
        if (!res.ok()) {
          error = std::string(res.status().message());
        } else {
          for (const auto& u : res->units()) {
            if (!u.ok()) error = u.error().empty() ? "restart failed" : u.error();
          }
          if (res->units_size() == 0) error = "the host restarted nothing";
        }
        if (error.empty()) {
          h->set_state(herd::v1::ROLLOUT_HOST_STATE_DONE);
        } else {
          h->set_state(herd::v1::ROLLOUT_HOST_STATE_FAILED);
          h->set_error(error);
          ++failures;
        }
      }
      Publish(r);
      if (failures >= r.failure_threshold()) {
        stop_reason = absl::StrCat(failures, " host(s) failed (threshold ",
                                   r.failure_threshold(), ")");
      }
    }
  }
  bool aborted = false;
  {
    absl::MutexLock l(&mu_);
    aborted = stopping_ && !stop_reason.empty() && failures < r.failure_threshold();
  }
  if (!stop_reason.empty()) {
    for (auto& h : *r.mutable_hosts()) {
      if (h.state() == herd::v1::ROLLOUT_HOST_STATE_PENDING ||
          h.state() == herd::v1::ROLLOUT_HOST_STATE_RESTARTING) {
        h.set_state(herd::v1::ROLLOUT_HOST_STATE_SKIPPED);
      }
    }
    r.set_state(aborted ? herd::v1::ROLLOUT_STATE_ABORTED : herd::v1::ROLLOUT_STATE_FAILED);
    r.set_reason(stop_reason);
  } else {
    r.set_state(herd::v1::ROLLOUT_STATE_SUCCEEDED);
  }
  r.set_finished_at_unix_ms(absl::ToUnixMillis(clock_.Now()));
  log_->info("event=rollout_finished id={} state={} failures={} reason=\"{}\"", r.id(),
             herd::v1::RolloutState_Name(r.state()), failures, r.reason());
  {
    absl::MutexLock l(&mu_);
    running_.erase(id);
    CountFinished(r.state());
  }
  Publish(r);
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
  // A running rollout's latest state is in memory (not every change is stored).
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
    absl::MutexLock l(&mu_);
    wid = next_watcher_++;
    watchers_[wid] = {id, watcher};
  }
  // The current state first (after registering, so no change is missed in between; a
  // change may then be seen twice, which watchers tolerate).
  auto now = Get(id);
  if (!now.ok()) {
    Unwatch(wid);
    return now.status();
  }
  watcher(*now);
  return wid;
}

void RolloutEngine::Unwatch(uint64_t id) {
  absl::MutexLock l(&mu_);
  watchers_.erase(id);
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
