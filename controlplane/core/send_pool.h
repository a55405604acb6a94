// SendPool: the threads that hand messages to agents' sessions. A gateway session's Send
// starts a gRPC write; made from a gRPC thread, gRPC runs every write started there one after
// the other when that thread's callback returns, so a fan-out to 10,000 hosts from a Fleet
// API call would be written by one thread, with the call's own answer last (bench/README.md).
// With 0 threads (tests), messages are sent on the caller's thread, at once.
//
// A host's messages always go through the same thread (its id's hash picks it), in order.
// Each thread has its own outbox and lock (Outbox::mu, the last lock in the hub's order:
// nothing is called under it). Thread-safe.
#pragma once

#include <cstddef>
#include <deque>
#include <functional>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "absl/synchronization/mutex.h"
#include "controlplane/core/host_session.h"

namespace herd::controlplane {

// Fan-outs hand their messages to the send threads this many at a time: few enough that the
// first hosts have theirs while the rest are made, enough that one wake-up sends many.
inline constexpr size_t kHandOff = 256;

class SendPool {
 public:
  struct Outgoing {
    std::string host_id;
    std::shared_ptr<HostSession> session;
    herd::v1::ControlMessage msg;
    // Runs (outside every lock) if the session does not take the message, or the pool has
    // stopped.
    std::function<void()> on_fail;
  };

  SendPool() = default;
  ~SendPool() { Stop(); }
  SendPool(const SendPool&) = delete;
  SendPool& operator=(const SendPool&) = delete;

  // Starts `threads` send threads (0: sends happen on the caller's thread). Once.
  void Start(size_t threads);
  // Sends what is queued, then ends the threads; later posts fail (their on_fail runs).
  void Stop();

  void Post(const std::string& host_id, std::shared_ptr<HostSession> session,
            herd::v1::ControlMessage msg, std::function<void()> on_fail = nullptr);
  // Post for many messages: one lock, and at most one wake-up, per send thread for them all.
  // (Posted one by one, a fan-out's poster and the send threads it wakes take turns on a
  // busy core, a message at a time.)
  void PostAll(std::vector<Outgoing> out);

 private:
  struct Outbox {
    struct Item {
      std::shared_ptr<HostSession> session;
      herd::v1::ControlMessage msg;
      std::function<void()> on_fail;
    };
    absl::Mutex mu;
    std::deque<Item> items ABSL_GUARDED_BY(mu);
    bool stop ABSL_GUARDED_BY(mu) = false;
    std::thread thread;
  };
  static void Loop(Outbox& box);

  // Set by Start before any post, never changed after: read without a lock.
  std::vector<std::unique_ptr<Outbox>> outboxes_;
};

}  // namespace herd::controlplane
