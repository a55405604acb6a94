#include "controlplane/http/json_gateway.h"

#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"
#include "absl/synchronization/notification.h"
#include "google/protobuf/dynamic_message.h"
#include "google/protobuf/util/json_util.h"
#include "grpcpp/generic/generic_stub.h"
#include "grpcpp/support/byte_buffer.h"
#include "grpcpp/support/client_callback.h"
#include "herd/v1/fleet.pb.h"
#include "nlohmann/json.hpp"

namespace herd::controlplane {
namespace {

namespace pb = google::protobuf;

constexpr char kService[] = "herd.v1.Fleet";

absl::Status FromGrpc(const grpc::Status& s) {
  return absl::Status(static_cast<absl::StatusCode>(s.error_code()), s.error_message());
}

std::string ToString(const grpc::ByteBuffer& buffer) {
  std::vector<grpc::Slice> slices;
  std::string out;
  if (!buffer.Dump(&slices).ok()) return out;
  for (const auto& s : slices) out.append(reinterpret_cast<const char*>(s.begin()), s.size());
  return out;
}

grpc::ByteBuffer ToBuffer(const std::string& bytes) {
  grpc::Slice slice(bytes);
  return grpc::ByteBuffer(&slice, 1);
}

std::unique_ptr<pb::Message> NewMessage(const pb::Descriptor* type) {
  return std::unique_ptr<pb::Message>(
      pb::MessageFactory::generated_factory()->GetPrototype(type)->New());
}

// The response message as JSON.
absl::StatusOr<std::string> DecodeResponse(const pb::MethodDescriptor* method,
                                           const grpc::ByteBuffer& buffer) {
  auto response = NewMessage(method->output_type());
  if (!response->ParseFromString(ToString(buffer))) {
    return absl::InternalError("the service's reply could not be decoded");
  }
  pb::util::JsonPrintOptions options;
  options.always_print_primitive_fields = true;
  std::string json;
  auto s = pb::util::MessageToJsonString(*response, &json, options);
  if (!s.ok()) return absl::InternalError(s.message().as_string());
  return json;
}

void Authorize(grpc::ClientContext& ctx, const std::string& authorization) {
  if (!authorization.empty()) ctx.AddMetadata("authorization", authorization);
}

std::string MethodPath(const pb::MethodDescriptor* method) {
  return absl::StrCat("/", kService, "/", method->name());
}

// One server-streaming call through the generic callback API: the request is written and
// the call half-closed at once; each message is read only after the previous one was
// handed on (the HTTP client's pace is the call's pace). A hold keeps the reactor alive
// until the reader is finished with it.
class StreamReader final : public grpc::ClientBidiReactor<grpc::ByteBuffer, grpc::ByteBuffer> {
 public:
  StreamReader(grpc::GenericStub& stub, grpc::ClientContext& ctx, const std::string& path,
               grpc::ByteBuffer request)
      : request_(std::move(request)) {
    stub.PrepareBidiStreamingCall(&ctx, path, grpc::StubOptions(), this);
    StartWriteLast(&request_, grpc::WriteOptions());
    StartRead(&response_);
    AddHold();
    StartCall();
  }

  enum class Got { kMessage, kEnd, kNothingYet };
  // Waits up to `wait` for the next message (then in `out`) or the end of the stream.
  Got Next(grpc::ByteBuffer* out, absl::Duration wait) {
    absl::MutexLock l(&mu_);
    if (!mu_.AwaitWithTimeout(absl::Condition(&read_done_), wait)) return Got::kNothingYet;
    read_done_ = false;
    if (!read_ok_) return Got::kEnd;
    *out = std::move(response_);
    return Got::kMessage;
  }
  void ReadNext() { StartRead(&response_); }
  // No more reads: lets the call finish.
  void Release() { RemoveHold(); }
  absl::Status Wait() {
    absl::MutexLock l(&mu_);
    mu_.Await(absl::Condition(&done_));
    return status_;
  }

  void OnReadDone(bool ok) override {
    absl::MutexLock l(&mu_);
    read_ok_ = ok;
    read_done_ = true;
  }
  void OnDone(const grpc::Status& s) override {
    absl::MutexLock l(&mu_);
    status_ = FromGrpc(s);
    done_ = true;
  }

