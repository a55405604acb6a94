#include "agent/uplink/controlplane_link.h"

#include <utility>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "agent/logs/log_writer.h"

namespace herd::agent {
namespace {

ModuleConverger::Options ConvergerOptions(const std::string& home) {
  ModuleConverger::Options o;
  o.artifacts_dir = home + "/artifacts";
  return o;
}

}  // namespace

ControlPlaneLink::ControlPlaneLink(EventLoop& loop, Supervisor& supervisor,
                                   ModuleManager& modules, UplinkOptions options)
    : loop_(loop),
      supervisor_(supervisor),
      modules_(modules),
      converger_modules_(modules),
      converger_(loop, converger_modules_, ConvergerOptions(options.home)),
      addresses_(absl::StrJoin(options.addresses, ",")),
      transport_(loop, GrpcUplinkTlsFiles{options.tls_ca, options.tls_cert, options.tls_key}),
      log_(herd::Logger("uplink")) {
  uplink_ = std::make_unique<Uplink>(std::move(options), *this, loop, transport_);
  converger_.set_fetcher(this);
}

void ControlPlaneLink::Fetch(const std::string& sha256, const std::string& dest,
                             std::function<void(absl::Status)> done) {
  uplink_->FetchArtifact(sha256, dest, kMaxArtifactBytes, std::move(done));
}

ControlPlaneLink::~ControlPlaneLink() { Stop(); }

absl::Status ControlPlaneLink::Start() {
  if (auto s = modules_.EnableManagedConfig(addresses_); !s.ok()) return s;
  modules_.set_on_inventory_change([this] { uplink_->InventoryChanged(); });
  converger_.set_on_change([this] { uplink_->InventoryChanged(); });
  // Deployments of the cached snapshot: an agent restarted while the control plane is
  // away goes on converging to what it was last told.
  converger_.SetDesired(modules_.CachedDeployments());
  event_listener_ = supervisor_.AddEventListener([this](const std::string& unit,
                                                       const herd::v1::UnitEvent& e) {
    herd::v1::ModuleEvent me;
    me.set_at_unix_ms(e.at_unix_ms());
    me.set_unit(unit);
    me.set_kind(e.kind());
    me.set_detail(e.detail());
    uplink_->PushEvent(std::move(me));
  });
  if (auto s = uplink_->Start(); !s.ok()) return s;
  ScheduleMetrics();
  return absl::OkStatus();
}

void ControlPlaneLink::Stop() {
  if (!*alive_) return;
  *alive_ = false;
  if (metrics_timer_) loop_.CancelTimer(metrics_timer_);
  metrics_timer_ = 0;
  supervisor_.RemoveEventListener(event_listener_);
  modules_.set_on_inventory_change(nullptr);
  converger_.set_on_change(nullptr);
  for (const auto& [id, follow] : follows_) supervisor_.Unfollow(follow);
  follows_.clear();
  uplink_->Stop();
}

void ControlPlaneLink::FillInfo(herd::v1::AgentInfo* info) const {
  Uplink::State s = uplink_->state();
  info->set_controlplane_address(s.address);
  for (const auto& a : uplink_->addresses()) info->add_controlplane_addresses(a);
  info->set_host_id(s.host_id);
  info->set_controlplane_connected(s.connected);
  if (!s.connected) info->set_controlplane_error(s.last_error);
  info->set_config_version(modules_.config_version());
  info->set_metrics_dropped(s.dropped_batches);
}

std::vector<herd::v1::ModuleInventory> ControlPlaneLink::Inventory() {
  return modules_.Inventory();
}

uint64_t ControlPlaneLink::AckedConfigVersion() { return modules_.config_version(); }

void ControlPlaneLink::OnWelcome(const herd::v1::Welcome& welcome) {
  if (welcome.metrics_interval_ms() >= 100) metrics_interval_ms_ = welcome.metrics_interval_ms();
}

void ControlPlaneLink::ScheduleMetrics() {
  metrics_timer_ = loop_.RunAfter(absl::Milliseconds(metrics_interval_ms_), [this] {
    metrics_timer_ = 0;
    if (!*alive_) return;
    SendMetrics();
    ScheduleMetrics();
  });
}

void ControlPlaneLink::SendMetrics() {
  herd::v1::MetricsBatch b;
  b.set_at_unix_ms(absl::ToUnixMillis(loop_.clock().Now()));
  *b.mutable_host() = host_sampler_.Sample();
  std::string shown;
  for (const auto& st : supervisor_.List()) {
    herd::v1::UnitSample* u = b.add_units();
    u->set_name(st.name());
    u->set_state(st.state());
    u->set_pid(st.pid());
    u->set_restarts(st.restarts());
    u->set_started_at_unix_ms(st.started_at_unix_ms());
    *u->mutable_usage() = st.usage();
    u->set_status_reason(st.status_reason());
    if (modules_.IsModule(st.name())) {
      u->set_is_module(true);
      herd::v1::UnitDetail d;
      *d.mutable_status() = st;
      modules_.FillDetail(&d);
      const auto& mi = d.module_info();
      for (const auto& p : mi.probes()) *u->add_probes() = p;
      for (const auto& p : mi.widget().main_probes()) u->add_main_probes(p);
      u->set_issues_count(mi.issues_count());
      b.mutable_host()->set_issues(b.host().issues() + mi.issues_count());
      u->set_version(mi.version());
      // What the inventory shows beyond the samples: resent when it changes.
      absl::StrAppend(&shown, st.name(), "\n", mi.widget().SerializeAsString(), "\n",
                      mi.issues_count(), "\n");
      for (const auto& a : mi.actions()) absl::StrAppend(&shown, a.name(), ",", a.arity(), ";");
    }
  }
  uplink_->PushMetrics(std::move(b));
  if (shown != shown_in_inventory_) {
    if (!shown_in_inventory_.empty() || !shown.empty()) uplink_->InventoryChanged();
    shown_in_inventory_ = std::move(shown);
  }
}

void ControlPlaneLink::OnConfig(const herd::v1::ConfigSnapshot& snap,
                                std::function<void(herd::v1::ConfigAck)> done) {
  if (!*alive_) return;
  if (snap.version() <= modules_.config_version()) {
    // Older than what is in force (it crossed a newer one): nothing to apply.
    herd::v1::ConfigAck ack;
    ack.set_version(snap.version());
    ack.set_accepted(true);
    return done(ack);
  }
  // The modules wanted, whether or not the config part is accepted (it names installed
  // modules only; what gets installed brings its config in the next snapshot).
  converger_.SetDesired(snap.deployments());
  modules_.ApplySnapshot(snap, done);
}

void ControlPlaneLink::OnAction(const herd::v1::ActionRequest& req,
                                std::function<void(herd::v1::ActionResult)> done) {
  if (!*alive_) return;
  herd::v1::TriggerActionRequest t;
  t.set_module(req.module());
  t.set_action(req.action());
  t.mutable_params()->insert(req.params().begin(), req.params().end());
  t.set_timeout_ms(req.timeout_ms());
  modules_.TriggerAction(t, [req, done](absl::StatusOr<herd::v1::TriggerActionResponse> r) {
    herd::v1::ActionResult out;
    out.set_request_id(req.request_id());
    if (!r.ok()) {
      out.set_error(std::string(r.status().message()));
    } else {
      out.set_ok(true);
      out.set_reply_json(r->reply_json());
      out.mutable_stream()->CopyFrom(r->stream());
      out.set_elapsed_ms(r->elapsed_ms());
    }
    done(std::move(out));
  });
}

void ControlPlaneLink::RestartOne(const std::string& unit, uint32_t wait_healthy_ms,
                                  std::function<void(herd::v1::UnitRestartResult)> done) {
  supervisor_.Restart(unit, [this, unit, wait_healthy_ms, done](auto units) {
    herd::v1::UnitRestartResult r;
    r.set_unit(unit);
    if (!units.ok()) {
      r.set_error(std::string(units.status().message()));
      return done(r);
    }
    int32_t pid = units->empty() ? 0 : units->front().pid();
    r.set_pid(pid);
    auto alive = alive_;
    loop_.RunAfter(absl::Milliseconds(wait_healthy_ms), [this, r, pid, done, alive]() mutable {
      if (!*alive) return;
      auto d = supervisor_.Describe(r.unit());
      if (!d.ok()) {
        r.set_error(std::string(d.status().message()));
      } else if (d->status().state() != herd::v1::UNIT_STATE_ONLINE ||
                 d->status().pid() != pid) {
        r.set_error(absl::StrCat("did not stay online: ",
                                 herd::v1::UnitState_Name(d->status().state()),
                                 d->status().status_reason().empty()
                                     ? ""
                                     : absl::StrCat(" (", d->status().status_reason(), ")")));
      } else {
        r.set_ok(true);
      }
      done(r);
    });
  });
}

void ControlPlaneLink::OnRestart(const herd::v1::RestartRequest& req,
                                 std::function<void(herd::v1::RestartResult)> done) {
  if (!*alive_) return;
  log_->info("event=restart_requested units={} rollout={}", req.units_size(), req.rollout_id());
  auto result = std::make_shared<herd::v1::RestartResult>();
  result->set_request_id(req.request_id());
  auto left = std::make_shared<int>(req.units_size());
  if (*left == 0) return done(*result);
  for (int i = 0; i < req.units_size(); ++i) result->add_units()->set_unit(req.units(i));
  for (int i = 0; i < req.units_size(); ++i) {
    RestartOne(req.units(i), req.wait_healthy_ms(),
               [result, left, done, i](herd::v1::UnitRestartResult r) {
                 *result->mutable_units(i) = std::move(r);
                 if (--*left == 0) done(*result);
               });
  }
}

void ControlPlaneLink::OnLogs(const herd::v1::HostLogsRequest& req,
                              std::function<void(herd::v1::LogChunk)> send) {
  if (!*alive_) return;
  herd::v1::LogChunk chunk;
  chunk.set_request_id(req.request_id());
  auto paths = supervisor_.LogPaths(req.unit());
  if (!paths.ok()) {
    chunk.set_end(true);
    chunk.set_error(std::string(paths.status().message()));
    return send(chunk);
  }
  const size_t n = req.lines() == 0 ? 15 : std::min<uint32_t>(req.lines(), 10000);
  std::vector<std::pair<std::string, std::string>> streams = {{"out", paths->first}};
  if (paths->second != paths->first) streams.push_back({"err", paths->second});
  for (const auto& [stream, path] : streams) {
    auto tail = ReadLastLines(path, n);
    if (!tail.ok()) continue;
    for (auto& text : *tail) {
      auto* l = chunk.add_lines();
      l->set_stream(stream);
      l->set_text(std::move(text));  // UTF-8 already (ReadLastLines)
      l->set_unit(req.unit());
    }
  }
  if (!req.follow()) {
    chunk.set_end(true);
    return send(chunk);
  }
  send(chunk);
  auto follow = supervisor_.Follow(req.unit(), [req, send](const herd::v1::LogLine& line) {
    herd::v1::LogChunk c;
    c.set_request_id(req.request_id());
    *c.add_lines() = line;
    send(std::move(c));
  });
  if (!follow.ok()) {
    herd::v1::LogChunk end;
    end.set_request_id(req.request_id());
    end.set_end(true);
    end.set_error(std::string(follow.status().message()));
    return send(end);
  }
  follows_[req.request_id()] = *follow;
}

void ControlPlaneLink::OnCancel(const std::string& request_id) {
  if (!*alive_) return;
  auto it = follows_.find(request_id);
  if (it == follows_.end()) return;
  supervisor_.Unfollow(it->second);
  follows_.erase(it);
}

}  // namespace herd::agent

