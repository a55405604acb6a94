// Fakes of the five narrow interfaces the Fleet API sees of the hub
// (controlplane/core/fleet_interfaces.h), so that RolloutEngine and FleetService are tested
// without a hub, agents or sockets:
//
//   FakeFleetHosts    HostDirectory: hosts added by the test, with their modules and labels
//   FakeFleetConfig   ConfigService: records sets and unsets, answers with a revision
//   FakeFleetRelay    RequestRelay: records each request; the test answers each host of a
//                     restart when it chooses (success, failure, timeout), or has some hosts
//                     answer at once (offline: the hub fails them inside RestartOnHosts)
//   FakeFleetMetrics  MetricsFeed: the test publishes batches to the watchers
//   FakeFleetAudit    AuditLog: records entries
//
// Thread-safe; callbacks run on the thread that answers (the test's, or one of its own, as
// the hub's threads would), never under the fake's lock.
#pragma once

#include <algorithm>
#include <condition_variable>
#include <cstdint>
#include <functional>
#include <map>
#include <mutex>
#include <optional>
#include <set>
#include <string>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "controlplane/core/fleet_interfaces.h"

namespace herd::testing {

class FakeFleetHosts final : public controlplane::HostDirectory {
 public:
  struct Host {
    std::string id, hostname;
    std::vector<std::string> modules;
    std::map<std::string, std::string> labels;
    bool online = true;
  };
  void Add(Host h) {
    std::lock_guard<std::mutex> l(mu_);
    if (h.hostname.empty()) h.hostname = h.id;
    hosts_[h.id] = std::move(h);
  }
  // Every call fails with `s` until cleared with OkStatus (a directory that cannot answer).
  void FailWith(absl::Status s) {
    std::lock_guard<std::mutex> l(mu_);
    fail_ = std::move(s);
  }

  // all / no target: every host; hosts: by id or hostname; selector: `k=v` terms, all of
  // which must hold.
  absl::StatusOr<std::vector<std::string>> ResolveTarget(
      const herd::v1::Target& target) const override {
    std::lock_guard<std::mutex> l(mu_);
    if (!fail_.ok()) return fail_;
    std::vector<std::string> out;
    if (target.what_case() == herd::v1::Target::kHosts) {
      for (const auto& want : target.hosts().ids()) {
        auto it = std::find_if(hosts_.begin(), hosts_.end(), [&](const auto& e) {
          return e.first == want || e.second.hostname == want;
        });
        if (it == hosts_.end()) return absl::NotFoundError(absl::StrCat("unknown host ", want));
        out.push_back(it->first);
      }
      return out;
    }
    for (const auto& [id, h] : hosts_) {
      if (target.what_case() != herd::v1::Target::kSelector || Matches(h, target.selector())) {
        out.push_back(id);
      }
    }
    return out;
  }
  absl::StatusOr<std::vector<herd::v1::Host>> ListHosts(
      const herd::v1::Target& target) const override {
    auto ids = ResolveTarget(target);
    if (!ids.ok()) return ids.status();
    std::lock_guard<std::mutex> l(mu_);
    std::vector<herd::v1::Host> out;
    for (const auto& id : *ids) out.push_back(ToProto(hosts_.at(id)));
    return out;
  }
  absl::StatusOr<herd::v1::HostDetail> GetHost(const std::string& host_id) const override {
    std::lock_guard<std::mutex> l(mu_);
    if (!fail_.ok()) return fail_;
    auto it = hosts_.find(host_id);
    if (it == hosts_.end()) return absl::NotFoundError(absl::StrCat("unknown host ", host_id));
    herd::v1::HostDetail d;
    *d.mutable_host() = ToProto(it->second);
    return d;
  }
  absl::StatusOr<std::vector<herd::v1::ModuleInstance>> ListModules(
      const herd::v1::Target& target, const std::string& module) const override {
    auto ids = ResolveTarget(target);
    if (!ids.ok()) return ids.status();
    std::lock_guard<std::mutex> l(mu_);
    std::vector<herd::v1::ModuleInstance> out;
    for (const auto& id : *ids) {
      const Host& h = hosts_.at(id);
      for (const auto& m : h.modules) {
        if (!module.empty() && m != module) continue;
        herd::v1::ModuleInstance mi;
        mi.set_host_id(h.id);
        mi.set_hostname(h.hostname);
        mi.set_online(h.online);
        mi.mutable_unit()->set_name(m);
        mi.mutable_unit()->set_is_module(true);
        out.push_back(std::move(mi));
      }
    }
    return out;
  }
  absl::StatusOr<std::vector<std::pair<std::string, std::string>>> HostsWithModule(
      const herd::v1::Target& target, const std::string& module) const override {
    auto ids = ResolveTarget(target);
    if (!ids.ok()) return ids.status();
    std::lock_guard<std::mutex> l(mu_);
    std::vector<std::pair<std::string, std::string>> out;
    for (const auto& id : *ids) {
      const Host& h = hosts_.at(id);
      if (std::find(h.modules.begin(), h.modules.end(), module) != h.modules.end()) {
        out.emplace_back(h.id, h.hostname);
      }
    }
    std::sort(out.begin(), out.end());
    return out;
  }
  absl::StatusOr<herd::v1::Series> QuerySeries(
      const herd::v1::QuerySeriesRequest& req) const override {
    std::lock_guard<std::mutex> l(mu_);
    if (!fail_.ok()) return fail_;
    if (!hosts_.count(req.host_id())) {
      return absl::NotFoundError(absl::StrCat("unknown host ", req.host_id()));
    }
    herd::v1::Series s;
    s.set_host_id(req.host_id());
    s.set_unit(req.unit());
    auto* p = s.add_points();
    p->set_at_unix_ms(1);
    p->set_value(42);
    return s;
  }

