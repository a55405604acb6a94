// ClusterSync: brings what other replicas wrote to etcd into this replica's hub
// (ReplicatedFleet, replica_hooks.h), so that the hub itself stays store-agnostic.
//
//   <p>/hosts/   a host record stored by any replica (<p>/hosts/<id>: a registration, an
//                inventory change) → ReplicatedFleet::HostStored: the host is known here,
//                offline here (a host whose stream is held here keeps its own state); its
//                status written apart (a key under it, <p>/hosts/<id>/status: last seen,
//                acked version) → HostStatusStored; the record deleted → HostDeleted.
//                Decoded with the store's own decoders (Options::decode_host/decode_status,
//                etcd_layout.h's); without them, or when one fails, the host is read through
//                the Store (one read per change: fine for tests, costly for a fleet).
//   <p>/config/  any change (the overrides and the config revision move together, in one
//                etcd revision) → ReplicatedFleet::ReloadConfig once per watch batch: the hub
//                reloads the overrides and pushes the hosts it holds, in version order; its
//                own changes are already loaded and are not pushed twice.
//
// Watch callbacks only queue; one thread applies, so a slow store read or a fleet-wide push
// never holds etcd's watch thread. While the store fails (no quorum), what is queued stays
// queued and is retried after a backoff: a config change made while etcd had no leader is
// pushed once it has one, with nothing from the operator.
#pragma once

#include <condition_variable>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <thread>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "common/backoff.h"
#include "common/logging.h"
#include "controlplane/cluster/prefix_watch.h"
#include "controlplane/core/replica_hooks.h"
#include "controlplane/etcd/etcd_client.h"
#include "controlplane/store/store.h"

namespace herd::controlplane {

struct ClusterSyncOptions {
  // The etcd prefix (--etcd-prefix), without a trailing '/'.
  std::string prefix = "/herd";
  // The host record stored under a key of <p>/hosts/ (the etcd store's encoding:
  // EtcdStore exports its decoder). Null: every change is read with Store::GetHost.
  std::function<absl::StatusOr<HostRecord>(const etcd::KeyValue&)> decode_host;
  // The status stored under a key below the host's (<p>/hosts/<id>/status). Null: read.
  std::function<absl::StatusOr<HostStatus>(const etcd::KeyValue&)> decode_status;
  BackoffOptions retry{.initial = absl::Milliseconds(200),
                       .max = absl::Seconds(10),
                       .multiplier = 2.0,
                       .jitter = 0.5};
};

class ClusterSync {
 public:
  ClusterSync(etcd::Client& client, Store& store, ReplicatedFleet& fleet,
              ClusterSyncOptions options);
  ~ClusterSync() { Stop(); }
  ClusterSync(const ClusterSync&) = delete;
  ClusterSync& operator=(const ClusterSync&) = delete;

  // Starts the watches (after the hub's Start: the records read then are applied again,
  // which changes nothing) and the thread. etcd's error if it cannot answer.
  absl::Status Start();
  // Ends the watches and the thread; nothing is applied after it returns. Idempotent.
  void Stop();

  // Waits until everything the watches delivered so far is applied; while the store fails,
  // returns the last failure once a try after the call failed. For tests.
  absl::Status WaitApplied();

  struct Stats {
    uint64_t hosts_stored = 0, statuses_stored = 0, hosts_deleted = 0;
    uint64_t config_reloads = 0;   // reloads tried
    uint64_t hosts_pushed = 0;     // hosts whose config those reloads changed
    uint64_t failures = 0;         // applies that failed (and were retried)
  };
  Stats stats() const;

 private:
  // A host's latest events: of its record key, and of its status key.
  struct HostChange {
    bool deleted = false;                  // its record key was deleted (after the puts)
    std::optional<etcd::KeyValue> record;  // the latest put of <p>/hosts/<id>
    std::optional<etcd::KeyValue> status;  // the latest put of a key under it
  };
  void Queue(const etcd::KeyValue& kv, bool put);
  // Reads the host through the store and hands it over.
  absl::Status ReadHost(const std::string& host_id);
  void OnHosts(const etcd::RangeResult* all, const etcd::WatchBatch* batch);
  void OnConfig();
  void Loop();
  // Applies one host's change; false when the store failed (to retry).
  absl::Status ApplyHost(const std::string& host_id, const HostChange& change);
  std::string HostIdOf(const std::string& key) const;

  etcd::Client& client_;
  Store& store_;
  ReplicatedFleet& fleet_;
  const ClusterSyncOptions options_;
  const std::string hosts_prefix_;
  std::shared_ptr<spdlog::logger> log_;
  Backoff backoff_;  // the thread's only
  std::unique_ptr<PrefixWatch> hosts_watch_, config_watch_;

  mutable std::mutex mu_;
  std::condition_variable work_cv_, done_cv_;
  std::map<std::string, HostChange> hosts_;  // host id → its latest change, not yet applied
  bool config_dirty_ = false;
  uint64_t queued_gen_ = 0, applied_gen_ = 0;
  absl::Status last_;
  bool stop_ = false;
  bool started_ = false;
  Stats stats_;
  std::thread thread_;
};

}  // namespace herd::controlplane
