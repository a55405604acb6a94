// EtcdLeaseKeeper: a KeptLease of etcd_client.h. Its thread renews the lease every ttl/3 with
// one short LeaseKeepAlive exchange (a stream opened per renewal, as clientv3's
// KeepAliveOnce: no long-lived stream to go stale on a dead member, and each renewal has the
// call deadline); a failed renewal is retried sooner, on the next member. When etcd answers
// that the lease is gone (TTL <= 0) it calls on_lost, grants a new lease as soon as etcd
// answers and calls on_new with it. The destructor stops the thread, then revokes the lease.
//
// Also the lease calls the client makes directly (GrantLease, RevokeLease), so there is one
// of each.
#pragma once

#include <atomic>
#include <cstdint>
#include <functional>
#include <memory>
#include <thread>

#include "absl/base/thread_annotations.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "common/backoff.h"
#include "controlplane/etcd/etcd_client.h"
#include "controlplane/etcd/etcd_connection.h"

namespace herd::etcd {

// A lease of `ttl` (rounded up to whole seconds); INVALID_ARGUMENT under 1 s.
absl::StatusOr<int64_t> GrantLease(EtcdConnection& connection, absl::Duration ttl);
absl::Status RevokeLease(EtcdConnection& connection, int64_t lease);
// One renewal: the TTL etcd gave, in seconds (<= 0: the lease is gone).
absl::StatusOr<int64_t> KeepAliveOnce(EtcdConnection& connection, size_t member, int64_t lease);

class EtcdLeaseKeeper final : public KeptLease {
 public:
  EtcdLeaseKeeper(std::shared_ptr<EtcdConnection> connection, absl::Duration ttl, int64_t lease,
                  std::function<void()> on_lost, std::function<void(int64_t)> on_new);
  ~EtcdLeaseKeeper() override;
  int64_t id() const override { return id_.load(); }

 private:
  void Run();
  // The wait before the next step: grants a lease when none is held, else renews it.
  absl::Duration Step(size_t* member, Backoff& backoff);
  bool WaitStop(absl::Duration d);

  const std::shared_ptr<EtcdConnection> connection_;
  const absl::Duration ttl_;
  const absl::Duration interval_;  // ttl / 3
  const std::function<void()> on_lost_;
  const std::function<void(int64_t)> on_new_;
  std::atomic<int64_t> id_;

  absl::Mutex mu_;
  bool stopping_ ABSL_GUARDED_BY(mu_) = false;
  std::thread thread_;
};

}  // namespace herd::etcd
