// The Fleet API (proto/herd/v1/fleet.proto) over the hub's narrow interfaces
// (controlplane/core/fleet_interfaces.h): authenticates each call from its bearer token
// (viewer: reads; operator: changes), validates the request, and answers. Its streams' token
// and stall checks run on the control plane's Scheduler (a PeriodicTask), not a thread.
#pragma once

#include <atomic>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <string>

#include "common/scheduler.h"
#include "controlplane/cluster/cluster.h"
#include "controlplane/core/artifact_store.h"
#include "controlplane/core/fleet_interfaces.h"
#include "controlplane/fleet/rollouts.h"
#include "controlplane/fleet/stream_queue.h"
#include "herd/v1/fleet.grpc.pb.h"

namespace herd::controlplane {

// The Fleet API's server streams and how many each may hold.
struct FleetStreamOptions {
  // How often open streams' tokens are looked up again (StreamTokens).
  absl::Duration token_recheck = absl::Seconds(10);
  // Each stream's queue (StreamQueue); StreamLogs keeps more, shorter messages (4096).
  StreamQueueLimits queue;
  // Streams open at once, in all and per token: one client (or one leaked script) cannot
  // take every slot. The dashboard's streams come through here too, with the viewer's token.
  size_t max_streams = 1024;
  size_t max_streams_per_token = 32;
};

// The Fleet API's open streams (WatchMetrics, WatchRollout, StreamLogs, and the
// dashboard's, which come through them), by API token:
//   - a stream is given a slot only while its token holds fewer than max_per_token and the
//     server fewer than max in all (refusals counted);
//   - their tokens are looked up again every `every` (a PeriodicTask on the Scheduler, on
//     its monotonic clock): a stream stays open for hours, and a token revoked meanwhile
//     (`controlplane token revoke`, which writes the store a running control plane reads)
//     ends the streams opened with it, with UNAUTHENTICATED. A store that fails to answer
//     ends nothing (the next round asks again);
//   - each round also polls every stream, which ends itself if its reader has stalled (a
//     stream whose messages stopped arriving would not notice otherwise).
class StreamTokens {
 public:
  using End = std::function<void(const grpc::Status&)>;
  using Poll = std::function<void()>;
  // Checks every `every` on `scheduler` (which must outlive this).
  StreamTokens(Store& store, Scheduler& scheduler, absl::Duration every, size_t max = 1024,
               size_t max_per_token = 32);
  ~StreamTokens();
  StreamTokens(const StreamTokens&) = delete;
  StreamTokens& operator=(const StreamTokens&) = delete;

  // A stream opened with the token whose secret hashes to `token_hash` (named `who`, for
  // the log); `end` ends it (and must tolerate a stream that has ended already); `poll`, if
  // set, runs every round. Returns the id for Remove (0, and nothing watched, for an empty
  // hash), or RESOURCE_EXHAUSTED when the token (or the server) has no slot left.
  absl::StatusOr<uint64_t> Add(std::string token_hash, const std::string& who, End end,
                               Poll poll = nullptr);
  void Remove(uint64_t id);
  // One round now (what the scheduler runs every `every`).
  void Check();

  // For /metrics.
  struct Counts {
    uint64_t open = 0, refused = 0, dropped = 0, stalled = 0;
  };
  Counts counts() const;
  void CountDropped(uint64_t n) { dropped_.fetch_add(n, std::memory_order_relaxed); }
  void CountStalled() { stalled_.fetch_add(1, std::memory_order_relaxed); }

 private:
  struct Open {
    std::string token_hash;
    End end;
    Poll poll;
  };
  Store& store_;
  const Clock& clock_;  // the scheduler's
  const size_t max_, max_per_token_;
  std::atomic<uint64_t> refused_{0}, dropped_{0}, stalled_{0};
  mutable absl::Mutex mu_;
  // Refusals are logged at most every 10 s (monotonic).
  absl::Time refused_logged_at_ ABSL_GUARDED_BY(mu_) = absl::InfinitePast();
  uint64_t refused_unlogged_ ABSL_GUARDED_BY(mu_) = 0;
  std::shared_ptr<spdlog::logger> log_;
  std::map<uint64_t, Open> open_ ABSL_GUARDED_BY(mu_);
  std::map<std::string, size_t> per_token_ ABSL_GUARDED_BY(mu_);  // token hash → streams
  uint64_t next_ ABSL_GUARDED_BY(mu_) = 1;
  PeriodicTask checker_;  // last: stopped first, before what Check uses goes
};

// What the Fleet API uses of the hub, one reference per concern (the hub implements them
// all: FleetBackends::Of(hub)).
struct FleetBackends {
  HostDirectory& hosts;
  ConfigService& config;
  RequestRelay& relay;
  MetricsFeed& metrics;
  AuditLog& audit;

