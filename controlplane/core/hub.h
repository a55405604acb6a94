// Hub: the control plane's view of the fleet, shared by the gateway (agents' streams) and
// the Fleet API. It registers hosts (join token → per-host credential), keeps each host's
// latest state and recent series in memory, computes and pushes each host's configuration
// snapshot, and relays requests (actions, restarts, logs) to hosts and their results back.
//
// Threading: every public method is thread-safe. The hot path (an agent's message) takes
// only a reader lock on the host index and that host's own lock, so hosts do not contend
// with each other and listings or /metrics do not stall ingest. Locks are taken in this
// order and never two hosts' at once: config_mu_ → index_mu_ → a host's mu → pending_mu_ |
// watch_mu_ | writer_mu_. No call into a session or a callback is made while holding any of
// them, except Post (a queue push; a direct Send with no send threads) under config_mu_ and
// the host's lock, which keeps each host's Welcome first and its config versions in order.
// Host records are written behind (one thread, one transaction for every host changed since
// the last write), so no agent's message waits on the disk. Sessions are the
// gateway's stream reactors, behind the HostSession interface so tests can use fakes.
// What a host sends is bounded where it enters (HubOptions::limits, agent_limits.h), so no
// host can grow the control plane or slow what the others share. Every interval and
// deadline (silences, leases, relayed requests) is on the clock's monotonic reading: a
// wall-clock step expires nothing.
#pragma once

#include <array>
#include <atomic>
#include <cstdint>
#include <deque>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "common/clock.h"
#include "common/interner.h"
#include "common/latency_histogram.h"
#include "common/logging.h"
#include "controlplane/core/agent_limits.h"
#include "controlplane/core/fleet_interfaces.h"
#include "controlplane/core/series.h"
#include "controlplane/store/store.h"
#include "herd/v1/fleet.pb.h"
#include "herd/v1/gateway.pb.h"

