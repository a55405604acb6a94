#include "controlplane/core/host_config_service.h"

#include <algorithm>
#include <map>
#include <utility>

#include "absl/strings/ascii.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "common/config_value.h"
#include "common/labels.h"
#include "common/log_escape.h"
#include "common/utf8.h"
#include "controlplane/core/config_resolver.h"
#include "controlplane/core/deployments.h"
#include "nlohmann/json.hpp"

namespace herd::controlplane {
namespace {

using json = nlohmann::json;
using herd::v1::ControlMessage;

// What a key and its value take in the JSON object agentd puts in the module's environment
// ("key":"value", with JSON's escapes).
size_t EncodedBytes(const std::string& key, const std::string& value) {
  constexpr auto kReplace = json::error_handler_t::replace;
  return json(key).dump(-1, ' ', false, kReplace).size() +
         json(value).dump(-1, ' ', false, kReplace).size() + 2;
}

}  // namespace

HostConfigService::HostConfigService(Store& store, HostRegistry& registry, SendPool& sends,
                                     AuditLog& audit, const Clock& clock,
                                     const HubOptions& options)
    : store_(store),
      registry_(registry),
      sends_(sends),
      audit_(audit),
      clock_(clock),
      options_(options),
      log_(herd::Logger("hub")) {}

absl::Status HostConfigService::Load() {
  absl::MutexLock config_lock(&config_mu_);
  // The revision first: the overrides read after it are at least as new.
  auto rev = store_.ConfigRevision();
  if (!rev.ok()) return rev.status();
  if (auto s = ReloadOverrides(); !s.ok()) return s;
  loaded_revision_ = *rev;
  return absl::OkStatus();
}

HostConfigService::LocalChange::LocalChange(HostConfigService& s) : s_(s) {
  absl::MutexLock config_lock(&s_.config_mu_);
  ++s_.local_changes_;
}

HostConfigService::LocalChange::~LocalChange() {
  absl::MutexLock config_lock(&s_.config_mu_);
  --s_.local_changes_;
}

absl::StatusOr<std::vector<std::string>> HostConfigService::ReloadFromStore() {
  {
    absl::MutexLock config_lock(&config_mu_);
    // A change made here is in flight: its own reload and push come first (they report the
    // hosts it changed to its caller); this one then finds that revision loaded. (Await
    // releases config_mu_ while it waits.) Bounded: changes made here without a pause must
    // not hold other replicas' changes back; past it, a caller's reply may list fewer hosts.
    config_mu_.AwaitWithTimeout(
        absl::Condition(+[](int* n) { return *n == 0; }, &local_changes_), absl::Seconds(2));
    auto rev = store_.ConfigRevision();
    if (!rev.ok()) return rev.status();
    if (*rev == loaded_revision_) return std::vector<std::string>();
    if (auto s = ReloadOverrides(); !s.ok()) return s;
    log_->info("event=config_reloaded revision={} loaded={}", *rev, loaded_revision_);
    loaded_revision_ = *rev;
  }
  // A change made here between the two locks is pushed by whichever runs first; the other
  // finds every snapshot unchanged (interned: equal ones are one) and sends nothing.
  return PushConfig();
}

void HostConfigService::AddStats(HubStats& s) const {
  s.config_pushes = config_pushes_.load(std::memory_order_relaxed);
  s.config_nacks = config_nacks_.load(std::memory_order_relaxed);
}

std::set<std::string> HostConfigService::Installed(const HostState& h) {
  std::set<std::string> out;
  for (const auto& m : h.record.modules) out.insert(m.name());
  return out;
}

absl::Status HostConfigService::ReloadOverrides() {
  auto all = store_.ListOverrides();
  if (!all.ok()) {
    log_->error("event=config_unreadable error=\"{}\"", all.status().message());
    return all.status();
  }
  overrides_ = std::move(*all);
  return absl::OkStatus();
}

std::shared_ptr<const herd::v1::ConfigSnapshot> HostConfigService::Shared(
    herd::v1::ConfigSnapshot snap) {
  std::string key = DeterministicBytes(snap);
  return snapshots_.Intern(std::move(key), std::move(snap));
}

std::optional<ControlMessage> HostConfigService::NextSnapshot(
    HostState& h, std::shared_ptr<const herd::v1::ConfigSnapshot> snap, bool force) {
  if (!h.session) return std::nullopt;
  // Snapshots are interned (Shared): two alive ones are equal exactly when they are one.
  if (!force && h.sent == snap) return std::nullopt;
  h.sent_version = std::max(h.record.acked_config_version, h.sent_version) + 1;
  h.sent = std::move(snap);
  h.rejections.clear();  // they were about an older version: the host is asked again
  config_pushes_.fetch_add(1, std::memory_order_relaxed);
  ControlMessage m;
  *m.mutable_config() = *h.sent;
  m.mutable_config()->set_version(h.sent_version);
  return m;
}

std::shared_ptr<HostSession> HostConfigService::Attach(
    HostEntry& e, std::shared_ptr<HostSession> session, ControlMessage welcome,
    const std::function<std::shared_ptr<HostSession>(HostState&)>& attach) {
  // The session is attached only now, with the Welcome queued first under the host's lock:
  // nothing (a config push, an action) can reach the agent before its Welcome. Config
  // changes push under config_mu_ too, so this host's versions go out in order.
  absl::MutexLock config_lock(&config_mu_);
  absl::MutexLock hl(&e.mu);
  HostState& h = e.s;
  std::shared_ptr<HostSession> replaced = attach(h);
  std::optional<ControlMessage> snapshot = NextSnapshot(
      h, Shared(ResolveHostConfig(overrides_, h.record.host_id, h.record.labels, Installed(h))),
      /*force=*/true);
  sends_.Post(h.record.host_id, session, std::move(welcome));
  if (snapshot) sends_.Post(h.record.host_id, session, std::move(*snapshot));
  return replaced;
}

// Resolved once per kind of host: its labels, and its module list. Hosts that report the
// same modules share one interned list, so the list is known by its address; the cache
// holds the list, so no other list can take that address while it is in use.
struct HostConfigService::Resolution {
  ModuleList modules;
  std::shared_ptr<const herd::v1::ConfigSnapshot> snapshot;
};

std::shared_ptr<const herd::v1::ConfigSnapshot> HostConfigService::ResolveFor(
    const std::string& id, const HostState& h, bool alone,
    std::map<std::string, Resolution>& resolved) {
  std::string key;
  if (alone) {
    absl::StrAppend(&key, "host\n", id, "\n");
  } else {
    for (const auto& [k, v] : h.record.labels) absl::StrAppend(&key, k, "=", v, "\n");
  }
  absl::StrAppend(&key, "\n", reinterpret_cast<uintptr_t>(&h.record.modules.vector()));
  auto it = resolved.find(key);
  if (it == resolved.end()) {
    it = resolved
             .emplace(key, Resolution{h.record.modules,
                                      Shared(ResolveHostConfig(overrides_, id, h.record.labels,
                                                               Installed(h)))})
             .first;
  }
  return it->second.snapshot;
}

std::vector<std::string> HostConfigService::PushConfig(const std::string* only) {
  const absl::Time t0 = clock_.Monotonic();
  absl::MutexLock config_lock(&config_mu_);
  const absl::Time t_locked = clock_.Monotonic();
  // Hosts named by a host-scoped override resolve on their own; every other host's snapshot
  // depends only on its labels and installed modules.
  std::set<std::string> own;
  for (const auto& o : overrides_) {
    if (o.scope().has_host_id()) own.insert(o.scope().host_id());
    // Hosts a deploy rollout moved resolve on their own too (deployments.h, DeployPins).
    if (o.module() == kDeployModule && o.value().find("\"rollout\"") != std::string::npos) {
      herd::v1::DesiredModule base;
      DeployPins pins;
      if (ParseDeployValue(o.value(), &base, nullptr, &pins)) {
        own.insert(pins.hosts.begin(), pins.hosts.end());
      }
    }
  }
  std::vector<Entry> targets;
  if (only != nullptr) {
    if (Entry e = registry_.Find(*only)) targets.push_back(std::move(e));
  } else {
    targets = registry_.Entries();
  }
  std::map<std::string, Resolution> resolved;
  std::vector<SendPool::Outgoing> sends;
  size_t sent = 0;
  // Handed to the send threads as they are made, so the first hosts have theirs while the
  // last are still being resolved.
  auto flush = [&] {
    sent += sends.size();
    sends_.PostAll(std::move(sends));
    sends.clear();
  };
  std::vector<std::string> changed;
  for (const Entry& e : targets) {
    {
      absl::MutexLock hl(&e->mu);
      HostState& h = e->s;
      const std::string& id = h.record.host_id;
      auto now = ResolveFor(id, h, own.count(id) > 0, resolved);
      if (h.sent != now) {
        // Offline, it gets its snapshot when it connects; it changed if it was sent another.
        if (h.session || h.sent) changed.push_back(id);
        if (auto m = NextSnapshot(h, now, /*force=*/false)) {
          const uint64_t version = m->config().version();
          sends.push_back({id, h.session, std::move(*m),
                           [this, session = h.session, version] {
                             log_->warn("event=config_not_sent peer={} version={}",
                                        session->Peer(), version);
                           }});
        }
      }
    }
    if (sends.size() >= kHandOff) flush();
  }
  flush();
  if (sent > 1) {
    log_->info("event=config_pushed hosts={} resolutions={} wait_ms={} resolve_and_post_ms={}",
               sent, resolved.size(), absl::ToInt64Milliseconds(t_locked - t0),
               absl::ToInt64Milliseconds(clock_.Monotonic() - t_locked));
  }
  return changed;
}

void HostConfigService::OnAck(HostState& h, const herd::v1::ConfigAck& ack, LimitHits* hits,
                              bool* save) {
  const std::string& host_id = h.record.host_id;
  if (ack.accepted()) {
    h.record.acked_config_version = std::max(h.record.acked_config_version, ack.version());
    h.rejections.clear();
    *save = true;
    log_->debug("event=config_acked host={} version={} restarted=[{}]", host_id, ack.version(),
                absl::StrJoin(ack.restarted(), ","));
    return;
  }
  config_nacks_.fetch_add(1, std::memory_order_relaxed);
  // Shown only while it is about the latest version sent (Host.config_rejections). Bounded
  // like everything else a host sends: at most one rejection per module it may have (and a
  // few more), each text clipped, names kept within their bound.
  const AgentLimits& limits = options_.limits;
  const size_t keep = std::min<size_t>(ack.rejections_size(), limits.max_modules + 16);
  if (static_cast<size_t>(ack.rejections_size()) > keep) hits->Add(Limit::kModules);
  std::vector<herd::v1::ConfigRejection> kept(ack.rejections().begin(),
                                              ack.rejections().begin() + keep);
  for (auto& r : kept) {
    for (std::string* text : {r.mutable_module(), r.mutable_key()}) {
      if (text->size() > limits.max_name_bytes) {
        *text = TruncateUtf8(std::move(*text), limits.max_name_bytes);
        hits->Add(Limit::kNames);
      }
    }
    if (r.reason().size() > limits.max_text_bytes) {
      *r.mutable_reason() = TruncateUtf8(std::move(*r.mutable_reason()), limits.max_text_bytes);
      hits->Add(Limit::kText);
    }
  }
  std::vector<std::string> why;
  for (size_t i = 0; i < kept.size() && i < 8; ++i) {
    const auto& r = kept[i];
    why.push_back(absl::StrCat(r.module(), ":", r.key(), ": ", r.reason()));
  }
  if (ack.version() != h.nack_logged_version) {
    h.nack_logged_version = ack.version();
    log_->warn("event=config_rejected host={} version={} rejections={} reasons=\"{}\"", host_id,
               ack.version(), kept.size(), EscapeForLog(absl::StrJoin(why, "; "), 2048));
  }
  if (!h.sent || ack.version() >= h.sent_version) h.rejections = std::move(kept);
}
absl::Status HostConfigService::CheckConfigValue(const herd::v1::FleetSetConfigRequest& req) const {
  // Against every installed copy of the module that declares the key: each distinct set of
  // defaults once (a fleet runs few versions of a module), with a host that has it.
  bool installed = false;
  std::map<std::string, std::string> defaults_by_text;  // defaults_json → a host id
  for (const Entry& e : registry_.Entries()) {
    absl::MutexLock hl(&e->mu);
    for (const auto& m : e->s.record.modules) {
      if (m.name() != req.module()) continue;
      installed = true;
      defaults_by_text.emplace(m.defaults_json(), e->s.record.host_id);
    }
  }
  if (!installed) {
    return absl::NotFoundError(absl::StrCat(
        "no host has a module named \"", req.module(),
        "\": check the name with `agentctl modules`, or --force to set it before installing"));
  }
  bool declared = false;
  for (const auto& [text, id] : defaults_by_text) {
    json defaults = json::parse(text.empty() ? "{}" : text, nullptr, false);
    if (!defaults.is_object() || !defaults.contains(req.key())) continue;
    declared = true;
    auto converted = ConvertConfigValue(defaults[req.key()], req.key(), req.value());
    if (!converted.ok()) {
      return absl::InvalidArgumentError(absl::StrCat(
          req.module(), ":", converted.status().message(), " (checked against the manifest on ",
          id, "; --force sends it anyway)"));
    }
  }
  if (!declared) {
    return absl::InvalidArgumentError(absl::StrCat(
        req.module(), " does not declare \"", req.key(),
        "\" in its package.json config: check the key, or --force to set it anyway"));
  }
  return absl::OkStatus();
}

absl::Status HostConfigService::CheckConfigSize(const herd::v1::FleetSetConfigRequest& req,
                                  const herd::v1::Scope& scope) {
  const size_t value_bytes =
      json(req.value()).dump(-1, ' ', false, json::error_handler_t::replace).size();
  if (value_bytes > options_.max_config_value_bytes) {
    return absl::InvalidArgumentError(absl::StrCat(
        req.module(), ":", req.key(), ": the value takes ", value_bytes,
        " bytes (as JSON), more than the ", options_.max_config_value_bytes,
        " a value may take: a module gets its config in one environment variable, which the "
        "kernel caps at 128 KiB; give a path to a file with the data instead"));
  }
  // The most the module's overrides can take on one host: every key at its largest value
  // among the scopes (a host may match them all), with this one in place of the value it
  // replaces at its scope.
  std::map<std::string, size_t> widest;  // key → bytes
  {
    absl::MutexLock config_lock(&config_mu_);
    for (const auto& o : overrides_) {
      if (o.module() != req.module()) continue;
      if (o.key() == req.key() && DeterministicBytes(CanonicalScope(o.scope())) ==
                                      DeterministicBytes(scope)) {
        continue;
      }
      size_t& w = widest[o.key()];
      w = std::max(w, EncodedBytes(o.key(), o.value()));
    }
  }
  size_t& mine = widest[req.key()];
  mine = std::max(mine, EncodedBytes(req.key(), req.value()));
  size_t total = 2;
  for (const auto& [k, bytes] : widest) total += bytes + 1;
  if (total > options_.max_module_config_bytes) {
    return absl::InvalidArgumentError(absl::StrCat(
        req.module(), ": with this value its overrides could take ", total,
        " bytes (as JSON, on a host every scope applies to), more than the ",
        options_.max_module_config_bytes,
        " a module's config may take (it reaches the module in one environment variable, "
        "which the kernel caps at 128 KiB, and it would not start): unset overrides it does "
        "not need (agentctl conf ", req.module(), " lists them), or shorten values"));
  }
  return absl::OkStatus();
}

absl::StatusOr<herd::v1::FleetConfigChange> HostConfigService::SetConfig(
    const herd::v1::FleetSetConfigRequest& req, const Actor& actor) {
  if (auto s = CheckScope(req.scope()); !s.ok()) return s;
  if (!ValidId(req.module(), 214) || req.key().empty() || req.key().size() > 256) {
    return absl::InvalidArgumentError("give MODULE:KEY with a valid module name and a key");
  }
  herd::v1::Scope scope = CanonicalScope(req.scope());
  if (scope.what_case() == herd::v1::Scope::kHostId) {
    // A hostname is accepted for convenience.
    Entry e = registry_.FindByIdOrName(scope.host_id());
    if (!e) {
      return absl::NotFoundError(absl::StrCat("no host \"", scope.host_id(),
                                              "\": see `agentctl hosts`"));
    }
    absl::MutexLock hl(&e->mu);
    scope.set_host_id(e->s.record.host_id);
  }
  // Sizes are checked with --force too: past them the module cannot start at all.
  if (auto s = CheckConfigSize(req, scope); !s.ok()) return s;
  if (!req.force()) {
    if (auto s = CheckConfigValue(req); !s.ok()) return s;
  }
  herd::v1::Override o;
  *o.mutable_scope() = scope;
  o.set_module(req.module());
  o.set_key(req.key());
  o.set_value(req.value());
  o.set_updated_at_unix_ms(absl::ToUnixMillis(clock_.Now()));
  o.set_updated_by(actor.name);
  LocalChange local(*this);
  auto w = store_.SetOverride(o);
  if (!w.ok()) return w.status();
  return ConfigChanged(*w, actor, "config.set",
                       json{{"scope", ScopeText(scope)}, {"module", req.module()},
                            {"key", req.key()}, {"value", req.value()}, {"force", req.force()}}
                           .dump());
}

absl::StatusOr<herd::v1::FleetConfigChange> HostConfigService::UnsetConfig(
    const herd::v1::FleetUnsetConfigRequest& req, const Actor& actor) {
  if (auto s = CheckScope(req.scope()); !s.ok()) return s;
  herd::v1::Scope scope = CanonicalScope(req.scope());
  if (scope.what_case() == herd::v1::Scope::kHostId) {
    if (Entry e = registry_.FindByIdOrName(scope.host_id())) {
      absl::MutexLock hl(&e->mu);
      scope.set_host_id(e->s.record.host_id);
    }
  }
  LocalChange local(*this);
  auto w = store_.UnsetOverride(scope, req.module(), req.key());
  if (!w.ok()) return w.status();
  return ConfigChanged(*w, actor, "config.unset",
                       json{{"scope", ScopeText(scope)}, {"module", req.module()},
                            {"key", req.key()}}
                           .dump());
}

herd::v1::FleetConfigChange HostConfigService::ConfigChanged(const ConfigWrite& w,
                                                             const Actor& actor,
                                                             const std::string& action,
                                                             const std::string& detail_json) {
  herd::v1::FleetConfigChange change;
  change.set_revision(w.revision);
  change.set_changed(w.changed);
  if (!w.changed) return change;
  audit_.Audit(actor.name, action, detail_json);
  {
    absl::MutexLock config_lock(&config_mu_);
    // On failure the cache keeps the previous overrides; the next change or restart
    // reloads them (the error is logged).
    if (ReloadOverrides().ok()) loaded_revision_ = std::max(loaded_revision_, w.revision);
  }
  for (auto& h : PushConfig()) change.add_hosts(h);
  return change;
}

absl::StatusOr<herd::v1::FleetConfig> HostConfigService::GetConfig(const std::string& module,
                                                     const std::string& host_id) const {
  auto all = store_.ListOverrides(module);
  if (!all.ok()) return all.status();
  auto rev = store_.ConfigRevision();
  if (!rev.ok()) return rev.status();
  herd::v1::FleetConfig out;
  out.set_revision(*rev);
  std::optional<HostRecord> host;
  if (!host_id.empty()) {
    Entry e = registry_.FindByIdOrName(host_id);
    if (!e) {
      return absl::NotFoundError(absl::StrCat("no host \"", host_id, "\": see `agentctl hosts`"));
    }
    absl::MutexLock hl(&e->mu);
    host = e->s.record;
  }
  for (const auto& o : *all) {
    if (o.module() == kDeployModule) continue;  // deployments are listed on their own
    if (host && !ScopeMatches(o.scope(), host->host_id, host->labels)) continue;
    *out.add_overrides() = o;
  }
  if (host) {
    std::set<std::string> installed;
    for (const auto& m : host->modules) installed.insert(m.name());
    auto snap = ResolveHostConfig(*all, host->host_id, host->labels, installed);
    for (const auto& m : host->modules) {
      if (!module.empty() && m.name() != module) continue;
      herd::v1::ModuleConfig* mc = out.add_effective();
      mc->set_module(m.name());
      json defaults = json::parse(m.defaults_json().empty() ? "{}" : m.defaults_json(), nullptr,
                                  false);
      if (!defaults.is_object()) defaults = json::object();
      std::set<std::string> keys;
      for (auto it = defaults.begin(); it != defaults.end(); ++it) keys.insert(it.key());
      auto sm = snap.modules().find(m.name());
      if (sm != snap.modules().end()) {
        for (const auto& [k, v] : sm->second.values()) keys.insert(k);
      }
      for (const auto& k : keys) {
        herd::v1::ConfigEntry* e = mc->add_entries();
        e->set_key(k);
        if (defaults.contains(k)) e->set_default_json(defaults[k].dump());
        bool has = sm != snap.modules().end() && sm->second.values().count(k);
        if (has) {
          e->set_has_override(true);
          e->set_override_value(sm->second.values().at(k));
          auto src = sm->second.sources().find(k);
          e->set_source(src != sm->second.sources().end() ? src->second : "");
          e->set_effective_json(json(sm->second.values().at(k)).dump());
        } else {
          e->set_source("default");
          if (defaults.contains(k)) e->set_effective_json(defaults[k].dump());
        }
      }
    }
  }
  return out;
}


}  // namespace herd::controlplane
