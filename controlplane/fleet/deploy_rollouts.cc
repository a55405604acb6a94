#include "controlplane/fleet/deploy_rollouts.h"

#include <set>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "nlohmann/json.hpp"

namespace herd::controlplane {
namespace {

using herd::v1::Rollout;
using json = nlohmann::json;

std::string StateWord(herd::v1::UnitState s) {
  switch (s) {
    case herd::v1::UNIT_STATE_LAUNCHING: return "launching";
    case herd::v1::UNIT_STATE_ONLINE: return "online";
    case herd::v1::UNIT_STATE_STOPPING: return "stopping";
    case herd::v1::UNIT_STATE_STOPPED: return "stopped";
    case herd::v1::UNIT_STATE_WAITING_RESTART: return "waiting to restart";
    case herd::v1::UNIT_STATE_ERRORED: return "errored";
    default: return "unknown";
  }
}

// The rollout's author, as who changes the declaration.
Actor RolloutActor(const Rollout& r) {
  Actor a;
  a.name = r.created_by().empty() ? "rollout" : r.created_by();
  a.role = Role::kOperator;
  return a;
}

// A host's answer in a deploy rollout: passed (error empty) or why not.
herd::v1::RestartResult GateResult(const std::string& module, const std::string& error) {
  herd::v1::RestartResult res;
  herd::v1::UnitRestartResult* u = res.add_units();
  u->set_unit(module);
  u->set_ok(error.empty());
  u->set_error(error);
  return res;
}

}  // namespace

DeployMover::DeployMover(HostDirectory& hosts, ConfigService& config, Scheduler& scheduler,
                         absl::Duration poll)
    : hosts_(hosts),
      config_(config),
      clock_(scheduler.clock()),
      log_(herd::Logger("rollouts")),
      poll_(scheduler, poll, [this] { Poll(); }) {
  poll_.Start();
}

DeployMover::~DeployMover() { poll_.Stop(); }

size_t DeployMover::waiting() const {
  absl::MutexLock l(&mu_);
  return waiting_.size();
}

void DeployMover::Move(
    const Rollout& r, const std::vector<std::string>& hosts,
    std::function<void(size_t, absl::StatusOr<herd::v1::RestartResult>)> answer) {
  const herd::v1::RolloutDeploy& dep = r.deploy();
  auto fail_all = [&](const absl::Status& s) {
    for (size_t i = 0; i < hosts.size(); ++i) answer(i, s);
  };
  auto d = config_.GetDeclaration(dep.scope(), r.module());
  if (!d.ok()) return fail_all(d.status());
  if (d->base.source() != dep.from_source() || d->base.version() != dep.from_version()) {
    return fail_all(absl::AbortedError(absl::StrCat(
        "the declaration was changed meanwhile (it now wants ",
        d->base.version().empty() ? d->base.source() : d->base.version(), ")")));
  }
  if (!d->pins.rollout_id.empty() && d->pins.rollout_id != r.id()) {
    // Left by a rollout that no longer runs (a deploy is refused while one does): an aborted
    // one whose control plane restarted. Its hosts go back to the declared version until
    // their batch comes.
    log_->info("event=deploy_rollout_stale_pins rollout={} stale={} hosts={}", r.id(),
               d->pins.rollout_id, d->pins.hosts.size());
    d->pins = DeployPins{};
  }
  d->pins.rollout_id = r.id();
  d->pins.to.set_source(dep.to_source());
  d->pins.to.set_version(dep.to_version());
  d->pins.hosts.insert(hosts.begin(), hosts.end());
  auto put = config_.PutDeclaration(
      r.module(), *d, RolloutActor(r), "rollout.deploy.batch",
      json{{"id", r.id()}, {"batch", r.current_batch()}, {"hosts", hosts},
           {"version", dep.to_version()}}
          .dump(-1, ' ', false, json::error_handler_t::replace));
  if (!put.ok()) return fail_all(put.status());
  const absl::Time now = clock_.Monotonic();
  absl::MutexLock l(&mu_);
  for (size_t i = 0; i < hosts.size(); ++i) {
    Waiting w;
    w.rollout_id = r.id();
    w.module = r.module();
    w.host = hosts[i];
    w.to_version = dep.to_version();
    w.index = i;
    w.wait_healthy = absl::Milliseconds(r.wait_healthy_ms());
    w.deadline = now + absl::Milliseconds(dep.host_timeout_ms() > 0 ? dep.host_timeout_ms()
                                                                   : 300000);
    w.answer = answer;
    waiting_.push_back(std::move(w));
  }
}

std::string DeployMover::Check(Waiting& w, absl::Time now) {
  auto detail = hosts_.GetHost(w.host);
  if (!detail.ok()) return std::string(detail.status().message());
  std::string state = detail->host().online() ? "not reported yet" : "offline";
  for (const auto& d : detail->deployments()) {
    if (d.name() != w.module) continue;
    state = d.state();
    if (d.state() == "failed" && (w.to_version.empty() || d.desired_version() == w.to_version)) {
      return absl::StrCat("the install of ", w.module, " ", w.to_version, " failed: ", d.error());
    }
  }
  for (const auto& u : detail->units()) {
    if (u.name() != w.module || (!w.to_version.empty() && u.version() != w.to_version)) continue;
    if (w.restarts_at_version < 0) w.restarts_at_version = u.restarts();
    if (static_cast<int64_t>(u.restarts()) > w.restarts_at_version) {
      return absl::StrCat(w.module, " ", u.version(), " restarted within its health gate (",
                          u.restarts() - w.restarts_at_version, " restart(s); ",
                          StateWord(u.state()), u.status_reason().empty() ? "" : ": ",
                          u.status_reason(), ")");
    }
    if (u.state() == herd::v1::UNIT_STATE_ERRORED || u.state() == herd::v1::UNIT_STATE_STOPPED ||
        u.state() == herd::v1::UNIT_STATE_WAITING_RESTART) {
      return absl::StrCat(w.module, " ", u.version(), " is ", StateWord(u.state()),
                          " after the upgrade", u.status_reason().empty() ? "" : ": ",
                          u.status_reason());
    }
    if (u.state() != herd::v1::UNIT_STATE_ONLINE) {
      w.online_since = absl::InfiniteFuture();
      break;
    }
    if (w.online_since == absl::InfiniteFuture()) w.online_since = now;
    if (now - w.online_since >= w.wait_healthy) return "ok";
    return "";
  }
  if (now >= w.deadline) {
    return absl::StrCat("did not reach ", w.module, " ", w.to_version,
                        " and pass its health gate in time (last: ", state, ")");
  }
  return "";
}

void DeployMover::Poll() {
  std::vector<Waiting> batch;
  {
    absl::MutexLock l(&mu_);
    batch.swap(waiting_);
  }
  const absl::Time now = clock_.Monotonic();
  std::vector<std::pair<Waiting, std::string>> done;
  std::vector<Waiting> still;
  for (Waiting& w : batch) {
    std::string outcome = Check(w, now);
    if (outcome.empty()) {
      still.push_back(std::move(w));
    } else {
      done.emplace_back(std::move(w), std::move(outcome));
    }
  }
  {
    absl::MutexLock l(&mu_);
    // Moves made meanwhile were added to waiting_; those checked here go back beside them.
    for (Waiting& w : still) waiting_.push_back(std::move(w));
  }
  for (auto& [w, outcome] : done) {
    const bool ok = outcome == "ok";
    log_->info("event=deploy_gate rollout={} host={} module={} version={} passed={}{}{}",
               w.rollout_id, w.host, w.module, w.to_version, ok, ok ? "" : " error=\"",
               ok ? "" : outcome + "\"");
    w.answer(w.index, GateResult(w.module, ok ? "" : outcome));
  }
}

void DeployMover::Finished(Rollout& r) {
  {
    absl::MutexLock l(&mu_);
    std::erase_if(waiting_, [&r](const Waiting& w) { return w.rollout_id == r.id(); });
  }
  const herd::v1::RolloutDeploy& dep = r.deploy();
  auto d = config_.GetDeclaration(dep.scope(), r.module());
  if (!d.ok() || d->pins.rollout_id != r.id()) {
    log_->warn("event=deploy_rollout_declaration_changed rollout={} module={} error=\"{}\"",
               r.id(), r.module(), d.ok() ? "changed by another deploy" : d.status().message());
    return;
  }
  std::string action, detail;
  if (r.state() == herd::v1::ROLLOUT_STATE_SUCCEEDED) {
    d->base = d->pins.to;
    d->pins = DeployPins{};
    action = "module.deploy";
    detail = json{{"rollout", r.id()}, {"version", dep.to_version()}}.dump();
  } else if (!dep.no_rollback()) {
    std::vector<std::string> back;
    for (const auto& h : r.hosts()) {
      if ((h.state() == herd::v1::ROLLOUT_HOST_STATE_FAILED ||
           h.state() == herd::v1::ROLLOUT_HOST_STATE_INTERRUPTED) &&
          d->pins.hosts.erase(h.host_id()) > 0) {
        back.push_back(h.host_id());
      }
    }
    if (back.empty()) return;
    if (d->pins.hosts.empty()) d->pins = DeployPins{};
    for (const auto& h : back) r.mutable_deploy()->add_rolled_back(h);
    action = "module.rollback";
    detail = json{{"rollout", r.id()}, {"hosts", back}, {"version", dep.from_version()}}.dump();
  } else {
    return;  // the failed hosts stay at the new version, as asked
  }
  auto put = config_.PutDeclaration(r.module(), *d, RolloutActor(r), action, detail);
  if (!put.ok()) {
    log_->error("event=deploy_rollout_not_applied rollout={} action={} error=\"{}\"", r.id(),
                action, put.status().message());
    r.set_reason(absl::StrCat(r.reason(), r.reason().empty() ? "" : "; ", action,
                              " could not be stored: ", put.status().message()));
    return;
  }
  log_->info("event=deploy_rollout_applied rollout={} action={} module={}", r.id(), action,
             r.module());
}

}  // namespace herd::controlplane
