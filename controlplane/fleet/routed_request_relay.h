// RoutedRequestRelay: a RequestRelay whose restarts reach hosts wherever they are held
// (issue 22): the rollout engine runs on any replica (and moves when its owner dies), so a
// rollout's RestartOnHosts groups its hosts by holder (ReplicaDirectory::HolderOf): this
// replica's hosts, and those held by none, go to the local relay (which answers the latter
// "not connected"); each peer's go to that peer's herd.v1.Peer service (peer_service.h), with
// the peer secret only (a rollout runs without a user). Results come back per host, in any
// order, to the caller's `done` with the host's position in the call.
//
// Actions and logs pass through to the local relay: the Fleet API routes those itself
// (PeerRouter), with the user's bearer. Stop (or the destructor) cancels the restarts still
// waiting on peers (their hosts fail: the host may have restarted) and waits for them.
// Thread-safe.
#pragma once

#include <map>
#include <memory>

#include "absl/synchronization/mutex.h"
#include "controlplane/core/fleet_interfaces.h"
#include "controlplane/fleet/peer_links.h"

namespace herd::controlplane {

class RoutedRequestRelay final : public RequestRelay {
 public:
  // `local` (the hub's relay) and `links` must outlive this.
  RoutedRequestRelay(RequestRelay& local, PeerLinks& links) : local_(local), links_(links) {}
  ~RoutedRequestRelay() override { Stop(); }
  RoutedRequestRelay(const RoutedRequestRelay&) = delete;
  RoutedRequestRelay& operator=(const RoutedRequestRelay&) = delete;
  void Stop();

  void TriggerAction(
      const herd::v1::FleetActionRequest& req, const Actor& actor,
      std::function<void(absl::StatusOr<herd::v1::FleetActionResponse>)> done) override {
    local_.TriggerAction(req, actor, std::move(done));
  }
  void RestartOnHosts(
      const std::vector<std::string>& host_ids, const std::vector<std::string>& units,
      uint32_t wait_healthy_ms, const std::string& rollout_id,
      std::function<void(size_t, absl::StatusOr<herd::v1::RestartResult>)> done) override;
  std::string StreamLogs(const herd::v1::FleetLogsRequest& req,
                         std::function<void(const herd::v1::LogChunk&)> on_lines,
                         std::function<void(absl::Status)> on_end) override {
    return local_.StreamLogs(req, std::move(on_lines), std::move(on_end));
  }
  void CancelLogs(const std::string& request_id) override { local_.CancelLogs(request_id); }

 private:
  class RestartCall;
  using Done = std::function<void(size_t, absl::StatusOr<herd::v1::RestartResult>)>;
  // One peer's group: `index` are the hosts' positions in the caller's call.
  void Forward(const ReplicaInfo& peer, const std::vector<std::string>& host_ids,
               std::vector<size_t> index, const std::vector<std::string>& units,
               uint32_t wait_healthy_ms, const std::string& rollout_id,
               std::shared_ptr<Done> done);
  void Untrack(grpc::ClientContext* ctx);

  RequestRelay& local_;
  PeerLinks& links_;
  absl::Mutex mu_;
  bool stopped_ ABSL_GUARDED_BY(mu_) = false;
  std::map<grpc::ClientContext*, std::shared_ptr<grpc::ClientContext>> open_
      ABSL_GUARDED_BY(mu_);
};

}  // namespace herd::controlplane
