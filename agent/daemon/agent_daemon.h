// AgentDaemon: wires agentd together and runs it: the home directory and its lock, the
// event loop with its signalfd, the sampler, log writer, state file, supervisor, module
// manager, the control plane link (when given one), and agentctl's gRPC API on
// $HERD_HOME/agent.sock (LocalApi, agent/daemon/local_api.h). main() only parses flags into
// AgentOptions.
//
// Lifecycle: RunAgent() restores the previous state (resurrect), serves until SIGTERM/SIGINT
// or a Shutdown RPC, then stops, in this order: the link; every unit, gracefully (SIGTERM,
// SIGKILL after kill_timeout); the local API (on a thread of its own, as its calls in flight
// may need the loop) and the loop. Once the loop has returned, cleanup guards remove the
// API's socket, flush the units' logs and write the state file, so the next start runs the
// same units; an error before serving releases only what had started.
#pragma once

#include <map>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/time/time.h"

namespace herd::agent {

struct AgentOptions {
  std::string home;
  absl::Duration sample_interval = absl::Seconds(1);
  absl::Duration smaps_interval = absl::Seconds(10);
  uint64_t log_max_bytes = 10 << 20;
  uint32_t log_retain = 5;
  // Where /proc is (tests may point elsewhere).
  std::string proc_root = "/proc";
  // Written once the socket accepts calls (used by --daemon to release the parent).
  int ready_fd = -1;
  // Control plane link: one address per replica (empty: standalone).
  std::vector<std::string> controlplane;
  std::string join_token_file;
  std::map<std::string, std::string> labels;
  std::string tls_ca, tls_cert, tls_key;
  // Metric batches kept while the control plane is unreachable (oldest dropped beyond).
  size_t metrics_buffer = 600;
  // What a module archive may unpack to: bytes and members (refused before extracting).
  uint64_t module_max_unpacked = 512ull << 20;
  uint64_t module_max_files = 20000;
  // Each unit in a cgroup v2 of its own, where the machine allows (unit_cgroups.h).
  bool cgroups = true;
};

// Runs until shutdown; an error means agentd could not start (already running, home not
// writable, corrupt state file) and says how to fix it.
absl::Status RunAgent(const AgentOptions& options);

// Blocks SIGTERM, SIGINT and SIGHUP in the calling thread, and so in every thread it starts
// afterwards: RunAgent reads them from a signalfd, which only works if no thread of the
// process leaves them unblocked (the kernel would deliver them to that thread, and their
// default action ends agentd at once, leaving the units running). Call it before anything
// starts a thread; RunAgent calls it too.
void BlockAgentSignals();

// Creates the home and its logs/ if missing, and refuses a home or logs/ that another user
// could write to (owned by someone else than agentd's user or root, group- or
// world-writable; logs/ a link), as sshd's StrictModes does. RunAgent calls it; main()
// calls it first, before the log file in the home is opened.
absl::Status PrepareHome(const std::string& home);

// The agent socket path for a home directory.
std::string AgentSocketPath(const std::string& home);
// PM2_HOME for the units: where agentd serves PM2's daemon API (rpc.sock, pub.sock).
std::string Pm2Home(const std::string& home);

}  // namespace herd::agent