  template <typename T>
  static FleetBackends Of(T& all) {
    return FleetBackends{all, all, all, all, all};
  }
};

class PeerRouter;

class FleetService final : public herd::v1::Fleet::CallbackService {
 public:
  // `store` holds the API tokens. `scheduler` (which must outlive this) runs the streams'
  // checks; its clock's monotonic reading times the streams' stalls.
  FleetService(FleetBackends backends, Store& store, RolloutEngine& rollouts,
               Scheduler& scheduler, FleetStreamOptions streams = {})
      : fleet_(backends),
        store_(store),
        rollouts_(rollouts),
        streams_(streams),
        clock_(scheduler.clock()),
        stream_tokens_(store, scheduler, streams.token_recheck, streams.max_streams,
                       streams.max_streams_per_token) {}

  grpc::ServerUnaryReactor* ListHosts(grpc::CallbackServerContext* ctx,
                                      const herd::v1::ListHostsRequest* req,
                                      herd::v1::ListHostsResponse* resp) override;
  grpc::ServerUnaryReactor* GetHost(grpc::CallbackServerContext* ctx,
                                    const herd::v1::GetHostRequest* req,
                                    herd::v1::HostDetail* resp) override;
  grpc::ServerUnaryReactor* ListModules(grpc::CallbackServerContext* ctx,
                                        const herd::v1::ListModulesRequest* req,
                                        herd::v1::ListModulesResponse* resp) override;
  grpc::ServerUnaryReactor* QuerySeries(grpc::CallbackServerContext* ctx,
                                        const herd::v1::QuerySeriesRequest* req,
                                        herd::v1::Series* resp) override;
  grpc::ServerWriteReactor<herd::v1::HostMetrics>* WatchMetrics(
      grpc::CallbackServerContext* ctx, const herd::v1::WatchMetricsRequest* req) override;
  grpc::ServerUnaryReactor* Deploy(grpc::CallbackServerContext* ctx,
                                   const herd::v1::DeployRequest* req,
                                   herd::v1::DeployResponse* resp) override;
  grpc::ServerUnaryReactor* Undeploy(grpc::CallbackServerContext* ctx,
                                     const herd::v1::UndeployRequest* req,
                                     herd::v1::DeployResponse* resp) override;
  grpc::ServerUnaryReactor* ListDeployments(grpc::CallbackServerContext* ctx,
                                            const herd::v1::ListDeploymentsRequest* req,
                                            herd::v1::ListDeploymentsResponse* resp) override;
  // Artifacts (fleet_artifacts.cc).
  grpc::ServerReadReactor<herd::v1::ArtifactUpload>* UploadArtifact(
      grpc::CallbackServerContext* ctx, herd::v1::Artifact* resp) override;
  grpc::ServerUnaryReactor* ListArtifacts(grpc::CallbackServerContext* ctx,
                                          const herd::v1::ListArtifactsRequest* req,
                                          herd::v1::ListArtifactsResponse* resp) override;
  grpc::ServerUnaryReactor* GetConfig(grpc::CallbackServerContext* ctx,
                                      const herd::v1::FleetGetConfigRequest* req,
                                      herd::v1::FleetConfig* resp) override;
  grpc::ServerUnaryReactor* SetConfig(grpc::CallbackServerContext* ctx,
                                      const herd::v1::FleetSetConfigRequest* req,
                                      herd::v1::FleetConfigChange* resp) override;
  grpc::ServerUnaryReactor* UnsetConfig(grpc::CallbackServerContext* ctx,
                                        const herd::v1::FleetUnsetConfigRequest* req,
                                        herd::v1::FleetConfigChange* resp) override;
  grpc::ServerUnaryReactor* Restart(grpc::CallbackServerContext* ctx,
                                    const herd::v1::FleetRestartRequest* req,
                                    herd::v1::Rollout* resp) override;
  grpc::ServerUnaryReactor* ListRollouts(grpc::CallbackServerContext* ctx,
                                         const herd::v1::ListRolloutsRequest* req,
                                         herd::v1::ListRolloutsResponse* resp) override;
  grpc::ServerUnaryReactor* GetRollout(grpc::CallbackServerContext* ctx,
                                       const herd::v1::GetRolloutRequest* req,
                                       herd::v1::Rollout* resp) override;
  grpc::ServerWriteReactor<herd::v1::Rollout>* WatchRollout(
      grpc::CallbackServerContext* ctx, const herd::v1::GetRolloutRequest* req) override;
  grpc::ServerUnaryReactor* TriggerAction(grpc::CallbackServerContext* ctx,
                                          const herd::v1::FleetActionRequest* req,
                                          herd::v1::FleetActionResponse* resp) override;
  grpc::ServerWriteReactor<herd::v1::LogLine>* StreamLogs(
      grpc::CallbackServerContext* ctx, const herd::v1::FleetLogsRequest* req) override;
  grpc::ServerUnaryReactor* ListAudit(grpc::CallbackServerContext* ctx,
                                      const herd::v1::ListAuditRequest* req,
                                      herd::v1::ListAuditResponse* resp) override;
  grpc::ServerUnaryReactor* WhoAmI(grpc::CallbackServerContext* ctx,
                                   const herd::v1::WhoAmIRequest* req,
                                   herd::v1::WhoAmIResponse* resp) override;

