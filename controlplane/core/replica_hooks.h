// The hub's two seams toward other control-plane replicas (issue 22), so that the hub stays
// store-agnostic: it neither knows etcd nor watches anything itself.
//
//   PresenceSink     the hub tells it which hosts' streams it holds (attach / detach). On a
//                    single node there is none; with replicas, EtcdMembership
//                    (controlplane/cluster/membership.h) keeps a presence key per held host.
//   ReplicatedFleet  what another replica's writes change here: a host record it stored, a
//                    config change. The Hub implements it; ClusterSync
//                    (controlplane/cluster/cluster_sync.h) calls it from etcd's watches.
#pragma once

#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "controlplane/store/store.h"

namespace herd::controlplane {

class PresenceSink {
 public:
  virtual ~PresenceSink() = default;
  // Called under the host's lock (HostEntry::mu), so that an attach and the detach of the
  // same stream reach the sink in the order they happened: an implementation only queues
  // (a short lock of its own, last in the hub's order), never blocks, never calls back.
  virtual void HostAttached(const std::string& host_id) = 0;
  virtual void HostDetached(const std::string& host_id) = 0;
};

class ReplicatedFleet {
 public:
  virtual ~ReplicatedFleet() = default;
  // A host record another replica stored: known here as a host offline here (a host whose
  // stream this replica holds is left as it is: its state here is the newer).
  virtual void HostStored(const HostRecord& record) = 0;
  // A host's status (last seen, acked config version) another replica stored: applied to a
  // host known here and not held here.
  virtual void HostStatusStored(const HostStatus& status) = 0;
  // A host record deleted from the store (not while its stream is held here).
  virtual void HostDeleted(const std::string& host_id) = 0;
  // The config changed in the store: reload the overrides and push the hosts attached here
  // whose effective config changed (a change already loaded — this replica's own — pushes
  // nothing). The hosts pushed; the store's error (nothing changed here) to be retried.
  virtual absl::StatusOr<std::vector<std::string>> ReloadConfig() = 0;
};

}  // namespace herd::controlplane
