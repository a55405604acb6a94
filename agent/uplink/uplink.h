// Uplink: the agent's one stream to the control plane (proto/herd/v1/gateway.proto).
//
// A connection thread dials, authenticates (the host credential kept in $HERD_HOME, or the
// fleet's join token the first time), sends Hello, then writes what the agent queued while a
// reader thread dispatches what the control plane sends to an UplinkHandler. When the stream
// breaks it reconnects with exponential backoff and jitter; meanwhile the agent keeps
// supervising and metrics wait in a bounded ring (oldest dropped and counted, the count sent
// with the next batch). Writes block under gRPC flow control, never the agent: a slow
// control plane only makes the ring drop old batches.
#pragma once

#include <condition_variable>
#include <deque>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "absl/status/status.h"
#include "absl/time/time.h"
#include "common/logging.h"
#include "grpcpp/security/credentials.h"
#include "herd/v1/gateway.grpc.pb.h"

namespace herd::agent {

struct UplinkOptions {
  std::string address;  // host:port of the control plane
  std::string join_token_file;
  std::map<std::string, std::string> labels;
  std::string home;  // host_id and credential live here
  // TLS: the CA that signed the control plane's certificate (enables TLS); a client
  // certificate and key for mTLS.
  std::string tls_ca, tls_cert, tls_key;
  size_t buffer_batches = 600;
  size_t max_control_queue = 1000;
  absl::Duration backoff_initial = absl::Milliseconds(500);
  absl::Duration backoff_max = absl::Seconds(30);
};

// What the uplink asks of the agent. Called on the uplink's threads: implementations hand
// the work to the agent's loop and must not block for long.
class UplinkHandler {
 public:
  virtual ~UplinkHandler() = default;
  virtual std::vector<herd::v1::ModuleInventory> Inventory() = 0;
  virtual uint64_t AckedConfigVersion() = 0;
  virtual void OnConfig(const herd::v1::ConfigSnapshot& snap,
                        std::function<void(herd::v1::ConfigAck)> done) = 0;
  virtual void OnAction(const herd::v1::ActionRequest& req,
                        std::function<void(herd::v1::ActionResult)> done) = 0;
  virtual void OnRestart(const herd::v1::RestartRequest& req,
                         std::function<void(herd::v1::RestartResult)> done) = 0;
  // Sends LogChunks through `send` (the last one with end set) until done or cancelled.
  virtual void OnLogs(const herd::v1::HostLogsRequest& req,
                      std::function<void(herd::v1::LogChunk)> send) = 0;
  virtual void OnCancel(const std::string& request_id) = 0;
  // The control plane's metrics interval (from Welcome).
  virtual void OnWelcome(const herd::v1::Welcome& welcome) = 0;
};

class Uplink {
 public:
  Uplink(UplinkOptions options, UplinkHandler& handler);
  ~Uplink();
  Uplink(const Uplink&) = delete;
  Uplink& operator=(const Uplink&) = delete;

  // Loads or creates the host id; checks that there is a credential or a join token.
  absl::Status Start();
  void Stop();

  // Thread-safe.
  void PushMetrics(herd::v1::MetricsBatch batch);
  void PushEvent(herd::v1::ModuleEvent event);
  void InventoryChanged();

  struct State {
    bool connected = false;
    std::string host_id;
    std::string last_error;
    int64_t connected_at_unix_ms = 0;
    uint64_t dropped_batches = 0;  // total
    size_t buffered_batches = 0;
  };
  State state() const;
  const std::string& host_id() const { return host_id_; }

 private:
  void Run();
  // One connection: returns when the stream ends (the error says why).
  absl::Status Session();
  void SendControl(herd::v1::AgentMessage msg);
  std::string CredentialPath() const;
  std::shared_ptr<grpc::ChannelCredentials> MakeCredentials(absl::Status* error) const;

  const UplinkOptions options_;
  UplinkHandler& handler_;
  std::shared_ptr<spdlog::logger> log_;
  std::string host_id_;
  std::thread thread_;

  mutable std::mutex mu_;
  std::condition_variable cv_;
  bool stopping_ = false;
  bool connected_ = false;
  bool broken_ = false;        // the current stream failed (set by the reader)
  bool inventory_dirty_ = false;
  grpc::ClientContext* ctx_ = nullptr;  // the current stream's, for cancellation
  std::deque<herd::v1::MetricsBatch> metrics_;
  std::deque<herd::v1::AgentMessage> control_;
  uint64_t dropped_since_sent_ = 0;
  uint64_t dropped_total_ = 0;
  std::string last_error_;
  int64_t connected_at_ms_ = 0;
  uint64_t generation_ = 0;  // bumps with each connection; results of older ones are dropped
};

}  // namespace herd::agent
