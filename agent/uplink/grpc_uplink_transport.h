// GrpcUplinkTransport: the UplinkTransport on gRPC's callback client API (one
// grpc::ClientBidiReactor per stream: no thread of ours, no blocking call).
//
// Threads: Dial, Write and Cancel run on the agent's loop thread. gRPC runs the reactor's
// reactions (a read done, a write done, the end) on its own threads; each one only posts
// what happened to the EventLoop, where it reaches the UplinkStreamObserver. Writes come from
// the loop, outside any reaction, so the reactor holds the call open (a gRPC "hold") until
// the loop knows it will write no more (the reads ended, a write failed, or Cancel): gRPC
// cannot finish the call under a write the loop is about to start.
//
// Each dial builds a channel of its own, reading the TLS files again (a renewed certificate
// is used from the next reconnection), with HTTP/2 keepalive pings (20 s, 10 s to answer):
// a control plane that goes silent (a partition, a frozen process) ends the stream with
// UNAVAILABLE and the Uplink reconnects.
#pragma once

#include <memory>
#include <string>

#include "absl/status/statusor.h"
#include "agent/loop/event_loop.h"
#include "agent/uplink/uplink_transport.h"
#include "grpcpp/security/credentials.h"

namespace herd::agent {

struct GrpcUplinkTlsFiles {
  // The CA that signed the control plane's certificate (enables TLS); a client certificate
  // and key for mTLS. All empty: plaintext.
  std::string ca, cert, key;
};

class GrpcUplinkTransport final : public UplinkTransport {
 public:
  GrpcUplinkTransport(EventLoop& loop, GrpcUplinkTlsFiles tls);

  absl::Status CheckSettings() const override;
  absl::StatusOr<std::unique_ptr<UplinkStream>> Dial(const UplinkDial& dial,
                                                     UplinkStreamObserver& observer) override;
  // On gRPC's callback API (grpc_uplink_fetch.cc): the chunks are written and hashed on
  // gRPC's threads as they arrive; `done` is posted to the loop. The destructor cancels the
  // fetches still running and waits for their end (their `done` is then not called).
  void FetchArtifact(const UplinkDial& dial, const ArtifactFetch& fetch,
                     std::function<void(absl::Status)> done) override;
  ~GrpcUplinkTransport() override;
  struct Fetches;  // grpc_uplink_fetch.cc

 private:
  absl::StatusOr<std::shared_ptr<grpc::ChannelCredentials>> MakeCredentials() const;
  std::shared_ptr<grpc::Channel> MakeChannel(const std::string& address,
                                             std::shared_ptr<grpc::ChannelCredentials> creds) const;

  EventLoop& loop_;
  const GrpcUplinkTlsFiles tls_;
  std::shared_ptr<Fetches> fetches_;
};

}  // namespace herd::agent
