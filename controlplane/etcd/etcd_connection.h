// EtcdConnection: what every part of the etcd client shares: one gRPC channel and its stubs
// per endpoint, the member calls go to first, etcd's auth token, and the unary call loop
// (deadline, moving on to the next member, authenticating again once on an invalid token).
// Held by shared_ptr by the Client, its Watches and KeptLeases, so any of them may outlive
// the others.
//
// Thread-safe: the stubs are immutable after Create; the token is under a mutex; the
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
  EtcdMember& member(size_t i) { return members_[i % members_.size()]; }
  // The member that answered last (where calls and streams start).
  size_t preferred() const { return preferred_.load(std::memory_order_relaxed); }
  void Prefer(size_t i) { preferred_.store(i % members_.size(), std::memory_order_relaxed); }

  struct CallFlags {
    bool is_write = false;
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
  explicit EtcdConnection(Options options);
  // The current token, authenticating when none is held; "" without a user.
  absl::StatusOr<std::string> Token(absl::Time deadline);
  absl::Status Authenticate(absl::Time deadline) ABSL_EXCLUSIVE_LOCKS_REQUIRED(auth_mu_);
  void AddMetadata(grpc::ClientContext* context, const std::string& token,
                   bool require_leader) const;

  const Options options_;
  std::string endpoints_text_;
  std::vector<EtcdMember> members_;
  std::atomic<size_t> preferred_{0};

  // Held across Authenticate so that one thread authenticates and the others wait for it.
  absl::Mutex auth_mu_;
  std::string token_ ABSL_GUARDED_BY(auth_mu_);
};

}  // namespace herd::etcd