 private:
  static bool Matches(const Host& h, const std::string& selector) {
    for (absl::string_view term : absl::StrSplit(selector, ',', absl::SkipEmpty())) {
      std::pair<std::string, std::string> kv = absl::StrSplit(term, absl::MaxSplits('=', 1));
      auto it = h.labels.find(kv.first);
      if (it == h.labels.end() || it->second != kv.second) return false;
    }
    return true;
  }
  static herd::v1::Host ToProto(const Host& h) {
    herd::v1::Host p;
    p.set_host_id(h.id);
    p.set_hostname(h.hostname);
    p.set_online(h.online);
    p.set_modules(static_cast<uint32_t>(h.modules.size()));
    for (const auto& [k, v] : h.labels) (*p.mutable_labels())[k] = v;
    return p;
  }

  mutable std::mutex mu_;
  std::map<std::string, Host> hosts_;  // by id
  absl::Status fail_;
};

class FakeFleetConfig final : public controlplane::ConfigService {
 public:
  struct Change {
    std::string actor, module, key;
    bool set = true;  // false: an unset
  };
  absl::StatusOr<herd::v1::FleetConfig> GetConfig(const std::string& module,
                                                  const std::string&) const override {
    std::lock_guard<std::mutex> l(mu_);
    herd::v1::FleetConfig c;
    c.set_revision(revision_);
    for (const auto& ch : changes_) {
      if (ch.set && (module.empty() || ch.module == module)) {
        auto* o = c.add_overrides();
        o->set_module(ch.module);
        o->set_key(ch.key);
      }
    }
    return c;
  }
  absl::StatusOr<herd::v1::FleetConfigChange> SetConfig(
      const herd::v1::FleetSetConfigRequest& req, const controlplane::Actor& actor) override {
    return Record({actor.name, req.module(), req.key(), true});
  }
  absl::StatusOr<herd::v1::FleetConfigChange> UnsetConfig(
      const herd::v1::FleetUnsetConfigRequest& req, const controlplane::Actor& actor) override {
    return Record({actor.name, req.module(), req.key(), false});
  }
  std::vector<Change> changes() const {
    std::lock_guard<std::mutex> l(mu_);
    return changes_;
  }

 private:
  herd::v1::FleetConfigChange Record(Change c) {
    std::lock_guard<std::mutex> l(mu_);
    changes_.push_back(std::move(c));
    herd::v1::FleetConfigChange out;
    out.set_revision(++revision_);
    out.set_changed(true);
    return out;
  }
  mutable std::mutex mu_;
  std::vector<Change> changes_;
  uint64_t revision_ = 1;
};

class FakeFleetRelay final : public controlplane::RequestRelay {
 public:
  // One RestartOnHosts call, as made.
  struct Restart {
    std::vector<std::string> host_ids;
    std::vector<std::string> units;
    uint32_t wait_healthy_ms = 0;
    std::string rollout_id;
  };
  using RestartDone = std::function<void(size_t, absl::StatusOr<herd::v1::RestartResult>)>;

  // `host_id`'s restarts are answered inside RestartOnHosts with `result` (as the hub does
  // for a host that is offline).
  void AnswerAtOnce(const std::string& host_id, absl::StatusOr<herd::v1::RestartResult> result) {
    std::lock_guard<std::mutex> l(mu_);
    at_once_.insert_or_assign(host_id, std::move(result));
  }

  // Called with every RestartOnHosts call as it is made (before any answer), on its thread.
  void set_on_restart(std::function<void(const Restart&)> hook) {
    std::lock_guard<std::mutex> l(mu_);
    on_restart_ = std::move(hook);
  }

