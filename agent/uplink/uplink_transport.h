// UplinkTransport: the seam between the Uplink's state machine and the wire. A dial opens one
// Gateway.Connect stream (proto/herd/v1/gateway.proto); the Uplink writes AgentMessages to it
// and is told, through an UplinkStreamObserver, of every ControlMessage read, every write
// completed and the stream's end with its status.
//
// Threads: every method is called on the agent's loop thread, and every observer callback is
// delivered on the loop thread (never inside a call to the stream: implementations post
// them), so the Uplink keeps its state without a lock. Implementations:
//   - GrpcUplinkTransport (grpc_uplink_transport.h): gRPC's callback client API; its
//     reactions run on gRPC's threads and are posted to the EventLoop.
//   - FakeUplinkTransport (tests/fakes/fake_uplink_transport.h): the test plays the control
//     plane and sees every dial and every message written.
#pragma once

#include <functional>
#include <map>
#include <memory>
#include <string>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "herd/v1/gateway.pb.h"

namespace herd::agent {

class UplinkStreamObserver {
 public:
  virtual ~UplinkStreamObserver() = default;
  // A message from the control plane, in the order it sent them.
  virtual void OnRead(herd::v1::ControlMessage msg) = 0;
  // The write started last completed; !ok: the stream is broken (its end follows).
  virtual void OnWriteDone(bool ok) = 0;
  // The stream ended (the control plane's status, or CANCELLED after Cancel). The last
  // callback of a stream.
  virtual void OnDone(absl::Status status) = 0;
};

class UplinkStream {
 public:
  // Ends the stream if it has not ended (like Cancel) and waits until the transport no
  // longer touches it: no callback of this stream arrives after the destructor returns.
  virtual ~UplinkStream() = default;
  // One write at a time (gRPC's rule): call again only after OnWriteDone. On a stream that
  // has ended the write fails (OnWriteDone(false)).
  virtual void Write(herd::v1::AgentMessage msg) = 0;
  // Ends the stream from our side; OnDone follows (CANCELLED unless the status came first).
  virtual void Cancel() = 0;
};

struct UplinkDial {
  std::string address;                          // host:port of the control plane
  std::map<std::string, std::string> metadata;  // "authorization": "Bearer <secret>"
};

class UplinkTransport {
 public:
  virtual ~UplinkTransport() = default;
  // Checks what every dial needs (TLS files...), so that bad flags stop agentd at start
  // instead of failing every reconnection.
  virtual absl::Status CheckSettings() const = 0;
  // Opens a stream; `observer` must outlive it. An error: nothing was started.
  virtual absl::StatusOr<std::unique_ptr<UplinkStream>> Dial(const UplinkDial& dial,
                                                             UplinkStreamObserver& observer) = 0;

  // A module artifact (Gateway.FetchArtifact, issue 24) into `dest`: written beside it,
  // checked (at most `max_bytes`, the size announced, the sha256 asked for) and only then
  // renamed to `dest`; anything else leaves nothing. `done` runs on the loop thread.
  struct ArtifactFetch {
    std::string host_id, sha256, dest;
    uint64_t max_bytes = 0;
  };
  virtual void FetchArtifact(const UplinkDial& dial, const ArtifactFetch& fetch,
                             std::function<void(absl::Status)> done) {
    (void)dial;
    (void)fetch;
    done(absl::UnimplementedError("this transport fetches no artifacts"));
  }
};

}  // namespace herd::agent
