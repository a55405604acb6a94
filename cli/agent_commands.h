// The agentctl commands that talk to the local agent: one RPC each (top repeats one),
// rendering a table or JSON. Each returns the process exit code and prints errors that say
// what to do (agentd not running, unknown unit, invalid field).
#pragma once

#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "herd/v1/agent.grpc.pb.h"

namespace herd::cli {

struct ClientOptions {
  std::string home;
  std::string socket;  // empty = <home>/agent.sock
  bool json = false;
  int timeout_seconds = 60;
};

// Fields of an app given on the command line (agentctl start SCRIPT --name ...). Values
// are passed through as text: the agent validates them with the same messages as for an
// ecosystem file.
struct StartFlags {
  std::string name, interpreter, interpreter_args, cwd, max_memory_restart, cron_restart,
      memory_max;
  std::string min_uptime, restart_delay, exp_backoff_restart_delay, kill_timeout,
      log_date_format, out_file, error_file;
  std::optional<uint32_t> max_restarts, pids_max;
  std::vector<std::string> env, pid_files, only, args;
  std::vector<int> stop_exit_codes;
  bool no_autorestart = false, merge_logs = false, time = false;
  // Replace a unit of the same name (a script start refuses one otherwise).
  bool force = false;
};

class AgentCommands {
 public:
  explicit AgentCommands(ClientOptions options);

  int Info();
  // The local agent's info, or nothing (silently) if it is not reachable.
  std::optional<herd::v1::AgentInfo> TryInfo();
  int List();
  int Describe(const std::string& name);
  int Start(const std::string& target, const StartFlags& flags);
  int Stop(const std::string& name);
  int Restart(const std::string& name);
  int Delete(const std::string& name);
  int Logs(const std::string& name, uint32_t lines, bool follow);
  // iterations 0 = until interrupted.
  int Top(double interval_seconds, int iterations);
  int Kill();
  // The unit's last `n` log lines (both streams), for `top`'s module pane.
  std::vector<std::string> LastLines(const std::string& name, uint32_t n);
  // Empties the unit's (or every unit's) log files, as `pm2 flush` does: truncated here, on
  // this host; agentd appends (O_APPEND), so it goes on writing at the new end.
  int Flush(const std::string& name);

  // Modules.
  int Install(const std::string& source);
  int Uninstall(const std::string& name, bool keep_config);
  // NAME or NAME@VERSION.
  int UpdateModule(const std::string& target);
  // Names for shell completion: "units", "modules" or "keys" (MODULE:KEY), one per line.
  int CompleteNames(const std::string& kind);
  int Conf(const std::string& module);
  // target is MODULE:KEY.
  int Set(const std::string& target, const std::string& value, bool force);
  int Unset(const std::string& target);
  // params are KEY=VALUE.
  // A module's issues, grouped; with clear, forgets them (kClearIssuesAction).
  int Issues(const std::string& module, bool clear);
  int Action(const std::string& module, const std::string& action,
             const std::vector<std::string>& params, int timeout_seconds);

 private:
  bool Connect();
  int Fail(const grpc::Status& s);
  grpc::Status RunSteps(
      bool quiet,
      const std::function<std::unique_ptr<grpc::ClientReader<herd::v1::InstallStep>>(
          grpc::ClientContext*)>& steps,
      const std::function<grpc::Status(grpc::ClientContext*)>& unary,
      herd::v1::ModuleInfo* info);
  int PrintUnits(const herd::v1::UnitsResponse& r, const char* verb);

  ClientOptions options_;
  std::string socket_;
  std::unique_ptr<herd::v1::Agent::Stub> stub_;
};

}  // namespace herd::cli
