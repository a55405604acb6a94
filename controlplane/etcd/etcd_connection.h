// EtcdConnection: what every part of the etcd client shares: one gRPC channel and its stubs
// per endpoint, the member calls go to first, etcd's auth token, and the unary call loop
// (deadline, moving on to the next member, authenticating again once on an invalid token).
// Held by shared_ptr by the Client, its Watches and KeptLeases, so any of them may outlive
// the others.
//
// A member's channel is replaced when a connection to it reached its port but never got an
// HTTP/2 answer (seen with gRPC 1.51 after an etcd member restarts: the reconnecting channel
// stays stuck while a new one connects at once). Callers hold the member they use by
// shared_ptr, so a replacement never pulls a stub from under a call.
//
// Thread-safe: each member slot is under its own mutex; the token is under a mutex; the
// preferred member is an atomic hint.
#pragma once

#include <atomic>
#include <cstddef>
#include <memory>
#include <string>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/functional/function_ref.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "controlplane/etcd/etcd_client.h"
#include "etcd/rpc.grpc.pb.h"
#include "grpcpp/grpcpp.h"

namespace herd::etcd {

struct EtcdMember {
  std::string address;
  std::shared_ptr<grpc::Channel> channel;
  std::unique_ptr<etcdserverpb::KV::Stub> kv;
  std::unique_ptr<etcdserverpb::Watch::Stub> watch;
  std::unique_ptr<etcdserverpb::Lease::Stub> lease;
  std::unique_ptr<etcdserverpb::Auth::Stub> auth;
};

class EtcdConnection {
 public:
  // INVALID_ARGUMENT for no endpoint, unreadable TLS files, a key without a certificate.
  static absl::StatusOr<std::shared_ptr<EtcdConnection>> Create(const Options& options);

  const Options& options() const { return options_; }
  const std::string& endpoints_text() const { return endpoints_text_; }
  size_t size() const { return members_.size(); }
  // Member i (modulo the count): its current channel and stubs.
  std::shared_ptr<EtcdMember> member(size_t i);
  // After a transport failure on `used` (member i): replaces its channel when the failure says
  // the connection got no HTTP/2 answer (at most every 2 s per member).
  void NoteFailure(size_t i, const EtcdMember& used, const grpc::Status& status);
  // The member that answered last (where calls and streams start).
  size_t preferred() const { return preferred_.load(std::memory_order_relaxed); }
  void Prefer(size_t i) { preferred_.store(i % members_.size(), std::memory_order_relaxed); }

  struct CallFlags {
    bool is_write = false;
    // A write that may apply twice with the same result (Put, Delete, LeaseGrant): moved on
    // to the next member even when lost in flight (a Txn is not: its compares may fail the
    // second time although the first applied).
    bool idempotent = false;
    // Send etcd's "hasleader" requirement (a leaderless member refuses at once). Off for
    // serializable reads, which a member serves alone.
    bool require_leader = true;
  };
  using UnaryFn = absl::FunctionRef<grpc::Status(EtcdMember&, grpc::ClientContext*)>;
  // Runs `fn` on members in turn until one answers or the deadline (now + timeout) passes;
  // `what` names the call in errors ("put /herd/x").
  absl::Status Unary(absl::string_view what, CallFlags flags, UnaryFn fn);

  // Puts the token (authenticating first if none is held) and "hasleader" on a stream's
  // context. The token it used goes to `token_used` (for Reauthenticate).
  absl::Status PrepareStream(grpc::ClientContext* context, std::string* token_used);
  // After etcd said `stale_token` is invalid: a new token, unless another thread already got
  // one.
  absl::Status Reauthenticate(const std::string& stale_token, absl::Time deadline);

 private:
  struct Slot {
    absl::Mutex mu;
    std::shared_ptr<EtcdMember> member ABSL_GUARDED_BY(mu);
    absl::Time created ABSL_GUARDED_BY(mu);
  };
  explicit EtcdConnection(Options options);
  std::shared_ptr<EtcdMember> Dial(const std::string& address) const;
  // The current token, authenticating when none is held; "" without a user.
  absl::StatusOr<std::string> Token(absl::Time deadline);
  absl::Status Authenticate(absl::Time deadline) ABSL_EXCLUSIVE_LOCKS_REQUIRED(auth_mu_);
  void AddMetadata(grpc::ClientContext* context, const std::string& token,
                   bool require_leader) const;

  const Options options_;
  std::string endpoints_text_;
  std::shared_ptr<grpc::ChannelCredentials> credentials_;
  std::vector<std::unique_ptr<Slot>> members_;
  std::atomic<size_t> preferred_{0};

  // Held across Authenticate so that one thread authenticates and the others wait for it.
  absl::Mutex auth_mu_;
  std::string token_ ABSL_GUARDED_BY(auth_mu_);
};

}  // namespace herd::etcd
