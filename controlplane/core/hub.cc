#include "controlplane/core/hub.h"

#include <algorithm>
#include <deque>
#include <utility>

#include "absl/cleanup/cleanup.h"
#include "absl/strings/str_cat.h"
#include "absl/synchronization/notification.h"
#include "common/labels.h"
#include "common/utf8.h"
#include "controlplane/core/secrets.h"
#include "nlohmann/json.hpp"

namespace herd::controlplane {
namespace {

using json = nlohmann::json;
using herd::v1::AgentMessage;
using herd::v1::ControlMessage;

constexpr absl::string_view kRefused =
    "neither the join token nor this host's credential: give agentd the fleet's join "
    "token (--join-token-file) to register again";

// The inventory fields config depends on.
std::string ConfigFingerprint(const ModuleList::Vector& modules) {
  std::string out;
  for (const auto& m : modules) {
    absl::StrAppend(&out, m.name(), "\n", m.version(), "\n", m.defaults_json(), "\n");
  }
  return out;
}

}  // namespace

Hub::Hub(Store& store, Scheduler& scheduler, HubOptions options)
    : Hub(store, nullptr, &scheduler, std::move(options)) {}

Hub::Hub(Store& store, const Clock& clock, HubOptions options)
    : Hub(store, std::make_unique<ThreadScheduler>(clock, "hub-timers"), nullptr,
          std::move(options)) {}

Hub::Hub(Store& store, std::unique_ptr<ThreadScheduler> owned, Scheduler* scheduler,
         HubOptions options)
    : owned_scheduler_(std::move(owned)),
      scheduler_(scheduler != nullptr ? *scheduler : *owned_scheduler_),
      store_(store),
      clock_(scheduler_.clock()),
      options_(std::move(options)),
      log_(herd::Logger("hub")),
      audit_(store_, clock_),
      registry_(clock_, options_),
      config_(store_, registry_, sends_, audit_, clock_, options_),
      relay_(registry_, sends_, audit_, clock_, options_),
      writer_(store_, registry_, scheduler_),
      sweeper_(scheduler_, absl::Milliseconds(250), [this] { Sweep(); }) {
  // The cadence as it is when sent, not as the change said: of a watch and an unwatch
  // racing, the later send carries the final state.
  watchers_.set_on_watched([this](const std::string& host_id, bool /*watched*/) {
    SendCadence(host_id, CadenceFor(host_id));
  });
}

Hub::~Hub() { Stop(); }

absl::Status Hub::Start() {
  auto hosts = store_.ListHosts();
  if (!hosts.ok()) return hosts.status();
  if (auto s = config_.Load(); !s.ok()) return s;
  registry_.Load(*hosts);
  log_->info("event=hub_started hosts={}", hosts->size());
  sweeper_.Start();
  writer_.Start();
  sends_.Start(options_.send_threads);
  return absl::OkStatus();
}

void Hub::Stop() {
  {
    absl::MutexLock l(&life_mu_);
    if (stopping_) return;
    stopping_ = true;
  }
  stopped_ = true;
  sweeper_.Stop();
  std::vector<std::shared_ptr<HostSession>> sessions = registry_.Sessions();
  relay_.Stop();
  for (auto& s : sessions) s->Close("the control plane is stopping");
  sends_.Stop();
  audit_.Stop();  // the registrations' entries still waiting
  // Last: what the hosts' final messages changed is written too.
  writer_.Stop();
}

void Hub::Sweep() {
  relay_.ExpireOverdue();
  const int64_t mono_ms = MonoMs();
  int64_t checked = silent_checked_mono_ms_.load();
  if (mono_ms - checked >= 5000 &&
      silent_checked_mono_ms_.compare_exchange_strong(checked, mono_ms)) {
    registry_.CloseSilentStreams();
    UpdateFleetCadence();
  }
}

// ---------------------------------------------------------------------------------------
// Metrics cadence

uint32_t Hub::CadenceFor(const std::string& host_id) const {
  return watchers_.Watched(host_id) ? 1 : fleet_cadence_.load(std::memory_order_relaxed);
}

void Hub::SendCadence(const std::string& host_id, uint32_t per_message) {
  HostRoute route = registry_.Route(host_id);
  if (!route.session) return;  // its Welcome will say
  ControlMessage m;
  m.mutable_cadence()->set_metrics_batches_per_message(per_message);
  sends_.Post(host_id, std::move(route.session), std::move(m));
}

void Hub::UpdateFleetCadence() {
  if (options_.metrics_batches_per_message <= 1) return;
  const size_t connected = registry_.ConnectedCount();
  const uint32_t now = fleet_cadence_.load();
  uint32_t want = now;
  // Hysteresis: a fleet hovering at the threshold does not switch every check.
  if (connected >= options_.metrics_group_above) {
    want = options_.metrics_batches_per_message;
  } else if (connected * 10 < options_.metrics_group_above * 9) {
    want = 1;
  }
  if (want == now) return;
  fleet_cadence_.store(want);
  log_->info("event=metrics_cadence batches_per_message={} connected={} threshold={}", want,
             connected, options_.metrics_group_above);
  // Only on a change: every connected host's id and session.
  const std::vector<std::pair<std::string, std::shared_ptr<HostSession>>> attached =
      registry_.Attached();
  std::vector<SendPool::Outgoing> out;
  out.reserve(attached.size());
  for (const auto& [id, session] : attached) {
    if (watchers_.Watched(id)) continue;
    ControlMessage m;
    m.mutable_cadence()->set_metrics_batches_per_message(want);
    out.push_back({id, session, std::move(m), nullptr});
  }
  sends_.PostAll(std::move(out));
}

std::vector<herd::v1::HostDetail> Hub::Snapshot() const {
  std::vector<herd::v1::HostDetail> out;
  VisitHosts([&out](const herd::v1::HostDetail& d) { out.push_back(d); });
  return out;
}

Hub::Stats Hub::stats() const {
  Stats s;
  s.agent_messages = agent_messages_.load(std::memory_order_relaxed);
  s.join_token_reads = join_token_reads_.load(std::memory_order_relaxed);
  s.joins_refused = joins_refused_.load(std::memory_order_relaxed);
  s.audit_dropped = audit_.dropped();
  registry_.AddStats(s);
  config_.AddStats(s);
  return s;
}

// ---------------------------------------------------------------------------------------
// Connect

absl::Status Hub::ValidateHello(const herd::v1::Hello& hello) const {
  if (!ValidId(hello.host_id(), 64)) {
    return absl::InvalidArgumentError(absl::StrCat(
        "hello: host_id \"", hello.host_id(),
        "\" must be 1-64 of letters, digits, '.', '_', '-' (agentd keeps it in $HERD_HOME/host_id)"));
  }
  if (hello.hostname().size() > 255) {
    return absl::InvalidArgumentError("hello: hostname longer than 255 bytes");
  }
  if (hello.labels_size() > 64) return absl::InvalidArgumentError("hello: more than 64 labels");
  // One label at a time: joined, a value holding "," (or spaces around a key) would read as
  // other, valid labels.
  for (const auto& [k, v] : hello.labels()) {
    auto l = ParseLabels(absl::StrCat(k, "=", v));
    if (!l.ok()) return absl::InvalidArgumentError(absl::StrCat("hello: ", l.status().message()));
    if (l->size() != 1 || l->begin()->first != k || l->begin()->second != v) {
      return absl::InvalidArgumentError(absl::StrCat(
          "hello: label \"", k, "=", v,
          "\": keys and values are letters, digits, '.', '_', '-', '/'"));
    }
  }
  // Past AgentLimits::max_modules, modules are dropped (Connect), not the host.
  return absl::OkStatus();
}

absl::StatusOr<std::optional<std::string>> Hub::JoinTokenHash() {
  absl::MutexLock l(&join_mu_);
  const int64_t mono_ms = MonoMs();
  if (join_cached_ &&
      mono_ms - join_read_mono_ms_ < absl::ToInt64Milliseconds(options_.join_token_cache)) {
    return join_hash_;
  }
  // Read under the lock: agents reconnecting at once wait for one read, not one each.
  join_token_reads_.fetch_add(1, std::memory_order_relaxed);
  auto join = store_.GetSetting("join_token_sha256");
  if (!join.ok()) {
    // Not cached: the next Connect asks again. Meanwhile the hash read last stands (the
    // token rarely changes): agents keep reconnecting while the store has no quorum.
    if (join_cached_) {
      log_->warn("event=join_token_unreadable error=\"{}\" using=last_read",
                 join.status().message());
      return join_hash_;
    }
    return join.status();
  }
  join_hash_ = *join;
  join_read_mono_ms_ = mono_ms;
  join_cached_ = true;
  return join_hash_;
}

absl::StatusOr<Entry> Hub::FindForCredential(const std::string& host_id) {
  if (Entry e = registry_.Find(host_id)) return e;
  if (!options_.read_unknown_hosts) return Entry();
  if (!AdmitUnknownHostRead()) {
    return absl::UnavailableError(absl::StrCat(
        "host ", host_id, " is not known to this replica yet and too many unknown hosts are "
        "being looked up; retry shortly"));
  }
  auto stored = store_.GetHost(host_id);
  if (absl::IsNotFound(stored.status())) return Entry();
  if (!stored.ok()) {
    // UNAVAILABLE while the store has no quorum: the agent retries (with backoff).
    return absl::Status(stored.status().code(),
                        absl::StrCat("cannot read host ", host_id,
                                     " from the store: ", stored.status().message()));
  }
  log_->info("event=host_read_from_store host={}", host_id);
  return registry_.Adopt(*stored);
}

bool Hub::AdmitUnknownHostRead() {
  const int64_t now = MonoMs();
  absl::MutexLock l(&unknown_mu_);
  if (now - unknown_window_ms_ >= 1000) {
    if (unknown_refused_ > 0) {
      log_->warn("event=unknown_host_reads_refused count={} max_per_second={} hint=\"Hellos "
                 "for hosts this replica does not know (registered moments ago elsewhere, or "
                 "made up)\"",
                 unknown_refused_, kUnknownHostReadsPerSecond);
    }
    unknown_window_ms_ = now;
    unknown_reads_ = 0;
    unknown_refused_ = 0;
  }
  if (unknown_reads_ >= kUnknownHostReadsPerSecond) {
    ++unknown_refused_;
    return false;
  }
  ++unknown_reads_;
  return true;
}

absl::StatusOr<bool> Hub::CheckJoinToken(const std::string& presented) {
  auto join = JoinTokenHash();
  if (!join.ok()) return join.status();
  return join->has_value() && ConstantTimeEquals(presented, **join);
}

// The deployment statuses an agent reports (memory only, shown by ListDeployments), bounded
// like its inventory: at most 256, each field cut to a sane length.
static std::vector<herd::v1::DeploymentStatus> BoundDeployments(
    const google::protobuf::RepeatedPtrField<herd::v1::DeploymentStatus>& in) {
  constexpr size_t kMax = 256;
  std::vector<herd::v1::DeploymentStatus> out;
  for (const auto& d : in) {
    if (out.size() >= kMax) break;
    herd::v1::DeploymentStatus c;
    c.set_name(TruncateUtf8(d.name(), 128));
    c.set_desired_version(TruncateUtf8(d.desired_version(), 64));
    c.set_source(TruncateUtf8(d.source(), 4096));
    c.set_state(TruncateUtf8(d.state(), 32));
    c.set_error(TruncateUtf8(d.error(), 2048));
    c.set_since_unix_ms(d.since_unix_ms());
    c.set_attempts(d.attempts());
    out.push_back(std::move(c));
  }
  return out;
}

absl::Status Hub::RecordHello(HostState& h, const herd::v1::Hello& hello, bool by_join,
                              const std::string& presented, const std::string& credential,
                              int64_t now_ms) {
  if (!by_join && (h.record.credential_sha256.empty() ||
                   !ConstantTimeEquals(presented, h.record.credential_sha256))) {
    return absl::UnauthenticatedError(kRefused);
  }
  if (by_join) h.record.credential_sha256 = Sha256Hex(credential);
  h.record.hostname = hello.hostname();
  h.record.labels = {hello.labels().begin(), hello.labels().end()};
  h.record.agent_version = TruncateUtf8(hello.agent_version(), 256);
  h.record.boot_id = TruncateUtf8(hello.boot_id(), 256);
  h.record.last_seen_unix_ms = now_ms;
  h.heard_mono_ms = MonoMs();
  google::protobuf::RepeatedPtrField<herd::v1::ModuleInventory> inventory = hello.modules();
  LimitHits hits;
  BoundInventory(&inventory, options_.limits, &hits);
  if (hits.any()) registry_.CountLimited(h, hits);
  h.record.modules = std::vector<herd::v1::ModuleInventory>(
      std::make_move_iterator(inventory.begin()), std::make_move_iterator(inventory.end()));
  h.record.acked_config_version =
      std::max(h.record.acked_config_version, hello.acked_config_version());
  h.deployments = BoundDeployments(hello.deployments());
  return absl::OkStatus();
}

ControlMessage Hub::Welcome(const std::string& host_id, const std::string& credential) const {
  ControlMessage welcome;
  herd::v1::Welcome* w = welcome.mutable_welcome();
  w->set_host_id(host_id);
  w->set_host_credential(credential);
  w->set_lease_seconds(static_cast<uint32_t>(absl::ToInt64Seconds(options_.lease)));
  w->set_metrics_interval_ms(options_.metrics_interval_ms);
  w->set_controlplane_version(HERD_VERSION);
  w->set_metrics_batches_per_message(CadenceFor(host_id));
  return welcome;
}

absl::Status Hub::Connect(const std::string& bearer, const herd::v1::Hello& hello,
                          std::shared_ptr<HostSession> session) {
  absl::Notification answered;
  absl::Status out;
  ConnectAsync(bearer, hello, std::move(session), [&](absl::Status s) {
    out = std::move(s);
    answered.Notify();
  });
  answered.WaitForNotification();
  return out;
}

void Hub::ConnectAsync(const std::string& bearer, const herd::v1::Hello& hello,
                       std::shared_ptr<HostSession> session, ConnectDone done) {
  agent_messages_.fetch_add(1, std::memory_order_relaxed);
  if (auto s = ValidateHello(hello); !s.ok()) return done(s);
  if (stopped_) return done(absl::UnavailableError("the control plane is stopping"));
  const std::string presented = Sha256Hex(bearer);
  auto by_join = CheckJoinToken(presented);
  if (!by_join.ok()) return done(by_join.status());
  if (!*by_join) return done(Reconnect(presented, hello, std::move(session)));
  // A join is answered once its new credential is stored; until then its stream waits and
  // holds its Hello. Bounded: past the bound the agent is refused and retries after its
  // backoff, as after any refusal.
  if (pending_joins_.fetch_add(1) >= options_.max_pending_joins) {
    pending_joins_.fetch_sub(1);
    joins_refused_.fetch_add(1, std::memory_order_relaxed);
    return done(absl::ResourceExhaustedError(absl::StrCat(
        "too many hosts are registering at once (", options_.max_pending_joins,
        " waiting for the store): retry after a backoff")));
  }
  auto secret = NewSecret("hc_");
  if (!secret.ok()) {
    pending_joins_.fetch_sub(1);
    return done(secret.status());
  }
  const int64_t now_ms = absl::ToUnixMillis(clock_.Now());
  // A host registered through another replica is known here already: the hub loaded every
  // host at start and ClusterSync brings in those registered since, so a join here
  // re-registers it rather than starting afresh. No store read: it would cost every new
  // host a round trip. (A host registered elsewhere in the last few milliseconds, before the
  // watch brought it, starts afresh here: its registration time and acked version are those
  // of this join.)
  bool new_host = false;
  Entry e = registry_.FindOrAdd(hello.host_id(), hello.hostname(), now_ms, &new_host);
  {
    absl::MutexLock hl(&e->mu);
    // Cannot fail for a join (no credential to check).
    (void)RecordHello(e->s, hello, /*by_join=*/true, presented, *secret, now_ms);
  }
  // The new credential is on disk before the agent is given it. Many hosts registering at
  // once share one write, and no gRPC thread waits for it.
  writer_.MarkDirtyThen(
      hello.host_id(), [this, e, host_id = hello.host_id(), session = std::move(session),
                        shown = Shown(hello), credential = *secret, new_host, now_ms,
                        done = std::move(done)](absl::Status s) mutable {
        pending_joins_.fetch_sub(1);
        if (stopped_) return done(absl::UnavailableError("the control plane is stopping"));
        if (!s.ok()) {
          // Not refused: the agent keeps the new credential in memory, and the record
          // stays queued until the store takes it.
          log_->error("event=host_not_saved host={} error=\"{}\"", host_id, s.message());
        }
        audit_.AuditLater(absl::StrCat("host:", host_id),
                          new_host ? "host.register" : "host.reregister",
                          json{{"host_id", host_id}, {"hostname", shown.hostname()}}.dump());
        AttachSession(*e, host_id, std::move(session), shown, credential, now_ms, "join_token");
        done(absl::OkStatus());
      });
}

absl::Status Hub::Reconnect(const std::string& presented, const herd::v1::Hello& hello,
                            std::shared_ptr<HostSession> session) {
  const int64_t now_ms = absl::ToUnixMillis(clock_.Now());
  auto found = FindForCredential(hello.host_id());
  if (!found.ok()) return found.status();
  Entry e = std::move(*found);
  if (!e) return absl::UnauthenticatedError(kRefused);
  {
    absl::MutexLock hl(&e->mu);
    if (auto s = RecordHello(e->s, hello, /*by_join=*/false, presented, "", now_ms); !s.ok()) {
      return s;
    }
  }
  // Written behind: the credential did not change.
  (void)writer_.MarkDirty(hello.host_id(), /*wait=*/false);
  AttachSession(*e, hello.host_id(), std::move(session), Shown(hello), "", now_ms,
                "credential");
  return absl::OkStatus();
}

absl::Status Hub::AuthorizeArtifact(const std::string& host_id, const std::string& bearer,
                                    const std::string& digest) {
  if (bearer.empty()) {
    return absl::UnauthenticatedError(
        "no credentials: send `authorization: Bearer <host credential>` metadata");
  }
  Entry e = registry_.Find(host_id);
  if (!e) return absl::UnauthenticatedError(kRefused);
  const std::string presented = Sha256Hex(bearer);
  const std::string source = "sha256:" + digest;
  absl::MutexLock l(&e->mu);
  const HostRecord& r = e->s.record;
  if (r.credential_sha256.empty() || !ConstantTimeEquals(presented, r.credential_sha256)) {
    return absl::UnauthenticatedError(kRefused);
  }
  if (e->s.sent) {
    for (const auto& [name, want] : e->s.sent->deployments()) {
      if (want.source() == source) return absl::OkStatus();
    }
  }
  return absl::PermissionDeniedError(absl::StrCat(
      "host ", host_id, " is not deployed the artifact ", source,
      " (its last config does not want it)"));
}

herd::v1::Hello Hub::Shown(const herd::v1::Hello& hello) {
  herd::v1::Hello shown;
  shown.set_hostname(hello.hostname());
  shown.set_kernel(TruncateUtf8(hello.kernel(), 256));
  shown.set_arch(TruncateUtf8(hello.arch(), 64));
  shown.set_cpu_count(hello.cpu_count());
  shown.set_memory_total_bytes(hello.memory_total_bytes());
  return shown;
}

void Hub::AttachSession(HostEntry& e, const std::string& host_id,
                        std::shared_ptr<HostSession> session,
                        const herd::v1::Hello& shown, const std::string& credential,
                        int64_t now_ms, const char* by) {
  size_t modules = 0;
  ControlMessage welcome = Welcome(host_id, credential);
  const uint32_t cadence_told = welcome.welcome().metrics_batches_per_message();
  std::shared_ptr<HostSession> replaced =
      config_.Attach(e, session, std::move(welcome), [&](HostState& h) {
        std::shared_ptr<HostSession> old = std::move(h.session);
        h.session = session;
        h.peer = session->Peer();
        h.connected_at_ms = now_ms;
        // Without its inventory (that is record.modules), its display text bounded.
        h.hello.set_kernel(shown.kernel());
        h.hello.set_arch(shown.arch());
        h.hello.set_cpu_count(shown.cpu_count());
        h.hello.set_memory_total_bytes(shown.memory_total_bytes());
        h.rejections.clear();
        modules = h.record.modules.size();
        registry_.NotifyAttached(h.record.host_id);
        return old;
      });
  if (replaced) replaced->Close("the host connected again on another stream");
  // The fleet's cadence (or this host's watch) changed between its Welcome and its attach:
  // the change's broadcast did not find it attached, so it is told here, after its Welcome
  // (the same send thread keeps them in order).
  if (const uint32_t now = CadenceFor(host_id); now != cadence_told) SendCadence(host_id, now);
  log_->info("event=host_connected host={} hostname={} peer={} modules={} by={}", host_id,
             shown.hostname(), session->Peer(), modules, by);
}

// ---------------------------------------------------------------------------------------
// Messages

void Hub::ApplyInventory(HostState& h, const herd::v1::Inventory& inv, LimitHits* hits,
                         bool* inventory_changed) {
  google::protobuf::RepeatedPtrField<herd::v1::ModuleInventory> inventory = inv.modules();
  BoundInventory(&inventory, options_.limits, hits);
  std::vector<herd::v1::ModuleInventory> modules(std::make_move_iterator(inventory.begin()),
                                                 std::make_move_iterator(inventory.end()));
  // What config depends on (names, versions, defaults) is stored and re-resolved only
  // when it changed; widgets, actions and issues change often and are shown from memory.
  *inventory_changed = ConfigFingerprint(modules) != ConfigFingerprint(h.record.modules.vector());
  h.record.modules = std::move(modules);
  h.deployments = BoundDeployments(inv.deployments());
}

void Hub::Apply(HostState& h, const AgentMessage& msg, const Views& batches, int64_t now_ms,
                LimitHits* hits, bool* save, bool* inventory_changed) {
  switch (msg.msg_case()) {
    case AgentMessage::kMetrics:
    case AgentMessage::kMetricsBatches:
      for (size_t i = 0; i < batches.size(); ++i) {
        registry_.RecordBatch(h, batches[i], now_ms, hits, i + 1 == batches.size());
      }
      break;
    case AgentMessage::kEvent: {
      herd::v1::ModuleEvent event = msg.event();
      if (BoundEvent(&event, options_.limits, hits)) {
        h.events.push_back(std::move(event));
        while (h.events.size() > options_.events_kept) h.events.pop_front();
      }
      break;
    }
    case AgentMessage::kConfigAck:
      config_.OnAck(h, msg.config_ack(), hits, save);
      break;
    case AgentMessage::kInventory:
      ApplyInventory(h, msg.inventory(), hits, inventory_changed);
      *save = *inventory_changed;
      break;
    default:
      break;
  }
}

bool Hub::UpdateHost(const std::string& host_id, const HostSession* session, int64_t now_ms,
                     LimitHits* hits, absl::FunctionRef<void(HostState&)> apply,
                     std::string* hostname) {
  const int64_t mono_ms = MonoMs();
  Entry e = registry_.Find(host_id);
  if (!e) return false;
  absl::MutexLock hl(&e->mu);
  HostState& h = e->s;
  if (h.session.get() != session) return false;  // stale stream
  h.record.last_seen_unix_ms = now_ms;
  h.heard_mono_ms = mono_ms;
  if (hostname != nullptr) *hostname = h.record.hostname;
  apply(h);
  if (hits->any()) registry_.CountLimited(h, *hits);
  return true;
}

bool Hub::OnMessageBytes(const std::string& host_id, const HostSession* session,
                         std::string_view bytes) {
  // Per thread, their vectors' capacity kept from message to message.
  thread_local std::vector<std::string_view> wires;
  thread_local Views views;
  // Nothing left pointing into the message once it is handled, nor grown past a bound.
  absl::Cleanup clear = [] {
    for (size_t i = 0; i < std::min(wires.size(), views.size()); ++i) views[i].Clear();
    wires.clear();
  };
  if (!MetricsBatchesOf(bytes, kMaxBatchesPerGroup, &wires)) return false;
  // A live watcher is handed the batch as a message.
  if (watchers_.Wants(host_id)) return false;
  if (views.size() < wires.size()) views.resize(wires.size());
  for (size_t i = 0; i < wires.size(); ++i) {
    if (!views[i].Read(wires[i], options_.limits)) return false;
  }
  agent_messages_.fetch_add(1, std::memory_order_relaxed);
  const int64_t now_ms = absl::ToUnixMillis(clock_.Now());
  LimitHits hits;
  UpdateHost(host_id, session, now_ms, &hits, [&](HostState& h) {
    for (size_t i = 0; i < wires.size(); ++i) {
      registry_.RecordBatch(h, views[i], now_ms, &hits, i + 1 == wires.size());
    }
  }, nullptr);
  return true;
}

void Hub::OnMessage(const std::string& host_id, const HostSession* session,
                    const AgentMessage& msg) {
  agent_messages_.fetch_add(1, std::memory_order_relaxed);
  const int64_t now_ms = absl::ToUnixMillis(clock_.Now());
  // A batch past the host's limits is bounded before anything keeps or relays it; within
  // them (the common case) it is used as it came, without a copy.
  LimitHits hits;
  std::vector<const herd::v1::MetricsBatch*> batches;
  std::deque<herd::v1::MetricsBatch> bounded;
  auto add = [&](const herd::v1::MetricsBatch& b) {
    if (BoundBatch(b, options_.limits, &bounded.emplace_back(), &hits)) {
      batches.push_back(&bounded.back());
    } else {
      bounded.pop_back();
      batches.push_back(&b);
    }
  };
  if (msg.has_metrics()) add(msg.metrics());
  if (msg.has_metrics_batches()) {
    const auto& group = msg.metrics_batches().batches();
    const int n = std::min(group.size(), static_cast<int>(kMaxBatchesPerGroup));
    for (int i = 0; i < n; ++i) add(group[i]);
    // More than an agent sends at once: not kept (counted with the batches cut to size).
    if (group.size() > n) hits.Add(Limit::kBatchBytes, static_cast<uint64_t>(group.size() - n));
  }
  Views views(batches.size());
  for (size_t i = 0; i < batches.size(); ++i) views[i].From(*batches[i]);
  std::string hostname;
  bool inventory_changed = false;
  bool save = false;
  const bool current = UpdateHost(host_id, session, now_ms, &hits, [&](HostState& h) {
    Apply(h, msg, views, now_ms, &hits, &save, &inventory_changed);
  }, &hostname);
  if (!current) return;
  if (save) (void)writer_.MarkDirty(host_id, /*wait=*/false, /*full=*/inventory_changed);
  switch (msg.msg_case()) {
    case AgentMessage::kMetrics:
    case AgentMessage::kMetricsBatches:
      for (const herd::v1::MetricsBatch* b : batches) watchers_.Publish(host_id, hostname, *b);
      break;
    case AgentMessage::kActionResult:
    case AgentMessage::kRestartResult:
    case AgentMessage::kLogChunk:
      relay_.OnAnswer(host_id, msg);
      break;
    default:
      break;
  }
  if (inventory_changed) config_.PushConfig(&host_id);
}

void Hub::OnDisconnect(const std::string& host_id, const HostSession* session) {
  if (!registry_.Find(host_id)) return;
  const bool current = registry_.Detach(host_id, session);
  if (current) log_->info("event=host_disconnected host={}", host_id);
  relay_.OnStreamEnded(host_id, session, current);
}

}  // namespace herd::controlplane
