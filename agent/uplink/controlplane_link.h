// ControlPlaneLink: the agent's side of the control plane, wiring the Uplink (on gRPC, through
// GrpcUplinkTransport) to the supervisor and the modules. It builds a metrics batch every
// interval (host usage, every unit's sample and probes) and hands it to the Uplink; it applies
// config snapshots through the ModuleManager, runs actions, restarts (waiting for health) and
// log requests, and forwards unit events. Everything runs on the loop thread: the Uplink
// calls it there, and nothing here blocks (long work answers later through callbacks).
#pragma once

#include <map>
#include <memory>
#include <string>

#include "agent/loop/event_loop.h"
#include "agent/modules/module_converger.h"
#include "agent/modules/module_manager.h"
#include "agent/procfs/host_sampler.h"
#include "agent/supervisor/supervisor.h"
#include "agent/uplink/grpc_uplink_transport.h"
#include "agent/uplink/uplink.h"

namespace herd::agent {

class ControlPlaneLink final : public UplinkHandler, private ArtifactFetcher {
 public:
  ControlPlaneLink(EventLoop& loop, Supervisor& supervisor, ModuleManager& modules,
                   UplinkOptions options);
  ~ControlPlaneLink() override;

  // Call on the loop thread after the modules are loaded.
  absl::Status Start();
  // Call on the loop thread; stops the uplink (ends its stream).
  void Stop();
  // GetInfo's control plane fields (loop thread).
  void FillInfo(herd::v1::AgentInfo* info) const;

  // UplinkHandler (loop thread).
  std::vector<herd::v1::ModuleInventory> Inventory() override;
  std::vector<herd::v1::DeploymentStatus> Deployments() override { return converger_.Status(); }
  uint64_t AckedConfigVersion() override;
  void OnConfig(const herd::v1::ConfigSnapshot& snap,
                std::function<void(herd::v1::ConfigAck)> done) override;
  void OnAction(const herd::v1::ActionRequest& req,
                std::function<void(herd::v1::ActionResult)> done) override;
  void OnRestart(const herd::v1::RestartRequest& req,
                 std::function<void(herd::v1::RestartResult)> done) override;
  void OnLogs(const herd::v1::HostLogsRequest& req,
              std::function<void(herd::v1::LogChunk)> send) override;
  void OnCancel(const std::string& request_id) override;
  void OnWelcome(const herd::v1::Welcome& welcome) override;

 private:
  // The converger's artifacts come through the uplink (the host credential), at most this big.
  static constexpr uint64_t kMaxArtifactBytes = 512ull << 20;
  void Fetch(const std::string& sha256, const std::string& dest,
             std::function<void(absl::Status)> done) override;
  void ScheduleMetrics();
  void SendMetrics();
  void RestartOne(const std::string& unit, uint32_t wait_healthy_ms,
                  std::function<void(herd::v1::UnitRestartResult)> done);

  EventLoop& loop_;
  Supervisor& supervisor_;
  ModuleManager& modules_;
  ModuleManagerModules converger_modules_;
  ModuleConverger converger_;
  // Every replica's address, comma-separated: where the agent's configuration is owned
  // (what agentctl --controlplane takes, for the messages that point there).
  const std::string addresses_;
  GrpcUplinkTransport transport_;
  std::unique_ptr<Uplink> uplink_;
  std::shared_ptr<spdlog::logger> log_;
  HostSampler host_sampler_;
  EventLoop::Handle metrics_timer_ = 0;
  uint64_t event_listener_ = 0;  // Supervisor::AddEventListener's id
  uint32_t metrics_interval_ms_ = 1000;
  // Modules' widgets, actions and issue counts as last sent in the inventory (loop).
  std::string shown_in_inventory_;
  std::map<std::string, uint64_t> follows_;  // log request id → supervisor follow id (loop)
  // Cleared at Stop: timers and callbacks that run afterwards do nothing.
  std::shared_ptr<bool> alive_ = std::make_shared<bool>(true);
};

}  // namespace herd::agent
