// HostSession: one agent's stream, as the control plane's core sees it. The gateway's
// stream reactors implement it; tests use fakes (tests/fakes/fake_host_session.h).
#pragma once

#include <string>

#include "herd/v1/gateway.pb.h"

namespace herd::controlplane {

class HostSession {
 public:
  virtual ~HostSession() = default;
  // Queues a message for the agent; false when the stream is closed or its queue is full
  // (the message is dropped and the caller treats the host as unreachable).
  virtual bool Send(herd::v1::ControlMessage msg) = 0;
  // Ends the stream (e.g. the host connected again elsewhere).
  virtual void Close(const std::string& why) = 0;
  virtual std::string Peer() const = 0;
};

}  // namespace herd::controlplane
