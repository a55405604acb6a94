// HostRegistry: the hosts the control plane knows — their index, each host's state behind its
// own lock, lookups, target resolution, the views the Fleet API reads (HostDirectory), and
// what a host's messages change in that state (its latest batch and series, limit counts,
// silences).
//
// Locks (the hub's order, hub.h): index_mu_ (a reader lock for lookups; written only when a
// host registers) → one host's HostEntry::mu, never two hosts' at once. Entries are removed
// only when another replica deleted the host (Forget); they are shared, so an Entry taken
// under the index lock stays valid after it.
//
// Where a host is reached: Route(host_id) is the one method through which others (the
// relay, the hub) ask for a host's stream. Today a route is the session attached here; when
// hosts may be connected to another control-plane replica, Route can return a session that
// forwards through that replica (a HostSession like any other), and no caller changes.
#pragma once

#include <array>
#include <atomic>
#include <cstdint>
#include <deque>
#include <functional>
#include <map>
#include <memory>
#include <set>
#include <string>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "common/clock.h"
#include "common/latency_histogram.h"
#include "common/logging.h"
#include "controlplane/core/agent_limits.h"
#include "controlplane/core/metrics_view.h"
#include "controlplane/core/fleet_interfaces.h"
#include "controlplane/core/host_session.h"
#include "controlplane/core/hub_options.h"
#include "controlplane/core/replica_hooks.h"
#include "controlplane/core/series.h"
#include "controlplane/store/store.h"

namespace herd::controlplane {

// One host's state in memory.
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
  // was sent the same (HostConfigService's interner), and its version; null before the first.
  std::shared_ptr<const herd::v1::ConfigSnapshot> sent;
  uint64_t sent_version = 0;
  std::vector<herd::v1::ConfigRejection> rejections;
  // Where the host stands with its deployments, as it last reported (memory only).
  std::vector<herd::v1::DeploymentStatus> deployments;
  // The last version whose rejection was logged: once per version, however often a host
  // sends it.
  uint64_t nack_logged_version = 0;
  HostSeries series;
};

// One host: its state behind its own lock.
struct HostEntry {
  mutable absl::Mutex mu;
  HostState s ABSL_GUARDED_BY(mu);
};
using Entry = std::shared_ptr<HostEntry>;

// What changes hosts (actions, restarts) needs a target that says which: an unset target,
// `all: false` or an empty host list are refused (a fleet-wide change is `all: true`).
absl::Status CheckChangeTarget(const herd::v1::Target& target);

// A host id or a module name: 1-`max` of letters, digits, '.', '_', '-', not starting with
// '.' or '-'.
bool ValidId(const std::string& s, size_t max);

// How to reach a host (see the header comment).
struct HostRoute {
  bool known = false;                    // the host is registered
  std::shared_ptr<HostSession> session;  // null: not connected
};

class HostRegistry final : public HostDirectory {
 public:
  HostRegistry(const Clock& clock, const HubOptions& options);

  // Adds the stored hosts (at start), each online for what is left of its lease.
  void Load(const std::vector<HostRecord>& records);

  Entry Find(const std::string& host_id) const;
  // By host id, else by hostname (the last in id order); null when neither.
  Entry FindByIdOrName(const std::string& want) const;
  // Every host, in host id order.
  std::vector<Entry> Entries() const;
  // The host's entry, made (with its id, hostname and registration time) if it is new.
  Entry FindOrAdd(const std::string& host_id, const std::string& hostname, int64_t now_ms,
                  bool* added);
  HostRoute Route(const std::string& host_id) const;
  // Every attached session (to close them all when stopping).
  std::vector<std::shared_ptr<HostSession>> Sessions() const;
  // The connected hosts' ids and sessions, and (without copying them) their number.
  std::vector<std::pair<std::string, std::shared_ptr<HostSession>>> Attached() const;
  size_t ConnectedCount() const;
  // Detaches `session` if it is still the host's; true then (and the presence sink is told).
  bool Detach(const std::string& host_id, const HostSession* session);