namespace herd::controlplane {

// One agent's stream, as the hub sees it.
class HostSession {
 public:
  virtual ~HostSession() = default;
  // Queues a message for the agent; false when the stream is closed or its queue is full
  // (the message is dropped and the caller treats the host as unreachable).
  virtual bool Send(herd::v1::ControlMessage msg) = 0;
  // Ends the stream (e.g. the host connected again elsewhere).
  virtual void Close(const std::string& why) = 0;
  virtual std::string Peer() const = 0;
};

struct HubOptions {
  // A host whose stream has been gone longer than this is shown offline.
  absl::Duration lease = absl::Seconds(30);
  // A connected agent that has sent nothing for this long (or 10 metrics intervals, if that
  // is longer: it sends a batch every interval) is taken as gone, its host down or cut off,
  // and its stream is closed. This is how the control plane notices dead agents, instead of
  // HTTP/2 keepalive pings of its own (server.cc).
  absl::Duration silent_stream_timeout = absl::Seconds(60);
  // Recent history kept per host (controlplane/core/series.h).
  SeriesOptions series;
  size_t events_kept = 100;
  uint32_t metrics_interval_ms = 1000;
  // Extra time a relayed request may take beyond its own timeout before the hub fails it.
  absl::Duration request_grace = absl::Seconds(5);
  // Threads that hand messages to sessions (0: the caller's thread). A gateway session's
  // Send starts a gRPC write; made from a gRPC thread, gRPC runs every write started there
  // one after the other when that thread's callback returns, so a fan-out to 10,000 hosts
  // from a Fleet API call would be written by one thread, with the call's own answer last
  // (bench/README.md). The server uses a few; tests use 0 to see sends at once. A host's
  // messages always go through the same thread, in order.
  size_t send_threads = 0;
  // What one host may make the control plane hold (controlplane/core/agent_limits.h).
  AgentLimits limits;
  // The join token's hash is read from the store at most this often (every Connect needs
  // it: 10,000 agents reconnecting at once would otherwise be 10,000 reads). Another process
  // may write it (a new token adopted at start), so it is not cached for ever.
  absl::Duration join_token_cache = absl::Seconds(5);
  // A module's config as SetConfig checks it: one value, and all of the module's overrides
  // that can apply to one host together, measured as the JSON agentd puts in the module's
  // environment. One environment variable may not exceed 128 KiB (Linux's MAX_ARG_STRLEN),
  // and the module's defaults share that variable with them.
  size_t max_config_value_bytes = 32 * 1024;
  size_t max_module_config_bytes = 48 * 1024;
};

// The hub implements every interface the Fleet API sees of it (fleet_interfaces.h).
class Hub final : public HostDirectory,
                  public ConfigService,
                  public RequestRelay,
                  public MetricsFeed,
                  public AuditLog {
 public:
  Hub(Store& store, const Clock& clock, HubOptions options);
  ~Hub() override;
  Hub(const Hub&) = delete;
  Hub& operator=(const Hub&) = delete;

  // Loads hosts from the store; starts the sweeper (request deadlines).
  absl::Status Start();
  // Fails every pending request, closes sessions, stops the sweeper.
  void Stop();

  // ---- gateway side
  // Checks `bearer` (join token, or the credential of hello.host_id), validates the Hello,
  // records the host and attaches the session (closing an older one for the same host),
  // then sends the Welcome and the host's config snapshot through the session.
  // UNAUTHENTICATED / INVALID_ARGUMENT errors say why (nothing is sent then).
  absl::Status Connect(const std::string& bearer, const herd::v1::Hello& hello,
                       std::shared_ptr<HostSession> session);
  // A message on an attached session (Hello excluded).
  void OnMessage(const std::string& host_id, const HostSession* session,
                 const herd::v1::AgentMessage& msg);
  // The session's stream ended.
  void OnDisconnect(const std::string& host_id, const HostSession* session);

  // ---- Fleet side
  // Host ids a target selects (unset target: every host, for reads). Unknown host ids / bad
  // selectors are errors.
  absl::StatusOr<std::vector<std::string>> ResolveTarget(const herd::v1::Target& target) const override;
  absl::StatusOr<std::vector<herd::v1::Host>> ListHosts(const herd::v1::Target& target) const override;
  absl::StatusOr<herd::v1::HostDetail> GetHost(const std::string& host_id) const override;
  // Every host with its latest units (events left out), for exposition: `visit` runs once
  // per host, in host id order, outside every lock (each host is copied under its own lock).
  void VisitHosts(const std::function<void(const herd::v1::HostDetail&)>& visit) const;
  // VisitHosts, gathered.
  std::vector<herd::v1::HostDetail> Snapshot() const;
  absl::StatusOr<std::vector<herd::v1::ModuleInstance>> ListModules(
      const herd::v1::Target& target, const std::string& module) const override;
  // The selected hosts that have `module` installed: (host id, hostname), in host id order.
  // ListModules without the units (no batch is parsed).
  absl::StatusOr<std::vector<std::pair<std::string, std::string>>> HostsWithModule(
      const herd::v1::Target& target, const std::string& module) const override;
  absl::StatusOr<herd::v1::Series> QuerySeries(const herd::v1::QuerySeriesRequest& req) const override;

  absl::StatusOr<herd::v1::FleetConfig> GetConfig(const std::string& module,
                                                  const std::string& host_id) const override;
  absl::StatusOr<herd::v1::FleetConfigChange> SetConfig(
      const herd::v1::FleetSetConfigRequest& req, const Actor& actor) override;
  absl::StatusOr<herd::v1::FleetConfigChange> UnsetConfig(
      const herd::v1::FleetUnsetConfigRequest& req, const Actor& actor) override;

  // What changes hosts (actions, restarts) needs a target that says which: an unset target,
  // `all: false` or an empty host list are refused (a fleet-wide change is `all: true`).
  static absl::Status CheckChangeTarget(const herd::v1::Target& target);

  // Triggers the action on every selected host; `done` runs once, with one result per
  // host, when all have answered, failed or timed out.
  void TriggerAction(const herd::v1::FleetActionRequest& req, const Actor& actor,
                     std::function<void(absl::StatusOr<herd::v1::FleetActionResponse>)> done) override;

  // Restarts units on each of the hosts (a rollout's step), handed out a few hundred at a time.
  // `done(i, result)` gets host_ids[i]'s result, or an error if that host is offline,
  // disconnects, or does not answer in time; it may run before this returns.
  void RestartOnHosts(
      const std::vector<std::string>& host_ids, const std::vector<std::string>& units,
      uint32_t wait_healthy_ms, const std::string& rollout_id,
      std::function<void(size_t, absl::StatusOr<herd::v1::RestartResult>)> done) override;

  // Streams a unit's log from its host: `on_lines` for each chunk; `on_end` once (OK when the
  // log ended, an error if the host is gone). Returns an id for CancelLogs.
  std::string StreamLogs(const herd::v1::FleetLogsRequest& req,
                         std::function<void(const herd::v1::LogChunk&)> on_lines,
                         std::function<void(absl::Status)> on_end) override;
  void CancelLogs(const std::string& request_id) override;

  // Every metrics batch of the selected hosts (empty set = all) as it arrives. The callback
  // runs on the thread that received the batch and must not block.
  uint64_t WatchMetrics(std::set<std::string> hosts, MetricsWatcher watcher) override;
  void Unwatch(uint64_t id) override;

  absl::StatusOr<std::vector<herd::v1::AuditEntry>> ListAudit(size_t limit) const override;
  void Audit(const std::string& actor, const std::string& action, const std::string& detail_json) override;

  // Counters for /metrics and tests.
  struct Stats {
    uint64_t hosts = 0, online = 0, connected = 0;
    uint64_t batches_received = 0, batches_dropped_by_agents = 0;
    uint64_t config_pushes = 0, config_nacks = 0;
    // Every message agents sent (Hellos included, stale streams and refused Hellos too).
    uint64_t agent_messages = 0;
    // From a batch's time (the agent's clock) to its processing here, live batches only (not
    // those replayed after a reconnect). Seconds of delay mean the control plane (or its
    // machine) is behind: everything it does for agents waits as long.
    LatencyHistogram::Snapshot batch_delay;
    // What agents sent past a per-host limit, by kind (AgentLimits; Limit indexes it).
    std::array<uint64_t, kLimitKinds> limited{};
    // Connects that read the join token's hash from the store (the rest used the cache).
    uint64_t join_token_reads = 0;
  };
  static constexpr std::array<double, 12> kBatchDelayBounds = {0.01, 0.025, 0.05, 0.1, 0.25, 0.5,
                                                               1,    2.5,   5,    10,  30,   60};
  Stats stats() const;

  // Waits until every host record changed so far is written (or the write failed: its
  // status). For tests and Stop().
  absl::Status FlushHostRecords();

  // One round of the sweeper now (what its thread does every 250 ms): fails relayed requests
  // past their deadline, closes silent streams. For tests, which drive a FakeClock.
  void Sweep();

 private:
  struct HostState {
    HostRecord record;
    std::shared_ptr<HostSession> session;
    // The session closed for silence: it stays `session` until its stream has ended (its
    // status may wait a few seconds behind unread data), and is not closed again meanwhile.
    const HostSession* closed_silent = nullptr;
    int64_t connected_at_ms = 0;
    int64_t disconnected_at_ms = 0;
    // Monotonic readings (Clock::Monotonic, ms) for every interval: the last message, the end
    // of the last stream. The wall-clock fields are for display only: an NTP step must not
    // close streams or show hosts offline.
    int64_t heard_mono_ms = 0;
    int64_t disconnected_mono_ms = 0;
    // When each kind of limit was last logged for this host (monotonic ms; 0 never).
    std::array<int64_t, kLimitKinds> limit_logged_mono_ms{};
    std::string peer;
    herd::v1::Hello hello;  // without its inventory (that is record.modules)
    // The latest batch, serialized (a tenth of its parsed size; parsed when a caller wants
    // the units), its time, and the host's usage from it (for every host listing).
    std::string last_batch;
    int64_t last_batch_at_ms = 0;
    herd::v1::HostUsage usage;
    std::deque<herd::v1::ModuleEvent> events;
    uint64_t dropped_batches = 0;
    // The last snapshot sent: its content (without its version), shared by every host that
    // was sent the same (snapshots_), and its version; null before the first.
    std::shared_ptr<const herd::v1::ConfigSnapshot> sent;
    uint64_t sent_version = 0;
    std::vector<herd::v1::ConfigRejection> rejections;
    // The last version whose rejection was logged: once per version, however often a host
    // sends it.
    uint64_t nack_logged_version = 0;
    HostSeries series;
  };
  // One host: its state behind its own lock. Entries are never removed from the index, so
  // a shared_ptr taken under the index lock stays valid.
  struct HostEntry {
    mutable absl::Mutex mu;
    HostState s ABSL_GUARDED_BY(mu);
  };
  using Entry = std::shared_ptr<HostEntry>;
  // The units of the host's latest batch.
  static std::vector<herd::v1::UnitSample> LatestUnits(const std::string& last_batch);
  enum class Kind { kAction, kRestart, kLogs };
  struct Pending {
    Kind kind;
    std::string host_id;
    absl::Time deadline = absl::InfiniteFuture();
    std::function<void(absl::StatusOr<herd::v1::AgentMessage>)> done;
    // Logs only.
    std::function<void(const herd::v1::LogChunk&)> on_lines;
    // The stream the request went out on (null until it is handed over): when that stream
    // ends, even after the host connected again on another, no answer can come (an agent
    // drops answers to what a stream it has left asked).
    const HostSession* session = nullptr;
  };

  Entry Find(const std::string& host_id) const;
  // By host id, else by hostname (the last in id order); null when neither.
  Entry FindByIdOrName(const std::string& want) const;
  // Every host, in host id order.
  std::vector<Entry> Entries() const;

  // `mono_ms`: Clock::Monotonic in ms.
  bool Online(const HostState& h, int64_t mono_ms) const;
  herd::v1::Host HostView(const HostState& h, int64_t mono_ms) const;
  int64_t MonoMs() const { return absl::ToUnixMillis(clock_.Monotonic()); }
  // Counts what a host's message had cut, and logs it (once a minute per host and kind).
  // Needs the host's lock.
  void CountLimited(HostState& h, const LimitHits& hits);
  // The join token's hash (cached for options_.join_token_cache), nullopt when none is set.
  absl::StatusOr<std::optional<std::string>> JoinTokenHash();
  static std::set<std::string> Installed(const HostState& h);
  // Gives the host `snap` as its next snapshot (with a new version) when it differs from the
  // last one sent or when `force`; returns the message to send. Needs the host's lock.
  std::optional<herd::v1::ControlMessage> NextSnapshot(
      HostState& h, std::shared_ptr<const herd::v1::ConfigSnapshot> snap, bool force);
  // The shared copy of a resolved snapshot (without version).
  std::shared_ptr<const herd::v1::ConfigSnapshot> Shared(herd::v1::ConfigSnapshot snap);
  // After a config or inventory change: resolves the snapshot of every host (or of `only`)
  // against the cached overrides and pushes those that changed; returns the hosts whose
  // config changed. Hosts with the same labels, modules and no override of their own share
  // one resolution.
  std::vector<std::string> PushConfig(const std::string* only = nullptr);
  // Reloads the overrides cache from the store. Needs config_mu_.
  absl::Status ReloadOverrides() ABSL_EXCLUSIVE_LOCKS_REQUIRED(config_mu_);
  // Records a batch (bounded already); what the series cap left out is added to `hits`.
  void OnBatch(HostState& h, const herd::v1::MetricsBatch& batch, int64_t now_ms,
               LimitHits* hits);
  // Size checks of SetConfig (per value, per module): the error says by how much and what to do.
  absl::Status CheckConfigSize(const herd::v1::FleetSetConfigRequest& req,
                               const herd::v1::Scope& scope);
  std::string NewRequestId();
  // A request to one host: `msg` carries `request_id`; `done` gets the host's answer.
  struct Request {
    std::string host_id;
    herd::v1::ControlMessage msg;
    Kind kind;
    std::string request_id;
    absl::Duration timeout;
    std::function<void(absl::StatusOr<herd::v1::AgentMessage>)> done;
  };
  // Registers each request as pending and sends it to its host, all in one hand-off to the
  // send threads; a request that cannot go out has its `done` run before this returns.
  void RelayAll(std::vector<Request> requests);
  // A fan-out's loop calls it after adding each request: a full hand-off (kHandOff) goes out,
  // so the first hosts have theirs while the rest are made; the loop relays the rest at the end.
  void RelayWhenFull(std::vector<Request>& requests);
  void CompletePending(const std::string& request_id, absl::StatusOr<herd::v1::AgentMessage> r);
  // Closes the streams of agents silent for longer than silent_stream_timeout.
  void CloseSilentStreams();
  std::atomic<int64_t> silent_checked_mono_ms_{0};
  absl::Status ValidateHello(const herd::v1::Hello& hello) const;
  absl::Status CheckConfigValue(const herd::v1::FleetSetConfigRequest& req) const;
  // After an override was written: audits a change, reloads the overrides and pushes.
  herd::v1::FleetConfigChange ConfigChanged(const ConfigWrite& w, const Actor& actor,
                                            const std::string& action,
                                            const std::string& detail_json);

  // Hands `msg` to the session (on a send thread when there are some); `on_fail` runs if the
  // session does not take it.
  void Post(const std::string& host_id, std::shared_ptr<HostSession> session,
            herd::v1::ControlMessage msg, std::function<void()> on_fail = nullptr);
  struct Outgoing {
    std::string host_id;
    std::shared_ptr<HostSession> session;
    herd::v1::ControlMessage msg;
    std::function<void()> on_fail;
  };
  // Post for many messages: one lock, and at most one wake-up, per send thread for them all.
  // (Posted one by one, a fan-out's poster and the send threads it wakes take turns on a
  // busy core, a message at a time.)
  void PostAll(std::vector<Outgoing> out);
  struct Outbox {
    struct Item {
      std::shared_ptr<HostSession> session;
      herd::v1::ControlMessage msg;
      std::function<void()> on_fail;
    };
    absl::Mutex mu;
    std::deque<Item> items ABSL_GUARDED_BY(mu);
    bool stop ABSL_GUARDED_BY(mu) = false;
    std::thread thread;
  };
  void OutboxLoop(Outbox& box);
  std::vector<std::unique_ptr<Outbox>> outboxes_;

  // Write-behind of host records. MarkDirty queues the host's record (its state when the
  // writer gets to it), whole or (`full` false: only last_seen and the acked version
  // changed) its status; with `wait`, returns once a write that includes it has finished.
  absl::Status MarkDirty(const std::string& host_id, bool wait, bool full = true);
  void WriterLoop();

  Store& store_;
  const Clock& clock_;
  const HubOptions options_;
  std::shared_ptr<spdlog::logger> log_;

  mutable absl::Mutex index_mu_;
  // In id order, for listings; and hashed, for the lookup of every agent message (a map
  // lookup was 2 % of the control plane's CPU at 5,000 agents). The same entries.
  std::map<std::string, Entry> hosts_ ABSL_GUARDED_BY(index_mu_);
  absl::flat_hash_map<std::string, Entry> by_id_ ABSL_GUARDED_BY(index_mu_);

  mutable absl::Mutex pending_mu_;
  std::map<std::string, Pending> pending_ ABSL_GUARDED_BY(pending_mu_);

  mutable absl::Mutex watch_mu_;
  std::map<uint64_t, std::pair<std::set<std::string>, MetricsWatcher>> watchers_
      ABSL_GUARDED_BY(watch_mu_);
  uint64_t next_watcher_ ABSL_GUARDED_BY(watch_mu_) = 1;
  std::atomic<size_t> watcher_count_{0};

  const std::string request_prefix_;  // see NewRequestId
  std::atomic<uint64_t> next_request_{1};
  // Counted before any lock is taken (and before a Hello is validated).
  std::atomic<uint64_t> agent_messages_{0};
  std::atomic<uint64_t> batches_received_{0}, batches_dropped_by_agents_{0};
  LatencyHistogram batch_delay_{kBatchDelayBounds};
  std::atomic<uint64_t> config_pushes_{0}, config_nacks_{0};
  std::array<std::atomic<uint64_t>, kLimitKinds> limited_{};

  absl::Mutex join_mu_;
  std::optional<std::string> join_hash_ ABSL_GUARDED_BY(join_mu_);
  int64_t join_read_mono_ms_ ABSL_GUARDED_BY(join_mu_) = 0;
  bool join_cached_ ABSL_GUARDED_BY(join_mu_) = false;
  std::atomic<uint64_t> join_token_reads_{0};

  absl::Mutex life_mu_;
  bool stopping_ ABSL_GUARDED_BY(life_mu_) = false;
  std::atomic<bool> stopped_{false};
  StopWaiter sweeper_wait_;
  std::thread sweeper_;

  // Serializes config changes (store write + push) so pushes go out in revision order, and
  // holds the overrides as stored (the hub is the only writer of overrides).
  absl::Mutex config_mu_;
  std::vector<herd::v1::Override> overrides_ ABSL_GUARDED_BY(config_mu_);
  Interner<herd::v1::ConfigSnapshot> snapshots_;

  absl::Mutex writer_mu_;
  std::map<std::string, bool> dirty_ ABSL_GUARDED_BY(writer_mu_);  // host id → full
  uint64_t queued_gen_ ABSL_GUARDED_BY(writer_mu_) = 0;
  uint64_t written_gen_ ABSL_GUARDED_BY(writer_mu_) = 0;
  absl::Status last_write_ ABSL_GUARDED_BY(writer_mu_);
  bool writer_stop_ ABSL_GUARDED_BY(writer_mu_) = false;
  bool writer_started_ ABSL_GUARDED_BY(writer_mu_) = false;
  bool writer_exited_ ABSL_GUARDED_BY(writer_mu_) = false;
  std::thread writer_;
};

}  // namespace herd::controlplane
