// agentd: the Herd host agent. Flags, their checks, --daemon and logging; the daemon itself
// is agent/daemon/agent_daemon.h.
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdlib.h>
#include <unistd.h>

#include <cstdio>
#include <optional>
#include <string>

#include "CLI/CLI.hpp"
#include "absl/status/statusor.h"
#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"
#include "agent/daemon/agent_daemon.h"
#include "common/controlplane_addresses.h"
#include "common/crash_handler.h"
#include "common/labels.h"
#include "common/logging.h"
#include "common/units.h"

namespace {

std::string DefaultHome() {
  if (const char* h = getenv("HERD_HOME"); h && *h) return h;
  if (const char* h = getenv("HOME"); h && *h) return absl::StrCat(h, "/.herd");
  return "/var/lib/herd";
}

int Fail(const std::string& msg) {
  fprintf(stderr, "agentd: %s\n", msg.c_str());
  return 1;
}

// A relative path is taken from the directory agentd was started in (the daemon's is "/").
std::string Absolute(std::string p) {
  if (!p.empty() && p[0] != '/') {
    char cwd[4096];
    if (getcwd(cwd, sizeof cwd)) p = absl::StrCat(cwd, "/", p);
  }
  return p;
}

// The command line as given, before it is checked.
struct AgentdFlags {
  std::string home = DefaultHome();
  std::string sample_interval = "1s", smaps_interval = "10s", log_max_size = "10M";
  uint32_t log_retain = 5;
  std::string log_level = "info", log_file;
  bool daemon = false;
  std::string controlplane, join_token_file, labels, tls_ca, tls_cert, tls_key;
  size_t metrics_buffer = 600;
  std::string module_max_unpacked = "512M";
  uint64_t module_max_files = 20000;
  bool no_cgroups = false;
};

void AddLocalFlags(CLI::App& app, AgentdFlags& f) {
  app.add_option("--home", f.home, "Home directory: state, logs, agent.sock (env HERD_HOME)")
      ->capture_default_str();
  app.add_option("--sample-interval", f.sample_interval,
                 "How often every unit is sampled from /proc (e.g. 1s, 500ms)")
      ->capture_default_str();
  app.add_option("--smaps-interval", f.smaps_interval,
                 "How often PSS/USS are read from smaps_rollup (costlier)")
      ->capture_default_str();
  app.add_option("--log-max-size", f.log_max_size,
                 "Rotate a unit's log file when it reaches this size (e.g. 10M, 1G)")
      ->capture_default_str();
  app.add_option("--log-retain", f.log_retain, "Rotated log files kept per stream")
      ->capture_default_str();
  app.add_option("--log-level", f.log_level, "trace, debug, info, warn, error, critical, off")
      ->capture_default_str();
  app.add_option("--log-file", f.log_file,
                 "Also write agentd's own log here (default with --daemon: HOME/agentd.log)");
  app.add_flag("--daemon", f.daemon,
               "Detach and run in the background; returns once the socket is ready");
  app.add_flag("--no-cgroups", f.no_cgroups,
               "Do not put each unit in a cgroup v2 of its own (then a unit's processes that "
               "leave its process group are found through agentd's child subreaper only)");
}

void AddLinkFlags(CLI::App& app, AgentdFlags& f) {
  app.add_option("--controlplane", f.controlplane,
                 "Link to the control plane at HOST:PORT: it owns the configuration, receives "
                 "metrics and events, and fans out restarts and actions. Replicas: "
                 "HOST:PORT,HOST:PORT,... (the agent moves to the next when its replica goes "
                 "away), or one DNS name with several addresses");
  app.add_option("--join-token-file", f.join_token_file,
                 "The fleet's join token (first connection; a per-host credential is kept in "
                 "HOME/host-credential afterwards)");
  app.add_option("--labels", f.labels, "Host labels for selectors, e.g. env=prod,role=cache");
  app.add_option("--tls-ca", f.tls_ca, "PEM CA of the control plane's certificate: connect with TLS");
  app.add_option("--tls-cert", f.tls_cert, "PEM client certificate (mTLS)");
  app.add_option("--tls-key", f.tls_key, "PEM client key (mTLS)");
  app.add_option("--metrics-buffer", f.metrics_buffer,
                 "Metric batches kept while the control plane is unreachable (the oldest are "
                 "dropped and counted beyond)")
      ->capture_default_str()
      ->check(CLI::Range(1, 1000000));
}

void AddModuleFlags(CLI::App& app, AgentdFlags& f) {
  app.add_option("--module-max-unpacked", f.module_max_unpacked,
                 "Largest total size a module archive may unpack to (e.g. 512M, 2G); larger "
                 "ones are refused before anything is extracted")
      ->capture_default_str();
  app.add_option("--module-max-files", f.module_max_files,
                 "Most files, directories and links a module archive may hold")
      ->capture_default_str()
      ->check(CLI::Range(uint64_t{1}, uint64_t{10000000}));
}

absl::Status ParsePositiveDuration(const std::string& flag, const std::string& v,
                                   absl::Duration* out) {
  auto ms = herd::ParseDurationMs(v);
  if (!ms.ok()) return absl::InvalidArgumentError(absl::StrCat(flag, ": ", ms.status().message()));
  if (*ms == 0) return absl::InvalidArgumentError(absl::StrCat(flag, ": must be more than 0"));
  *out = absl::Milliseconds(*ms);
  return absl::OkStatus();
}

// The flags checked and converted; the error names the flag and what is wrong with it.
absl::StatusOr<herd::agent::AgentOptions> ToAgentOptions(const AgentdFlags& f) {
  herd::agent::AgentOptions opts;
  opts.home = f.home;
  if (auto st = ParsePositiveDuration("--sample-interval", f.sample_interval, &opts.sample_interval);
      !st.ok())
    return st;
  if (auto st = ParsePositiveDuration("--smaps-interval", f.smaps_interval, &opts.smaps_interval);
      !st.ok())
    return st;
  auto size = herd::ParseSize(f.log_max_size);
  if (!size.ok()) {
    return absl::InvalidArgumentError(absl::StrCat("--log-max-size: ", size.status().message()));
  }
  opts.log_max_bytes = *size;
  auto unpacked = herd::ParseSize(f.module_max_unpacked);
  if (!unpacked.ok() || *unpacked == 0) {
    return absl::InvalidArgumentError(
        absl::StrCat("--module-max-unpacked: ",
                     unpacked.ok() ? "must be more than 0" : unpacked.status().message()));
  }
  opts.module_max_unpacked = *unpacked;
  opts.module_max_files = f.module_max_files;
  opts.cgroups = !f.no_cgroups;
  opts.log_retain = f.log_retain;
  if (!f.controlplane.empty()) {
    auto addresses = herd::ParseControlPlaneAddresses(f.controlplane, "--controlplane");
    if (!addresses.ok()) return addresses.status();
    opts.controlplane = *std::move(addresses);
  }
  opts.join_token_file = Absolute(f.join_token_file);
  auto labels = herd::ParseLabels(f.labels);
  if (!labels.ok()) {
    return absl::InvalidArgumentError(absl::StrCat("--labels: ", labels.status().message()));
  }
  opts.labels = *labels;
  opts.tls_ca = f.tls_ca;
  opts.tls_cert = f.tls_cert;
  opts.tls_key = f.tls_key;
  opts.metrics_buffer = f.metrics_buffer;
  if (f.controlplane.empty() && (!f.join_token_file.empty() || !f.labels.empty())) {
    return absl::InvalidArgumentError("--join-token-file and --labels need --controlplane HOST:PORT");
  }
  return opts;
}

// The parent's side of --daemon: waits for the child's one byte 1 (ready), or the reason it
// gave before exiting (its stderr is /dev/null, and its log may be what it could not open).
int AwaitDaemon(int ready_fd, pid_t pid, const std::string& home, const std::string& log_file) {
  std::string answer;
  char buf[4096];
  ssize_t n;
  while ((n = read(ready_fd, buf, sizeof buf)) > 0 || (n < 0 && errno == EINTR)) {
    if (n > 0) answer.append(buf, static_cast<size_t>(n));
    if (answer.size() == 1 && answer[0] == 1) break;
  }
  if (answer.size() == 1 && answer[0] == 1) {
    printf("agentd started (pid %d, home %s, log %s)\n", pid, home.c_str(), log_file.c_str());
    return 0;
  }
  if (answer.size() > 1) return Fail(answer.substr(1));
  return Fail(absl::StrCat("agentd did not start; see ", log_file));
}

// --daemon: forks. The parent gets the exit code to return once the child is ready (or
// gave up); the child gets nothing and goes on detached, with opts.ready_fd to report on.
std::optional<int> Daemonize(herd::agent::AgentOptions& opts, const std::string& log_file) {
  int ready[2];
  if (pipe2(ready, O_CLOEXEC) != 0) return Fail("pipe failed");
  pid_t pid = fork();
  if (pid < 0) return Fail("fork failed");
  if (pid > 0) {
    close(ready[1]);
    return AwaitDaemon(ready[0], pid, opts.home, log_file);
  }
  close(ready[0]);
  setsid();
  int devnull = open("/dev/null", O_RDWR);
  dup2(devnull, 0);
  dup2(devnull, 1);
  dup2(devnull, 2);
  if (devnull > 2) close(devnull);
  opts.ready_fd = ready[1];
  return std::nullopt;
}

// Logging, then the agent until it stops.
int RunDaemon(const herd::agent::AgentOptions& opts, const AgentdFlags& f,
              const std::string& log_file) {
  // Before any thread starts (spdlog, gRPC), so that every thread inherits the mask.
  herd::agent::BlockAgentSignals();
  herd::LogOptions lopts;
  lopts.level = f.log_level;
  lopts.file = log_file;
  lopts.to_stderr = !f.daemon;
  // A daemon tells the waiting parent why it could not start, on its own copy of the ready
  // pipe (RunAgent closes the one it is given once ready; a parent gone by then makes the
  // write fail, never land on a descriptor reused since).
  const int report_fd = opts.ready_fd >= 0 ? fcntl(opts.ready_fd, F_DUPFD_CLOEXEC, 3) : -1;
  auto fail_start = [&](const std::string& why) {
    if (report_fd >= 0) {
      signal(SIGPIPE, SIG_IGN);
      const std::string msg = std::string(1, '\0') + why;
      (void)!write(report_fd, msg.data(), msg.size());
    }
    return Fail(why);
  };
  if (auto st = herd::InitLogging(lopts); !st.ok()) return fail_start(std::string(st.message()));
  herd::InstallCrashHandlers("agentd");

  absl::Status st = herd::agent::RunAgent(opts);
  if (!st.ok()) {
    herd::Logger("agentd")->error("event=start_failed error=\"{}\"", st.message());
    return fail_start(std::string(st.message()));
  }
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
#ifdef NDEBUG
  // Debian's Abseil keeps its lock-order detector on, which records every mutex in one
  // global graph under one global lock (see controlplane_main.cc). Debug builds keep it.
  absl::SetMutexDeadlockDetectionMode(absl::OnDeadlockCycle::kIgnore);
#endif
  CLI::App app{"agentd: the Herd host agent. Supervises units (PM2 app fields), samples their "
               "CPU and memory from /proc, and serves the local API that agentctl uses."};
  app.set_version_flag("--version", HERD_VERSION);
  AgentdFlags flags;
  AddLocalFlags(app, flags);
  AddLinkFlags(app, flags);
  AddModuleFlags(app, flags);
  CLI11_PARSE(app, argc, argv);

  flags.home = Absolute(flags.home);
  auto opts = ToAgentOptions(flags);
  if (!opts.ok()) return Fail(std::string(opts.status().message()));
  // Before the fork, so that a home agentd refuses is reported where it was started.
  if (auto st = herd::agent::PrepareHome(flags.home); !st.ok()) return Fail(std::string(st.message()));
  std::string log_file = flags.log_file;
  if (flags.daemon) {
    if (log_file.empty()) log_file = absl::StrCat(flags.home, "/agentd.log");
    if (std::optional<int> parent_exit = Daemonize(*opts, log_file)) return *parent_exit;
  }
  return RunDaemon(*opts, flags, log_file);
}
