#include "controlplane/core/hub.h"

#include <pthread.h>

#include <algorithm>
#include <cmath>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "common/config_value.h"
#include "common/labels.h"
#include "common/log_escape.h"
#include "common/utf8.h"
#include "controlplane/core/config_resolver.h"
#include "controlplane/core/secrets.h"
#include "nlohmann/json.hpp"

namespace herd::controlplane {
namespace {

using json = nlohmann::json;
using herd::v1::AgentMessage;
using herd::v1::ControlMessage;

bool ValidId(const std::string& s, size_t max) {
  if (s.empty() || s.size() > max || s[0] == '.' || s[0] == '-') return false;
  return std::all_of(s.begin(), s.end(), [](char c) {
    return absl::ascii_isalnum(static_cast<unsigned char>(c)) || c == '.' || c == '_' ||
           c == '-';
  });
}

// The inventory fields config depends on.
std::string ConfigFingerprint(const ModuleList::Vector& modules) {
  std::string out;
  for (const auto& m : modules) {
    absl::StrAppend(&out, m.name(), "\n", m.version(), "\n", m.defaults_json(), "\n");
  }
  return out;
}

}  // namespace

namespace {
// Fan-outs hand their messages to the send threads this many at a time: few enough that the
// first hosts have theirs while the rest are made, enough that one wake-up sends many.
constexpr size_t kHandOff = 256;

// Request ids are unique, not secret: an answer counts only from the host its request went to.
// A prefix drawn once per hub keeps an answer to an earlier run's request from matching one of
// this run's. (A random draw per request was a quarter of a fleet-wide rollout's dispatch.)
std::string NewRequestPrefix() {
  auto s = NewSecret("");
  return s.ok() ? s->substr(0, 8) : absl::StrCat(absl::ToUnixNanos(absl::Now()));
}
}  // namespace

Hub::Hub(Store& store, const Clock& clock, HubOptions options)
    : store_(store),
      clock_(clock),
      options_(options),
      log_(herd::Logger("hub")),
      request_prefix_(NewRequestPrefix()) {}

Hub::~Hub() { Stop(); }

absl::Status Hub::Start() {
  auto hosts = store_.ListHosts();
  if (!hosts.ok()) return hosts.status();
  {
    absl::MutexLock config_lock(&config_mu_);
    if (auto s = ReloadOverrides(); !s.ok()) return s;
  }
  {
    const int64_t mono_ms = MonoMs();
    const int64_t wall_ms = absl::ToUnixMillis(clock_.Now());
    absl::MutexLock l(&index_mu_);
    for (auto& r : *hosts) {
      auto e = std::make_shared<HostEntry>();
      absl::MutexLock hl(&e->mu);
      e->s.series = HostSeries(options_.series);
      e->s.record = r;
      e->s.disconnected_at_ms = r.last_seen_unix_ms;
      // Online for what is left of its lease, as if its stream had just ended then.
      e->s.disconnected_mono_ms = mono_ms - std::max<int64_t>(0, wall_ms - r.last_seen_unix_ms);
      by_id_[r.host_id] = e;
      hosts_[r.host_id] = std::move(e);
    }
  }
  log_->info("event=hub_started hosts={}", hosts->size());
  sweeper_ = std::thread([this] {
    while (!sweeper_wait_.WaitFor(absl::Milliseconds(250))) Sweep();
  });
  {
    absl::MutexLock l(&writer_mu_);
    writer_started_ = true;
  }
  writer_ = std::thread([this] { WriterLoop(); });
  for (size_t i = 0; i < options_.send_threads; ++i) {
    outboxes_.push_back(std::make_unique<Outbox>());
    Outbox* box = outboxes_.back().get();
    box->thread = std::thread([this, box] { OutboxLoop(*box); });
  }
  return absl::OkStatus();
}

void Hub::Post(const std::string& host_id, std::shared_ptr<HostSession> session,
               ControlMessage msg, std::function<void()> on_fail) {
  std::vector<Outgoing> out;
  out.push_back({host_id, std::move(session), std::move(msg), std::move(on_fail)});
  PostAll(std::move(out));
}

void Hub::PostAll(std::vector<Outgoing> out) {
  if (outboxes_.empty()) {
    for (auto& o : out) {
      if (!o.session->Send(std::move(o.msg)) && o.on_fail) o.on_fail();
    }
    return;
  }
  // A host's messages always go through the same send thread, so they keep their order.
  std::vector<std::vector<Outbox::Item>> per_box(outboxes_.size());
  for (auto& o : out) {
    per_box[std::hash<std::string>{}(o.host_id) % outboxes_.size()].push_back(
        {std::move(o.session), std::move(o.msg), std::move(o.on_fail)});
  }
  std::vector<std::function<void()>> refused;
  for (size_t i = 0; i < per_box.size(); ++i) {
    if (per_box[i].empty()) continue;
    Outbox& box = *outboxes_[i];
    bool taken = false;
    {
      absl::MutexLock l(&box.mu);
      if (!box.stop) {
        for (auto& item : per_box[i]) box.items.push_back(std::move(item));
        taken = true;
      }
    }
    if (!taken) {
      for (auto& item : per_box[i]) {
        if (item.on_fail) refused.push_back(std::move(item.on_fail));
      }
    }
  }
  for (auto& f : refused) f();  // outside the locks: they may post again
}

void Hub::OutboxLoop(Outbox& box) {
  pthread_setname_np(pthread_self(), "hub-send");
  std::deque<Outbox::Item> batch;
  while (true) {
    {
      absl::MutexLock l(&box.mu);
      auto ready = [&box]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(box.mu) {
        return !box.items.empty() || box.stop;
      };
      box.mu.Await(absl::Condition(&ready));
      if (box.items.empty()) return;  // stopping, nothing left
      batch.swap(box.items);
    }
    for (auto& item : batch) {
      if (!item.session->Send(std::move(item.msg)) && item.on_fail) item.on_fail();
    }
    batch.clear();
  }
}

void Hub::Stop() {
  {
    absl::MutexLock l(&life_mu_);
    if (stopping_ && !sweeper_.joinable() && !writer_.joinable()) return;
    stopping_ = true;
  }
  stopped_ = true;
  sweeper_wait_.Stop();
  if (sweeper_.joinable()) sweeper_.join();
  std::map<std::string, Pending> pending;
  {
    absl::MutexLock l(&pending_mu_);
    pending.swap(pending_);
  }
  std::vector<std::shared_ptr<HostSession>> sessions;
  for (const Entry& e : Entries()) {
    absl::MutexLock hl(&e->mu);
    if (e->s.session) sessions.push_back(e->s.session);
  }
  for (auto& [id, p] : pending) {
    if (p.done) p.done(absl::UnavailableError("the control plane is stopping"));
  }
  for (auto& s : sessions) s->Close("the control plane is stopping");
  for (auto& box : outboxes_) {
    {
      absl::MutexLock l(&box->mu);
      box->stop = true;
    }
    if (box->thread.joinable()) box->thread.join();
  }
  // Last: what the hosts' final messages changed is written too.
  {
    absl::MutexLock l(&writer_mu_);
    writer_stop_ = true;
  }
  if (writer_.joinable()) writer_.join();
}

// ---------------------------------------------------------------------------------------
// The host index

Hub::Entry Hub::Find(const std::string& host_id) const {
  absl::ReaderMutexLock l(&index_mu_);
  auto it = by_id_.find(host_id);
  return it == by_id_.end() ? nullptr : it->second;
}

Hub::Entry Hub::FindByIdOrName(const std::string& want) const {
  if (Entry e = Find(want)) return e;
  Entry found;
  for (const Entry& e : Entries()) {
    absl::MutexLock hl(&e->mu);
    if (e->s.record.hostname == want) found = e;
  }
  return found;
}

std::vector<Hub::Entry> Hub::Entries() const {
  absl::ReaderMutexLock l(&index_mu_);
  std::vector<Entry> out;
  out.reserve(hosts_.size());
  for (const auto& [id, e] : hosts_) out.push_back(e);
  return out;
}

// ---------------------------------------------------------------------------------------
// Host records, written behind

absl::Status Hub::MarkDirty(const std::string& host_id, bool wait, bool full) {
  {
    absl::MutexLock l(&writer_mu_);
    if (!writer_exited_) {
      dirty_[host_id] |= full;
      const uint64_t gen = ++queued_gen_;
      if (!wait) return absl::OkStatus();
      // While the store fails, the writer backs off (up to 30 s): a caller does not wait for
      // that; the record stays queued.
      if (!last_write_.ok()) return last_write_;
      auto written = [this, gen]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(writer_mu_) {
        return written_gen_ >= gen || writer_exited_;
      };
      if (!writer_mu_.AwaitWithTimeout(absl::Condition(&written), absl::Seconds(30))) {
        return absl::DeadlineExceededError("the store did not take the host's record in 30 s");
      }
      if (written_gen_ >= gen) return last_write_;
    }
  }
  // The writer is gone (a host's last messages while the server stops): written here.
  Entry e = Find(host_id);
  if (!e) return absl::OkStatus();
  HostRecord record;
  {
    absl::MutexLock hl(&e->mu);
    record = e->s.record;
  }
  absl::Status s = store_.PutHosts({record});
  if (!s.ok()) log_->error("event=host_not_saved host={} error=\"{}\"", host_id, s.message());
  return s;
}

absl::Status Hub::FlushHostRecords() {
  absl::MutexLock l(&writer_mu_);
  const uint64_t gen = queued_gen_;
  auto written = [this, gen]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(writer_mu_) {
    return written_gen_ >= gen || writer_exited_ || !writer_started_;
  };
  writer_mu_.Await(absl::Condition(&written));
  return last_write_;
}

void Hub::WriterLoop() {
  absl::MutexLock l(&writer_mu_);
  // Set on every way out (the lock is held there), so no one waits for a writer that left.
  struct Exit {
    Hub* hub;
    ~Exit() ABSL_NO_THREAD_SAFETY_ANALYSIS { hub->writer_exited_ = true; }
  } exit{this};
  absl::Duration backoff = absl::ZeroDuration();
  while (true) {
    auto ready = [this]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(writer_mu_) {
      return !dirty_.empty() || writer_stop_;
    };
    writer_mu_.Await(absl::Condition(&ready));
    if (dirty_.empty()) break;  // stopping, nothing left
    if (backoff > absl::ZeroDuration() && !writer_stop_) {
      // After a failed write: wait before the next try (or until stopping).
      writer_mu_.AwaitWithTimeout(absl::Condition(&writer_stop_), backoff);
    }
    std::map<std::string, bool> batch;
    batch.swap(dirty_);
    const uint64_t gen = queued_gen_;
    const bool last = writer_stop_;
    writer_mu_.Unlock();
    // Whole records for new hosts and changed inventories; for acks, only the status (an
    // ack of a fleet-wide change would otherwise rewrite every host's labels and modules).
    std::vector<HostRecord> records;
    std::vector<HostStatus> status;
    for (const auto& [id, full] : batch) {
      Entry e = Find(id);
      if (!e) continue;
      absl::MutexLock hl(&e->mu);
      if (full) {
        records.push_back(e->s.record);
      } else {
        status.push_back({id, e->s.record.last_seen_unix_ms, e->s.record.acked_config_version});
      }
    }
    const absl::Time t0 = clock_.Monotonic();
    absl::Status s = records.empty() ? absl::OkStatus() : store_.PutHosts(records);
    if (s.ok() && !status.empty()) s = store_.PutHostStatus(status);
    log_->debug("event=hosts_saved records={} status={} ms={}", records.size(), status.size(),
                absl::ToInt64Milliseconds(clock_.Monotonic() - t0));
    if (!s.ok()) {
      log_->error("event=hosts_not_saved hosts={} error=\"{}\" retry={}", batch.size(),
                  s.message(), last ? "no (stopping)" : "yes");
    }
    writer_mu_.Lock();
    written_gen_ = gen;
    last_write_ = s;
    if (s.ok()) {
      backoff = absl::ZeroDuration();
    } else if (!last) {
      // Nothing is lost: the records are written again with the next batch.
      for (const auto& [id, full] : batch) dirty_[id] |= full;
      backoff = std::min(absl::Seconds(30), std::max(absl::Seconds(1), backoff * 2));
    }
    if (last) break;
  }
}

// ---------------------------------------------------------------------------------------
// Gateway side

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

absl::Status Hub::Connect(const std::string& bearer, const herd::v1::Hello& hello,
                          std::shared_ptr<HostSession> session) {
  agent_messages_.fetch_add(1, std::memory_order_relaxed);
  if (auto s = ValidateHello(hello); !s.ok()) return s;
  if (stopped_) return absl::UnavailableError("the control plane is stopping");
  const std::string presented = Sha256Hex(bearer);
  auto join = JoinTokenHash();
  if (!join.ok()) return join.status();
  const bool by_join = join->has_value() && ConstantTimeEquals(presented, **join);
  constexpr absl::string_view kRefused =
      "neither the join token nor this host's credential: give agentd the fleet's join "
      "token (--join-token-file) to register again";

  const int64_t now_ms = absl::ToUnixMillis(clock_.Now());
  const int64_t mono_ms = MonoMs();
  std::string credential;
  if (by_join) {
    auto secret = NewSecret("hc_");
    if (!secret.ok()) return secret.status();
    credential = *secret;
  }
  bool new_host = false;
  Entry e = Find(hello.host_id());
  if (!e) {
    if (!by_join) return absl::UnauthenticatedError(kRefused);
    absl::MutexLock l(&index_mu_);
    Entry& slot = hosts_[hello.host_id()];
    if (!slot) {
      // Complete before it is published: listings never see a host without its id.
      slot = std::make_shared<HostEntry>();
      absl::MutexLock hl(&slot->mu);
      slot->s.series = HostSeries(options_.series);
      slot->s.record.host_id = hello.host_id();
      slot->s.record.registered_at_unix_ms = now_ms;
      slot->s.record.hostname = hello.hostname();
      by_id_[hello.host_id()] = slot;
      new_host = true;
    }
    e = slot;
  }
  HostRecord record;
  std::shared_ptr<HostSession> replaced;
  {
    absl::MutexLock hl(&e->mu);
    HostState& h = e->s;
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
    h.heard_mono_ms = mono_ms;
    google::protobuf::RepeatedPtrField<herd::v1::ModuleInventory> inventory = hello.modules();
    LimitHits hits;
    BoundInventory(&inventory, options_.limits, &hits);
    if (hits.any()) CountLimited(h, hits);
    h.record.modules = std::vector<herd::v1::ModuleInventory>(
        std::make_move_iterator(inventory.begin()), std::make_move_iterator(inventory.end()));
    h.record.acked_config_version =
        std::max(h.record.acked_config_version, hello.acked_config_version());
    record = h.record;
  }
  // A new credential is on disk before the agent is given it (many hosts registering at
  // once share one transaction); otherwise the record is written behind.
  if (auto s = MarkDirty(record.host_id, /*wait=*/by_join); !s.ok()) {
    log_->error("event=host_not_saved host={} error=\"{}\"", record.host_id, s.message());
  }
  if (by_join) {
    Audit(absl::StrCat("host:", record.host_id), new_host ? "host.register" : "host.reregister",
          json{{"host_id", record.host_id}, {"hostname", record.hostname}}.dump());
  }
  ControlMessage welcome;
  herd::v1::Welcome* w = welcome.mutable_welcome();
  w->set_host_id(record.host_id);
  w->set_host_credential(credential);
  w->set_lease_seconds(static_cast<uint32_t>(absl::ToInt64Seconds(options_.lease)));
  w->set_metrics_interval_ms(options_.metrics_interval_ms);
  w->set_controlplane_version(HERD_VERSION);
  {
    // The session is attached only now, with the Welcome queued first under the host's lock:
    // nothing (a config push, an action) can reach the agent before its Welcome. Config
    // changes push under config_mu_ too, so this host's versions go out in order.
    absl::MutexLock config_lock(&config_mu_);
    absl::MutexLock hl(&e->mu);
    HostState& h = e->s;
    replaced = std::move(h.session);
    h.session = session;
    h.peer = session->Peer();
    h.connected_at_ms = now_ms;
    // Without its inventory (that is record.modules), its display text bounded.
    h.hello.set_kernel(TruncateUtf8(hello.kernel(), 256));
    h.hello.set_arch(TruncateUtf8(hello.arch(), 64));
    h.hello.set_cpu_count(hello.cpu_count());
    h.hello.set_memory_total_bytes(hello.memory_total_bytes());
    h.rejections.clear();
    std::optional<ControlMessage> snapshot = NextSnapshot(
        h, Shared(ResolveHostConfig(overrides_, h.record.host_id, h.record.labels, Installed(h))),
        /*force=*/true);
    Post(record.host_id, session, std::move(welcome));
    if (snapshot) Post(record.host_id, session, std::move(*snapshot));
  }
  if (replaced) replaced->Close("the host connected again on another stream");
  log_->info("event=host_connected host={} hostname={} peer={} modules={} by={}", record.host_id,
             record.hostname, session->Peer(), record.modules.size(),
             by_join ? "join_token" : "credential");
  return absl::OkStatus();
}

void Hub::OnMessage(const std::string& host_id, const HostSession* session,
                    const AgentMessage& msg) {
  agent_messages_.fetch_add(1, std::memory_order_relaxed);
  const int64_t now_ms = absl::ToUnixMillis(clock_.Now());
  const int64_t mono_ms = MonoMs();
  Entry e = Find(host_id);
  if (!e) return;
  // A batch past the host's limits is bounded before anything keeps or relays it; within
  // them (the common case) it is used as it came, without a copy.
  LimitHits hits;
  const herd::v1::MetricsBatch* batch = msg.has_metrics() ? &msg.metrics() : nullptr;
  herd::v1::MetricsBatch bounded;
  if (batch != nullptr && BoundBatch(*batch, options_.limits, &bounded, &hits)) batch = &bounded;
  std::string hostname;
  bool inventory_changed = false;
  bool save = false;
  {
    absl::MutexLock hl(&e->mu);
    HostState& h = e->s;
    if (h.session.get() != session) return;  // stale stream
    h.record.last_seen_unix_ms = now_ms;
    h.heard_mono_ms = mono_ms;
    hostname = h.record.hostname;
    switch (msg.msg_case()) {
      case AgentMessage::kMetrics:
        OnBatch(h, *batch, now_ms, &hits);
        break;
      case AgentMessage::kEvent: {
        herd::v1::ModuleEvent event = msg.event();
        if (BoundEvent(&event, options_.limits, &hits)) {
          h.events.push_back(std::move(event));
          while (h.events.size() > options_.events_kept) h.events.pop_front();
        }
        break;
      }
      case AgentMessage::kConfigAck: {
        const auto& ack = msg.config_ack();
        if (ack.accepted()) {
          h.record.acked_config_version = std::max(h.record.acked_config_version, ack.version());
          h.rejections.clear();
          save = true;
          log_->debug("event=config_acked host={} version={} restarted=[{}]", host_id,
                      ack.version(), absl::StrJoin(ack.restarted(), ","));
        } else {
          config_nacks_.fetch_add(1, std::memory_order_relaxed);
          // Shown only while it is about the latest version sent (Host.config_rejections).
          // Bounded like everything else a host sends: at most one rejection per module it
          // may have (and a few more), each text clipped, names kept within their bound.
          const size_t keep = std::min<size_t>(ack.rejections_size(),
                                               options_.limits.max_modules + 16);
          if (static_cast<size_t>(ack.rejections_size()) > keep) hits.Add(Limit::kModules);
          std::vector<herd::v1::ConfigRejection> kept(ack.rejections().begin(),
                                                      ack.rejections().begin() + keep);
          for (auto& r : kept) {
            for (std::string* text : {r.mutable_module(), r.mutable_key()}) {
              if (text->size() > options_.limits.max_name_bytes) {
                *text = TruncateUtf8(std::move(*text), options_.limits.max_name_bytes);
                hits.Add(Limit::kNames);
              }
            }
            if (r.reason().size() > options_.limits.max_text_bytes) {
              *r.mutable_reason() =
                  TruncateUtf8(std::move(*r.mutable_reason()), options_.limits.max_text_bytes);
              hits.Add(Limit::kText);
            }
          }
          std::vector<std::string> why;
          for (size_t i = 0; i < kept.size() && i < 8; ++i) {
            const auto& r = kept[i];
            why.push_back(absl::StrCat(r.module(), ":", r.key(), ": ", r.reason()));
          }
          if (ack.version() != h.nack_logged_version) {
            h.nack_logged_version = ack.version();
            log_->warn("event=config_rejected host={} version={} rejections={} reasons=\"{}\"",
                       host_id, ack.version(), kept.size(),
                       EscapeForLog(absl::StrJoin(why, "; "), 2048));
          }
          if (!h.sent || ack.version() >= h.sent_version) h.rejections = std::move(kept);
        }
        break;
      }
      case AgentMessage::kInventory: {
        google::protobuf::RepeatedPtrField<herd::v1::ModuleInventory> inventory =
            msg.inventory().modules();
        BoundInventory(&inventory, options_.limits, &hits);
        std::vector<herd::v1::ModuleInventory> modules(
            std::make_move_iterator(inventory.begin()), std::make_move_iterator(inventory.end()));
        // What config depends on (names, versions, defaults) is stored and re-resolved only
        // when it changed; widgets, actions and issues change often and are shown from memory.
        inventory_changed =
            ConfigFingerprint(modules) != ConfigFingerprint(h.record.modules.vector());
        h.record.modules = std::move(modules);
        save = inventory_changed;
        break;
      }
      default:
        break;
    }
    if (hits.any()) CountLimited(h, hits);
  }
  if (save) (void)MarkDirty(host_id, /*wait=*/false, /*full=*/inventory_changed);

  switch (msg.msg_case()) {
    case AgentMessage::kMetrics:
      if (watcher_count_.load(std::memory_order_relaxed) > 0) {
        std::vector<MetricsWatcher> watchers;
        {
          absl::MutexLock l(&watch_mu_);
          for (const auto& [id, w] : watchers_) {
            if (w.first.empty() || w.first.count(host_id)) watchers.push_back(w.second);
          }
        }
        if (!watchers.empty()) {
          herd::v1::HostMetrics update;
          update.set_host_id(host_id);
          update.set_hostname(hostname);
          *update.mutable_batch() = *batch;
          for (auto& w : watchers) w(update);
        }
      }
      break;
    case AgentMessage::kActionResult:
    case AgentMessage::kRestartResult:
    case AgentMessage::kLogChunk: {
      const std::string& rid = msg.has_action_result()    ? msg.action_result().request_id()
                               : msg.has_restart_result() ? msg.restart_result().request_id()
                                                          : msg.log_chunk().request_id();
      std::function<void(const herd::v1::LogChunk&)> log_lines;
      bool complete = false;
      {
        absl::MutexLock l(&pending_mu_);
        auto p = pending_.find(rid);
        // Only the host a request went to may answer it.
        if (p == pending_.end() || p->second.host_id != host_id) break;
        if (msg.has_log_chunk() && !msg.log_chunk().end() && p->second.on_lines) {
          log_lines = p->second.on_lines;  // called below, outside the lock
        } else {
          complete = true;
        }
      }
      if (log_lines) log_lines(msg.log_chunk());
      if (complete) CompletePending(rid, msg);
      break;
    }
    default:
      break;
  }
  if (inventory_changed) PushConfig(&host_id);
}

void Hub::OnDisconnect(const std::string& host_id, const HostSession* session) {
  Entry e = Find(host_id);
  if (!e) return;
  bool current = false;
  {
    absl::MutexLock hl(&e->mu);
    current = e->s.session.get() == session;
    if (current) {
      e->s.session.reset();
      e->s.disconnected_at_ms = absl::ToUnixMillis(clock_.Now());
      e->s.disconnected_mono_ms = MonoMs();
      // `sent` stays: a config change while the host is away is reported as changing it,
      // and its next snapshot (forced at reconnect) gets a higher version.
    }
  }
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
  if (current) log_->info("event=host_disconnected host={}", host_id);
  const std::string why =
      current ? absl::StrCat("host ", host_id, " disconnected before answering")
              : absl::StrCat("host ", host_id,
                             " connected again on another stream before answering (the agent "
                             "drops answers to what its previous stream asked)");
  for (const auto& id : failed) CompletePending(id, absl::UnavailableError(why));
}

void Hub::OnBatch(HostState& h, const herd::v1::MetricsBatch& batch, int64_t now_ms,
                  LimitHits* hits) {
  batches_received_.fetch_add(1, std::memory_order_relaxed);
  if (!batch.replayed() && batch.at_unix_ms() > 0) {
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
  if (!batch.replayed() || at >= h.last_batch_at_ms) {
    h.last_batch = batch.SerializeAsString();
    h.last_batch_at_ms = at;
    h.usage = batch.host();
  }
  if (!h.series.Begin(at)) return;  // older than the history: latest state only
  const uint64_t dropped_series = h.series.dropped_series();
  const auto& u = batch.host();
  h.series.Add("", "cpu", u.cpu_percent());
  h.series.Add("", "memory_available", static_cast<double>(u.memory_available_bytes()));
  h.series.Add("", "load1", u.load1());
  for (const auto& unit : batch.units()) {
    if (absl::StrContains(unit.name(), '\n')) continue;  // not a unit name (the key separator)
    h.series.Add(unit.name(), "cpu", unit.usage().cpu_percent());
    h.series.Add(unit.name(), "rss", static_cast<double>(unit.usage().rss_bytes()));
    for (const auto& p : unit.probes()) {
      if (p.numeric()) h.series.Add(unit.name(), absl::StrCat("probe:", p.name()), p.number());
    }
  }
  hits->Add(Limit::kSeries, h.series.dropped_series() - dropped_series);
}

void Hub::CountLimited(HostState& h, const LimitHits& hits) {
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
  if (!join.ok()) return join.status();  // not cached: the next Connect asks again
  join_hash_ = *join;
  join_read_mono_ms_ = mono_ms;
  join_cached_ = true;
  return join_hash_;
}

std::vector<herd::v1::UnitSample> Hub::LatestUnits(const std::string& last_batch) {
  herd::v1::MetricsBatch b;
  if (!b.ParseFromString(last_batch)) return {};
  return {std::make_move_iterator(b.mutable_units()->begin()),
          std::make_move_iterator(b.mutable_units()->end())};
}

// ---------------------------------------------------------------------------------------
// Config

std::set<std::string> Hub::Installed(const HostState& h) {
  std::set<std::string> out;
  for (const auto& m : h.record.modules) out.insert(m.name());
  return out;
}

absl::Status Hub::ReloadOverrides() {
  auto all = store_.ListOverrides();
  if (!all.ok()) {
    log_->error("event=config_unreadable error=\"{}\"", all.status().message());
    return all.status();
  }
  overrides_ = std::move(*all);
  return absl::OkStatus();
}

std::shared_ptr<const herd::v1::ConfigSnapshot> Hub::Shared(herd::v1::ConfigSnapshot snap) {
  std::string key = DeterministicBytes(snap);
  return snapshots_.Intern(std::move(key), std::move(snap));
}

std::optional<ControlMessage> Hub::NextSnapshot(
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

std::vector<std::string> Hub::PushConfig(const std::string* only) {
  const absl::Time t0 = clock_.Monotonic();
  absl::MutexLock config_lock(&config_mu_);
  const absl::Time t_locked = clock_.Monotonic();
  // Hosts named by a host-scoped override resolve on their own; every other host's snapshot
  // depends only on its labels and installed modules.
  std::set<std::string> own;
  for (const auto& o : overrides_) {
    if (o.scope().has_host_id()) own.insert(o.scope().host_id());
  }
  std::vector<std::pair<std::string, Entry>> targets;
  if (only != nullptr) {
    if (Entry e = Find(*only)) targets.emplace_back(*only, std::move(e));
  } else {
    absl::ReaderMutexLock l(&index_mu_);
    targets.reserve(hosts_.size());
    for (const auto& [id, e] : hosts_) targets.emplace_back(id, e);
  }
  // Resolved once per kind of host: its labels, and its module list. Hosts that report the
  // same modules share one interned list, so the list is known by its address; the cache
  // holds the list, so no other list can take that address while it is in use here.
  struct Resolution {
    ModuleList modules;
    std::shared_ptr<const herd::v1::ConfigSnapshot> snapshot;
  };
  std::map<std::string, Resolution> resolved;
  std::vector<Outgoing> sends;
  size_t sent = 0;
  // Handed to the send threads as they are made, so the first hosts have theirs while the
  // last are still being resolved.
  auto flush = [&] {
    sent += sends.size();
    PostAll(std::move(sends));
    sends.clear();
  };
  std::vector<std::string> changed;
  for (const auto& [id, e] : targets) {
    {
      absl::MutexLock hl(&e->mu);
      HostState& h = e->s;
      const bool alone = own.count(id) > 0;
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
                                          Shared(ResolveHostConfig(overrides_, id,
                                                                   h.record.labels,
                                                                   Installed(h)))})
                 .first;
      }
      const std::shared_ptr<const herd::v1::ConfigSnapshot>& now = it->second.snapshot;
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

absl::Status Hub::CheckConfigValue(const herd::v1::FleetSetConfigRequest& req) const {
  // Against every installed copy of the module that declares the key: each distinct set of
  // defaults once (a fleet runs few versions of a module), with a host that has it.
  bool installed = false;
  std::map<std::string, std::string> defaults_by_text;  // defaults_json → a host id
  for (const Entry& e : Entries()) {
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

namespace {
absl::Status CheckScope(const herd::v1::Scope& scope) {
  switch (scope.what_case()) {
    case herd::v1::Scope::kGlobal:
      if (!scope.global()) return absl::InvalidArgumentError("scope: global must be true");
      return absl::OkStatus();
    case herd::v1::Scope::kSelector: {
      auto sel = LabelSelector::Parse(scope.selector());
      if (!sel.ok()) return absl::InvalidArgumentError(absl::StrCat("selector ", sel.status().message()));
      return absl::OkStatus();
    }
    case herd::v1::Scope::kHostId:
      if (scope.host_id().empty()) return absl::InvalidArgumentError("scope: empty host id");
      return absl::OkStatus();
    case herd::v1::Scope::WHAT_NOT_SET:
      break;
  }
  return absl::InvalidArgumentError(
      "no scope: choose --global, --selector k=v or --host HOST");
}

herd::v1::Scope Canonical(const herd::v1::Scope& scope) {
  herd::v1::Scope out = scope;
  if (scope.has_selector()) {
    auto sel = LabelSelector::Parse(scope.selector());
    if (sel.ok()) out.set_selector(sel->ToString());
  }
  return out;
}
}  // namespace

namespace {
// What a key and its value take in the JSON object agentd puts in the module's environment
// ("key":"value", with JSON's escapes).
size_t EncodedBytes(const std::string& key, const std::string& value) {
  constexpr auto kReplace = json::error_handler_t::replace;
  return json(key).dump(-1, ' ', false, kReplace).size() +
         json(value).dump(-1, ' ', false, kReplace).size() + 2;
}
}  // namespace

absl::Status Hub::CheckConfigSize(const herd::v1::FleetSetConfigRequest& req,
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
      if (o.key() == req.key() && DeterministicBytes(Canonical(o.scope())) ==
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

absl::StatusOr<herd::v1::FleetConfigChange> Hub::SetConfig(
    const herd::v1::FleetSetConfigRequest& req, const Actor& actor) {
  if (auto s = CheckScope(req.scope()); !s.ok()) return s;
  if (!ValidId(req.module(), 214) || req.key().empty() || req.key().size() > 256) {
    return absl::InvalidArgumentError("give MODULE:KEY with a valid module name and a key");
  }
  herd::v1::Scope scope = Canonical(req.scope());
  if (scope.what_case() == herd::v1::Scope::kHostId) {
    // A hostname is accepted for convenience.
    Entry e = FindByIdOrName(scope.host_id());
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
  auto w = store_.SetOverride(o);
  if (!w.ok()) return w.status();
  return ConfigChanged(*w, actor, "config.set",
                       json{{"scope", ScopeText(scope)}, {"module", req.module()},
                            {"key", req.key()}, {"value", req.value()}, {"force", req.force()}}
                           .dump());
}

absl::StatusOr<herd::v1::FleetConfigChange> Hub::UnsetConfig(
    const herd::v1::FleetUnsetConfigRequest& req, const Actor& actor) {
  if (auto s = CheckScope(req.scope()); !s.ok()) return s;
  herd::v1::Scope scope = Canonical(req.scope());
  if (scope.what_case() == herd::v1::Scope::kHostId) {
    if (Entry e = FindByIdOrName(scope.host_id())) {
      absl::MutexLock hl(&e->mu);
      scope.set_host_id(e->s.record.host_id);
    }
  }
  auto w = store_.UnsetOverride(scope, req.module(), req.key());
  if (!w.ok()) return w.status();
  return ConfigChanged(*w, actor, "config.unset",
                       json{{"scope", ScopeText(scope)}, {"module", req.module()},
                            {"key", req.key()}}
                           .dump());
}

herd::v1::FleetConfigChange Hub::ConfigChanged(const ConfigWrite& w, const Actor& actor,
                                               const std::string& action,
                                               const std::string& detail_json) {
  herd::v1::FleetConfigChange change;
  change.set_revision(w.revision);
  change.set_changed(w.changed);
  if (!w.changed) return change;
  Audit(actor.name, action, detail_json);
  {
    absl::MutexLock config_lock(&config_mu_);
    // On failure the cache keeps the previous overrides; the next change or restart
    // reloads them (the error is logged).
    (void)ReloadOverrides();
  }
  for (auto& h : PushConfig()) change.add_hosts(h);
  return change;
}

absl::StatusOr<herd::v1::FleetConfig> Hub::GetConfig(const std::string& module,
                                                     const std::string& host_id) const {
  auto all = store_.ListOverrides(module);
  if (!all.ok()) return all.status();
  auto rev = store_.ConfigRevision();
  if (!rev.ok()) return rev.status();
  herd::v1::FleetConfig out;
  out.set_revision(*rev);
  std::optional<HostRecord> host;
  if (!host_id.empty()) {
    Entry e = FindByIdOrName(host_id);
    if (!e) {
      return absl::NotFoundError(absl::StrCat("no host \"", host_id, "\": see `agentctl hosts`"));
    }
    absl::MutexLock hl(&e->mu);
    host = e->s.record;
  }
  for (const auto& o : *all) {
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

// ---------------------------------------------------------------------------------------
// Reads

bool Hub::Online(const HostState& h, int64_t mono_ms) const {
  if (h.session) return true;
  if (h.disconnected_at_ms == 0) return false;
  return mono_ms - h.disconnected_mono_ms < absl::ToInt64Milliseconds(options_.lease);
}

herd::v1::Host Hub::HostView(const HostState& h, int64_t mono_ms) const {
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

absl::StatusOr<std::vector<std::string>> Hub::ResolveTarget(const herd::v1::Target& t) const {
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
        if (!e) {
          return absl::NotFoundError(absl::StrCat("no host \"", want, "\": see `agentctl hosts`"));
        }
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

absl::Status Hub::CheckChangeTarget(const herd::v1::Target& t) {
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

absl::StatusOr<std::vector<herd::v1::Host>> Hub::ListHosts(const herd::v1::Target& t) const {
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

absl::StatusOr<herd::v1::HostDetail> Hub::GetHost(const std::string& host_id) const {
  Entry e = FindByIdOrName(host_id);
  if (!e) return absl::NotFoundError(absl::StrCat("no host \"", host_id, "\": see `agentctl hosts`"));
  herd::v1::HostDetail d;
  std::string last_batch;
  {
    absl::MutexLock hl(&e->mu);
    const HostState& h = e->s;
    *d.mutable_host() = HostView(h, MonoMs());
    last_batch = h.last_batch;
    for (const auto& m : h.record.modules) *d.add_modules() = m;
    for (const auto& ev : h.events) *d.add_events() = ev;
  }
  for (auto& u : LatestUnits(last_batch)) *d.add_units() = std::move(u);
  return d;
}

void Hub::VisitHosts(const std::function<void(const herd::v1::HostDetail&)>& visit) const {
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

std::vector<herd::v1::HostDetail> Hub::Snapshot() const {
  std::vector<herd::v1::HostDetail> out;
  VisitHosts([&out](const herd::v1::HostDetail& d) { out.push_back(d); });
  return out;
}

absl::StatusOr<std::vector<herd::v1::ModuleInstance>> Hub::ListModules(
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
    for (const auto& m : modules) {
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
      out.push_back(std::move(mi));
    }
  }
  return out;
}

absl::StatusOr<std::vector<std::pair<std::string, std::string>>> Hub::HostsWithModule(
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

absl::StatusOr<herd::v1::Series> Hub::QuerySeries(const herd::v1::QuerySeriesRequest& req) const {
  Entry e = FindByIdOrName(req.host_id());
  if (!e) {
    return absl::NotFoundError(absl::StrCat("no host \"", req.host_id(), "\": see `agentctl hosts`"));
  }
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
// Relayed requests

std::string Hub::NewRequestId() {
  const uint64_t n = next_request_.fetch_add(1, std::memory_order_relaxed);
  return absl::StrCat("r", request_prefix_, "-", n);
}

void Hub::RelayAll(std::vector<Request> requests) {
  std::vector<Entry> entries;
  entries.reserve(requests.size());
  for (const auto& r : requests) entries.push_back(Find(r.host_id));
  // Run once every lock is released: what could not be sent.
  std::vector<std::function<void()>> failures;
  // Pending first, then the session: a disconnect from here on finds the request and fails
  // it; one before finds no session below. (A log request is registered already, with its
  // line callback.)
  {
    absl::MutexLock l(&pending_mu_);
    const absl::Time now = clock_.Monotonic();
    for (size_t i = 0; i < requests.size(); ++i) {
      Request& r = requests[i];
      if (!entries[i]) {
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
  std::vector<Outgoing> out;
  out.reserve(requests.size());
  // Request id (in `requests`), stream.
  std::vector<std::pair<const std::string*, const HostSession*>> sent_on;
  sent_on.reserve(requests.size());
  for (size_t i = 0; i < requests.size(); ++i) {
    if (!entries[i]) continue;
    Request& r = requests[i];
    if (stopped_) {  // Stop has failed the pending requests already: these too
      failures.push_back([this, id = r.request_id] {
        CompletePending(id, absl::UnavailableError("the control plane is stopping"));
      });
      continue;
    }
    std::shared_ptr<HostSession> session;
    {
      absl::MutexLock hl(&entries[i]->mu);
      session = entries[i]->s.session;
    }
    if (!session) {
      failures.push_back([this, id = r.request_id, host = r.host_id] {
        CompletePending(id,
                        absl::UnavailableError(absl::StrCat("host ", host, " is not connected")));
      });
      continue;
    }
    sent_on.emplace_back(&r.request_id, session.get());
    out.push_back({r.host_id, std::move(session), std::move(r.msg),
                   [this, host_id = r.host_id, request_id = r.request_id] {
                     CompletePending(request_id, absl::UnavailableError(absl::StrCat(
                                                     "host ", host_id,
                                                     " cannot take messages now (stream "
                                                     "closed or backed up)")));
                   }});
  }
  // Before the hand-off: once a stream has ended (its OnDisconnect has run), sends to it
  // fail and complete their request; until then, its OnDisconnect finds them by stream.
  if (!sent_on.empty()) {
    absl::MutexLock l(&pending_mu_);
    for (const auto& [id, session] : sent_on) {
      auto it = pending_.find(*id);
      if (it != pending_.end()) it->second.session = session;
    }
  }
  PostAll(std::move(out));
  for (auto& f : failures) f();
}

void Hub::RelayWhenFull(std::vector<Request>& requests) {
  if (requests.size() < kHandOff) return;
  RelayAll(std::move(requests));
  requests.clear();
  requests.reserve(kHandOff);
}

void Hub::CompletePending(const std::string& request_id, absl::StatusOr<AgentMessage> r) {
  std::function<void(absl::StatusOr<AgentMessage>)> done;
  {
    absl::MutexLock l(&pending_mu_);
    auto it = pending_.find(request_id);
    if (it == pending_.end()) return;
    done = std::move(it->second.done);
    pending_.erase(it);
  }
  if (done) done(std::move(r));
}

void Hub::Sweep() {
  std::vector<std::string> expired;
  {
    absl::MutexLock l(&pending_mu_);
    const absl::Time now = clock_.Monotonic();
    for (const auto& [id, p] : pending_) {
      if (p.deadline < now) expired.push_back(id);
    }
  }
  for (const auto& id : expired) {
    CompletePending(id, absl::DeadlineExceededError("the host did not answer in time"));
  }
  const int64_t mono_ms = MonoMs();
  int64_t checked = silent_checked_mono_ms_.load();
  if (mono_ms - checked >= 5000 && silent_checked_mono_ms_.compare_exchange_strong(checked, mono_ms)) {
    CloseSilentStreams();
  }
}

void Hub::CloseSilentStreams() {
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
  // Outside the host locks: closing ends in OnDisconnect, which takes them.
  for (const Silent& s : silent) {
    log_->warn("event=stream_silent host={} peer={} silent_s={} hint=\"the agent sent nothing: "
               "its host is down, cut off or stuck; the stream is closed and the agent "
               "reconnects when it can\"",
               s.host_id, s.session->Peer(), s.silent_ms / 1000);
    s.session->Close(absl::StrCat("no message from the agent in ", s.silent_ms / 1000, " s"));
  }
}

void Hub::TriggerAction(const herd::v1::FleetActionRequest& req, const Actor& actor,
                        std::function<void(absl::StatusOr<herd::v1::FleetActionResponse>)> done) {
  if (req.module().empty() || req.action().empty()) {
    done(absl::InvalidArgumentError("give a module and an action"));
    return;
  }
  if (auto s = CheckChangeTarget(req.target()); !s.ok()) {
    done(s);
    return;
  }
  auto ids = ResolveTarget(req.target());
  if (!ids.ok()) {
    done(ids.status());
    return;
  }
  if (ids->empty()) {
    done(absl::NotFoundError("the target selects no host: see `agentctl hosts`"));
    return;
  }
  Audit(actor.name, "action.trigger",
        json{{"module", req.module()}, {"action", req.action()}, {"hosts", *ids}}.dump());
  const uint32_t timeout_ms = req.timeout_ms() > 0 ? req.timeout_ms() : 30000;
  struct Gather {
    absl::Mutex mu;
    herd::v1::FleetActionResponse resp;
    size_t left;
    std::function<void(absl::StatusOr<herd::v1::FleetActionResponse>)> done;
  };
  auto g = std::make_shared<Gather>();
  g->left = ids->size();
  g->done = std::move(done);
  std::map<std::string, std::string> names;
  for (const auto& id : *ids) {
    if (Entry e = Find(id)) {
      absl::MutexLock hl(&e->mu);
      names[id] = e->s.record.hostname;
    }
  }
  // Results in host order, whatever order they arrive in.
  for (const auto& id : *ids) {
    auto* r = g->resp.add_results();
    r->set_host_id(id);
    r->set_hostname(names[id]);
  }
  std::vector<Request> requests;
  requests.reserve(std::min(ids->size(), kHandOff));
  // A host's answer is held until every host has answered: bounded like a batch.
  const size_t max_reply = options_.limits.max_batch_bytes;
  const size_t max_text = options_.limits.max_text_bytes;
  for (size_t i = 0; i < ids->size(); ++i) {
    ControlMessage m;
    std::string rid = NewRequestId();
    auto* a = m.mutable_action();
    a->set_request_id(rid);
    a->set_module(req.module());
    a->set_action(req.action());
    a->mutable_params()->insert(req.params().begin(), req.params().end());
    a->set_timeout_ms(timeout_ms);
    requests.push_back(
        {(*ids)[i], std::move(m), Kind::kAction, std::move(rid), absl::Milliseconds(timeout_ms),
         [g, i, max_reply, max_text](absl::StatusOr<AgentMessage> r) {
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
         }});
    RelayWhenFull(requests);
  }
  RelayAll(std::move(requests));
}

void Hub::RestartOnHosts(
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

std::string Hub::StreamLogs(const herd::v1::FleetLogsRequest& req,
                            std::function<void(const herd::v1::LogChunk&)> on_lines,
                            std::function<void(absl::Status)> on_end) {
  std::string rid = NewRequestId();
  herd::v1::Target t;
  t.mutable_hosts()->add_ids(req.host_id());
  auto ids = ResolveTarget(t);
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

void Hub::CancelLogs(const std::string& request_id) {
  std::string host_id;
  {
    absl::MutexLock l(&pending_mu_);
    auto it = pending_.find(request_id);
    if (it == pending_.end()) return;
    host_id = it->second.host_id;
    it->second.done = nullptr;  // the caller is gone: nothing to report
    pending_.erase(it);
  }
  std::shared_ptr<HostSession> session;
  if (Entry e = Find(host_id)) {
    absl::MutexLock hl(&e->mu);
    session = e->s.session;
  }
  if (session) {
    ControlMessage m;
    m.mutable_cancel()->set_request_id(request_id);
    Post(host_id, std::move(session), std::move(m));
  }
}

uint64_t Hub::WatchMetrics(std::set<std::string> hosts, MetricsWatcher watcher) {
  absl::MutexLock l(&watch_mu_);
  uint64_t id = next_watcher_++;
  watchers_[id] = {std::move(hosts), std::move(watcher)};
  watcher_count_.store(watchers_.size(), std::memory_order_relaxed);
  return id;
}

void Hub::Unwatch(uint64_t id) {
  absl::MutexLock l(&watch_mu_);
  watchers_.erase(id);
  watcher_count_.store(watchers_.size(), std::memory_order_relaxed);
}

// ---------------------------------------------------------------------------------------
// Audit, stats

void Hub::Audit(const std::string& actor, const std::string& action,
                const std::string& detail_json) {
  herd::v1::AuditEntry e;
  e.set_at_unix_ms(absl::ToUnixMillis(clock_.Now()));
  e.set_actor(actor);
  e.set_action(action);
  e.set_detail_json(detail_json);
  if (auto s = store_.AppendAudit(e); !s.ok()) {
    log_->error("event=audit_not_saved action={} error=\"{}\"", action, s.message());
  }
}

absl::StatusOr<std::vector<herd::v1::AuditEntry>> Hub::ListAudit(size_t limit) const {
  return store_.ListAudit(limit);
}

Hub::Stats Hub::stats() const {
  Stats s;
  s.agent_messages = agent_messages_.load(std::memory_order_relaxed);
  s.batches_received = batches_received_.load(std::memory_order_relaxed);
  s.batches_dropped_by_agents = batches_dropped_by_agents_.load(std::memory_order_relaxed);
  s.config_pushes = config_pushes_.load(std::memory_order_relaxed);
  s.config_nacks = config_nacks_.load(std::memory_order_relaxed);
  s.batch_delay = batch_delay_.Read();
  for (size_t i = 0; i < kLimitKinds; ++i) s.limited[i] = limited_[i].load(std::memory_order_relaxed);
  s.join_token_reads = join_token_reads_.load(std::memory_order_relaxed);
  const int64_t now_ms = MonoMs();
  for (const Entry& e : Entries()) {
    absl::MutexLock hl(&e->mu);
    ++s.hosts;
    if (Online(e->s, now_ms)) ++s.online;
    if (e->s.session) ++s.connected;
  }
  return s;
}

}  // namespace herd::controlplane
