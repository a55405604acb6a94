// The Gateway service: agents' Connect streams (proto/herd/v1/gateway.proto), on gRPC's
// callback API so that one thread pool carries every connected host. Each stream is a
// reactor that authenticates from metadata, waits for Hello, attaches itself to the Hub and
// relays messages both ways; writes are queued (bounded) and issued one at a time.
#pragma once

#include "controlplane/core/hub.h"
#include "herd/v1/gateway.grpc.pb.h"

namespace herd::controlplane {

struct GatewayOptions {
  // Messages queued for one agent beyond which Send fails (the agent is not reading).
  size_t max_queued = 1024;
};

class GatewayService final : public herd::v1::Gateway::CallbackService {
 public:
  GatewayService(Hub& hub, GatewayOptions options = {}) : hub_(hub), options_(options) {}

  grpc::ServerBidiReactor<herd::v1::AgentMessage, herd::v1::ControlMessage>* Connect(
      grpc::CallbackServerContext* ctx) override;

 private:
  Hub& hub_;
  const GatewayOptions options_;
};

// The bearer secret from `authorization: Bearer <secret>` metadata; empty if absent.
std::string BearerToken(const grpc::ServerContextBase& ctx);

}  // namespace herd::controlplane