  // ---- Replicas (replica_hooks.h)
  // Told of every attach and detach (null: a single node). Set before any host connects.
  void set_presence(PresenceSink* presence) { presence_ = presence; }
  // Under the host's lock, after its session was attached.
  void NotifyAttached(const std::string& host_id) {
    if (presence_ != nullptr) presence_->HostAttached(host_id);
  }
  // A record stored by another replica (or read from the store for a host unknown here):
  // added, or written over the record of a host whose stream is not held here. A host held
  // here keeps its own (newer) state: returns it unchanged.
  Entry Adopt(const HostRecord& record);
  // A status stored by another replica, for a host known here and not held here.
  void AdoptStatus(const HostStatus& status);
  // Removes a host deleted from the store, unless its stream is held here; true if removed.
  bool Forget(const std::string& host_id);

  // ---- HostDirectory
  absl::StatusOr<std::vector<std::string>> ResolveTarget(
      const herd::v1::Target& target) const override;
  absl::StatusOr<std::vector<herd::v1::Host>> ListHosts(
      const herd::v1::Target& target) const override;
  absl::StatusOr<herd::v1::HostDetail> GetHost(const std::string& host_id) const override;
  absl::StatusOr<std::vector<herd::v1::ModuleInstance>> ListModules(
      const herd::v1::Target& target, const std::string& module) const override;
  absl::StatusOr<std::vector<std::pair<std::string, std::string>>> HostsWithModule(
      const herd::v1::Target& target, const std::string& module) const override;
  absl::StatusOr<herd::v1::Series> QuerySeries(
      const herd::v1::QuerySeriesRequest& req) const override;

  // Every host with its latest units (events left out), for exposition: `visit` runs once
  // per host, in host id order, outside every lock (each host is copied under its own lock).
  void VisitHosts(const std::function<void(const herd::v1::HostDetail&)>& visit) const;

  // ---- What a host's messages change (the caller holds the host's lock).
  // Records a batch (bounded already); what the series cap left out is added to `hits`.
  // `newest`: the batch is its message's last (a group's others are older, and held in the
  // agent by design): only such a batch is timed (the batch delay says how far behind the
  // control plane is) and kept as the host's latest state.
  void RecordBatch(HostState& h, const MetricsBatchView& batch, int64_t now_ms,
                   LimitHits* hits, bool newest = true);
  // Counts what a host's message had cut, and logs it (once a minute per host and kind).
  void CountLimited(HostState& h, const LimitHits& hits);

  // Closes the streams of agents silent for longer than the silent_stream_timeout (or 10
  // metrics intervals); each stream once.
  void CloseSilentStreams();

  // Adds the hosts' counts and the ingest counters to `s`.
  void AddStats(HubStats& s) const;

 private:
  bool Online(const HostState& h, int64_t mono_ms) const;
  herd::v1::Host HostView(const HostState& h, int64_t mono_ms) const;
  int64_t MonoMs() const { return absl::ToUnixMillis(clock_.Monotonic()); }
  // The units of the host's latest batch.
  static std::vector<herd::v1::UnitSample> LatestUnits(const std::string& last_batch);
  static herd::v1::ModuleInstance Instance(const std::string& id, const std::string& hostname,
                                           bool online, const herd::v1::ModuleInventory& m,
                                           const std::vector<herd::v1::UnitSample>& units);

  // Offline here: shown online for what is left of its lease from its last_seen (Load, Adopt).
  void SetOfflineFromRecord(HostState& h, int64_t mono_ms, int64_t wall_ms) const;

  const Clock& clock_;
  const HubOptions& options_;
  std::shared_ptr<spdlog::logger> log_;
  PresenceSink* presence_ = nullptr;

  mutable absl::Mutex index_mu_;
  // In id order, for listings; and hashed, for the lookup of every agent message (a map
  // lookup was 2 % of the control plane's CPU at 5,000 agents). The same entries.
  std::map<std::string, Entry> hosts_ ABSL_GUARDED_BY(index_mu_);
  absl::flat_hash_map<std::string, Entry> by_id_ ABSL_GUARDED_BY(index_mu_);

  std::atomic<uint64_t> batches_received_{0}, batches_dropped_by_agents_{0};
  LatencyHistogram batch_delay_{HubStats::kBatchDelayBounds};
  std::array<std::atomic<uint64_t>, kLimitKinds> limited_{};
};

}  // namespace herd::controlplane
