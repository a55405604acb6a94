#include "controlplane/fleet/peer_links.h"

#include <algorithm>
#include <climits>
#include <set>
#include <utility>

#include "absl/strings/str_cat.h"
#include "common/atomic_file.h"
#include "controlplane/core/secrets.h"

namespace herd::controlplane {

absl::StatusOr<std::shared_ptr<grpc::ChannelCredentials>> PeerCredentials(
    const PeerLinkOptions& options) {
  if (options.tls_cert.empty()) return grpc::InsecureChannelCredentials();
  grpc::SslCredentialsOptions ssl;
  auto cert = ReadFileToString(options.tls_cert);
  if (!cert.ok()) {
    return absl::InvalidArgumentError(absl::StrCat(
        "cannot read --tls-cert ", options.tls_cert,
        " (its certificate is also the client certificate for calls to other replicas): ",
        cert.status().message()));
  }
  auto key = ReadFileToString(options.tls_key);
  if (!key.ok()) {
    return absl::InvalidArgumentError(
        absl::StrCat("cannot read --tls-key ", options.tls_key, ": ", key.status().message()));
  }
  ssl.pem_cert_chain = *cert;
  ssl.pem_private_key = *key;
  if (!options.ca.empty()) {
    auto ca = ReadFileToString(options.ca);
    if (!ca.ok()) {
      return absl::InvalidArgumentError(absl::StrCat(
          "cannot read --client-ca ", options.ca,
          " (the root other replicas' certificates are checked against): ",
          ca.status().message()));
    }
    ssl.pem_root_certs = *ca;
  }
  return grpc::SslCredentials(ssl);
}

ForwardedCall ForwardedCall::Of(const grpc::ServerContextBase& ctx) {
  ForwardedCall call;
  const auto& md = ctx.client_metadata();
  if (auto it = md.find("authorization"); it != md.end()) {
    call.authorization.assign(it->second.data(), it->second.size());
  }
  const auto deadline = ctx.deadline();
  if (deadline != std::chrono::system_clock::time_point::max()) {
    call.deadline = absl::FromChrono(deadline);
  }
  return call;
}

PeerLinks::Slot& PeerLinks::Slot::operator=(Slot&& o) noexcept {
  if (this != &o) {
    if (links_) links_->Release();
    links_ = o.links_;
    o.links_ = nullptr;
  }
  return *this;
}

PeerLinks::Slot::~Slot() {
  if (links_) links_->Release();
}

PeerLinks::PeerLinks(const ReplicaDirectory& directory,
                     std::shared_ptr<grpc::ChannelCredentials> creds, PeerLinkOptions options)
    : directory_(directory),
      creds_(std::move(creds)),
      options_(std::move(options)),
      log_(herd::Logger("peers")),
      limited_log_(log_) {}

std::vector<ReplicaInfo> PeerLinks::Peers() {
  std::vector<ReplicaInfo> peers = directory_.Peers();
  std::set<std::string> live;
  for (const auto& p : peers) live.insert(p.id);
  absl::MutexLock l(&mu_);
  for (auto it = channels_.begin(); it != channels_.end();) {
    if (live.count(it->first)) {
      ++it;
      continue;
    }
    log_->info("event=peer_channel_dropped replica={} address={}", it->first,
               it->second.address);
    it = channels_.erase(it);
  }
  return peers;
}

std::optional<ReplicaInfo> PeerLinks::PeerHolding(const std::string& host_id) const {
  auto holder = directory_.HolderOf(host_id);
  if (!holder || holder->id == directory_.self_id()) return std::nullopt;
  return holder;
}

bool PeerLinks::HeldHere(const std::string& host_id) const {
  auto holder = directory_.HolderOf(host_id);
  return holder && holder->id == directory_.self_id();
}

absl::StatusOr<PeerLinks::Link> PeerLinks::Open(const ReplicaInfo& peer) {
  if (open_.fetch_add(1, std::memory_order_relaxed) >= options_.max_calls) {
    open_.fetch_sub(1, std::memory_order_relaxed);
    refused_.fetch_add(1, std::memory_order_relaxed);
    limited_log_.Warn("peer_call_refused",
                      absl::StrCat("replica=", peer.id, " max_calls=", options_.max_calls,
                                   " hint=\"too many calls forwarded to other replicas at "
                                   "once; raise the bound or find the caller\""));
    return absl::ResourceExhaustedError(absl::StrCat(
        "this control plane has ", options_.max_calls,
        " calls open to other replicas already (the most it forwards at once): try again "
        "shortly (replica ",
        peer.id, " was to be asked)"));
  }
  forwarded_.fetch_add(1, std::memory_order_relaxed);
  Link link;
  link.slot = Slot(this);
  link.peer = peer;
  absl::MutexLock l(&mu_);
  Channel& c = channels_[peer.id];
  if (!c.fleet || c.address != peer.address) {
    grpc::ChannelArguments args;
    args.SetMaxReceiveMessageSize(options_.max_message_bytes);
    // A peer that died is noticed on an open stream (a forwarded log, a merged watch) within
    // half a minute; the servers accept pings this often (server.cc, TuneChannels).
    args.SetInt(GRPC_ARG_KEEPALIVE_TIME_MS, 20000);
    args.SetInt(GRPC_ARG_KEEPALIVE_TIMEOUT_MS, 10000);
    auto channel = grpc::CreateCustomChannel(peer.address, creds_, args);
    c.address = peer.address;
    c.fleet = herd::v1::Fleet::NewStub(channel);
    c.replica = herd::v1::Peer::NewStub(channel);
    log_->info("event=peer_channel_made replica={} address={}", peer.id, peer.address);
  }
  link.fleet = c.fleet;
  link.replica = c.replica;
  return link;
}

void PeerLinks::Prepare(grpc::ClientContext& ctx, const ForwardedCall& call,
                        absl::Duration timeout) const {
  ctx.AddMetadata(kPeerSecretHeader, directory_.peer_secret());
  if (!call.authorization.empty()) ctx.AddMetadata("authorization", call.authorization);
  const absl::Time deadline = std::min(absl::Now() + timeout, call.deadline);
  if (deadline != absl::InfiniteFuture()) ctx.set_deadline(absl::ToChronoTime(deadline));
}

absl::StatusOr<bool> PeerLinks::LocalScope(const grpc::ServerContextBase& ctx) {
  const auto& md = ctx.client_metadata();
  auto it = md.find(kPeerSecretHeader);
  if (it == md.end()) return false;
  const std::string secret = directory_.peer_secret();
  // Hashes are compared, so that the time taken says nothing of the secret's length either.
  if (!secret.empty() &&
      ConstantTimeEquals(Sha256Hex(absl::string_view(it->second.data(), it->second.size())),
                         Sha256Hex(secret))) {
    return true;
  }
  bad_secrets_.fetch_add(1, std::memory_order_relaxed);
  limited_log_.Warn("peer_secret_refused",
                    absl::StrCat("from=", ctx.peer(), " cluster_secret_set=", secret.empty() ? "no" : "yes",
                                 " hint=\"a call carried x-herd-peer-secret that is not this "
                                 "cluster's: a replica of another cluster, or a client "
                                 "trying replica-only calls\""));
  return absl::UnauthenticatedError(
      secret.empty()
          ? "x-herd-peer-secret is for calls between control-plane replicas, and this one "
            "has no peers: leave the header out"
          : "x-herd-peer-secret is not this cluster's: replicas take it from etcd "
            "(<prefix>/cluster/peer-secret); clients leave the header out");
}

PeerLinks::Counts PeerLinks::counts() const {
  Counts c;
  c.open_calls = open_.load(std::memory_order_relaxed);
  c.forwarded_calls = forwarded_.load(std::memory_order_relaxed);
  c.refused_calls = refused_.load(std::memory_order_relaxed);
  c.bad_secrets = bad_secrets_.load(std::memory_order_relaxed);
  absl::MutexLock l(&mu_);
  c.channels = channels_.size();
  return c;
}

}  // namespace herd::controlplane
