// RolloutEngine with replicas (issue 22): what a RolloutOwnership that is shared adds to the
// steps of rollouts.cc — confirming a rollout is still this replica's before a step, taking
// over a RUNNING rollout that has no owner, handing running rollouts over at Stop, and giving
// watchers the stored changes of rollouts another replica runs. On one machine none of this
// runs (Owned is true at once; Start and Stop never call in here).
//
// A takeover resumes from the stored record (docs/controlplane.md, "Rollouts across
// replicas"): hosts DONE or FAILED stay so; hosts RESTARTING were told by the previous owner,
// which never filed their answers: they may well have restarted, so they are not told again
// (a rollout never restarts a host twice) but marked INTERRUPTED, with why, in the record, its
// reason and the audit log. They do not count as failures. The rest of their batch, and the
// batches after it, go on as usual.
#include <algorithm>
#include <cstddef>
#include <optional>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "controlplane/fleet/rollouts.h"
#include "controlplane/fleet/rollouts_internal.h"
#include "nlohmann/json.hpp"

namespace herd::controlplane {

using herd::v1::Rollout;

namespace {

// Rollouts a scan that reads the store looks at (as Start does on one machine): the most
// recent ones. Only at start and after a watch was re-established: EtcdStore lists rollouts
// by reading every record, which a scan every few seconds must not do.
constexpr size_t kStoreScanLimit = 1000;
// Hosts named in a takeover's reason (all of them are in the record and the audit entry).
constexpr size_t kHostsNamed = 5;

std::string Replica(const std::string& id) {
  return id.empty() ? std::string("its previous owner") : absl::StrCat("replica ", id);
}

// Marks the hosts the previous owner told to restart, and never heard from, INTERRUPTED;
// returns their ids.
std::vector<std::string> InterruptUnanswered(Rollout& r, const std::string& previous,
                                             const std::string& self) {
  std::vector<std::string> ids;
  for (auto& h : *r.mutable_hosts()) {
    if (h.state() != herd::v1::ROLLOUT_HOST_STATE_RESTARTING) continue;
    h.set_state(herd::v1::ROLLOUT_HOST_STATE_INTERRUPTED);
    h.set_error(absl::StrCat("told to restart by ", Replica(previous),
                             ", which went away before the host answered; not restarted again "
                             "after replica ",
                             self, " took the rollout over: check the module on the host "
                                   "(agentctl host)"));
    ids.push_back(h.host_id());
  }
  return ids;
}

// The first batch with a host still to tell (batches() when none is left).
uint32_t ResumeBatch(const Rollout& r) {
  uint32_t batch = r.batches();
  for (const auto& h : r.hosts()) {
    if (h.state() == herd::v1::ROLLOUT_HOST_STATE_PENDING) batch = std::min(batch, h.batch());
  }
  return batch;
}

std::string TakeoverNote(const Rollout& r, const std::vector<std::string>& interrupted,
                         uint32_t batch, const std::string& previous, const std::string& self) {
  std::string note = absl::StrCat("taken over by replica ", self, " from ", Replica(previous),
                                  " at batch ", std::min(batch + 1, r.batches()), " of ",
                                  r.batches());
  if (interrupted.empty()) return note;
  std::vector<std::string> named(
      interrupted.begin(),
      interrupted.begin() + static_cast<std::ptrdiff_t>(std::min(kHostsNamed, interrupted.size())));
  std::string more = interrupted.size() > kHostsNamed
                         ? absl::StrCat(" and ", interrupted.size() - kHostsNamed, " more")
                         : "";
  return absl::StrCat(note, "; ", interrupted.size(),
                      " host(s) told to restart before it never answered: INTERRUPTED, not "
                      "restarted again (",
                      absl::StrJoin(named, ", "), more, ")");
}

}  // namespace

bool RolloutEngine::Owned(Active& a) {
  if (!owners_.shared() || a.confirmed) return true;
  const std::string id = a.r.id();
  if (!owners_.StillOwned(id)) {
    Drop(id, "this replica's lease was replaced or its owner key deleted");
    return false;
  }
  auto mine = owners_.Confirm(id);
  if (!mine.ok()) {
    // Neither step nor give up: the next scan asks again (no quorum does not last).
    if (!a.stalled) {
      log_->warn("event=rollout_stalled id={} error=\"{}\"", id, mine.status().message());
    }
    a.stalled = true;
    return false;
  }
  if (!*mine) {
    Drop(id, "its owner key is gone or belongs to another replica");
    return false;
  }
  if (a.stalled) log_->info("event=rollout_unstalled id={}", id);
  a.stalled = false;
  a.confirmed = true;
  return true;
}

void RolloutEngine::Drop(const std::string& id, const std::string& why) {
  active_.erase(id);
  bool was_running = false;
  {
    absl::MutexLock l(&mu_);
    was_running = running_.erase(id) > 0;
  }
  if (!was_running) return;
  log_->warn("event=rollout_ownership_lost id={} replica={} why=\"{}\"", id, owners_.self_id(),
             why);
  // Its watchers here go on with the stored record: the new owner's changes, from now on
  // through OnStoredChange.
  if (auto stored = store_.GetRollout(id); stored.ok()) OnStoredChange(*stored);
}

absl::Status RolloutEngine::StartShared() {
  RolloutOwnership::Events events;
  events.owner_gone = [life = life_](const std::string& id, const std::string& previous) {
    life->Post([id, previous](RolloutEngine& e) { e.OnOwnerGone(id, previous); });
  };
  events.changed = [life = life_](const Rollout& r) {
    life->Post([r](RolloutEngine& e) { e.OnStoredChange(r); });
  };
  events.resync = [life = life_] { life->Post([](RolloutEngine& e) { e.Scan(true); }); };
  if (auto s = owners_.Start(std::move(events)); !s.ok()) return s;
  life_->Post([](RolloutEngine& e) { e.Scan(true); });
  if (owners_.scan_period() < absl::InfiniteDuration()) {
    life_->Post([](RolloutEngine& e) { e.Tick(); }, owners_.scan_period());
  }
  return absl::OkStatus();
}

void RolloutEngine::StopShared() {
  std::vector<std::string> ids;
  {
    absl::MutexLock l(&mu_);
    for (const auto& [id, r] : running_) ids.push_back(id);
  }
  for (const auto& id : ids) {
    Active* a = FindActive(id);
    if (a == nullptr) continue;
    a->confirmed = false;  // this is a step of its own: it confirms again
    ApplyAnswers(*a);  // the answers in already count
    if (a->failures >= a->r.failure_threshold()) {
      Finish(id, herd::v1::ROLLOUT_STATE_FAILED,
             absl::StrCat(a->failures, " host(s) failed (threshold ", a->r.failure_threshold(),
                          ")"));
      continue;
    }
    if (!Owned(*a)) continue;  // dropped, or the store cannot take the record anyway
    // Handed over, not aborted: stored as it is, the owner key released, and whichever
    // replica wins the key goes on from this record.
    Publish(a->r);
    owners_.Release(id);
    log_->info("event=rollout_handed_over id={} batch={}", id, a->batch);
    active_.erase(id);
    absl::MutexLock l(&mu_);
    running_.erase(id);
  }
}

void RolloutEngine::Tick() {
  Scan(false);
  life_->Post([](RolloutEngine& e) { e.Tick(); }, owners_.scan_period());
}

void RolloutEngine::Scan(bool read_store) {
  owners_.Sweep();
  if (read_store) {
    if (auto stored = store_.ListRollouts(kStoreScanLimit); stored.ok()) {
      absl::MutexLock l(&mu_);
      for (const auto& r : *stored) {
        if (r.state() == herd::v1::ROLLOUT_STATE_RUNNING) seen_running_.insert(r.id());
      }
    } else {
      log_->warn("event=rollout_scan_failed error=\"{}\"", stored.status().message());
      life_->Post([](RolloutEngine& e) { e.Scan(true); }, owners_.scan_period());
    }
  }
  // RUNNING rollouts not run here with no owner: their owner's key went while this replica
  // did not watch, or a takeover did not get through (no quorum then).
  std::vector<std::string> candidates, orphans;
  {
    absl::MutexLock l(&mu_);
    for (const auto& id : seen_running_) {
      if (!running_.count(id)) candidates.push_back(id);
    }
  }
  for (const auto& id : candidates) {
    auto owner = owners_.OwnerOf(id);
    if (owner.ok() && owner->empty()) orphans.push_back(id);
  }
  absl::MutexLock s(&step_mu_);
  std::vector<std::string> ids;
  for (const auto& [id, a] : active_) ids.push_back(id);
  for (const auto& id : ids) {
    auto it = active_.find(id);
    if (it == active_.end()) continue;
    Active& a = *it->second;
    a.confirmed = false;
    if (a.stalled) {
      Continue(a);  // confirms again, then goes on where it stalled
    } else if (!owners_.StillOwned(id)) {
      Drop(id, "this replica's lease was replaced or its owner key deleted");
    }
  }
  for (const auto& id : orphans) TakeOver(id, "");
}

void RolloutEngine::OnOwnerGone(const std::string& id, const std::string& previous) {
  absl::MutexLock s(&step_mu_);
  bool here = false;
  {
    absl::MutexLock l(&mu_);
    here = running_.count(id) > 0;
  }
  if (here) {
    if (owners_.StillOwned(id)) return;  // a key of an older lease of ours, or our release
    Drop(id, "its owner key was deleted: this replica's lease ended");
  }
  TakeOver(id, previous);
}

void RolloutEngine::TakeOver(const std::string& id, const std::string& previous) {
  {
    absl::MutexLock l(&mu_);
    if (stopping_ || running_.count(id)) return;
  }
  // Most keys that go are of rollouts that finished: read before contending for the key.
  // (Not RUNNING: no longer a candidate for Scan; unreadable: the next scan tries again.)
  auto seen = store_.GetRollout(id);
  if (!seen.ok()) return;
  if (seen->state() != herd::v1::ROLLOUT_STATE_RUNNING) {
    absl::MutexLock l(&mu_);
    seen_running_.erase(id);
    return;
  }
  if (auto s = owners_.Acquire(id); !s.ok()) {
    log_->debug("event=rollout_takeover_skipped id={} why=\"{}\"", id, s.message());
    return;
  }
  // Read again now that it is ours: the previous owner's last write is in.
  auto r = store_.GetRollout(id);
  if (!r.ok() || r->state() != herd::v1::ROLLOUT_STATE_RUNNING) {
    owners_.Release(id);
    return;
  }
  {
    absl::MutexLock l(&mu_);
    seen_running_.insert(id);
  }
  const std::string& self = owners_.self_id();
  auto a = std::make_unique<Active>();
  a->r = *std::move(r);
  const std::vector<std::string> interrupted = InterruptUnanswered(a->r, previous, self);
  for (const auto& h : a->r.hosts()) {
    if (h.state() == herd::v1::ROLLOUT_HOST_STATE_FAILED) ++a->failures;
  }
  a->batch = ResumeBatch(a->r);
  // A RUNNING rollout's reason is what earlier takeovers did: kept, this one added.
  const std::string note = TakeoverNote(a->r, interrupted, a->batch, previous, self);
  a->takeover_note = a->r.reason().empty() ? note : absl::StrCat(a->r.reason(), "; ", note);
  a->r.set_reason(a->takeover_note);
  a->confirmed = true;  // Acquire just said so
  audit_.Audit(absl::StrCat("replica:", self), "rollout.takeover",
               nlohmann::json{{"id", id},
                              {"from", previous},
                              {"batch", a->batch},
                              {"interrupted", interrupted}}
                   .dump());
  {
    absl::MutexLock l(&mu_);
    running_[id] = a->r;
  }
  Active& taken = *active_.emplace(id, std::move(a)).first->second;
  log_->info("event=rollout_taken_over id={} from={} batch={} interrupted={} grace_ms={}", id,
             previous, taken.batch, interrupted.size(),
             absl::ToInt64Milliseconds(owners_.takeover_grace()));
  Publish(taken.r);
  life_->Post([id](RolloutEngine& e) { e.Begin(id); }, owners_.takeover_grace());
}

void RolloutEngine::OnStoredChange(const Rollout& r) {
  std::vector<Watcher> ws;
  absl::MutexLock w(&watch_mu_);
  {
    absl::MutexLock l(&mu_);
    if (r.state() == herd::v1::ROLLOUT_STATE_RUNNING) {
      seen_running_.insert(r.id());
    } else {
      seen_running_.erase(r.id());
    }
    if (running_.count(r.id())) return;  // run here: Publish told its watchers
    for (const auto& [wid, watch] : watchers_) {
      if (watch.first == r.id()) ws.push_back(watch.second);
    }
    if (ws.empty()) return;
    uint64_t& last = delivered_[r.id()];
    const uint64_t now = Progress(r);
    if (now <= last) return;  // given already (or an older write arriving late)
    last = now;
  }
  for (auto& fn : ws) fn(r);
}

}  // namespace herd::controlplane