  // The caller's identity from its bearer token, and whether it may change things.
  absl::StatusOr<Actor> Authenticate(const grpc::ServerContextBase& ctx, bool needs_operator);
  // The same check for a bearer token that came another way (the HTTP server's /metrics).
  absl::StatusOr<Actor> AuthenticateToken(const std::string& bearer, bool needs_operator);

  // With several replicas (issue 22): calls are answered for the whole fleet through
  // `router` (peer_router.h), which must outlive this and be set before serving. Without
  // one, this replica is the fleet (and a call carrying a peer secret is refused).
  void RouteThrough(PeerRouter* router) { router_ = router; }
  // Where uploaded module artifacts are kept (must outlive this); without it, uploads and
  // artifact deployments are refused with how to enable them.
  void KeepArtifacts(ArtifactStore* artifacts) { artifacts_ = artifacts; }
  const ArtifactStore* artifacts() const { return artifacts_; }

  // The streams' numbers, for /metrics.
  StreamTokens::Counts stream_counts() const { return stream_tokens_.counts(); }
  // One round of the streams' token and stall check now (for tests).
  void CheckStreams() { stream_tokens_.Check(); }

 private:
  // The call carries this cluster's peer secret (checked by Authenticate): answered from
  // this replica's hosts only, never forwarded.
  bool LocalScope(const grpc::ServerContextBase& ctx) const;
  // There are other replicas and the call is not in local scope: it is for the whole fleet.
  bool Routes(const grpc::ServerContextBase& ctx) const;
  // The peer holding `host` (an id or a hostname); nullopt when this replica or none does.
  std::optional<ReplicaInfo> PeerHolding(const std::string& host) const;

  // A deploy of "sha256:HEX": the artifact exists here, and gives the name and version.
  absl::StatusOr<herd::v1::DeployRequest> WithArtifact(herd::v1::DeployRequest req) const;
  // A deploy that changes the version of a declaration in force on online hosts, as a
  // rollout (fleet_deploy.cc); nullopt when it is applied at once instead.
  absl::StatusOr<std::optional<herd::v1::DeployResponse>> DeployAsRollout(
      const herd::v1::DeployRequest& req, const Actor& actor);

  PeerRouter* router_ = nullptr;
  ArtifactStore* artifacts_ = nullptr;
  const FleetBackends fleet_;
  Store& store_;
  RolloutEngine& rollouts_;
  const FleetStreamOptions streams_;
  const Clock& clock_;
  StreamTokens stream_tokens_;
};

grpc::Status ToGrpc(const absl::Status& s);

}  // namespace herd::controlplane
