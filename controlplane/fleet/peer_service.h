// PeerService: the replica-to-replica service (proto/herd/v1/peer.proto, herd.v1.Peer) for
// what runs without a user: a rollout's restarts on the hosts this replica holds, asked by
// the replica running the rollout (RoutedRequestRelay). Only calls carrying the cluster's
// peer secret are served (others: UNAUTHENTICATED, counted by PeerLinks); the restarts go to
// this replica's own relay (the hub's, never a routing one), so nothing is forwarded again.
#pragma once

#include <cstddef>

#include "controlplane/core/fleet_interfaces.h"
#include "controlplane/fleet/peer_links.h"
#include "herd/v1/peer.grpc.pb.h"

namespace herd::controlplane {

class PeerService final : public herd::v1::Peer::CallbackService {
 public:
  // `links` (for the secret) and `relay` must outlive the service.
  PeerService(PeerLinks& links, RequestRelay& relay, size_t max_hosts = 10000)
      : links_(links), relay_(relay), max_hosts_(max_hosts) {}

  grpc::ServerWriteReactor<herd::v1::PeerRestartResult>* RestartOnHosts(
      grpc::CallbackServerContext* ctx, const herd::v1::PeerRestartRequest* req) override;

 private:
  PeerLinks& links_;
  RequestRelay& relay_;
  const size_t max_hosts_;
};

}  // namespace herd::controlplane
