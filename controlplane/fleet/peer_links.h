// PeerLinks: one control-plane replica's links to the others (issue 22; docs/controlplane.md,
// "Replicas"). Outgoing: one gRPC channel per peer, made when first needed and dropped once
// the peer has left the ReplicaDirectory (or moved to another address); a bound on the calls
// forwarded at once, to every peer together, with a counted refusal past it; the metadata
// every forwarded call carries (the peer secret, the user's bearer) and its deadline.
// Incoming: the check of a call's peer secret, in constant time.
//
// A call that carries this cluster's peer secret is in "local scope": it is answered from
// this replica's own hosts, never forwarded again (so no call loops between replicas) and
// not audited again (the replica that forwarded it did). The secret grants nothing else:
// Fleet calls still need the user's bearer, checked as usual. Thread-safe.
#pragma once

#include <atomic>
#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "common/logging.h"
#include "controlplane/cluster/cluster.h"
#include "controlplane/http/rate_limited_log.h"
#include "grpcpp/grpcpp.h"
#include "herd/v1/fleet.grpc.pb.h"
#include "herd/v1/peer.grpc.pb.h"

namespace herd::controlplane {

// Metadata of replica-to-replica calls.
inline constexpr char kPeerSecretHeader[] = "x-herd-peer-secret";
// Trailing metadata of a call answered without a replica that did not answer (GetHost).
inline constexpr char kUnreachableReplicasHeader[] = "x-herd-unreachable-replicas";

struct PeerLinkOptions {
  // TLS, from the server's own files: its certificate and key are the client certificate
  // (the peer's server asks for one under mTLS), and `ca` (the server's --client-ca) is the
  // root the peer's server certificate is verified against (empty: the system's roots). No
  // certificate: plaintext, as the server then is.
  std::string tls_cert, tls_key, ca;
  // Calls forwarded and open at once (unary calls and streams), to every peer together.
  size_t max_calls = 1024;
  // A forwarded unary call's deadline (the caller's own, if nearer).
  absl::Duration call_timeout = absl::Seconds(5);
  // The largest message taken from a peer (a listing of every host it holds).
  int max_message_bytes = 64 << 20;
};

// The channel credentials `options` describe; an error names the file it cannot read.
absl::StatusOr<std::shared_ptr<grpc::ChannelCredentials>> PeerCredentials(
    const PeerLinkOptions& options);

// What a forwarded call takes from the call it forwards.
struct ForwardedCall {
  // The caller's `authorization` metadata as it came ("Bearer ..."), sent on as is.
  std::string authorization;
  // The caller's deadline (InfiniteFuture: none).
  absl::Time deadline = absl::InfiniteFuture();
  static ForwardedCall Of(const grpc::ServerContextBase& ctx);
};

class PeerLinks {
 public:
  // One forwarded call's place under max_calls; given back when destroyed.
  class Slot {
   public:
    Slot() = default;
    explicit Slot(PeerLinks* links) : links_(links) {}
    Slot(Slot&& o) noexcept : links_(o.links_) { o.links_ = nullptr; }
    Slot& operator=(Slot&& o) noexcept;
    Slot(const Slot&) = delete;
    Slot& operator=(const Slot&) = delete;
    ~Slot();

   private:
    PeerLinks* links_ = nullptr;
  };
  // What a call to one peer uses.
  struct Link {
    ReplicaInfo peer;
    std::shared_ptr<herd::v1::Fleet::Stub> fleet;
    std::shared_ptr<herd::v1::Peer::Stub> replica;
    Slot slot;
  };

  // `directory` must outlive this, and so must every Slot handed out.
  PeerLinks(const ReplicaDirectory& directory, std::shared_ptr<grpc::ChannelCredentials> creds,
            PeerLinkOptions options = {});

  const ReplicaDirectory& directory() const { return directory_; }
  const PeerLinkOptions& options() const { return options_; }
  // The peers now; the channels of peers that left are dropped.
  std::vector<ReplicaInfo> Peers();
  // The replica holding `host_id` when it is another one (nullopt: this one, or none).
  std::optional<ReplicaInfo> PeerHolding(const std::string& host_id) const;
  // True when this replica holds the host (what a local-scope call answers for).
  bool HeldHere(const std::string& host_id) const;

  // A channel to `peer` (made if needed) and a slot for one call; RESOURCE_EXHAUSTED
  // (counted, logged) when max_calls are open already.
  absl::StatusOr<Link> Open(const ReplicaInfo& peer);
  // Sets what a call to a peer carries: the peer secret, the caller's bearer (if any), and a
  // deadline `timeout` from now or the caller's, the nearer (none for a stream: InfiniteDuration).
  void Prepare(grpc::ClientContext& ctx, const ForwardedCall& call, absl::Duration timeout) const;

  // Incoming: true when the call carries this cluster's peer secret (local scope), false
  // when it carries none; UNAUTHENTICATED (counted, logged with the caller's address) when
  // it carries another, or when there is no secret (a single replica has no peers).
  absl::StatusOr<bool> LocalScope(const grpc::ServerContextBase& ctx);

  struct Counts {
    // Calls forwarded open now and in all; refused past max_calls; calls that came in with a
    // wrong secret; channels open.
    uint64_t open_calls = 0, forwarded_calls = 0, refused_calls = 0, bad_secrets = 0,
             channels = 0;
  };
  Counts counts() const;

 private:
  struct Channel {
    std::string address;
    std::shared_ptr<herd::v1::Fleet::Stub> fleet;
    std::shared_ptr<herd::v1::Peer::Stub> replica;
  };
  void Release() { open_.fetch_sub(1, std::memory_order_relaxed); }

  const ReplicaDirectory& directory_;
  const std::shared_ptr<grpc::ChannelCredentials> creds_;
  const PeerLinkOptions options_;
  std::shared_ptr<spdlog::logger> log_;
  httpd::RateLimitedLog limited_log_;
  std::atomic<uint64_t> open_{0}, forwarded_{0}, refused_{0}, bad_secrets_{0};
  mutable absl::Mutex mu_;
  std::map<std::string, Channel> channels_ ABSL_GUARDED_BY(mu_);  // by peer id
};

}  // namespace herd::controlplane
