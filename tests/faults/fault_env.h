// What the fault tests (tests/faults) inject, and how they take it away again.
//
// Every fault lives in namespaces the test process creates for itself, so that nothing it
// does reaches the machine it runs on and nothing outlives it, even when the test is killed:
//   - EnterPrivateNamespaces: a private mount namespace (tmpfs mounts, /run/netns), and
//     optionally a private network namespace (veths, addresses, nft tables). The processes
//     the test starts inherit them; when the last of them exits, the namespaces go with it.
//   - AgentNetwork: a second network namespace for agents, joined to the test's by a veth
//     pair; Cut() drops every packet on it in both directions (an nft table in the agent's
//     namespace) while both ends keep their sockets, Heal() removes the table.
//   - TmpfsMount: a small tmpfs over a directory; FillDisk() fills it up to ENOSPC.
// Each still undoes what it did in its destructor, so a test that fails midway leaves its
// namespaces empty for the processes still running in them.
//
// The tests need root (CAP_SYS_ADMIN, CAP_NET_ADMIN), iproute2 and nftables
// (scripts/install-deps.sh). Without them, the helpers return an error that says what is
// missing: the tests fail with it rather than pass without having injected anything.
#pragma once

#include <sys/types.h>

#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "nlohmann/json.hpp"
#include "tests/fakes/file_util.h"

namespace herd::testing {

class AgentHarness;

// The absolute path of a system tool (execv needs one), or an error naming the Debian
// package that provides it.
absl::StatusOr<std::string> Tool(const std::string& name, const std::string& package);

// Runs argv; an error with its output unless it exits 0.
absl::Status RunOk(const std::vector<std::string>& argv);

// unshare(2) this process into a new mount namespace (with "/" made private, so mounts made
// here are seen only by this process and its children) and, with `network`, a new network
// namespace whose loopback is up. Call while the process is single-threaded (before any
// gRPC channel), i.e. at the start of a test.
absl::Status EnterPrivateNamespaces(bool network);

// A network namespace for agents, linked to the test's own by a veth pair:
// host_address() is the test's end (where a control plane listens), agent_address() the
// agent's. Needs EnterPrivateNamespaces(true) first: the names and addresses are then
// private to the test.
class AgentNetwork {
 public:
  AgentNetwork() = default;
  ~AgentNetwork();
  AgentNetwork(const AgentNetwork&) = delete;
  AgentNetwork& operator=(const AgentNetwork&) = delete;

  absl::Status Create();
  // The command prefix that runs a program in the agent's namespace (it execs the program,
  // so the pid is the program's).
  std::vector<std::string> Prefix() const;
  const std::string& host_address() const { return host_address_; }
  const std::string& agent_address() const { return agent_address_; }

  // Drops every packet that crosses the veth, both ways; no RST, no ICMP: to both ends the
  // peer has gone silent.
  absl::Status Cut();
  absl::Status Heal();
  bool cut() const { return cut_; }

 private:
  std::string ip_, nft_;
  std::string ns_ = "herd-agents";
  std::string host_if_ = "herd-cp0", agent_if_ = "herd-ag0";
  std::string host_address_ = "10.213.0.1", agent_address_ = "10.213.0.2";
  bool created_ = false;
  bool cut_ = false;
  std::string rules_file_;
};

// A tmpfs of `bytes` over `dir` (which must exist), unmounted by Unmount or the destructor
// (lazily if something still holds it open); `dir` is then removed if it is empty.
class TmpfsMount {
 public:
  TmpfsMount() = default;
  ~TmpfsMount();
  TmpfsMount(const TmpfsMount&) = delete;
  TmpfsMount& operator=(const TmpfsMount&) = delete;

  absl::Status Mount(const std::string& dir, size_t bytes);
  absl::Status Unmount();
  const std::string& dir() const { return dir_; }

 private:
  std::string dir_;
};

// Writes `path` until the filesystem is full (ENOSPC); returns the bytes written.
absl::StatusOr<size_t> FillDisk(const std::string& path);
// Free bytes on the filesystem holding `path`.
size_t FreeBytes(const std::string& path);

// Occurrences of `needle` in the file at `path` (0 if unreadable).
size_t CountInFile(const std::string& path, const std::string& needle);

// Generates the Python sample module `name` (agentctl generate) in `dir` and installs it on
// the agent (development mode). `extra_python` is added to its main.py before it runs (more
// actions, say); `env` is merged into its app's environment.
absl::Status InstallPythonModule(AgentHarness& agent, const std::string& name,
                                 const std::string& dir, const std::string& extra_python = "",
                                 const nlohmann::json& env = nlohmann::json::object());
// The module "svc" in AGENT_HOME/src/svc.
absl::Status InstallSvc(AgentHarness& agent);

// A field of agentctl's -o json output as text ("" if absent), or as a number (0 if absent):
// 64-bit fields come as strings, others as numbers.
std::string JsonStr(const nlohmann::json& j, const char* key);
int64_t JsonInt(const nlohmann::json& j, const char* key);

// The value of an unlabelled sample `name` in a Prometheus text exposition, or -1.
double PromValue(const std::string& text, const std::string& name);

// Prints "[fault] NAME took S s" to stderr: each fault test reports its wall time.
class Stopwatch {
 public:
  explicit Stopwatch(std::string name);
  ~Stopwatch();

 private:
  std::string name_;
  int64_t start_ns_;
};

}  // namespace herd::testing
