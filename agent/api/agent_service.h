// AgentService: the local gRPC API (herd.v1.Agent) on $HERD_HOME/agent.sock, implemented
// with gRPC's callback API. Handlers never touch supervisor state themselves: they post the
// work to the agent's EventLoop and finish the RPC from there, so the supervisor stays
// single-threaded and no gRPC thread ever blocks on a child process.
//
// Permission model: the socket is mode 0660 in the agent's home; whoever can open it may
// drive the agent (like the Docker socket). Inputs are still validated here: unit names,
// the ecosystem document (size-capped, parsed with field-level errors), base_dir.
#pragma once

#include <functional>
#include <string>

#include "agent/logs/log_writer.h"
#include "agent/loop/event_loop.h"
#include "agent/modules/module_manager.h"
#include "agent/supervisor/supervisor.h"
#include "herd/v1/agent.grpc.pb.h"

namespace herd::agent {

struct AgentServiceOptions {
  std::string home;
  std::string search_path;  // PATH for resolving scripts and interpreters
  absl::Time started_at;
  uint64_t sample_interval_ms = 1000;
  // Called (on the loop thread) when a client asks the agent to shut down.
  std::function<void()> on_shutdown;
  // Adds the control plane link's state to GetInfo (on the loop thread); may be empty.
  std::function<void(herd::v1::AgentInfo*)> fill_info;
};

class AgentService final : public herd::v1::Agent::CallbackService {
 public:
  // Largest ecosystem document accepted by Start.
  static constexpr size_t kMaxEcosystemBytes = 1 << 20;

  AgentService(EventLoop& loop, Supervisor& supervisor, ModuleManager& modules, LogWriter& logs,
               AgentServiceOptions options);

  grpc::ServerUnaryReactor* GetInfo(grpc::CallbackServerContext* ctx,
                                    const herd::v1::GetInfoRequest* req,
                                    herd::v1::AgentInfo* resp) override;
  grpc::ServerUnaryReactor* List(grpc::CallbackServerContext* ctx,
                                 const herd::v1::ListRequest* req,
                                 herd::v1::ListResponse* resp) override;
  grpc::ServerUnaryReactor* Describe(grpc::CallbackServerContext* ctx,
                                     const herd::v1::DescribeRequest* req,
                                     herd::v1::UnitDetail* resp) override;
  grpc::ServerUnaryReactor* Start(grpc::CallbackServerContext* ctx,
                                  const herd::v1::StartRequest* req,
                                  herd::v1::UnitsResponse* resp) override;
  grpc::ServerUnaryReactor* Stop(grpc::CallbackServerContext* ctx,
                                 const herd::v1::UnitSelector* req,
                                 herd::v1::UnitsResponse* resp) override;
  grpc::ServerUnaryReactor* Restart(grpc::CallbackServerContext* ctx,
                                    const herd::v1::UnitSelector* req,
                                    herd::v1::UnitsResponse* resp) override;
  grpc::ServerUnaryReactor* Delete(grpc::CallbackServerContext* ctx,
                                   const herd::v1::UnitSelector* req,
                                   herd::v1::UnitsResponse* resp) override;
  grpc::ServerWriteReactor<herd::v1::LogLine>* Logs(grpc::CallbackServerContext* ctx,
                                                    const herd::v1::LogsRequest* req) override;
  grpc::ServerUnaryReactor* Shutdown(grpc::CallbackServerContext* ctx,
                                     const herd::v1::ShutdownRequest* req,
                                     herd::v1::ShutdownResponse* resp) override;
  grpc::ServerUnaryReactor* InstallModule(grpc::CallbackServerContext* ctx,
                                          const herd::v1::InstallModuleRequest* req,
                                          herd::v1::ModuleInfo* resp) override;
  grpc::ServerUnaryReactor* UninstallModule(grpc::CallbackServerContext* ctx,
                                            const herd::v1::UninstallModuleRequest* req,
                                            herd::v1::UninstallModuleResponse* resp) override;
  grpc::ServerUnaryReactor* UpdateModule(grpc::CallbackServerContext* ctx,
                                         const herd::v1::UpdateModuleRequest* req,
                                         herd::v1::ModuleInfo* resp) override;
  grpc::ServerWriteReactor<herd::v1::InstallStep>* InstallModuleSteps(
      grpc::CallbackServerContext* ctx, const herd::v1::InstallModuleRequest* req) override;
  grpc::ServerWriteReactor<herd::v1::InstallStep>* UpdateModuleSteps(
      grpc::CallbackServerContext* ctx, const herd::v1::UpdateModuleRequest* req) override;
  grpc::ServerUnaryReactor* GetConfig(grpc::CallbackServerContext* ctx,
                                      const herd::v1::GetConfigRequest* req,
                                      herd::v1::GetConfigResponse* resp) override;
  grpc::ServerUnaryReactor* SetConfig(grpc::CallbackServerContext* ctx,
                                      const herd::v1::SetConfigRequest* req,
                                      herd::v1::ModuleConfig* resp) override;
  grpc::ServerUnaryReactor* UnsetConfig(grpc::CallbackServerContext* ctx,
                                        const herd::v1::UnsetConfigRequest* req,
                                        herd::v1::ModuleConfig* resp) override;
  grpc::ServerUnaryReactor* TriggerAction(grpc::CallbackServerContext* ctx,
                                          const herd::v1::TriggerActionRequest* req,
                                          herd::v1::TriggerActionResponse* resp) override;

 private:
  // An error naming the first app whose name is already a unit's (new_only starts); loop
  // thread.
  absl::Status TakenName(const std::vector<herd::v1::AppSpec>& specs) const;
  class LogsReactor;
  class StepsReactor;
  enum class SelectorOp { kStop, kRestart, kDelete };
  grpc::ServerUnaryReactor* RunSelectorOp(grpc::CallbackServerContext* ctx,
                                          const herd::v1::UnitSelector* req,
                                          herd::v1::UnitsResponse* resp, SelectorOp op);

  EventLoop& loop_;
  Supervisor& supervisor_;
  ModuleManager& modules_;
  LogWriter& logs_;
  const AgentServiceOptions options_;
};

grpc::Status ToGrpc(const absl::Status& s);

}  // namespace herd::agent
