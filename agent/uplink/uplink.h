// Uplink: the agent's one stream to the control plane (proto/herd/v1/gateway.proto), as a
// state machine on the agent's loop:
//
//   kIdle ─Start→ kBackoff(0) ─dial→ kHelloSent ─Welcome→ kStreaming
//                    ↑                   │ stream ends         │ stream ends
//                    └───────────────────┴─────────────────────┘   (any state ─Stop→ kStopped)
//
// A dial authenticates with the host credential kept in $HERD_HOME, or the fleet's join token
// the first time (the Welcome then carries the credential, saved before anything else), and
// sends Hello; the first answer must be Welcome. While streaming it writes what the agent
// queued (inventory first, then replies and events, then metrics oldest first) and hands what
// the control plane sends to an UplinkHandler. Meanwhile, when not connected, the agent keeps
// supervising and metrics wait in a bounded ring (oldest dropped and counted, the count sent
// with the next batch, batches made before the connection marked replayed). A refused
// credential (the control plane's data was reset) is deleted: the next dial registers again
// with the join token.
//
// Replicas: the options list one address per control plane replica (any of them serves the
// whole fleet, issue 22). Each host dials them in its own order (common/
// controlplane_addresses.h, ReplicaDialOrder: rendezvous hashing of its host id), so a fleet
// given the same list spreads over the replicas, and the hosts of a replica that goes away
// spread over the others; every failed dial or ended stream moves the next dial to the next
// address in the host's order. Within a round of the list the
// next dial waits only a delay drawn from [0, failover_spread] (full jitter): when a replica
// dies, its agents go to the others at once, yet spread over that window rather than all in
// the same millisecond. Once every address has failed in a row (a full round), the wait is
// herd::Backoff's, growing up to backoff_max (each delay drawn from [step/2, step]), so a
// fleet whose replicas are all down does not hammer them. A session that lasted 30 s resets
// both the backoff and the round. With one address every wait is the backoff's, as before.
// The jitter is seeded per agent (random_device, or UplinkOptions::jitter_seed in tests):
// agents that lost the same replica at the same instant draw different delays.
// One address may also be a DNS name with several addresses: gRPC's dns resolver returns
// them all and pick_first connects to the first that answers (a refused connection is
// skipped at once, a silent one after gRPC's connect timeout); every dial resolves again.
// That gives failover but not spread (every agent tries the same first address): list the
// replicas for both.
//
// Threads: none of its own. Every method, every timer (Scheduler) and every transport callback
// runs on the loop thread, so the state needs no lock; the transport (grpc_uplink_transport.h)
// posts gRPC's reactions to the loop. Writes are one at a time (gRPC's rule) and wait under
// flow control, never the loop: a slow control plane only makes the ring drop old batches.
// Replies of an older connection (a slow action, a restart waiting for health) are dropped.
#pragma once

#include <cstdint>
#include <deque>
#include <functional>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/time/time.h"
#include "agent/uplink/uplink_transport.h"
#include "common/backoff.h"
#include "common/gateway_protocol.h"
#include "common/logging.h"
#include "common/scheduler.h"
#include "herd/v1/gateway.pb.h"

namespace herd::agent {

struct UplinkOptions {
  // host:port of each control plane replica (ParseControlPlaneAddresses checked them); one
  // or more, tried in turn as the header says.
  std::vector<std::string> addresses;
  std::string join_token_file;
  std::map<std::string, std::string> labels;
  std::string home;  // host_id and credential live here
  // TLS: the CA that signed the control plane's certificate (enables TLS); a client
  // certificate and key for mTLS. (Read by the transport: GrpcUplinkTransport.)
  std::string tls_ca, tls_cert, tls_key;
  size_t buffer_batches = 600;
  size_t max_control_queue = 1000;
  absl::Duration backoff_initial = absl::Milliseconds(500);
  absl::Duration backoff_max = absl::Seconds(30);
  // The next replica within a round is dialled after a delay drawn from [0, this]: the
  // window over which the agents of a dead replica arrive at the others.
  absl::Duration failover_spread = absl::Seconds(1);
  // Seeds the jitter; 0: std::random_device (each agent its own). Tests fix it.
  uint64_t jitter_seed = 0;
};

// What the uplink asks of the agent. Called on the loop thread; must not block (long work
// answers later through `done` / `send`, on the loop thread too).
class UplinkHandler {
 public:
  virtual ~UplinkHandler() = default;
  virtual std::vector<herd::v1::ModuleInventory> Inventory() = 0;
  // Where the host stands with its deployments (sent with the inventory and the Hello).
  virtual std::vector<herd::v1::DeploymentStatus> Deployments() { return {}; }
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

class Uplink final : private UplinkStreamObserver {
 public:
  enum class Phase { kIdle, kBackoff, kHelloSent, kStreaming, kStopped };

  // `loop` runs the timers (the agent's EventLoop; FakeScheduler in tests).
  Uplink(UplinkOptions options, UplinkHandler& handler, Scheduler& loop,
         UplinkTransport& transport);
  ~Uplink() override;
  Uplink(const Uplink&) = delete;
  Uplink& operator=(const Uplink&) = delete;

  // Loads or creates the host id; checks that there is a credential or a join token and
  // the transport's settings; then dials from the loop.
  absl::Status Start();
  // Ends the stream (if any) and cancels the timers; nothing runs afterwards.
  void Stop();