 private:
  grpc::ByteBuffer request_, response_;
  absl::Mutex mu_;
  bool read_done_ ABSL_GUARDED_BY(mu_) = false;
  bool read_ok_ ABSL_GUARDED_BY(mu_) = false;
  bool done_ ABSL_GUARDED_BY(mu_) = false;
  absl::Status status_ ABSL_GUARDED_BY(mu_);
};

}  // namespace

absl::StatusOr<std::string> EncodeJsonRequest(const pb::MethodDescriptor* method,
                                              absl::string_view json_body) {
  auto request = NewMessage(method->input_type());
  if (!json_body.empty()) {
    pb::util::JsonParseOptions options;
    options.ignore_unknown_fields = false;
    auto s = pb::util::JsonStringToMessage(pb::StringPiece(json_body.data(), json_body.size()),
                                           request.get(), options);
    if (!s.ok()) {
      return absl::InvalidArgumentError(
          absl::StrCat("the body is not a ", method->input_type()->full_name(),
                       " in protobuf's JSON mapping (", s.message().as_string(),
                       "); see proto/herd/v1/fleet.proto"));
    }
  }
  return request->SerializeAsString();
}

int HttpStatusFor(absl::StatusCode code) {
  switch (code) {
    case absl::StatusCode::kOk: return 200;
    case absl::StatusCode::kCancelled: return 499;
    case absl::StatusCode::kInvalidArgument:
    case absl::StatusCode::kFailedPrecondition:
    case absl::StatusCode::kOutOfRange: return 400;
    case absl::StatusCode::kDeadlineExceeded: return 504;
    case absl::StatusCode::kNotFound: return 404;
    case absl::StatusCode::kAlreadyExists:
    case absl::StatusCode::kAborted: return 409;
    case absl::StatusCode::kPermissionDenied: return 403;
    case absl::StatusCode::kUnauthenticated: return 401;
    case absl::StatusCode::kResourceExhausted: return 429;
    case absl::StatusCode::kUnimplemented: return 501;
    case absl::StatusCode::kUnavailable: return 503;
    default: return 500;
  }
}

std::string ErrorJson(const absl::Status& status) {
  nlohmann::json j = {{"error",
                       {{"code", static_cast<int>(status.code())},
                        {"status", absl::StatusCodeToString(status.code())},
                        {"message", std::string(status.message())}}}};
  return j.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
}

JsonGateway::JsonGateway(std::shared_ptr<grpc::Channel> channel)
    : channel_(std::move(channel)),
      // fleet.proto's file descriptor, reached through one of its messages (which also makes
      // sure the generated code is linked in).
      service_(herd::v1::ListHostsRequest::descriptor()->file()->FindServiceByName("Fleet")) {}

const pb::MethodDescriptor* JsonGateway::Find(absl::string_view name) const {
  if (service_ == nullptr) return nullptr;
  return service_->FindMethodByName(std::string(name));
}

JsonGateway::Reply JsonGateway::Unary(const pb::MethodDescriptor* method,
                                      absl::string_view json_body,
                                      const std::string& authorization, grpc::ClientContext& ctx,
                                      absl::Duration deadline) const {
  auto fail = [](const absl::Status& s) { return Reply{HttpStatusFor(s.code()), ErrorJson(s)}; };
  auto request = EncodeJsonRequest(method, json_body);
  if (!request.ok()) return fail(request.status());
  grpc::GenericStub stub(channel_);
  ctx.set_deadline(absl::ToChronoTime(absl::Now() + deadline));
  Authorize(ctx, authorization);
  grpc::ByteBuffer req = ToBuffer(*request), resp;
  absl::Notification done;
  grpc::Status status;
  stub.UnaryCall(&ctx, MethodPath(method), grpc::StubOptions(), &req, &resp,
                 [&](grpc::Status s) {
                   status = std::move(s);
                   done.Notify();
                 });
  done.WaitForNotification();
  if (!status.ok()) return fail(FromGrpc(status));
  auto json = DecodeResponse(method, resp);
  if (!json.ok()) return fail(json.status());
  return Reply{200, std::move(*json)};
}

absl::Status JsonGateway::Stream(const pb::MethodDescriptor* method, absl::string_view json_body,
                                 const std::string& authorization, grpc::ClientContext& ctx,
                                 absl::Duration heartbeat,
                                 const std::function<bool(const std::string&)>& write) const {
  auto request = EncodeJsonRequest(method, json_body);
  if (!request.ok()) {
    write(ErrorJson(request.status()) + "\n");
    return request.status();
  }
  Authorize(ctx, authorization);
  grpc::GenericStub stub(channel_);
  StreamReader reader(stub, ctx, MethodPath(method), ToBuffer(*request));
  grpc::ByteBuffer message;
  bool client_gone = false;
  absl::Status failure;
  for (;;) {
    const auto got = reader.Next(&message, heartbeat);
    if (got == StreamReader::Got::kEnd) break;
    if (got == StreamReader::Got::kNothingYet) {
      if (write("\n")) continue;
      client_gone = true;
    } else if (auto json = DecodeResponse(method, message); !json.ok()) {
      failure = json.status();
    } else if (write(absl::StrCat("{\"result\":", *json, "}\n"))) {
      reader.ReadNext();
      continue;
    } else {
      client_gone = true;
    }
    ctx.TryCancel();
    break;
  }
  reader.Release();
  absl::Status status = reader.Wait();
  if (!failure.ok()) status = failure;  // not the CANCELLED it caused
  if (!status.ok() && !client_gone) write(ErrorJson(status) + "\n");
  return status;
}

}  // namespace herd::controlplane
