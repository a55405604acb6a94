// The agentctl commands that talk to the control plane's Fleet API (proto/herd/v1/fleet.proto):
// hosts, fleet-wide modules, config at a scope, rollouts, action fan-out, remote logs, audit.
#pragma once

#include <map>
#include <memory>
#include <optional>
#include <string>
#include <optional>
#include <vector>

#include "grpcpp/security/credentials.h"
#include "herd/v1/fleet.grpc.pb.h"

namespace herd::cli {

struct FleetOptions {
  // host:port, or host:port,host:port,... (replicas: the first that answers is used)
  std::string address;
  std::string token;       // bearer secret (from --token-file / HERD_TOKEN)
  std::string token_file;  // for messages
  std::string tls_ca;      // PEM: use TLS and trust this CA
  std::string tls_cert, tls_key;
  bool json = false;
  int timeout_seconds = 60;
};

// Where a command applies: exactly one of them (or none: every host).
struct TargetFlags {
  std::string selector;
  std::vector<std::string> hosts;
  bool all = false;
  bool global = false;  // config only
  bool any() const { return !selector.empty() || !hosts.empty() || all || global; }
};

struct RolloutFlags {
  std::string batch;  // "N" or "P%"
  uint32_t max_unavailable = 0;
  std::string wait_healthy;  // duration
  uint32_t failure_threshold = 0;
  bool no_wait = false;
};

// --batch and --wait-healthy read; nullopt after saying what is wrong.
struct RolloutNumbers {
  uint32_t batch_size = 0, batch_percent = 0, wait_healthy_ms = 0;
};
std::optional<RolloutNumbers> ParseRolloutFlags(const RolloutFlags& r);

// One config scope from the flags (--global, --selector, one --host); false after saying
// what is wrong.
bool ToScope(const TargetFlags& t, herd::v1::Scope* scope);

class FleetCommands {
 public:
  explicit FleetCommands(FleetOptions options);

  int Hosts(const TargetFlags& t);
  int Host(const std::string& host);
  int Modules(const std::string& module, const TargetFlags& t);
  int Conf(const std::string& module, const std::string& host);
  int Set(const std::string& target, const std::string& value, const TargetFlags& scope,
          bool force);
  int Unset(const std::string& target, const TargetFlags& scope);
  int Restart(const std::string& module, const TargetFlags& t, const RolloutFlags& r);
  int Rollouts(uint32_t limit);
  int Rollout(const std::string& id, bool watch);
  int Action(const std::string& module, const std::string& action,
             const std::vector<std::string>& params, int timeout_seconds, const TargetFlags& t);
  int Logs(const std::string& host, const std::string& unit, uint32_t lines, bool follow);
  int Audit(uint32_t limit);
  // Deployments (fleet_deploy.cc).
  struct DeployFlags {
    std::string source, name, version;
    // SOURCE is a path on the hosts: never uploaded, even if it exists here.
    bool host_path = false;
    // A version change runs as a rollout (DeployRequest): its flags, as restart's.
    RolloutFlags rollout;
    bool no_rollback = false, all_at_once = false;
    std::string host_timeout;  // duration
  };
  int Deploy(const DeployFlags& flags, const TargetFlags& scope);
  int Artifacts(const std::string& name);
  int Undeploy(const std::string& name, const TargetFlags& scope);
  int Deployments(const std::string& name);
  int Series(const std::string& host, const std::string& unit, const std::string& metric);
  // Prints each metrics batch as it arrives (count 0 = until interrupted).
  int Watch(const TargetFlags& t, int count);

 private:
  // Uploads a local .tgz or directory (packed with npm): the artifact, or nullopt (the
  // error printed).
  std::optional<herd::v1::Artifact> Upload(const std::string& path);
  bool Connect();
  std::shared_ptr<grpc::Channel> PickReplica(
      const std::shared_ptr<grpc::ChannelCredentials>& creds);
  int Fail(const grpc::Status& s);
  std::unique_ptr<grpc::ClientContext> Context(int timeout_seconds) const;
  int WatchRollout(const std::string& id);

  FleetOptions options_;
  std::unique_ptr<herd::v1::Fleet::Stub> stub_;
};

}  // namespace herd::cli
