#include "controlplane/etcd/grpc_etcd_client.h"

#include <utility>

#include "absl/strings/str_cat.h"
#include "common/logging.h"
#include "common/status_macros.h"
#include "controlplane/etcd/etcd_convert.h"
#include "controlplane/etcd/etcd_lease_keeper.h"
#include "controlplane/etcd/etcd_watch.h"

namespace herd::etcd {
namespace {

constexpr EtcdConnection::CallFlags kRead{.is_write = false, .require_leader = true};
constexpr EtcdConnection::CallFlags kWrite{.is_write = true, .require_leader = true};
constexpr EtcdConnection::CallFlags kIdempotentWrite{
    .is_write = true, .idempotent = true, .require_leader = true};

// Keys in messages: long or binary keys are cut, so a log line stays a line.
std::string KeyText(absl::string_view key) {
  std::string out;
  for (char c : key.substr(0, 120)) {
    out += (c >= 0x20 && c < 0x7f) ? c : '?';
  }
  if (key.size() > 120) out += "...";
  return out;
}

}  // namespace

absl::StatusOr<std::unique_ptr<Client>> Client::Connect(const Options& options) {
  auto connection = EtcdConnection::Create(options);
  if (!connection.ok()) return connection.status();
  return std::make_unique<GrpcEtcdClient>(*std::move(connection));
}

absl::Status GrpcEtcdClient::Refuse(absl::string_view what, absl::string_view key,
                                    absl::string_view why) {
  refused_.fetch_add(1);
  Logger("etcd")->warn("msg=\"etcd request refused before sending\" request={} key=\"{}\" why=\"{}\"",
                       what, KeyText(key), why);
  return absl::InvalidArgumentError(
      absl::StrCat("etcd ", what, " \"", KeyText(key), "\" refused: ", why));
}

absl::Status GrpcEtcdClient::CheckKey(absl::string_view what, const std::string& key) {
  if (key.empty()) return Refuse(what, key, "the key is empty (etcd needs a key)");
  return absl::OkStatus();
}

absl::Status GrpcEtcdClient::CheckSize(absl::string_view what, const std::string& key,
                                       size_t bytes) {
  const int64_t max = connection_->options().max_request_bytes;
  if (static_cast<int64_t>(bytes) > max) {
    return Refuse(what, key, absl::StrCat("the request is ", bytes, " bytes, over etcd's ", max,
                                          " (--max-request-bytes): store less under one key"));
  }
  return absl::OkStatus();
}

absl::Status GrpcEtcdClient::CheckTxn(const std::vector<Compare>& compares,
                                      const std::vector<Op>& success,
                                      const std::vector<Op>& failure, size_t bytes) {
  const size_t max = static_cast<size_t>(connection_->options().max_txn_ops);
  const std::string& first = !success.empty() ? success.front().key
                             : !compares.empty() ? compares.front().key : std::string();
  if (compares.size() > max || success.size() > max || failure.size() > max) {
    return Refuse("txn", first, absl::StrCat("it has ", compares.size(), " compares, ",
                                             success.size(), " and ", failure.size(),
                                             " operations; etcd allows ", max,
                                             " of each (--max-txn-ops): split it"));
  }
  for (const Compare& c : compares) HERD_RETURN_IF_ERROR(CheckKey("txn compare", c.key));
  for (const Op& op : success) HERD_RETURN_IF_ERROR(CheckKey("txn operation", op.key));
  for (const Op& op : failure) HERD_RETURN_IF_ERROR(CheckKey("txn operation", op.key));
  return CheckSize("txn", first, bytes);
}

absl::StatusOr<RangeResult> GrpcEtcdClient::Range(const std::string& key,
                                                  const RangeOptions& options) {
  if (absl::Status s = CheckKey("range", key); !s.ok()) return s;
  etcdserverpb::RangeRequest request;
  ToProto(key, options, &request);
  etcdserverpb::RangeResponse response;
  EtcdConnection::CallFlags flags = kRead;
  flags.require_leader = !options.serializable;
  absl::Status s = connection_->Unary(
      absl::StrCat("range ", KeyText(key)), flags,
      [&](EtcdMember& m, grpc::ClientContext* c) { return m.kv->Range(c, request, &response); });
  if (!s.ok()) return s;
  return FromProto(response);
}

absl::StatusOr<std::optional<KeyValue>> GrpcEtcdClient::Get(const std::string& key) {
  auto range = Range(key, RangeOptions{});
  if (!range.ok()) return range.status();
  if (range->kvs.empty()) return std::optional<KeyValue>();
  return std::optional<KeyValue>(std::move(range->kvs.front()));
}

absl::StatusOr<int64_t> GrpcEtcdClient::Put(const std::string& key, const std::string& value,
                                            int64_t lease) {
  if (absl::Status s = CheckKey("put", key); !s.ok()) return s;
  etcdserverpb::PutRequest request;
  request.set_key(key);
  request.set_value(value);
  request.set_lease(lease);
  if (absl::Status s = CheckSize("put", key, request.ByteSizeLong()); !s.ok()) return s;
  etcdserverpb::PutResponse response;
  absl::Status s = connection_->Unary(
      absl::StrCat("put ", KeyText(key)), kIdempotentWrite,
      [&](EtcdMember& m, grpc::ClientContext* c) { return m.kv->Put(c, request, &response); });
  if (!s.ok()) return s;
  return response.header().revision();
}

absl::StatusOr<int64_t> GrpcEtcdClient::Delete(const std::string& key,
                                               const std::string& range_end) {
  if (absl::Status s = CheckKey("delete", key); !s.ok()) return s;
  etcdserverpb::DeleteRangeRequest request;
  request.set_key(key);
  request.set_range_end(range_end);
  etcdserverpb::DeleteRangeResponse response;
  absl::Status s = connection_->Unary(
      absl::StrCat("delete ", KeyText(key)), kIdempotentWrite, [&](EtcdMember& m, grpc::ClientContext* c) {
        return m.kv->DeleteRange(c, request, &response);
      });
  if (!s.ok()) return s;
  return response.deleted();
}

absl::StatusOr<TxnResult> GrpcEtcdClient::Txn(const std::vector<Compare>& compares,
                                              const std::vector<Op>& success,
                                              const std::vector<Op>& failure) {
  etcdserverpb::TxnRequest request = ToProto(compares, success, failure);
  if (absl::Status s = CheckTxn(compares, success, failure, request.ByteSizeLong()); !s.ok()) {
    return s;
  }
  const std::string what = absl::StrCat(
      "txn on ", KeyText(!success.empty() ? success.front().key
                         : !compares.empty() ? compares.front().key : std::string()));
  etcdserverpb::TxnResponse response;
  absl::Status s = connection_->Unary(what, kWrite, [&](EtcdMember& m, grpc::ClientContext* c) {
    return m.kv->Txn(c, request, &response);
  });
  if (!s.ok()) return s;
  TxnResult result;
  result.succeeded = response.succeeded();
  result.revision = response.header().revision();
  for (const etcdserverpb::ResponseOp& op : response.responses()) {
    if (op.has_response_range()) result.ranges.push_back(FromProto(op.response_range()));
  }
  return result;
}

absl::Status GrpcEtcdClient::Compact(int64_t revision) {
  if (revision <= 0) {
    refused_.fetch_add(1);
    return absl::InvalidArgumentError(
        absl::StrCat("etcd compact: revision ", revision, " is not a store revision (>= 1)"));
  }
  etcdserverpb::CompactionRequest request;
  request.set_revision(revision);
  request.set_physical(true);
  etcdserverpb::CompactionResponse response;
  return connection_->Unary(
      absl::StrCat("compact to revision ", revision), kWrite,
      [&](EtcdMember& m, grpc::ClientContext* c) { return m.kv->Compact(c, request, &response); });
}

absl::StatusOr<int64_t> GrpcEtcdClient::LeaseGrant(absl::Duration ttl) {
  auto lease = GrantLease(*connection_, ttl);
  if (absl::IsInvalidArgument(lease.status())) refused_.fetch_add(1);
  return lease;
}

absl::Status GrpcEtcdClient::LeaseRevoke(int64_t lease) {
  return RevokeLease(*connection_, lease);
}

absl::StatusOr<std::unique_ptr<KeptLease>> GrpcEtcdClient::KeepLease(
    absl::Duration ttl, std::function<void()> on_lost, std::function<void(int64_t)> on_new) {
  auto id = LeaseGrant(ttl);
  if (!id.ok()) return id.status();
  return std::unique_ptr<KeptLease>(std::make_unique<EtcdLeaseKeeper>(
      connection_, ttl, *id, std::move(on_lost), std::move(on_new)));
}

absl::StatusOr<std::unique_ptr<Watch>> GrpcEtcdClient::WatchRange(
    const std::string& key, const std::string& range_end, int64_t start_revision,
    std::function<void(const WatchBatch&)> on_batch) {
  if (absl::Status s = CheckKey("watch", key); !s.ok()) return s;
  if (!on_batch) return Refuse("watch", key, "no callback given for its batches");
  if (start_revision < 0) {
    return Refuse("watch", key, "the start revision is negative (0 = from now)");
  }
  return std::unique_ptr<Watch>(std::make_unique<EtcdWatch>(
      connection_, key, range_end, start_revision, std::move(on_batch)));
}

}  // namespace herd::etcd
