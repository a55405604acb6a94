// The Gateway service: agents' Connect streams (proto/herd/v1/gateway.proto), on gRPC's
// callback API so that one thread pool carries every connected host. Each stream is a
// reactor that authenticates from metadata, waits for Hello, attaches itself to the Hub and
// relays messages both ways; writes are queued (bounded) and issued one at a time. Streams
// that send no Hello in time, and finished ones past their grace, are looked for every second
// by a PeriodicTask on the control plane's Scheduler, on its monotonic clock.
#pragma once

#include <deque>
#include <functional>
#include <map>
#include <memory>

#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "common/scheduler.h"
#include "controlplane/core/artifact_store.h"
#include "controlplane/core/hub.h"
#include "herd/v1/gateway.grpc.pb.h"

namespace herd::controlplane {

struct GatewayOptions {
  // Messages queued for one agent beyond which Send fails (the agent is not reading).
  size_t max_queued = 1024;
  // A stream that has not sent Hello this long after it opened is ended: a peer that opens
  // a stream and says nothing, or dies before its Hello, holds none for ever (the control
  // plane sends no keepalive pings, server.cc; once a host is known, the hub closes streams
  // that go silent). agentd sends its Hello as soon as the stream opens.
  absl::Duration hello_timeout = absl::Seconds(5);
  // A stream the control plane ends (host replaced, silent, no Hello, stopping) is finished
  // with its reason as the status, which the agent logs; one still open this long after
  // (its agent not reading what was queued before the status) is cancelled.
  absl::Duration close_grace = absl::Seconds(5);
  // Artifact fetches served at once (controlplane --max-artifact-fetches); more are refused
  // with RESOURCE_EXHAUSTED, which agents retry after a pause.
  size_t max_artifact_fetches = 64;
};

// Connect is a raw method (gRPC's WithRawCallbackMethod): its messages come and go as bytes,
// so that a metrics message (nearly all of them) is taken by the hub in place
// (Hub::OnMessageBytes) rather than parsed into objects; any other is parsed here. The
// service is registered and listed (reflection) as herd.v1.Gateway all the same.
// The asynchronous API with several completion queues (a thread each), which shortens the
// debug libgrpc's scan of a queue's outstanding operations, was built and measured against
// this (bench/README.md, "Batches read in place"): it cost as much CPU and slowed the
// fan-outs (each completion handed to another queue's thread), so it was not kept.
class GatewayService final
    : public herd::v1::Gateway::WithCallbackMethod_FetchArtifact<
          herd::v1::Gateway::WithRawCallbackMethod_Connect<herd::v1::Gateway::Service>> {
 public:
  // `scheduler` (which must outlive this) runs the stream watch; its clock's monotonic
  // reading times the Hello deadline and the close grace.
  GatewayService(Hub& hub, Scheduler& scheduler, GatewayOptions options = {});
  ~GatewayService() override;  // ends the stream watch (streams must be over by then)

  grpc::ServerBidiReactor<grpc::ByteBuffer, grpc::ByteBuffer>* Connect(
      grpc::CallbackServerContext* ctx) override;
  // An artifact the host's config wants, read from `artifacts` (set before serving; without
  // it every fetch is FAILED_PRECONDITION), in chunks (gateway_artifacts.cc).
  grpc::ServerWriteReactor<herd::v1::ArtifactChunk>* FetchArtifact(
      grpc::CallbackServerContext* ctx, const herd::v1::FetchArtifactRequest* req) override;
  void ServeArtifacts(ArtifactStore* artifacts) { artifacts_ = artifacts; }

  // A stream waiting for its Hello (its session, to close it), until HelloDone(id).
  uint64_t AwaitHello(std::shared_ptr<HostSession> session);
  void HelloDone(uint64_t id);
  // A stream finished by the control plane: `cancel` runs once close_grace has passed
  // (a no-op for a stream over by then).
  void CancelLater(std::function<void()> cancel);
  // One round of the stream watch now (what the scheduler runs every second): ends streams
  // without a Hello in time, cancels finished ones past their grace.
  void CheckStreams();

 private:
  Hub& hub_;
  ArtifactStore* artifacts_ = nullptr;
  const GatewayOptions options_;
  const Clock& clock_;
  std::shared_ptr<spdlog::logger> log_;
  struct Waiting {
    absl::Time opened;  // monotonic
    std::shared_ptr<HostSession> session;
  };
  absl::Mutex mu_;
  std::map<uint64_t, Waiting> waiting_ ABSL_GUARDED_BY(mu_);
  // Streams finished by us, oldest first: when to cancel each (monotonic), and how.
  std::deque<std::pair<absl::Time, std::function<void()>>> closing_ ABSL_GUARDED_BY(mu_);
  uint64_t next_id_ ABSL_GUARDED_BY(mu_) = 0;
  PeriodicTask watch_;  // last: stopped first, before what CheckStreams uses goes
};

// The bearer secret from `authorization: Bearer <secret>` metadata; empty if absent.
std::string BearerToken(const grpc::ServerContextBase& ctx);

}  // namespace herd::controlplane
