// The Fleet API (proto/herd/v1/fleet.proto) over the Hub: authenticates each call from its
// bearer token (viewer: reads; operator: changes), validates the request, and answers.
#pragma once

#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <string>
#include <thread>

#include "controlplane/core/hub.h"
#include "controlplane/fleet/rollouts.h"
#include "herd/v1/fleet.grpc.pb.h"

namespace herd::controlplane {

// The API tokens of the Fleet API's open streams (WatchMetrics, WatchRollout, StreamLogs,
// and the dashboard's, which come through them), looked up again every `every`: a stream
// stays open for hours, and a token revoked meanwhile (`controlplane token revoke`, which
// writes the store a running control plane reads) ends the streams opened with it, with
// UNAUTHENTICATED. A store that fails to answer ends nothing (the next round asks again).
class StreamTokens {
 public:
  using End = std::function<void(const grpc::Status&)>;
  StreamTokens(Store& store, absl::Duration every);
  ~StreamTokens();
  StreamTokens(const StreamTokens&) = delete;
  StreamTokens& operator=(const StreamTokens&) = delete;

  // A stream opened with the token whose secret hashes to `token_hash`; `end` ends it (and
  // must tolerate a stream that has ended already). Returns the id for Remove (0, and
  // nothing watched, for an empty hash).
  uint64_t Add(std::string token_hash, End end);
  void Remove(uint64_t id);
  // One round now (what the thread does every `every`).
  void Check();

 private:
  struct Open {
    std::string token_hash;
    End end;
  };
  Store& store_;
  const absl::Duration every_;
  std::shared_ptr<spdlog::logger> log_;
  absl::Mutex mu_;
  std::map<uint64_t, Open> open_ ABSL_GUARDED_BY(mu_);
  uint64_t next_ ABSL_GUARDED_BY(mu_) = 1;
  bool stopping_ ABSL_GUARDED_BY(mu_) = false;
  std::thread thread_;
};

class FleetService final : public herd::v1::Fleet::CallbackService {
 public:
  // `token_recheck`: how often open streams' tokens are looked up again (StreamTokens).
  FleetService(Hub& hub, Store& store, RolloutEngine& rollouts,
               absl::Duration token_recheck = absl::Seconds(10))
      : hub_(hub), store_(store), rollouts_(rollouts), stream_tokens_(store, token_recheck) {}

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

 private:
  Hub& hub_;
  Store& store_;
  RolloutEngine& rollouts_;
  StreamTokens stream_tokens_;
};

grpc::Status ToGrpc(const absl::Status& s);

}  // namespace herd::controlplane
