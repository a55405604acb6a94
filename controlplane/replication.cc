#include "controlplane/replication.h"

#include <algorithm>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "controlplane/cluster/cluster_sync.h"
#include "controlplane/cluster/membership.h"
#include "controlplane/cluster/rollout_ownership.h"
#include "controlplane/fleet/peer_links.h"
#include "controlplane/fleet/peer_router.h"
#include "controlplane/fleet/peer_service.h"
#include "controlplane/fleet/routed_request_relay.h"
#include "controlplane/store/etcd_layout.h"

namespace herd::controlplane {
namespace {

// The host part of host:port ("[::1]:7070" → "[::1]").
std::string HostOf(const std::string& address) {
  const size_t colon = address.rfind(':');
  return colon == std::string::npos ? address : address.substr(0, colon);
}

std::string PortOf(const std::string& address) {
  const size_t colon = address.rfind(':');
  return colon == std::string::npos ? "" : address.substr(colon + 1);
}

// What peers dial: --advertise, else --listen.
std::string Advertised(const ServerOptions& o) {
  return o.advertise.empty() ? o.listen : o.advertise;
}

ClusterSyncOptions MakeSyncOptions(const std::string& prefix) {
  ClusterSyncOptions so;
  so.prefix = prefix;
  so.decode_host = [](const etcd::KeyValue& kv) { return DecodeHostRecord(kv.key, kv.value); };
  so.decode_status = [keys = EtcdKeys(prefix)](
                         const etcd::KeyValue& kv) -> absl::StatusOr<HostStatus> {
    auto key = ParseHostKey(keys, kv.key);
    if (!key || !key->status) return absl::InvalidArgumentError("not a host status key");
    return DecodeHostStatus(kv.key, key->host_id, kv.value);
  };
  return so;
}

}  // namespace

absl::Status CheckReplicaAddress(const ServerOptions& o) {
  if (!o.store.on_etcd()) return absl::OkStatus();
  const std::string address = Advertised(o);
  const std::string host = HostOf(address);
  const std::string port = PortOf(address);
  if (port.empty() || (port == "0" && !o.advertise.empty())) {
    return absl::InvalidArgumentError(absl::StrCat(
        "--advertise ", address, " has no port peers can dial: give HOST:PORT"));
  }
  if (host.empty() || host == "0.0.0.0" || host == "[::]" || host == "::") {
    return absl::InvalidArgumentError(absl::StrCat(
        "--listen ", o.listen, " is every interface: peers cannot dial it; give --advertise "
        "HOST:", port, " (this replica's name or address as the others reach it)"));
  }
  if (o.replica_id.empty()) {
    return absl::InvalidArgumentError("--replica-id is empty: name this replica");
  }
  return absl::OkStatus();
}

Replication::Replication(const ServerOptions& options, etcd::Client* etcd, Store& store,
                         Hub& hub)
    : options_(options), etcd_(etcd), store_(store), hub_(hub) {}

absl::StatusOr<std::unique_ptr<Replication>> Replication::Create(const ServerOptions& options,
                                                                 etcd::Client* etcd,
                                                                 Store& store, Hub& hub,
                                                                 Scheduler& scheduler) {
  std::unique_ptr<Replication> r(new Replication(options, etcd, store, hub));
  if (etcd == nullptr) {
    r->ownership_ = std::make_unique<SingleNodeOwnership>();
    return r;
  }
  if (auto s = CheckReplicaAddress(options); !s.ok()) return s;
  const std::string& prefix = options.store.etcd_prefix;
  MembershipOptions mo;
  mo.prefix = prefix;
  mo.self_id = options.replica_id;
  mo.address = Advertised(options);
  PeerLinkOptions lo;
  lo.tls_cert = options.tls_cert;
  lo.tls_key = options.tls_key;
  lo.ca = options.client_ca;
  lo.call_timeout = options.peer_call_timeout;
  auto creds = PeerCredentials(lo);
  if (!creds.ok()) return creds.status();
  r->membership_ = std::make_unique<EtcdMembership>(*etcd, mo);
  hub.set_presence(r->membership_.get());
  r->sync_ = std::make_unique<ClusterSync>(*etcd, store, hub, MakeSyncOptions(prefix));
  EtcdRolloutOwnership::Options oo;
  oo.prefix = prefix;
  r->ownership_ = std::make_unique<EtcdRolloutOwnership>(*etcd, *r->membership_, oo);
  r->links_ = std::make_unique<PeerLinks>(*r->membership_, *creds, lo);
  r->router_ = std::make_unique<PeerRouter>(*r->links_, hub, hub.relay(), hub.audit(), scheduler);
  r->routed_ = std::make_unique<RoutedRequestRelay>(hub.relay(), *r->links_);
  r->peer_service_ = std::make_unique<PeerService>(*r->links_, hub.relay());
  return r;
}

Replication::~Replication() {
  StopForwarding();
  StopMembership();
  if (membership_) hub_.set_presence(nullptr);  // the hub outlives this
}

RequestRelay& Replication::relay() {
  if (routed_) return *routed_;
  return hub_.relay();
}

std::vector<grpc::Service*> Replication::services() {
  if (!peer_service_) return {};
  return {peer_service_.get()};
}

void Replication::Attach(FleetService& fleet) {
  if (router_) fleet.RouteThrough(router_.get());
}

absl::Status Replication::Start(const std::string& bound) {
  if (!on()) return absl::OkStatus();
  if (options_.advertise.empty()) membership_->set_address(bound);
  if (auto s = membership_->Start(); !s.ok()) return s;
  return sync_->Start();
}

void Replication::StopForwarding() {
  if (router_) router_->Stop();
  if (routed_) routed_->Stop();
  if (sync_) sync_->Stop();
}

void Replication::StopMembership() {
  if (membership_) membership_->Stop();
}

absl::Status Replication::Ready() const {
  if (etcd_ == nullptr) return store_.GetSetting("join_token_sha256").status();
  etcd::RangeOptions o;
  o.serializable = true;
  o.count_only = true;
  return etcd_->Range(EtcdKeys(options_.store.etcd_prefix).SettingsDir() + "join_token_sha256", o)
      .status();
}

bool Replication::Exposes(const std::string& host_id) const {
  if (!on()) return true;
  const std::optional<ReplicaInfo> holder = membership_->HolderOf(host_id);
  const std::string& self = membership_->self_id();
  if (holder) return holder->id == self;
  for (const ReplicaInfo& peer : membership_->Peers()) {
    if (peer.id < self) return false;
  }
  return true;
}

}  // namespace herd::controlplane
