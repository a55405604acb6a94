#include "controlplane/core/host_registry.h"

#include <algorithm>
#include <utility>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "common/labels.h"

namespace herd::controlplane {

namespace {
absl::Status NoHost(const std::string& host) {
  return absl::NotFoundError(absl::StrCat("no host \"", host, "\": see `agentctl hosts`"));
}
}  // namespace

bool ValidId(const std::string& s, size_t max) {
  if (s.empty() || s.size() > max || s[0] == '.' || s[0] == '-') return false;
  return std::all_of(s.begin(), s.end(), [](char c) {
    return absl::ascii_isalnum(static_cast<unsigned char>(c)) || c == '.' || c == '_' ||
           c == '-';
  });
}

HostRegistry::HostRegistry(const Clock& clock, const HubOptions& options)
    : clock_(clock), options_(options), log_(herd::Logger("hub")) {}

void HostRegistry::Load(const std::vector<HostRecord>& records) {
  const int64_t mono_ms = MonoMs();
  const int64_t wall_ms = absl::ToUnixMillis(clock_.Now());
  absl::MutexLock l(&index_mu_);
  for (const auto& r : records) {
    auto e = std::make_shared<HostEntry>();
    absl::MutexLock hl(&e->mu);
    e->s.series = HostSeries(options_.series);
    e->s.record = r;
    SetOfflineFromRecord(e->s, mono_ms, wall_ms);
    by_id_[r.host_id] = e;
    hosts_[r.host_id] = std::move(e);
  }
}

void HostRegistry::SetOfflineFromRecord(HostState& h, int64_t mono_ms, int64_t wall_ms) const {
  h.disconnected_at_ms = h.record.last_seen_unix_ms;
  // Online for what is left of its lease, as if its stream had just ended then.
  h.disconnected_mono_ms = mono_ms - std::max<int64_t>(0, wall_ms - h.record.last_seen_unix_ms);
}

Entry HostRegistry::Adopt(const HostRecord& record) {
  const int64_t mono_ms = MonoMs();
  const int64_t wall_ms = absl::ToUnixMillis(clock_.Now());
  Entry e = Find(record.host_id);
  if (!e) {
    absl::MutexLock l(&index_mu_);
    Entry& slot = hosts_[record.host_id];
    if (!slot) {
      // Complete before it is published, as in FindOrAdd.
      slot = std::make_shared<HostEntry>();
      absl::MutexLock hl(&slot->mu);
      slot->s.series = HostSeries(options_.series);
      slot->s.record = record;
      SetOfflineFromRecord(slot->s, mono_ms, wall_ms);
      by_id_[record.host_id] = slot;
      return slot;
    }
    e = slot;
  }
  absl::MutexLock hl(&e->mu);
  if (e->s.session) return e;  // held here: this replica's state is the newer
  // What this replica sent it stays (sent, sent_version): its next snapshot here, if it
  // comes back, gets a higher version than both that and what it acked elsewhere.
  e->s.record = record;
  SetOfflineFromRecord(e->s, mono_ms, wall_ms);
  return e;
}

void HostRegistry::AdoptStatus(const HostStatus& status) {
  Entry e = Find(status.host_id);
  if (!e) return;  // its record comes first (ClusterSync reads it)
  const int64_t mono_ms = MonoMs();
  const int64_t wall_ms = absl::ToUnixMillis(clock_.Now());
  absl::MutexLock hl(&e->mu);
  if (e->s.session) return;
  e->s.record.last_seen_unix_ms = std::max(e->s.record.last_seen_unix_ms, status.last_seen_unix_ms);
  e->s.record.acked_config_version =
      std::max(e->s.record.acked_config_version, status.acked_config_version);
  SetOfflineFromRecord(e->s, mono_ms, wall_ms);
}

bool HostRegistry::Forget(const std::string& host_id) {
  absl::MutexLock l(&index_mu_);
  auto it = by_id_.find(host_id);
  if (it == by_id_.end()) return false;
  {
    absl::MutexLock hl(&it->second->mu);
    if (it->second->s.session) return false;
  }
  // Entries are shared: a caller holding this one keeps a valid (now unlisted) host.
  hosts_.erase(host_id);
  by_id_.erase(it);
  return true;
}

Entry HostRegistry::Find(const std::string& host_id) const {
  absl::ReaderMutexLock l(&index_mu_);
  auto it = by_id_.find(host_id);
  return it == by_id_.end() ? nullptr : it->second;
}

Entry HostRegistry::FindByIdOrName(const std::string& want) const {
  if (Entry e = Find(want)) return e;
  Entry found;
  for (const Entry& e : Entries()) {
    absl::MutexLock hl(&e->mu);
    if (e->s.record.hostname == want) found = e;
  }
  return found;
}

std::vector<Entry> HostRegistry::Entries() const {
  absl::ReaderMutexLock l(&index_mu_);
  std::vector<Entry> out;
  out.reserve(hosts_.size());
  for (const auto& [id, e] : hosts_) out.push_back(e);
  return out;
}

Entry HostRegistry::FindOrAdd(const std::string& host_id, const std::string& hostname,
                              int64_t now_ms, bool* added) {
  *added = false;
  if (Entry e = Find(host_id)) return e;
  absl::MutexLock l(&index_mu_);
  Entry& slot = hosts_[host_id];
  if (!slot) {
    // Complete before it is published: listings never see a host without its id.
    slot = std::make_shared<HostEntry>();
    absl::MutexLock hl(&slot->mu);
    slot->s.series = HostSeries(options_.series);
    slot->s.record.host_id = host_id;
    slot->s.record.registered_at_unix_ms = now_ms;
    slot->s.record.hostname = hostname;
    by_id_[host_id] = slot;
    *added = true;
  }
  return slot;
}

HostRoute HostRegistry::Route(const std::string& host_id) const {
  HostRoute route;
  Entry e = Find(host_id);
  if (!e) return route;
  route.known = true;
  absl::MutexLock hl(&e->mu);
  route.session = e->s.session;
  return route;
}

std::vector<std::shared_ptr<HostSession>> HostRegistry::Sessions() const {
  std::vector<std::shared_ptr<HostSession>> sessions;
  for (const Entry& e : Entries()) {
    absl::MutexLock hl(&e->mu);
    if (e->s.session) sessions.push_back(e->s.session);
  }
  return sessions;
}

size_t HostRegistry::ConnectedCount() const {
  size_t n = 0;
  for (const Entry& e : Entries()) {
    absl::MutexLock hl(&e->mu);
    if (e->s.session) ++n;
  }
  return n;
}

std::vector<std::pair<std::string, std::shared_ptr<HostSession>>> HostRegistry::Attached()
    const {
  std::vector<std::pair<std::string, std::shared_ptr<HostSession>>> out;
  for (const Entry& e : Entries()) {
    absl::MutexLock hl(&e->mu);
    if (e->s.session) out.emplace_back(e->s.record.host_id, e->s.session);
  }
  return out;
}

bool HostRegistry::Detach(const std::string& host_id, const HostSession* session) {
  Entry e = Find(host_id);
  if (!e) return false;
  absl::MutexLock hl(&e->mu);
  if (e->s.session.get() != session) return false;
  e->s.session.reset();
  e->s.disconnected_at_ms = absl::ToUnixMillis(clock_.Now());
  e->s.disconnected_mono_ms = MonoMs();
  if (presence_ != nullptr) presence_->HostDetached(host_id);
  // `sent` stays: a config change while the host is away is reported as changing it,
  // and its next snapshot (forced at reconnect) gets a higher version.
  return true;
}

// ---------------------------------------------------------------------------------------
// Reads

bool HostRegistry::Online(const HostState& h, int64_t mono_ms) const {
  if (h.session) return true;
  if (h.disconnected_at_ms == 0) return false;
  return mono_ms - h.disconnected_mono_ms < absl::ToInt64Milliseconds(options_.lease);
}

herd::v1::Host HostRegistry::HostView(const HostState& h, int64_t mono_ms) const {
  herd::v1::Host out;
  out.set_host_id(h.record.host_id);
  out.set_hostname(h.record.hostname);
  out.mutable_labels()->insert(h.record.labels.begin(), h.record.labels.end());
  out.set_online(Online(h, mono_ms));
  out.set_agent_version(h.record.agent_version);
  out.set_last_seen_unix_ms(h.record.last_seen_unix_ms);
  out.set_connected_at_unix_ms(h.connected_at_ms);
  out.set_boot_id(h.record.boot_id);
  *out.mutable_usage() = h.usage;
  out.set_modules(static_cast<uint32_t>(h.record.modules.size()));
  for (const auto& m : h.record.modules) out.add_module_names(m.name());
  out.set_desired_config_version(h.sent ? h.sent_version : h.record.acked_config_version);
  out.set_acked_config_version(h.record.acked_config_version);
  for (const auto& r : h.rejections) *out.add_config_rejections() = r;
  out.set_dropped_batches(h.dropped_batches);
  out.set_kernel(h.hello.kernel());
  out.set_arch(h.hello.arch());
  out.set_cpu_count(h.hello.cpu_count());
  out.set_remote_address(h.peer);
  return out;
}

std::vector<herd::v1::UnitSample> HostRegistry::LatestUnits(const std::string& last_batch) {
  herd::v1::MetricsBatch b;
  if (!b.ParseFromString(last_batch)) return {};
  return {std::make_move_iterator(b.mutable_units()->begin()),
          std::make_move_iterator(b.mutable_units()->end())};
}

absl::StatusOr<std::vector<std::string>> HostRegistry::ResolveTarget(
    const herd::v1::Target& t) const {
  std::vector<std::string> out;
  switch (t.what_case()) {
    case herd::v1::Target::WHAT_NOT_SET:
    case herd::v1::Target::kAll: {
      absl::ReaderMutexLock l(&index_mu_);
      out.reserve(hosts_.size());
      for (const auto& [id, e] : hosts_) out.push_back(id);
      return out;
    }
    case herd::v1::Target::kSelector: {
      auto sel = LabelSelector::Parse(t.selector());
      if (!sel.ok()) return absl::InvalidArgumentError(absl::StrCat("selector ", sel.status().message()));
      absl::ReaderMutexLock l(&index_mu_);
      for (const auto& [id, e] : hosts_) {
        absl::MutexLock hl(&e->mu);
        if (sel->Matches(e->s.record.labels)) out.push_back(id);
      }
      return out;
    }
    case herd::v1::Target::kHosts:
      for (const auto& want : t.hosts().ids()) {
        Entry e = FindByIdOrName(want);
        if (!e) return NoHost(want);
        std::string found;
        {
          absl::MutexLock hl(&e->mu);
          found = e->s.record.host_id;
        }
        if (std::find(out.begin(), out.end(), found) == out.end()) out.push_back(found);
      }
      return out;
  }
  return out;
}

absl::Status CheckChangeTarget(const herd::v1::Target& t) {
  switch (t.what_case()) {
    case herd::v1::Target::WHAT_NOT_SET:
      return absl::InvalidArgumentError(
          "no target: say which hosts, with a selector (--selector k=v), host ids (--host H), "
          "or every host explicitly (--all-hosts; in the API \"target\": {\"all\": true})");
    case herd::v1::Target::kAll:
      if (!t.all()) {
        return absl::InvalidArgumentError(
            "target.all is false: set it to true for every host, or give a selector or hosts");
      }
      return absl::OkStatus();
    case herd::v1::Target::kSelector:
      return absl::OkStatus();  // an empty selector is refused when it is parsed
    case herd::v1::Target::kHosts:
      if (t.hosts().ids_size() == 0) {
        return absl::InvalidArgumentError("target.hosts has no host id: give at least one");
      }
      return absl::OkStatus();
  }
  return absl::InvalidArgumentError("unknown target");
}

absl::StatusOr<std::vector<herd::v1::Host>> HostRegistry::ListHosts(
    const herd::v1::Target& t) const {
  auto ids = ResolveTarget(t);
  if (!ids.ok()) return ids.status();
  const int64_t now_ms = MonoMs();
  std::vector<herd::v1::Host> out;
  out.reserve(ids->size());
  for (const auto& id : *ids) {
    if (Entry e = Find(id)) {
      absl::MutexLock hl(&e->mu);
      out.push_back(HostView(e->s, now_ms));
    }
  }
  return out;
}

absl::StatusOr<herd::v1::HostDetail> HostRegistry::GetHost(const std::string& host_id) const {
  Entry e = FindByIdOrName(host_id);
  if (!e) return NoHost(host_id);
  herd::v1::HostDetail d;
  std::string last_batch;
  {
    absl::MutexLock hl(&e->mu);
    const HostState& h = e->s;
    *d.mutable_host() = HostView(h, MonoMs());
    last_batch = h.last_batch;
    for (const auto& m : h.record.modules) *d.add_modules() = m;
    for (const auto& ev : h.events) *d.add_events() = ev;
    for (const auto& dep : h.deployments) *d.add_deployments() = dep;
  }
  for (auto& u : LatestUnits(last_batch)) *d.add_units() = std::move(u);
  return d;
}

void HostRegistry::VisitHosts(
    const std::function<void(const herd::v1::HostDetail&)>& visit) const {
  const int64_t now_ms = MonoMs();
  std::string last_batch;
  for (const Entry& e : Entries()) {
    herd::v1::HostDetail d;
    {
      absl::MutexLock hl(&e->mu);
      *d.mutable_host() = HostView(e->s, now_ms);
      last_batch = e->s.last_batch;
    }
    for (auto& u : LatestUnits(last_batch)) *d.add_units() = std::move(u);
    visit(d);
  }
}

herd::v1::ModuleInstance HostRegistry::Instance(const std::string& id,
                                                const std::string& hostname, bool online,
                                                const herd::v1::ModuleInventory& m,
                                                const std::vector<herd::v1::UnitSample>& units) {
  herd::v1::ModuleInstance mi;
  mi.set_host_id(id);
  mi.set_hostname(hostname);
  mi.set_online(online);
  bool sampled = false;
  for (const auto& u : units) {
    if (u.name() == m.name()) {
      *mi.mutable_unit() = u;
      sampled = true;
    }
  }
  if (!sampled) {
    mi.mutable_unit()->set_name(m.name());
    mi.mutable_unit()->set_is_module(true);
    mi.mutable_unit()->set_state(m.state());
    mi.mutable_unit()->set_version(m.version());
  }
  return mi;
}

absl::StatusOr<std::vector<herd::v1::ModuleInstance>> HostRegistry::ListModules(
    const herd::v1::Target& t, const std::string& module) const {
  auto ids = ResolveTarget(t);
  if (!ids.ok()) return ids.status();
  const int64_t now_ms = MonoMs();
  std::vector<herd::v1::ModuleInstance> out;
  for (const auto& id : *ids) {
    Entry e = Find(id);
    if (!e) continue;
    std::vector<herd::v1::ModuleInventory> modules;
    std::string hostname, last_batch;
    bool online = false;
    {
      absl::MutexLock hl(&e->mu);
      const HostState& h = e->s;
      for (const auto& m : h.record.modules) {
        if (module.empty() || m.name() == module) modules.push_back(m);
      }
      if (modules.empty()) continue;
      hostname = h.record.hostname;
      online = Online(h, now_ms);
      last_batch = h.last_batch;
    }
    // Parsed outside the host's lock, and only for hosts that have a module asked for.
    const std::vector<herd::v1::UnitSample> units = LatestUnits(last_batch);
    for (const auto& m : modules) out.push_back(Instance(id, hostname, online, m, units));
  }
  return out;
}

absl::StatusOr<std::vector<std::pair<std::string, std::string>>> HostRegistry::HostsWithModule(
    const herd::v1::Target& t, const std::string& module) const {
  auto ids = ResolveTarget(t);
  if (!ids.ok()) return ids.status();
  std::vector<std::pair<std::string, std::string>> out;
  for (const auto& id : *ids) {
    Entry e = Find(id);
    if (!e) continue;
    absl::MutexLock hl(&e->mu);
    for (const auto& m : e->s.record.modules) {
      if (m.name() == module) {
        out.emplace_back(id, e->s.record.hostname);
        break;
      }
    }
  }
  return out;
}

absl::StatusOr<herd::v1::Series> HostRegistry::QuerySeries(
    const herd::v1::QuerySeriesRequest& req) const {
  Entry e = FindByIdOrName(req.host_id());
  if (!e) return NoHost(req.host_id());
  std::vector<herd::v1::Point> points;
  herd::v1::Series s;
  {
    absl::MutexLock hl(&e->mu);
    const HostState& h = e->s;
    if (!h.series.Points(req.unit(), req.metric(), req.since_unix_ms(), &points)) {
      return absl::NotFoundError(absl::StrCat(
          "no series ", req.metric(), " for ", req.unit().empty() ? "the host" : req.unit(),
          " on ", req.host_id(), ": metrics are cpu, rss or probe:<name> (host: cpu, "
          "memory_available, load1)"));
    }
    s.set_host_id(h.record.host_id);
  }
  s.set_unit(req.unit());
  s.set_metric(req.metric());
  for (auto& p : points) *s.add_points() = std::move(p);
  return s;
}

// ---------------------------------------------------------------------------------------
// What hosts' messages change

void HostRegistry::RecordBatch(HostState& h, const MetricsBatchView& batch, int64_t now_ms,
                               LimitHits* hits, bool newest) {
  batches_received_.fetch_add(1, std::memory_order_relaxed);
  if (newest && !batch.replayed() && batch.at_unix_ms() > 0) {
    // An agent's clock far behind ours must not overflow the histogram's sum: delays count
    // up to twice the last bound (they are all in +Inf beyond it anyway).
    constexpr int64_t kMaxDelayMs = 120000;
    batch_delay_.Observe(absl::Milliseconds(
        std::clamp<int64_t>(now_ms - batch.at_unix_ms(), 0, kMaxDelayMs)));
  }
  batches_dropped_by_agents_.fetch_add(batch.dropped_batches(), std::memory_order_relaxed);
  h.dropped_batches += batch.dropped_batches();
  // The agent's clock, unless it is ahead of ours: a batch from the future would hold every
  // later one out of the history (which is kept in time order).
  constexpr int64_t kClockSlackMs = 5000;
  const int64_t at = batch.at_unix_ms() > 0 && batch.at_unix_ms() <= now_ms + kClockSlackMs
                         ? batch.at_unix_ms()
                         : now_ms;
  if (newest && (!batch.replayed() || at >= h.last_batch_at_ms)) {
    batch.WireTo(&h.last_batch);
    h.last_batch_at_ms = at;
    batch.HostUsageTo(&h.usage);
  }
  if (!h.series.Begin(at)) return;  // older than the history: latest state only
  const uint64_t dropped_series = h.series.dropped_series();
  h.series.Add("", "cpu", batch.host_cpu_percent());
  h.series.Add("", "memory_available", static_cast<double>(batch.host_memory_available_bytes()));
  h.series.Add("", "load1", batch.host_load1());
  constexpr std::string_view kProbe = "probe:";
  std::string metric(kProbe);  // "probe:<name>", its buffer reused from probe to probe
  const auto& probes = batch.probes();
  for (const UnitView& unit : batch.units()) {
    // Not a unit name (the key separator).
    if (unit.name.find('\n') != std::string_view::npos) continue;
    h.series.Add(unit.name, "cpu", unit.cpu_percent);
    h.series.Add(unit.name, "rss", static_cast<double>(unit.rss_bytes));
    for (uint32_t i = unit.first_probe; i < unit.first_probe + unit.probes; ++i) {
      const ProbeView& p = probes[i];
      if (!p.numeric) continue;
      metric.resize(kProbe.size());
      metric += p.name;
      h.series.Add(unit.name, metric, p.number);
    }
  }
  hits->Add(Limit::kSeries, h.series.dropped_series() - dropped_series);
}

void HostRegistry::CountLimited(HostState& h, const LimitHits& hits) {
  const int64_t mono_ms = MonoMs();
  for (size_t i = 0; i < kLimitKinds; ++i) {
    if (hits.n[i] == 0) continue;
    limited_[i].fetch_add(hits.n[i], std::memory_order_relaxed);
    int64_t& logged = h.limit_logged_mono_ms[i];
    if (logged != 0 && mono_ms - logged < 60000) continue;
    logged = mono_ms;
    const Limit kind = static_cast<Limit>(i);
    log_->warn("event=agent_limited host={} hostname={} limit={} cut={} hint=\"{}\"",
               h.record.host_id, h.record.hostname, LimitName(kind), hits.n[i],
               kind == Limit::kSeries
                   ? "the host reports more series than --max-series-per-host keeps: new ones "
                     "are not recorded (logged once a minute)"
                   : "the agent sent more than the control plane keeps per host (see "
                     "docs/controlplane.md, Limits): the rest was cut (logged once a minute)");
  }
}

void HostRegistry::CloseSilentStreams() {
  const int64_t now_ms = MonoMs();
  const int64_t limit_ms = std::max<int64_t>(
      absl::ToInt64Milliseconds(options_.silent_stream_timeout),
      10 * static_cast<int64_t>(options_.metrics_interval_ms));
  struct Silent {
    std::string host_id;
    std::shared_ptr<HostSession> session;
    int64_t silent_ms;
  };
  std::vector<Silent> silent;
  for (const Entry& e : Entries()) {
    absl::MutexLock hl(&e->mu);
    HostState& h = e->s;
    const int64_t quiet_ms = now_ms - h.heard_mono_ms;
    if (h.session && quiet_ms > limit_ms && h.closed_silent != h.session.get()) {
      h.closed_silent = h.session.get();
      silent.push_back({h.record.host_id, h.session, quiet_ms});
    }
  }
  // Outside the host locks: closing ends in the hub's OnDisconnect, which takes them.
  for (const Silent& s : silent) {
    log_->warn("event=stream_silent host={} peer={} silent_s={} hint=\"the agent sent nothing: "
               "its host is down, cut off or stuck; the stream is closed and the agent "
               "reconnects when it can\"",
               s.host_id, s.session->Peer(), s.silent_ms / 1000);
    s.session->Close(absl::StrCat("no message from the agent in ", s.silent_ms / 1000, " s"));
  }
}

void HostRegistry::AddStats(HubStats& s) const {
  s.batches_received = batches_received_.load(std::memory_order_relaxed);
  s.batches_dropped_by_agents = batches_dropped_by_agents_.load(std::memory_order_relaxed);
  s.batch_delay = batch_delay_.Read();
  for (size_t i = 0; i < kLimitKinds; ++i) s.limited[i] = limited_[i].load(std::memory_order_relaxed);
  const int64_t now_ms = MonoMs();
  for (const Entry& e : Entries()) {
    absl::MutexLock hl(&e->mu);
    ++s.hosts;
    if (Online(e->s, now_ms)) ++s.online;
    if (e->s.session) ++s.connected;
  }
}

}  // namespace herd::controlplane
