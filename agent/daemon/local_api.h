// LocalApi: agentctl's gRPC API on $HERD_HOME/agent.sock (the AgentService), started once the
// units are restored and stopped last.
//
// Stopping has two steps because the server's Shutdown waits for the calls in flight, and
// those finish on the agent's EventLoop: ShutdownThen() runs it on a thread of its own while
// the loop keeps running, and Close(), once the loop has returned, joins that thread,
// destroys the server and removes the socket.
#pragma once

#include <functional>
#include <memory>
#include <string>
#include <thread>

#include "absl/status/status.h"
#include "absl/time/time.h"
#include "grpcpp/grpcpp.h"

namespace herd::agent {

class LocalApi {
 public:
  explicit LocalApi(std::string socket_path);
  ~LocalApi();
  LocalApi(const LocalApi&) = delete;
  LocalApi& operator=(const LocalApi&) = delete;

  // Serves `service` (which must outlive Close()) on the socket, mode 0660. A socket file
  // already there is stale (the caller holds the home's lock) and is replaced.
  absl::Status Start(grpc::Service& service);
  // From the loop's thread: shuts the server down on another thread, letting calls in flight
  // finish for up to `grace`, then calls `then` on that thread.
  void ShutdownThen(absl::Duration grace, std::function<void()> then);
  // Joins the shutdown thread, destroys the server and removes the socket; nothing if it
  // never started. Idempotent; the destructor calls it.
  void Close();

  const std::string& socket_path() const { return socket_path_; }

 private:
  const std::string socket_path_;
  std::unique_ptr<grpc::Server> server_;
  std::thread stopper_;
};

}  // namespace herd::agent
