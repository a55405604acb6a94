// Hub: the control plane's view of the fleet, shared by the gateway (agents' streams) and
// the Fleet API. What remains in Hub itself is the gateway's entry — Connect (join token or
// host credential → a registered host with its stream attached), OnMessage, OnDisconnect —,
// Start/Stop, and the wiring of its components, each in its own file:
//
//   HostRegistry       host_registry.h       the index of hosts and each host's state; lookups,
//                                            target resolution, views (HostDirectory)
//   HostConfigService  host_config_service.h overrides, snapshots, pushes (ConfigService)
//   HostRequestRelay   host_request_relay.h  pending requests: actions, restarts, logs, their
//                                            deadlines (RequestRelay)
//   SendPool           send_pool.h           the threads that hand messages to sessions
//   HostRecordWriter   host_record_writer.h  host records written behind
//   MetricsWatchers    metrics_watchers.h    who watches which hosts' batches (MetricsFeed)
//   StoreAuditLog      store_audit_log.h     who changed what (AuditLog)
//
// The Fleet API sees the hub only through the five interfaces of fleet_interfaces.h; Hub
// implements them as forwards (and hands out each component as its interface). A host is
// reached only through HostRegistry::Route, the seam where a host connected to another
// control-plane replica can later be routed without touching callers.
//
// Threading and the one lock order. Every public method is thread-safe. The hot path (an
// agent's message) takes only a reader lock on the host index and that host's own lock, so
// hosts do not contend with each other and listings or /metrics do not stall ingest. Locks
// are taken in this order, and never two hosts' at once:
//
//   HostConfigService::config_mu_ → HostRegistry::index_mu_ → HostEntry::mu (one host)
//     → HostRequestRelay::pending_mu_ | MetricsWatchers::mu_ | HostRecordWriter::mu_
//       | Hub::join_mu_ | SendPool's Outbox::mu | the PresenceSink's queue lock
//
// No call into a session or a callback is made while holding any of them, except a post to
// the SendPool (a queue push; a direct Send with no send threads) under config_mu_ and the
// host's lock, which keeps each host's Welcome first and its config versions in order.
// Threads: the gateway's and the Fleet API's callers; the SendPool's send threads; the
// HostRecordWriter's thread (its blocking store writes); and the Scheduler's thread, which
// runs the sweep task (every 250 ms: relayed requests past their deadline, and every 5 s,
// streams silent too long) and the writer's retry timer. Sessions are the gateway's stream
// reactors, behind the HostSession interface so tests can use fakes.
// What a host sends is bounded where it enters (HubOptions::limits, agent_limits.h), so no
// host can grow the control plane or slow what the others share. Every interval and
// deadline (silences, leases, relayed requests, the join token's cache, the writer's
// retries) is on the clock's monotonic reading: a wall-clock step expires nothing.
//
// Replicas (issue 22; replica_hooks.h): the hub tells a PresenceSink which streams it holds
// (set_presence), and is told what other replicas stored (it is a ReplicatedFleet: hosts,
// config). With HubOptions::read_unknown_hosts, a host presenting its credential that this
// replica does not know yet (registered through another one) is read from the store. What
// watches etcd lives in controlplane/cluster/, not here.
#pragma once

#include <atomic>
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <set>
#include <string>
#include <vector>

#include "absl/functional/function_ref.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "common/clock.h"
#include "common/gateway_protocol.h"
#include "common/logging.h"
#include "common/scheduler.h"
#include "controlplane/core/agent_limits.h"
#include "controlplane/core/fleet_interfaces.h"
#include "controlplane/core/host_config_service.h"
#include "controlplane/core/host_record_writer.h"
#include "controlplane/core/host_registry.h"
#include "controlplane/core/host_request_relay.h"
#include "controlplane/core/host_session.h"
#include "controlplane/core/hub_options.h"
#include "controlplane/core/metrics_view.h"
#include "controlplane/core/metrics_watchers.h"
#include "controlplane/core/replica_hooks.h"
#include "controlplane/core/send_pool.h"
#include "controlplane/core/series.h"
#include "controlplane/core/store_audit_log.h"
#include "controlplane/store/store.h"
#include "herd/v1/fleet.pb.h"
#include "herd/v1/gateway.pb.h"

