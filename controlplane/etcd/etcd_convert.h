// Conversions between the client's domain types (etcd_client.h) and etcd's protos, at the
// edge: nothing else in the control plane sees etcdserverpb.
#pragma once

#include <string>
#include <vector>

#include "controlplane/etcd/etcd_client.h"
#include "etcd/rpc.pb.h"

namespace herd::etcd {

KeyValue FromProto(const mvccpb::KeyValue& kv);
RangeResult FromProto(const etcdserverpb::RangeResponse& response);
WatchEvent FromProto(const mvccpb::Event& event);

void ToProto(const std::string& key, const RangeOptions& options,
             etcdserverpb::RangeRequest* request);
void ToProto(const Compare& compare, etcdserverpb::Compare* out);
void ToProto(const Op& op, etcdserverpb::RequestOp* out);
etcdserverpb::TxnRequest ToProto(const std::vector<Compare>& compares,
                                 const std::vector<Op>& success, const std::vector<Op>& failure);

}  // namespace herd::etcd
