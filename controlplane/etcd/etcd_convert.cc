#include "controlplane/etcd/etcd_convert.h"

namespace herd::etcd {

KeyValue FromProto(const mvccpb::KeyValue& kv) {
  KeyValue out;
  out.key = kv.key();
  out.value = kv.value();
  out.create_revision = kv.create_revision();
  out.mod_revision = kv.mod_revision();
  out.version = kv.version();
  out.lease = kv.lease();
  return out;
}

RangeResult FromProto(const etcdserverpb::RangeResponse& response) {
  RangeResult out;
  out.kvs.reserve(response.kvs_size());
  for (const mvccpb::KeyValue& kv : response.kvs()) out.kvs.push_back(FromProto(kv));
  out.count = response.count();
  out.more = response.more();
  out.revision = response.header().revision();
  return out;
}

WatchEvent FromProto(const mvccpb::Event& event) {
  WatchEvent out;
  out.type = event.type() == mvccpb::Event::DELETE ? WatchEvent::Type::kDelete
                                                    : WatchEvent::Type::kPut;
  out.kv = FromProto(event.kv());
  return out;
}

void ToProto(const std::string& key, const RangeOptions& options,
             etcdserverpb::RangeRequest* request) {
  request->set_key(key);
  request->set_range_end(options.range_end);
  request->set_limit(options.limit);
  request->set_revision(options.revision);
  request->set_keys_only(options.keys_only);
  request->set_count_only(options.count_only);
  request->set_serializable(options.serializable);
  request->set_sort_target(etcdserverpb::RangeRequest::KEY);
  switch (options.sort) {
    case RangeOptions::Sort::kNone:
      request->set_sort_order(etcdserverpb::RangeRequest::NONE);
      break;
    case RangeOptions::Sort::kKeyAscend:
      request->set_sort_order(etcdserverpb::RangeRequest::ASCEND);
      break;
    case RangeOptions::Sort::kKeyDescend:
      request->set_sort_order(etcdserverpb::RangeRequest::DESCEND);
      break;
  }
}

namespace {

etcdserverpb::Compare::CompareResult ToProto(Compare::Result r) {
  switch (r) {
    case Compare::Result::kGreater:
      return etcdserverpb::Compare::GREATER;
    case Compare::Result::kLess:
      return etcdserverpb::Compare::LESS;
    case Compare::Result::kNotEqual:
      return etcdserverpb::Compare::NOT_EQUAL;
    case Compare::Result::kEqual:
      break;
  }
  return etcdserverpb::Compare::EQUAL;
}

}  // namespace

void ToProto(const Compare& compare, etcdserverpb::Compare* out) {
  out->set_key(compare.key);
  out->set_range_end(compare.range_end);
  out->set_result(ToProto(compare.result));
  switch (compare.target) {
    case Compare::Target::kVersion:
      out->set_target(etcdserverpb::Compare::VERSION);
      out->set_version(compare.number);
      break;
    case Compare::Target::kCreateRevision:
      out->set_target(etcdserverpb::Compare::CREATE);
      out->set_create_revision(compare.number);
      break;
    case Compare::Target::kModRevision:
      out->set_target(etcdserverpb::Compare::MOD);
      out->set_mod_revision(compare.number);
      break;
    case Compare::Target::kValue:
      out->set_target(etcdserverpb::Compare::VALUE);
      out->set_value(compare.value);
      break;
    case Compare::Target::kLease:
      out->set_target(etcdserverpb::Compare::LEASE);
      out->set_lease(compare.number);
      break;
  }
}

void ToProto(const Op& op, etcdserverpb::RequestOp* out) {
  switch (op.kind) {
    case Op::Kind::kPut: {
      etcdserverpb::PutRequest* put = out->mutable_request_put();
      put->set_key(op.key);
      put->set_value(op.value);
      put->set_lease(op.lease);
      break;
    }
    case Op::Kind::kDelete: {
      etcdserverpb::DeleteRangeRequest* del = out->mutable_request_delete_range();
      del->set_key(op.key);
      del->set_range_end(op.range_end);
      break;
    }
    case Op::Kind::kRange:
      ToProto(op.key, op.range, out->mutable_request_range());
      if (!op.range_end.empty()) out->mutable_request_range()->set_range_end(op.range_end);
      break;
  }
}

etcdserverpb::TxnRequest ToProto(const std::vector<Compare>& compares,
                                 const std::vector<Op>& success, const std::vector<Op>& failure) {
  etcdserverpb::TxnRequest request;
  for (const Compare& c : compares) ToProto(c, request.add_compare());
  for (const Op& op : success) ToProto(op, request.add_success());
  for (const Op& op : failure) ToProto(op, request.add_failure());
  return request;
}

}  // namespace herd::etcd
