// HostRequestRelay: requests to hosts and their answers (RequestRelay, fleet_interfaces.h):
// actions fanned out and gathered, a rollout's restarts, log streams. Each request is
// pending under an id until its host answers, its stream ends, or its deadline passes
// (ExpireOverdue, run by the hub's sweep task). Deadlines are on the clock's monotonic
// reading: a wall-clock step expires nothing.
//
// Hosts are reached only through HostRegistry::Route (the one seam where a host connected to
// another control-plane replica can later be given a forwarding session) and messages go
// out through the SendPool. Locks: pending_mu_ comes after the index and a host's lock in
// the hub's order and is never held while a callback, a send or another lock runs.
#pragma once

#include <atomic>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "common/clock.h"
#include "common/logging.h"
#include "controlplane/core/fleet_interfaces.h"
#include "controlplane/core/host_registry.h"
#include "controlplane/core/hub_options.h"
#include "controlplane/core/send_pool.h"

namespace herd::controlplane {

class HostRequestRelay final : public RequestRelay {
 public:
  HostRequestRelay(HostRegistry& registry, SendPool& sends, AuditLog& audit, const Clock& clock,
                   const HubOptions& options);

  // ---- RequestRelay
  void TriggerAction(
      const herd::v1::FleetActionRequest& req, const Actor& actor,
      std::function<void(absl::StatusOr<herd::v1::FleetActionResponse>)> done) override;
  void RestartOnHosts(
      const std::vector<std::string>& host_ids, const std::vector<std::string>& units,
      uint32_t wait_healthy_ms, const std::string& rollout_id,
      std::function<void(size_t, absl::StatusOr<herd::v1::RestartResult>)> done) override;
  std::string StreamLogs(const herd::v1::FleetLogsRequest& req,
                         std::function<void(const herd::v1::LogChunk&)> on_lines,
                         std::function<void(absl::Status)> on_end) override;
  void CancelLogs(const std::string& request_id) override;

  // ---- The hub's side
  // An answer (action result, restart result, log chunk) from `host_id`: only the host a
  // request went to may answer it.
  void OnAnswer(const std::string& host_id, const herd::v1::AgentMessage& msg);
  // The host's stream `session` ended (`current`: it was the host's latest): the requests
  // that went out on it fail.
  void OnStreamEnded(const std::string& host_id, const HostSession* session, bool current);
  // Fails the requests past their deadline.
  void ExpireOverdue();
  // Fails every pending request; requests made later fail at once.
  void Stop();
  // Requests waiting for an answer (for tests).
  size_t pending() const;

 private:
  enum class Kind { kAction, kRestart, kLogs };
  using Done = std::function<void(absl::StatusOr<herd::v1::AgentMessage>)>;
  struct Pending {
    Kind kind;
    std::string host_id;
    absl::Time deadline = absl::InfiniteFuture();  // monotonic
    Done done;
    // Logs only.
    std::function<void(const herd::v1::LogChunk&)> on_lines;
    // The stream the request went out on (null until it is handed over): when that stream
    // ends, even after the host connected again on another, no answer can come (an agent
    // drops answers to what a stream it has left asked).
    const HostSession* session = nullptr;
  };
  // A request to one host: `msg` carries `request_id`; `done` gets the host's answer.
  struct Request {
    std::string host_id;
    herd::v1::ControlMessage msg;
    Kind kind;
    std::string request_id;
    absl::Duration timeout;
    Done done;
  };

  std::string NewRequestId();
  // Registers each request as pending and sends it to its host, all in one hand-off to the
  // send threads; a request that cannot go out has its `done` run before this returns.
  void RelayAll(std::vector<Request> requests);
  // Registers the requests as pending (before anything is sent); those to unknown hosts
  // fail instead (added to `failures`).
  void AddPending(std::vector<Request>& requests, const std::vector<HostRoute>& routes,
                  std::vector<std::function<void()>>& failures);
  // A fan-out's loop calls it after adding each request: a full hand-off (kHandOff) goes out,
  // so the first hosts have theirs while the rest are made; the loop relays the rest at the end.
  void RelayWhenFull(std::vector<Request>& requests);
  void Complete(const std::string& request_id, absl::StatusOr<herd::v1::AgentMessage> r);
  // The callback of one host's answer to a fan-out action.
  struct ActionGather;
  static Done GatherAction(std::shared_ptr<ActionGather> g, size_t i,
                           const AgentLimits& limits);

  HostRegistry& registry_;
  SendPool& sends_;
  AuditLog& audit_;
  const Clock& clock_;
  const HubOptions& options_;
  std::shared_ptr<spdlog::logger> log_;

  const std::string request_prefix_;  // see NewRequestId
  std::atomic<uint64_t> next_request_{1};
  std::atomic<bool> stopped_{false};

  mutable absl::Mutex pending_mu_;
  std::map<std::string, Pending> pending_ ABSL_GUARDED_BY(pending_mu_);
};

}  // namespace herd::controlplane