  void RestartOnHosts(const std::vector<std::string>& host_ids,
                      const std::vector<std::string>& units, uint32_t wait_healthy_ms,
                      const std::string& rollout_id, RestartDone done) override {
    std::function<void(const Restart&)> hook;
    {
      std::lock_guard<std::mutex> l(mu_);
      hook = on_restart_;
    }
    if (hook) hook(Restart{host_ids, units, wait_healthy_ms, rollout_id});
    std::vector<std::pair<size_t, absl::StatusOr<herd::v1::RestartResult>>> now;
    {
      std::lock_guard<std::mutex> l(mu_);
      restarts_.push_back({host_ids, units, wait_healthy_ms, rollout_id});
      for (size_t i = 0; i < host_ids.size(); ++i) {
        if (auto it = at_once_.find(host_ids[i]); it != at_once_.end()) {
          now.emplace_back(i, it->second);
        } else {
          told_.push_back({host_ids[i], i, done, units});
        }
      }
    }
    cv_.notify_all();
    for (auto& [i, r] : now) done(i, std::move(r));
  }

  // Answers the oldest unanswered restart of `host_id`: false if there is none.
  bool Answer(const std::string& host_id, absl::StatusOr<herd::v1::RestartResult> result) {
    std::optional<Told> t = TakeTold(host_id);
    if (!t) return false;
    t->done(t->index, std::move(result));
    return true;
  }
  // The host restarted every unit asked for and they stayed up.
  bool Succeed(const std::string& host_id) { return AnswerUnits(host_id, true, ""); }
  // The host answered that a unit failed (`error`: what it said).
  bool Fail(const std::string& host_id, const std::string& error = "exited during the wait") {
    return AnswerUnits(host_id, false, error);
  }
  // The host did not answer in time (what the hub reports then).
  bool TimeOut(const std::string& host_id) {
    return Answer(host_id, absl::DeadlineExceededError(
                               absl::StrCat("host ", host_id, " did not answer in time")));
  }

  // Hosts told to restart that have not been answered, oldest first.
  std::vector<std::string> told() const {
    std::lock_guard<std::mutex> l(mu_);
    std::vector<std::string> out;
    for (const auto& t : told_) out.push_back(t.host_id);
    return out;
  }
  std::vector<Restart> restarts() const {
    std::lock_guard<std::mutex> l(mu_);
    return restarts_;
  }
  // Blocks until RestartOnHosts has been called `n` times (for tests whose steps run on a
  // scheduler thread of their own). No timeout: the test's own timeout is the bound.
  void WaitForRestarts(size_t n) const {
    std::unique_lock<std::mutex> l(mu_);
    cv_.wait(l, [&] { return restarts_.size() >= n; });
  }

  // Actions: every host the target names by id answers ok, with action_reply_json.
  void TriggerAction(
      const herd::v1::FleetActionRequest& req, const controlplane::Actor& actor,
      std::function<void(absl::StatusOr<herd::v1::FleetActionResponse>)> done) override {
    herd::v1::FleetActionResponse resp;
    {
      std::lock_guard<std::mutex> l(mu_);
      actions_.push_back({actor.name, req});
      for (const auto& id : req.target().hosts().ids()) {
        auto* r = resp.add_results();
        r->set_host_id(id);
        r->set_ok(true);
        r->set_reply_json(action_reply_json_);
      }
    }
    done(std::move(resp));
  }
  void set_action_reply_json(std::string json) {
    std::lock_guard<std::mutex> l(mu_);
    action_reply_json_ = std::move(json);
  }
  std::vector<std::pair<std::string, herd::v1::FleetActionRequest>> actions() const {
    std::lock_guard<std::mutex> l(mu_);
    return actions_;
  }

  // Logs: each request is kept; the test sends lines and ends it.
  std::string StreamLogs(const herd::v1::FleetLogsRequest& req,
                         std::function<void(const herd::v1::LogChunk&)> on_lines,
                         std::function<void(absl::Status)> on_end) override {
    std::lock_guard<std::mutex> l(mu_);
    const std::string id = absl::StrCat("logs-", ++next_log_);
    logs_[id] = {req, std::move(on_lines), std::move(on_end)};
    cv_.notify_all();
    return id;
  }
  void CancelLogs(const std::string& request_id) override {
    std::lock_guard<std::mutex> l(mu_);
    if (logs_.erase(request_id)) cancelled_logs_.push_back(request_id);
  }
  // Sends `lines` to every open log request, then ends them with `end`.
  void SendLogs(const std::vector<std::string>& lines, absl::Status end = absl::OkStatus()) {
    std::map<std::string, Logs> open;
    {
      std::lock_guard<std::mutex> l(mu_);
      open.swap(logs_);
    }
    for (auto& [id, lg] : open) {
      herd::v1::LogChunk c;
      for (const auto& text : lines) {
        auto* line = c.add_lines();
        line->set_unit(lg.req.unit());
        line->set_text(text);
      }
      lg.on_lines(c);
      lg.on_end(end);
    }
  }
  void WaitUntilLogsOpen(size_t n) const {
    std::unique_lock<std::mutex> l(mu_);
    cv_.wait(l, [&] { return logs_.size() >= n; });
  }
  std::vector<std::string> cancelled_logs() const {
    std::lock_guard<std::mutex> l(mu_);
    return cancelled_logs_;
  }