namespace herd::controlplane {

class Hub final : public HostDirectory,
                  public ConfigService,
                  public RequestRelay,
                  public MetricsFeed,
                  public AuditLog,
                  public ReplicatedFleet {
 public:
  // Timers (the sweep, the writer's retries) run on `scheduler`, on its clock.
  Hub(Store& store, Scheduler& scheduler, HubOptions options);
  // Owns a ThreadScheduler on `clock`.
  Hub(Store& store, const Clock& clock, HubOptions options);
  ~Hub() override;
  Hub(const Hub&) = delete;
  Hub& operator=(const Hub&) = delete;

  // Loads hosts from the store; starts the sweep task, the writer and the send threads.
  absl::Status Start();
  // Fails every pending request, closes sessions, stops the sweep, sends what is queued and
  // writes what the hosts' last messages changed.
  void Stop();

  // Told of every stream attached and detached here (replica_hooks.h); null: none (a single
  // node). Before Start.
  void set_presence(PresenceSink* presence) { registry_.set_presence(presence); }

  // ---- ReplicatedFleet: what other replicas stored.
  void HostStored(const HostRecord& record) override { registry_.Adopt(record); }
  void HostStatusStored(const HostStatus& status) override { registry_.AdoptStatus(status); }
  void HostDeleted(const std::string& host_id) override { registry_.Forget(host_id); }
  absl::StatusOr<std::vector<std::string>> ReloadConfig() override {
    return config_.ReloadFromStore();
  }

  // ---- gateway side
  // Checks `bearer` (join token, or the credential of hello.host_id), validates the Hello,
  // records the host and attaches the session (closing an older one for the same host),
  // then sends the Welcome and the host's config snapshot through the session.
  // UNAUTHENTICATED / INVALID_ARGUMENT errors say why (nothing is sent then).
  // A group of batches holds at most this many (what agentd sends at most); more are cut
  // and counted.
  static constexpr size_t kMaxBatchesPerGroup = kMaxMetricsBatchesPerMessage;

  // A module artifact fetch (Gateway's FetchArtifact): `bearer` is the credential of
  // `host_id` (UNAUTHENTICATED otherwise; the join token is not one), and the last snapshot
  // sent to the host wants "sha256:<digest>" (PERMISSION_DENIED otherwise).
  absl::Status AuthorizeArtifact(const std::string& host_id, const std::string& bearer,
                                 const std::string& digest);

  // ConnectAsync's answer, waited for (tests; the gateway uses ConnectAsync). A join waits
  // for the record writer: after Start (or Stop, when it writes on the caller's thread).
  absl::Status Connect(const std::string& bearer, const herd::v1::Hello& hello,
                       std::shared_ptr<HostSession> session);
  // Connect without a thread waiting: `done` gets the answer once the session is attached
  // (the Welcome posted) or refused. With the credential it runs before this returns; a
  // join is answered once its new credential is stored, on the record writer's thread
  // (HostRecordWriter::MarkDirtyThen). At most HubOptions::max_pending_joins joins wait at
  // once; more are refused with RESOURCE_EXHAUSTED (counted: joins_refused). `hello` is
  // not used after this returns.
  using ConnectDone = std::function<void(absl::Status)>;
  void ConnectAsync(const std::string& bearer, const herd::v1::Hello& hello,
                    std::shared_ptr<HostSession> session, ConnectDone done);
  // A message on an attached session (Hello excluded).
  void OnMessage(const std::string& host_id, const HostSession* session,
                 const herd::v1::AgentMessage& msg);
  // The same message as its wire bytes, taken in place when it is a metrics message that
  // needs nothing more (metrics_view.h): no batch past the host's limits or in an unusual
  // form, the host not watched live. Nearly every message of a fleet is one, and then
  // nothing of it is parsed into objects. False when it is not taken: parse it then and
  // call OnMessage. (True, nothing done, for a stale session, as OnMessage.)
  bool OnMessageBytes(const std::string& host_id, const HostSession* session,
                      std::string_view bytes);
  // The session's stream ended.
  void OnDisconnect(const std::string& host_id, const HostSession* session);

  // ---- The components, as the Fleet API sees them.
  HostDirectory& directory() { return registry_; }
  ConfigService& config() { return config_; }
  RequestRelay& relay() { return relay_; }
  MetricsFeed& metrics_feed() { return watchers_; }
  AuditLog& audit() { return audit_; }

  // ---- Fleet side: forwards to the components (fleet_interfaces.h says what each does).
  absl::StatusOr<std::vector<std::string>> ResolveTarget(
      const herd::v1::Target& target) const override {
    return registry_.ResolveTarget(target);
  }
  absl::StatusOr<std::vector<herd::v1::Host>> ListHosts(
      const herd::v1::Target& target) const override {
    return registry_.ListHosts(target);
  }
  absl::StatusOr<herd::v1::HostDetail> GetHost(const std::string& host_id) const override {
    return registry_.GetHost(host_id);
  }
  // Every host with its latest units (events left out), for exposition: `visit` runs once
  // per host, in host id order, outside every lock (each host is copied under its own lock).
  void VisitHosts(const std::function<void(const herd::v1::HostDetail&)>& visit) const {
    registry_.VisitHosts(visit);
  }
  // VisitHosts, gathered.
  std::vector<herd::v1::HostDetail> Snapshot() const;
  absl::StatusOr<std::vector<herd::v1::ModuleInstance>> ListModules(
      const herd::v1::Target& target, const std::string& module) const override {
    return registry_.ListModules(target, module);
  }
  absl::StatusOr<std::vector<std::pair<std::string, std::string>>> HostsWithModule(
      const herd::v1::Target& target, const std::string& module) const override {
    return registry_.HostsWithModule(target, module);
  }
  absl::StatusOr<herd::v1::Series> QuerySeries(
      const herd::v1::QuerySeriesRequest& req) const override {
    return registry_.QuerySeries(req);
  }

  absl::StatusOr<herd::v1::FleetConfig> GetConfig(const std::string& module,
                                                  const std::string& host_id) const override {
    return config_.GetConfig(module, host_id);
  }
  absl::StatusOr<herd::v1::FleetConfigChange> SetConfig(
      const herd::v1::FleetSetConfigRequest& req, const Actor& actor) override {
    return config_.SetConfig(req, actor);
  }
  absl::StatusOr<herd::v1::FleetConfigChange> UnsetConfig(
      const herd::v1::FleetUnsetConfigRequest& req, const Actor& actor) override {
    return config_.UnsetConfig(req, actor);
  }
  absl::StatusOr<herd::v1::DeployResponse> Deploy(const herd::v1::DeployRequest& req,
                                                  const Actor& actor) override {
    return config_.Deploy(req, actor);
  }
  absl::StatusOr<herd::v1::DeployResponse> Undeploy(const herd::v1::UndeployRequest& req,
                                                    const Actor& actor) override {
    return config_.Undeploy(req, actor);
  }
  absl::StatusOr<herd::v1::ListDeploymentsResponse> ListDeployments(
      const std::string& name) const override {
    return config_.ListDeployments(name);
  }
  absl::StatusOr<Declared> GetDeclaration(const herd::v1::Scope& scope,
                                          const std::string& name) override {
    return config_.GetDeclaration(scope, name);
  }
  absl::StatusOr<herd::v1::DeployResponse> PutDeclaration(const std::string& name,
                                                          const Declared& d, const Actor& actor,
                                                          const std::string& action,
                                                          const std::string& detail) override {
    return config_.PutDeclaration(name, d, actor, action, detail);
  }

  // What changes hosts (actions, restarts) needs a target that says which: an unset target,
  // `all: false` or an empty host list are refused (a fleet-wide change is `all: true`).
  static absl::Status CheckChangeTarget(const herd::v1::Target& target) {
    return controlplane::CheckChangeTarget(target);
  }

  void TriggerAction(
      const herd::v1::FleetActionRequest& req, const Actor& actor,
      std::function<void(absl::StatusOr<herd::v1::FleetActionResponse>)> done) override {
    relay_.TriggerAction(req, actor, std::move(done));
  }
  void RestartOnHosts(
      const std::vector<std::string>& host_ids, const std::vector<std::string>& units,
      uint32_t wait_healthy_ms, const std::string& rollout_id,
      std::function<void(size_t, absl::StatusOr<herd::v1::RestartResult>)> done) override {
    relay_.RestartOnHosts(host_ids, units, wait_healthy_ms, rollout_id, std::move(done));
  }
  std::string StreamLogs(const herd::v1::FleetLogsRequest& req,
                         std::function<void(const herd::v1::LogChunk&)> on_lines,
                         std::function<void(absl::Status)> on_end) override {
    return relay_.StreamLogs(req, std::move(on_lines), std::move(on_end));
  }
  void CancelLogs(const std::string& request_id) override { relay_.CancelLogs(request_id); }

  uint64_t WatchMetrics(std::set<std::string> hosts, MetricsWatcher watcher) override {
    return watchers_.WatchMetrics(std::move(hosts), std::move(watcher));
  }
  void Unwatch(uint64_t id) override { watchers_.Unwatch(id); }

  absl::StatusOr<std::vector<herd::v1::AuditEntry>> ListAudit(size_t limit) const override {
    return audit_.ListAudit(limit);
  }
  void Audit(const std::string& actor, const std::string& action,
             const std::string& detail_json) override {
    audit_.Audit(actor, action, detail_json);
  }

  using Stats = HubStats;
  static constexpr std::array<double, 12> kBatchDelayBounds = HubStats::kBatchDelayBounds;
  Stats stats() const;

  // Waits until every host record changed so far is written (or the write failed: its
  // status). For tests and Stop().
  absl::Status FlushHostRecords() { return writer_.Flush(); }

  // One round of the sweep now (what its task does every 250 ms): fails relayed requests
  // past their deadline, closes silent streams (at most every 5 s).
  void Sweep();

 private:
  Hub(Store& store, std::unique_ptr<ThreadScheduler> owned, Scheduler* scheduler,
      HubOptions options);

  // Connect's steps: the join token's check (true: the bearer is the join token), the
  // Hello recorded in the host's state (the caller holds its lock), the Welcome.
  absl::StatusOr<bool> CheckJoinToken(const std::string& presented);
  absl::Status RecordHello(HostState& h, const herd::v1::Hello& hello, bool by_join,
                           const std::string& presented, const std::string& credential,
                           int64_t now_ms);
  herd::v1::ControlMessage Welcome(const std::string& host_id,
                                   const std::string& credential) const;
  // Metrics cadence (Welcome.metrics_batches_per_message): 1 for a host someone watches
  // live by name, else the fleet's: options_.metrics_batches_per_message once
  // options_.metrics_group_above hosts are connected (checked with the silent streams, every
  // 5 s; back to 1 below 90 % of it), told to every connected host when it changes.
  uint32_t CadenceFor(const std::string& host_id) const;
  void SendCadence(const std::string& host_id, uint32_t per_message);
  void UpdateFleetCadence();
  // A group holds at most this many batches (what agentd sends at most: Uplink's
  // kMaxBatchesPerMessage).
  // The Hello of a host presenting its credential: answered at once.
  absl::Status Reconnect(const std::string& presented, const herd::v1::Hello& hello,
                         std::shared_ptr<HostSession> session);
  // What the dashboard shows of a Hello besides its inventory, display text bounded.
  static herd::v1::Hello Shown(const herd::v1::Hello& hello);
  // Connect's last step: the session attached, the Welcome (with `credential`, empty on a
  // reconnect) and the config posted, the replaced session closed.
  void AttachSession(HostEntry& e, const std::string& host_id,
                     std::shared_ptr<HostSession> session, const herd::v1::Hello& shown,
                     const std::string& credential, int64_t now_ms, const char* by);
  // What every message from a host does, then `apply` under the host's lock (and what it
  // cut counted): false, nothing done, when `session` is no longer the host's stream.
  bool UpdateHost(const std::string& host_id, const HostSession* session, int64_t now_ms,
                  LimitHits* hits, absl::FunctionRef<void(HostState&)> apply,
                  std::string* hostname);
  // OnMessage's update of the host's state (under its lock). Sets `save`/`inventory_changed`.
  using Views = std::vector<MetricsBatchView>;
  void Apply(HostState& h, const herd::v1::AgentMessage& msg, const Views& batches,
             int64_t now_ms, LimitHits* hits, bool* save, bool* inventory_changed);
  void ApplyInventory(HostState& h, const herd::v1::Inventory& inv, LimitHits* hits,
                      bool* inventory_changed);
  int64_t MonoMs() const { return absl::ToUnixMillis(clock_.Monotonic()); }
  // The join token's hash (cached for options_.join_token_cache), nullopt when none is set.
  absl::StatusOr<std::optional<std::string>> JoinTokenHash();
  absl::Status ValidateHello(const herd::v1::Hello& hello) const;
  // The host presenting its credential: from memory, else (read_unknown_hosts) from the
  // store. Null when unknown; the store's error when it cannot tell.
  absl::StatusOr<Entry> FindForCredential(const std::string& host_id);
  // Replicas: a Hello for a host unknown here costs a store read, before anything proves the
  // caller holds a credential; at most kUnknownHostReadsPerSecond a second, the rest refused
  // (UNAVAILABLE: an agent retries) and counted.
  bool AdmitUnknownHostRead();
  static constexpr uint32_t kUnknownHostReadsPerSecond = 50;

  // Declared first: the components' timers run on it until they are stopped.
  std::unique_ptr<ThreadScheduler> owned_scheduler_;
  Scheduler& scheduler_;
  Store& store_;
  const Clock& clock_;
  const HubOptions options_;
  std::shared_ptr<spdlog::logger> log_;

  StoreAuditLog audit_;
  MetricsWatchers watchers_;
  SendPool sends_;
  HostRegistry registry_;
  HostConfigService config_;
  HostRequestRelay relay_;
  HostRecordWriter writer_;

  // Counted before any lock is taken (and before a Hello is validated).
  std::atomic<uint64_t> agent_messages_{0};

  absl::Mutex unknown_mu_;  // a leaf
  int64_t unknown_window_ms_ ABSL_GUARDED_BY(unknown_mu_) = 0;
  uint32_t unknown_reads_ ABSL_GUARDED_BY(unknown_mu_) = 0;
  uint64_t unknown_refused_ ABSL_GUARDED_BY(unknown_mu_) = 0;
  absl::Mutex join_mu_;
  std::optional<std::string> join_hash_ ABSL_GUARDED_BY(join_mu_);
  int64_t join_read_mono_ms_ ABSL_GUARDED_BY(join_mu_) = 0;
  bool join_cached_ ABSL_GUARDED_BY(join_mu_) = false;
  std::atomic<uint64_t> join_token_reads_{0};
  std::atomic<uint32_t> fleet_cadence_{1};
  std::atomic<size_t> pending_joins_{0};  // waiting for their credential's write
  std::atomic<uint64_t> joins_refused_{0};

  absl::Mutex life_mu_;
  bool stopping_ ABSL_GUARDED_BY(life_mu_) = false;
  std::atomic<bool> stopped_{false};
  std::atomic<int64_t> silent_checked_mono_ms_{0};
  PeriodicTask sweeper_;
};

}  // namespace herd::controlplane
