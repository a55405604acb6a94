// GrpcEtcdClient: etcd_client.h's Client over etcd's gRPC API (EtcdConnection). It checks
// requests against the bounds etcd enforces before sending them (a refusal is counted and
// logged with the key), converts at the edge, and hands watches and kept leases their own
// threads (EtcdWatch, EtcdLeaseKeeper).
#pragma once

#include <atomic>
#include <memory>
#include <string>
#include <vector>

#include "controlplane/etcd/etcd_client.h"
#include "controlplane/etcd/etcd_connection.h"

namespace herd::etcd {

class GrpcEtcdClient final : public Client {
 public:
  explicit GrpcEtcdClient(std::shared_ptr<EtcdConnection> connection)
      : connection_(std::move(connection)) {}

  absl::StatusOr<RangeResult> Range(const std::string& key, const RangeOptions& options) override;
  absl::StatusOr<std::optional<KeyValue>> Get(const std::string& key) override;
  absl::StatusOr<int64_t> Put(const std::string& key, const std::string& value,
                              int64_t lease) override;
  absl::StatusOr<int64_t> Delete(const std::string& key, const std::string& range_end) override;
  absl::StatusOr<TxnResult> Txn(const std::vector<Compare>& compares,
                                const std::vector<Op>& success,
                                const std::vector<Op>& failure) override;
  absl::Status Compact(int64_t revision) override;

  absl::StatusOr<int64_t> LeaseGrant(absl::Duration ttl) override;
  absl::Status LeaseRevoke(int64_t lease) override;
  absl::StatusOr<std::unique_ptr<KeptLease>> KeepLease(
      absl::Duration ttl, std::function<void()> on_lost,
      std::function<void(int64_t lease)> on_new) override;

  absl::StatusOr<std::unique_ptr<Watch>> WatchRange(
      const std::string& key, const std::string& range_end, int64_t start_revision,
      std::function<void(const WatchBatch&)> on_batch) override;

  std::string EndpointsText() const override { return connection_->endpoints_text(); }
  int64_t RefusedRequests() const override { return refused_.load(); }

 private:
  // INVALID_ARGUMENT (counted, logged) when `what` on `key` breaks an etcd bound.
  absl::Status Refuse(absl::string_view what, absl::string_view key, absl::string_view why);
  absl::Status CheckKey(absl::string_view what, const std::string& key);
  absl::Status CheckSize(absl::string_view what, const std::string& key, size_t bytes);
  absl::Status CheckTxn(const std::vector<Compare>& compares, const std::vector<Op>& success,
                        const std::vector<Op>& failure, size_t bytes);

  std::shared_ptr<EtcdConnection> connection_;
  std::atomic<int64_t> refused_{0};
};

}  // namespace herd::etcd
