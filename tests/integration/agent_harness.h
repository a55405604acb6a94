// AgentHarness: a real agentd in a temporary home, driven through the real agentctl.
//
// Every test gets its own home (mkdtemp) and agent; the destructor stops the agent with
// SIGTERM (its units stop with it), kills anything the test left behind, and removes the home.
// Binaries are found through $HERD_BIN_DIR (agentd, agentctl) and $HERD_TEST_BIN_DIR
// (herd_test_child), set by CTest.
#pragma once

#include <sys/types.h>

#include <functional>
#include <string>
#include <vector>

#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "nlohmann/json.hpp"

namespace herd::testing {

struct CmdResult {
  int exit_code = -1;  // 128+signal when killed
  std::string out;
  std::string err;
};

// One HTTP request to address (host:port): the status (0 when no answer) and body.
struct HttpReply {
  int status = 0;
  std::string body;
  std::string content_type;
  std::string error;  // why there is no answer
};
HttpReply HttpCall(const std::string& address, const std::string& method,
                   const std::string& path, const std::string& body = "",
                   const std::string& token = "");

// The source tree ($HERD_SOURCE_DIR, else the one this was built from).
std::string SourceDir();
// A file's content without surrounding whitespace ("" if unreadable): tokens, addresses.
std::string ReadTrimmed(const std::string& path);

// Runs argv to completion (stdin /dev/null), capturing stdout and stderr.
CmdResult Run(const std::vector<std::string>& argv);

// Starts argv (our child) with stdin from /dev/null and stdout+stderr appended to out_path;
// tags the process (and what it starts) with HERD_TEST_HOME=tag when tag is given.
pid_t SpawnLogged(const std::vector<std::string>& argv, const std::string& out_path,
                  const std::string& tag = "");

// True once `pred` holds, checking up to `timeout`: every 20 ms, or after resting as long as
// the last check took if longer (a check that starts a process gets half the CPU at most).
bool WaitFor(const std::function<bool()>& pred, absl::Duration timeout = absl::Seconds(10));

// Makes a test PKI in `dir` with openssl: a CA (ca.pem, ca.key) and, signed by it, a server
// and a client certificate (server.pem/.key, client.pem/.key) for localhost and 127.0.0.1.
// Returns "" or what failed.
std::string MakeTestPki(const std::string& dir);

// True while /proc/PID exists and is not a zombie.
bool ProcessAlive(pid_t pid);

// The program's path on $PATH ("" when it is not installed).
std::string Which(const std::string& prog);
// Writes `content` to `path`, making its parent directories.
void WriteTextFile(const std::string& path, const std::string& content);

class AgentHarness {
 public:
  AgentHarness();
  ~AgentHarness();
  AgentHarness(const AgentHarness&) = delete;
  AgentHarness& operator=(const AgentHarness&) = delete;

  // Starts agentd in the foreground (as our child) and waits until it answers.
  // Returns false (with the agent's output in last_error()) if it does not come up.
  bool StartAgent(const std::vector<std::string>& extra_args = {});
  // A command agentd is started through, which must end by exec'ing it (so agent_pid() is
  // agentd's): `ip netns exec NS`, or `env LD_PRELOAD=...` (tests/faults). Absolute path first.
  void set_command_prefix(std::vector<std::string> prefix) { prefix_ = std::move(prefix); }
  // agentd's stdout and stderr (its log): HOME/agentd.out unless set, e.g. off a home that
  // a test fills up.
  void set_output_path(std::string path) { output_path_ = std::move(path); }
  std::string output_path() const {
    return output_path_.empty() ? Path("agentd.out") : output_path_;
  }
  // SIGTERM and wait: units are stopped gracefully, state is kept for the next start.
  void StopAgent();
  // SIGKILL: the agent dies without stopping its units.
  void KillAgent();
  pid_t agent_pid() const { return agent_pid_; }

  // agentctl --home HOME args...
  CmdResult Ctl(const std::vector<std::string>& args) const;
  // agentctl -o json args..., parsed; a null json when the command failed or the output is
  // not JSON (the failure is recorded in last_error()).
  nlohmann::json CtlJson(const std::vector<std::string>& args);
  // One unit's status from `list -o json`; null if absent.
  nlohmann::json Unit(const std::string& name);
  // The unit's state name without the prefix ("online", "errored", ...); "" if absent.
  std::string State(const std::string& name);
  // Kinds of the unit's recent events, oldest first.
  std::vector<std::string> EventKinds(const std::string& name);

  const std::string& home() const { return home_; }
  std::string Path(const std::string& rel) const { return home_ + "/" + rel; }
  static std::string ChildBinary();
  static std::string BinDir();
  const std::string& last_error() const { return last_error_; }

  // Remembers a pid to SIGKILL in the destructor if it is still one of ours.
  void Track(pid_t pid) { tracked_.push_back(pid); }

 private:
  // Removes the agent's empty cgroup directories (v2 units, v1 limits).
  void RemoveCgroups();

  std::string home_;
  pid_t agent_pid_ = 0;
  std::string last_error_;
  std::vector<pid_t> tracked_;
  std::vector<std::string> prefix_;
  std::string output_path_;
};

// A real controlplane in a temporary data directory, on a loopback port chosen at the first
// start and kept across restarts (so linked agents find it again). Driven through agentctl
// with the operator token unless told otherwise.
class ControlPlaneHarness {
 public:
  ControlPlaneHarness();
  ~ControlPlaneHarness();
  ControlPlaneHarness(const ControlPlaneHarness&) = delete;
  ControlPlaneHarness& operator=(const ControlPlaneHarness&) = delete;

  bool Start(const std::vector<std::string>& extra_args = {});
  // Before the first Start: as AgentHarness::set_command_prefix, and the address to listen
  // on instead of 127.0.0.1 (a veth's, for agents in another network namespace).
  void set_command_prefix(std::vector<std::string> prefix) { prefix_ = std::move(prefix); }
  void set_listen_host(std::string host) { listen_host_ = std::move(host); }
  // Its stdout and stderr (its log): DATA/controlplane.out unless set.
  void set_output_path(std::string path) { output_path_ = std::move(path); }
  std::string output_path() const {
    return output_path_.empty() ? Path("controlplane.out") : output_path_;
  }
  void Stop();  // SIGTERM and wait
  void Kill();  // SIGKILL
  pid_t pid() const { return pid_; }
  const std::string& address() const { return address_; }
  // With --http: the address it serves HTTP on (from its data directory), else empty.
  std::string http_address() const;
  const std::string& data_dir() const { return dir_; }
  std::string Path(const std::string& rel) const { return dir_ + "/" + rel; }
  std::string JoinTokenFile() const { return Path("join-token"); }
  std::string OperatorTokenFile() const { return Path("operator-token"); }
  std::string ViewerTokenFile() const { return Path("viewer-token"); }
  // The agentd flags that link an agent to this control plane.
  std::vector<std::string> AgentArgs(const std::string& labels) const;

  // agentctl --controlplane ADDR --token-file TOKEN args...
  CmdResult Ctl(const std::vector<std::string>& args, const std::string& token_file = "") const;
  nlohmann::json CtlJson(const std::vector<std::string>& args);
  // One host's record from `hosts -o json`; null if absent or the call failed.
  nlohmann::json Host(const std::string& host_id);
  const std::string& last_error() const { return last_error_; }

 private:
  std::string dir_;
  std::string address_;
  pid_t pid_ = 0;
  std::string last_error_;
  std::vector<std::string> prefix_;
  std::string listen_host_ = "127.0.0.1";
  std::string output_path_;
};

}  // namespace herd::testing
