// The HTTP API's request bodies (POST /api/v1/<Method>): EncodeJsonRequest, protobuf's JSON
// mapping into each Fleet method's request type. The first byte picks the method, the rest
// is the body. What is accepted is read back and printed as JSON again.
#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>

#include "controlplane/http/json_gateway.h"
#include "google/protobuf/dynamic_message.h"
#include "google/protobuf/util/json_util.h"
#include "herd/v1/fleet.pb.h"
#include "tests/fuzz/fuzz_util.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  namespace pb = google::protobuf;
  if (size == 0) return 0;
  static const pb::ServiceDescriptor* service =
      herd::v1::ListHostsRequest::descriptor()->file()->FindServiceByName("Fleet");
  HERD_FUZZ_CHECK(service != nullptr && service->method_count() > 0);
  const pb::MethodDescriptor* method = service->method(data[0] % service->method_count());
  const std::string body(reinterpret_cast<const char*>(data + 1), size - 1);
  auto bytes = herd::controlplane::EncodeJsonRequest(method, body);
  if (!bytes.ok()) {
    HERD_FUZZ_CHECK(herd::controlplane::HttpStatusFor(bytes.status().code()) == 400);
    (void)herd::controlplane::ErrorJson(bytes.status());
    return 0;
  }
  std::unique_ptr<pb::Message> request(
      pb::MessageFactory::generated_factory()->GetPrototype(method->input_type())->New());
  HERD_FUZZ_CHECK(request->ParseFromString(*bytes));
  std::string json;
  HERD_FUZZ_CHECK(pb::util::MessageToJsonString(*request, &json).ok());
  return 0;
}