  void PushMetrics(herd::v1::MetricsBatch batch);
  // Dropped when not connected (the control plane reads events of the live stream only).
  void PushEvent(herd::v1::ModuleEvent event);
  void InventoryChanged();
  // A module artifact (issue 24) from the replica connected to, with the host credential,
  // into `dest` (UplinkTransport::FetchArtifact); UNAVAILABLE at once when not connected.
  void FetchArtifact(const std::string& sha256, const std::string& dest, uint64_t max_bytes,
                     std::function<void(absl::Status)> done);

  struct State {
    bool connected = false;
    // The replica connected to; when not connected, the one the next dial goes to.
    std::string address;
    std::string host_id;
    std::string last_error;
    int64_t connected_at_unix_ms = 0;
    uint64_t dropped_batches = 0;  // total
    size_t buffered_batches = 0;
  };
  State state() const;
  Phase phase() const { return phase_; }
  const std::string& host_id() const { return host_id_; }
  const std::vector<std::string>& addresses() const { return options_.addresses; }
  // The address connected to, or dialled next (see State::address).
  const std::string& address() const {
    static const std::string kNone;
    if (options_.addresses.empty()) return kNone;
    return options_.addresses[dial_order_.empty() ? 0 : dial_order_[dial_pos_]];
  }

  // A write that failed while the control plane's status has not come: the stream is
  // cancelled after this grace (the status usually follows the failure at once).
  static constexpr absl::Duration kWriteFailureGrace = absl::Seconds(2);
  // A session that lasted this long resets the backoff.
  static constexpr absl::Duration kStableSession = absl::Seconds(30);
  // A group of batches (Welcome.metrics_batches_per_message, and a replay) holds at most
  // this many, and this many bytes unless it is one batch.
  static constexpr uint32_t kMaxBatchesPerMessage = kMaxMetricsBatchesPerMessage;
  static constexpr size_t kMaxGroupBytes = 1 << 20;

 private:
  // UplinkStreamObserver (the current stream's; loop thread).
  void OnRead(herd::v1::ControlMessage msg) override;
  void OnWriteDone(bool ok) override;
  void OnDone(absl::Status status) override;

  void Dial();
  herd::v1::AgentMessage MakeHello();
  void OnWelcome(const herd::v1::Welcome& welcome);
  void Dispatch(const herd::v1::ControlMessage& msg);
  // Writes the next queued message if none is in flight.
  void Pump();
  bool NextMessage(herd::v1::AgentMessage* out);
  void SetBatchesPerMessage(uint32_t n);
  void SendControl(herd::v1::AgentMessage msg);
  // A reply to the connection of `generation`; dropped if that connection is gone.
  std::function<void(herd::v1::AgentMessage)> ReplyTo(uint64_t generation);
  // Why the stream ended, from the control plane's status and what we saw.
  absl::Status EndReason(const absl::Status& status);
  // The stream is over: forget it and plan the next dial.
  void EndSession(const absl::Status& why);
  void DropStream();
  // After a session ended: moves to the next address and says how long to wait before
  // dialling it (see the header: prompt within a round, the backoff after a full one).
  absl::Duration NextDial();
  std::string CredentialPath() const;

  const UplinkOptions options_;
  UplinkHandler& handler_;
  Scheduler& loop_;
  UplinkTransport& transport_;
  std::shared_ptr<spdlog::logger> log_;
  std::string host_id_;
  Backoff backoff_;          // between full rounds of the address list
  Backoff failover_delay_;   // within a round: uniform in [0, failover_spread]
  // The host's order of the addresses (ReplicaDialOrder), and the current or next dial's
  // place in it.
  std::vector<size_t> dial_order_;
  size_t dial_pos_ = 0;
  uint64_t failed_sessions_ = 0;  // sessions that ended since the last stable one

  Phase phase_ = Phase::kIdle;
  Scheduler::Handle dial_timer_ = 0;
  Scheduler::Handle grace_timer_ = 0;
  std::unique_ptr<UplinkStream> stream_;
  bool by_join_ = false;         // the current stream authenticated with the join token
  bool write_in_flight_ = false;
  bool write_failed_ = false;    // the current stream broke while sending
  absl::Status protocol_error_;  // set when we end a stream that broke the protocol
  absl::Time session_began_;     // monotonic: when the current dial started
  bool connected_ = false;
  bool inventory_dirty_ = false;
  std::deque<herd::v1::MetricsBatch> metrics_;
  // As the control plane asked (Welcome, MetricsCadence); reads_groups_: it reads
  // MetricsBatches (a replay is sent grouped).
  uint32_t batches_per_message_ = 1;
  bool reads_groups_ = false;
  std::deque<herd::v1::AgentMessage> control_;
  uint64_t dropped_since_sent_ = 0;
  uint64_t dropped_total_ = 0;
  uint64_t control_dropped_ = 0;  // replies and events over max_control_queue (logged)
  std::string last_error_;
  int64_t connected_at_ms_ = 0;
  uint64_t generation_ = 0;  // bumps with each connection; results of older ones are dropped
  // Replies hold a weak reference: one that comes after the Uplink is gone does nothing.
  std::shared_ptr<bool> life_ = std::make_shared<bool>(true);
};

}  // namespace herd::agent
