// The dashboard's JSON API: HTTP requests transcoded into calls of the gRPC Fleet service
// (protobuf's JSON mapping), made over an in-process channel to the very same service
// implementation that agentctl uses. No method is written twice: every RPC in
// herd.v1.Fleet is found through the descriptor pool, so a new RPC is on the JSON API as
// soon as it is in fleet.proto.
//
//   POST /api/v1/<Method>  body: the request message as JSON   (Authorization forwarded)
//   unary  → 200 and the response message as JSON, or an error status and
//            {"error": {"code": 7, "status": "PERMISSION_DENIED", "message": "..."}}
//   stream → 200, application/x-ndjson: one {"result": <message>} line per message and a
//            last {"error": {...}} line if the stream failed (grpc-gateway's shape).
//
// JSON out: lowerCamelCase names, default values included, enums by name, 64-bit integers
// as strings (protobuf's mapping, which JavaScript numbers need).
#pragma once

#include <functional>
#include <memory>
#include <string>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/time/time.h"
#include "google/protobuf/descriptor.h"
#include "grpcpp/channel.h"
#include "grpcpp/client_context.h"

namespace herd::controlplane {

// gRPC status → HTTP status (as grpc-gateway maps them: 400, 401, 403, 404, 409, 429, 499,
// 500, 501, 503, 504).
int HttpStatusFor(absl::StatusCode code);
// {"error": {"code": N, "status": "NAME", "message": "..."}}
std::string ErrorJson(const absl::Status& status);

// An HTTP body (the request message in protobuf's JSON mapping) as the method's request in
// protobuf bytes, or INVALID_ARGUMENT saying what is wrong with the JSON. No I/O: this is
// the part of the gateway that reads what clients send (tests/fuzz/json_gateway_fuzz.cc).
absl::StatusOr<std::string> EncodeJsonRequest(const google::protobuf::MethodDescriptor* method,
                                              absl::string_view json_body);

class JsonGateway {
 public:
  // `channel` reaches the Fleet service (an in-process channel of the gRPC server).
  explicit JsonGateway(std::shared_ptr<grpc::Channel> channel);

  // herd.v1.Fleet's method of that name, or null.
  const google::protobuf::MethodDescriptor* Find(absl::string_view name) const;

  struct Reply {
    int http_status = 200;
    std::string body;  // JSON
  };
  // A unary call. `authorization` is the HTTP Authorization header, passed on as is.
  // `ctx` lets another thread cancel the call (server shutdown).
  Reply Unary(const google::protobuf::MethodDescriptor* method, absl::string_view json_body,
              const std::string& authorization, grpc::ClientContext& ctx,
              absl::Duration deadline) const;

  // A server-streaming call, for as long as it lasts: `write` gets each ndjson line (with its
  // newline) and returns false once the HTTP client is gone, which cancels the call. `ctx`
  // is the call's context, created by the caller so that it can TryCancel() it from another
  // thread (server shutdown). Returns how the call ended.
  // A stream with nothing to say for `heartbeat` writes "\n" (readers skip blank lines), so
  // that a client gone away is noticed on a quiet stream too.
  absl::Status Stream(const google::protobuf::MethodDescriptor* method,
                      absl::string_view json_body, const std::string& authorization,
                      grpc::ClientContext& ctx, absl::Duration heartbeat,
                      const std::function<bool(const std::string&)>& write) const;

 private:
  std::shared_ptr<grpc::Channel> channel_;
  const google::protobuf::ServiceDescriptor* service_;
};

}  // namespace herd::controlplane
