// The Gateway service: agents' Connect streams (proto/herd/v1/gateway.proto). Each stream
// authenticates from metadata, waits for Hello, attaches itself to the Hub and relays
// messages both ways; writes are queued (bounded) and issued one at a time. Streams that send
// no Hello in time, and finished ones past their grace, are looked for every second by a
// PeriodicTask on the control plane's Scheduler, on its monotonic clock.
//
// Connect is served on gRPC's asynchronous API, raw (WithRawMethod): its messages come and go
// as bytes, so that a metrics message (nearly all of them) is taken by the hub in place
// (Hub::OnMessageBytes) rather than parsed into objects; any other is parsed here. The
// service is registered and listed (reflection) as herd.v1.Gateway all the same.
// Why asynchronous: on Linux gRPC 1.51's callback API runs every callback of the process
// through one shared completion queue, and Debian's libgrpc (built without NDEBUG) checks
// each completion against the list of all operations outstanding on its queue — at least a
// read per connected agent — under that queue's lock: a linear scan per completion, 12 % of
// the control plane's CPU during a fan-out to 10,000 hosts (bench/README.md). Here the
// streams are spread over several queues, each served by its own thread, which divides both
// the scans' length and their lock.
#pragma once

#include <deque>
#include <functional>
#include <map>
#include <memory>
#include <thread>
#include <vector>

#include <grpcpp/server_builder.h>

#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "common/scheduler.h"
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
  // Completion queues carrying the streams, a thread each; a new stream goes to the queue
  // whose accept it takes.
  size_t completion_queues = 4;
  // Streams each queue is ready to take at once: the next accept is posted as soon as one is
  // taken, so this only bounds how many arrive together before their queue's thread runs.
  size_t accepts_per_queue = 16;
};

class GatewayStream;

class GatewayService final
    : public herd::v1::Gateway::WithRawMethod_Connect<herd::v1::Gateway::Service> {
 public:
  // `scheduler` (which must outlive this) runs the stream watch; its clock's monotonic
  // reading times the Hello deadline and the close grace.
  GatewayService(Hub& hub, Scheduler& scheduler, GatewayOptions options = {});
  ~GatewayService() override;  // ends the stream watch; Drain must have run if Serve did

  // Serving, in this order: AddQueues before the server is built (its completion queues);
  // Serve once it has started (the threads, and the first accepts); Drain after the server's
  // Shutdown, which needs the threads to complete the calls it ends (the queues shut down,
  // every stream deleted, the threads joined). Drain without Serve only shuts the queues.
  void AddQueues(grpc::ServerBuilder& builder);
  void Serve();
  void Drain();

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
  friend class GatewayStream;
  // A stream waiting on `cq` for the next Connect call.
  void Accept(grpc::ServerCompletionQueue* cq);
  // A queue's thread: every event of its streams, until the queue is shut down and empty.
  void Poll(grpc::ServerCompletionQueue* cq);

  Hub& hub_;
  const GatewayOptions options_;
  const Clock& clock_;
  std::shared_ptr<spdlog::logger> log_;
  std::vector<std::unique_ptr<grpc::ServerCompletionQueue>> queues_;
  std::vector<std::thread> threads_;
  absl::Mutex accept_mu_;
  bool draining_ ABSL_GUARDED_BY(accept_mu_) = false;  // no new accepts
  absl::Mutex mu_;
  struct Waiting {
    absl::Time opened;  // monotonic
    std::shared_ptr<HostSession> session;
  };
  std::map<uint64_t, Waiting> waiting_ ABSL_GUARDED_BY(mu_);
  // Streams finished by us, oldest first: when to cancel each (monotonic), and how.
  std::deque<std::pair<absl::Time, std::function<void()>>> closing_ ABSL_GUARDED_BY(mu_);
  uint64_t next_id_ ABSL_GUARDED_BY(mu_) = 0;
  PeriodicTask watch_;  // last: stopped first, before what CheckStreams uses goes
};

// The bearer secret from `authorization: Bearer <secret>` metadata; empty if absent.
std::string BearerToken(const grpc::ServerContextBase& ctx);

}  // namespace herd::controlplane
