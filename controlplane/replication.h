// Replication: what makes this control plane one replica of several over one etcd (issue 22;
// docs/controlplane.md, "Replicas"), built around the hub for RunServer. On the SQLite store
// (no etcd client) it is a pass-through: the hub's own relay, every rollout owned here, no
// peer service, /metrics shows every host — a single node is exactly as before.
//
// On etcd it owns, in the order they are built and started:
//   EtcdMembership        the replica's lease, its key and address, hosts' presence
//                         (the hub's PresenceSink; the ReplicaDirectory of everything below)
//   ClusterSync           hosts and config other replicas wrote, brought into the hub
//   EtcdRolloutOwnership  which replica steps each rollout (the RolloutEngine's)
//   PeerLinks, PeerRouter the Fleet API answering for the whole fleet (FleetService routes
//                         through the router), PeerService for a rollout's restarts on hosts
//                         held by peers, RoutedRequestRelay (the rollouts' relay)
// Stop order (RunServer): rollouts first (handed over, their restarts on peers' hosts still
// open), then StopForwarding (forwarded calls, the sync), the hub, and StopMembership last:
// the lease is revoked once this replica no longer serves its hosts.
#pragma once

#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "controlplane/cluster/cluster.h"
#include "controlplane/core/fleet_interfaces.h"
#include "controlplane/core/hub.h"
#include "controlplane/etcd/etcd_client.h"
#include "controlplane/fleet/fleet_service.h"
#include "controlplane/fleet/rollout_ownership.h"
#include "controlplane/server.h"
#include "grpcpp/grpcpp.h"

namespace herd::controlplane {

class EtcdMembership;
class ClusterSync;
class EtcdRolloutOwnership;
class PeerLinks;
class PeerRouter;
class PeerService;
class RoutedRequestRelay;

// The address peers dial and this replica's id, from the flags: INVALID_ARGUMENT when a
// replica cannot be reached at what it would advertise (a wildcard host without --advertise).
absl::Status CheckReplicaAddress(const ServerOptions& options);

class Replication {
 public:
  // `etcd` null: a single node. Everything referenced must outlive this. An error names the
  // flag (TLS files the peers' channels cannot read, an address peers cannot dial).
  static absl::StatusOr<std::unique_ptr<Replication>> Create(const ServerOptions& options,
                                                             etcd::Client* etcd, Store& store,
                                                             Hub& hub, Scheduler& scheduler);
  ~Replication();
  Replication(const Replication&) = delete;
  Replication& operator=(const Replication&) = delete;

  bool on() const { return etcd_ != nullptr; }
  // The relay rollouts restart hosts through (routed to peers on etcd).
  RequestRelay& relay();
  RolloutOwnership& ownership() { return *ownership_; }
  // Extra gRPC services to serve (the Peer service on etcd).
  std::vector<grpc::Service*> services();
  // Routes the Fleet API through the peers (on etcd). Before serving.
  void Attach(FleetService& fleet);

  // After the hub's and the gRPC server's Start (`bound`: the address bound, advertised
  // unless --advertise says otherwise): the membership (lease, replica key, peer secret),
  // then the sync.
  absl::Status Start(const std::string& bound);
  // Cancels forwarded calls and ends the sync. Idempotent.
  void StopForwarding();
  // Revokes the lease (the replica's key and hosts' presence go). Idempotent; last.
  void StopMembership();

  // /metrics on a replica shows the hosts it holds, and the hosts no replica holds only on
  // the replica with the smallest id (so Prometheus, scraping every replica, sees each host
  // once). Always true on a single node.
  bool Exposes(const std::string& host_id) const;

  // /readyz: whether the store answers. On etcd a serializable read, which one member serves
  // alone: a replica whose etcd lost its quorum still serves its agents (their streams and
  // config stay, only writes are refused), and every replica loses quorum at once, so a load
  // balancer that dropped them all as not ready would leave reconnecting agents nowhere to
  // go. Not ready once no member answers.
  absl::Status Ready() const;

 private:
  Replication(const ServerOptions& options, etcd::Client* etcd, Store& store, Hub& hub);

  const ServerOptions& options_;
  etcd::Client* etcd_;
  Store& store_;
  Hub& hub_;
  std::unique_ptr<EtcdMembership> membership_;
  std::unique_ptr<ClusterSync> sync_;
  std::unique_ptr<RolloutOwnership> ownership_;
  std::unique_ptr<PeerLinks> links_;
  std::unique_ptr<PeerRouter> router_;
  std::unique_ptr<RoutedRequestRelay> routed_;
  std::unique_ptr<PeerService> peer_service_;
};

}  // namespace herd::controlplane