 private:
  std::function<void(const Restart&)> on_restart_;
  struct Told {
    std::string host_id;
    size_t index;
    RestartDone done;
    std::vector<std::string> units;
  };
  struct Logs {
    herd::v1::FleetLogsRequest req;
    std::function<void(const herd::v1::LogChunk&)> on_lines;
    std::function<void(absl::Status)> on_end;
  };
  std::optional<Told> TakeTold(const std::string& host_id) {
    std::lock_guard<std::mutex> l(mu_);
    auto it = std::find_if(told_.begin(), told_.end(),
                           [&](const Told& t) { return t.host_id == host_id; });
    if (it == told_.end()) return std::nullopt;
    Told t = std::move(*it);
    told_.erase(it);
    return t;
  }
  // Answers with one result per unit asked for.
  bool AnswerUnits(const std::string& host_id, bool ok, const std::string& error) {
    std::optional<Told> t = TakeTold(host_id);
    if (!t) return false;
    herd::v1::RestartResult r;
    for (const auto& u : t->units) {
      auto* x = r.add_units();
      x->set_unit(u);
      x->set_ok(ok);
      if (!ok) x->set_error(error);
    }
    t->done(t->index, std::move(r));
    return true;
  }

  mutable std::mutex mu_;
  mutable std::condition_variable cv_;
  std::map<std::string, absl::StatusOr<herd::v1::RestartResult>> at_once_;
  std::vector<Restart> restarts_;
  std::vector<Told> told_;
  std::vector<std::pair<std::string, herd::v1::FleetActionRequest>> actions_;
  std::string action_reply_json_ = "{}";
  std::map<std::string, Logs> logs_;
  std::vector<std::string> cancelled_logs_;
  uint64_t next_log_ = 0;
};

class FakeFleetMetrics final : public controlplane::MetricsFeed {
 public:
  uint64_t WatchMetrics(std::set<std::string> hosts, MetricsWatcher watcher) override {
    std::lock_guard<std::mutex> l(mu_);
    const uint64_t id = next_++;
    watchers_[id] = {std::move(hosts), std::move(watcher)};
    cv_.notify_all();
    return id;
  }
  void Unwatch(uint64_t id) override {
    std::lock_guard<std::mutex> l(mu_);
    watchers_.erase(id);
  }
  // Hands `m` to the watchers of its host (as the hub does when a batch arrives).
  void Publish(const herd::v1::HostMetrics& m) {
    std::vector<MetricsWatcher> ws;
    {
      std::lock_guard<std::mutex> l(mu_);
      for (const auto& [id, w] : watchers_) {
        if (w.first.empty() || w.first.count(m.host_id())) ws.push_back(w.second);
      }
    }
    for (auto& w : ws) w(m);
  }
  size_t watchers() const {
    std::lock_guard<std::mutex> l(mu_);
    return watchers_.size();
  }
  void WaitUntilWatched(size_t n) const {
    std::unique_lock<std::mutex> l(mu_);
    cv_.wait(l, [&] { return watchers_.size() >= n; });
  }

 private:
  mutable std::mutex mu_;
  mutable std::condition_variable cv_;
  std::map<uint64_t, std::pair<std::set<std::string>, MetricsWatcher>> watchers_;
  uint64_t next_ = 1;
};

class FakeFleetAudit final : public controlplane::AuditLog {
 public:
  // Most recent first.
  absl::StatusOr<std::vector<herd::v1::AuditEntry>> ListAudit(size_t limit) const override {
    std::lock_guard<std::mutex> l(mu_);
    std::vector<herd::v1::AuditEntry> out(entries_.rbegin(), entries_.rend());
    if (out.size() > limit) out.resize(limit);
    return out;
  }
  void Audit(const std::string& actor, const std::string& action,
             const std::string& detail_json) override {
    std::lock_guard<std::mutex> l(mu_);
    herd::v1::AuditEntry e;
    e.set_at_unix_ms(static_cast<int64_t>(entries_.size()) + 1);
    e.set_actor(actor);
    e.set_action(action);
    e.set_detail_json(detail_json);
    entries_.push_back(std::move(e));
  }
  // Oldest first.
  std::vector<herd::v1::AuditEntry> entries() const {
    std::lock_guard<std::mutex> l(mu_);
    return entries_;
  }

 private:
  mutable std::mutex mu_;
  std::vector<herd::v1::AuditEntry> entries_;
};

}  // namespace herd::testing
