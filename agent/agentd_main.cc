// agentd: the Herd host agent. Flags only; the daemon is agent/daemon/agent_daemon.h.
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdlib.h>
#include <unistd.h>

#include <cstdio>
#include <string>

#include "CLI/CLI.hpp"
#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"
#include "agent/daemon/agent_daemon.h"
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
  std::string home = DefaultHome();
  std::string sample_interval = "1s", smaps_interval = "10s", log_max_size = "10M";
  uint32_t log_retain = 5;
  std::string log_level = "info", log_file;
  bool daemon = false;
  std::string controlplane, join_token_file, labels, tls_ca, tls_cert, tls_key;
  app.add_option("--home", home, "Home directory: state, logs, agent.sock (env HERD_HOME)")
      ->capture_default_str();
  app.add_option("--sample-interval", sample_interval,
                 "How often every unit is sampled from /proc (e.g. 1s, 500ms)")
      ->capture_default_str();
  app.add_option("--smaps-interval", smaps_interval,
                 "How often PSS/USS are read from smaps_rollup (costlier)")
      ->capture_default_str();
  app.add_option("--log-max-size", log_max_size,
                 "Rotate a unit's log file when it reaches this size (e.g. 10M, 1G)")
      ->capture_default_str();
  app.add_option("--log-retain", log_retain, "Rotated log files kept per stream")
      ->capture_default_str();
  app.add_option("--log-level", log_level, "trace, debug, info, warn, error, critical, off")
      ->capture_default_str();
  app.add_option("--log-file", log_file,
                 "Also write agentd's own log here (default with --daemon: HOME/agentd.log)");
  app.add_flag("--daemon", daemon,
               "Detach and run in the background; returns once the socket is ready");
  app.add_option("--controlplane", controlplane,
                 "Link to the control plane at HOST:PORT: it owns the configuration, receives "
                 "metrics and events, and fans out restarts and actions");
  app.add_option("--join-token-file", join_token_file,
                 "The fleet's join token (first connection; a per-host credential is kept in "
                 "HOME/host-credential afterwards)");
  app.add_option("--labels", labels, "Host labels for selectors, e.g. env=prod,role=cache");
  app.add_option("--tls-ca", tls_ca, "PEM CA of the control plane's certificate: connect with TLS");
  app.add_option("--tls-cert", tls_cert, "PEM client certificate (mTLS)");
  app.add_option("--tls-key", tls_key, "PEM client key (mTLS)");
  size_t metrics_buffer = 600;
  app.add_option("--metrics-buffer", metrics_buffer,
                 "Metric batches kept while the control plane is unreachable (the oldest are "
                 "dropped and counted beyond)")
      ->capture_default_str()
      ->check(CLI::Range(1, 1000000));
  std::string module_max_unpacked = "512M";
  uint64_t module_max_files = 20000;
  app.add_option("--module-max-unpacked", module_max_unpacked,
                 "Largest total size a module archive may unpack to (e.g. 512M, 2G); larger "
                 "ones are refused before anything is extracted")
      ->capture_default_str();
  app.add_option("--module-max-files", module_max_files,
                 "Most files, directories and links a module archive may hold")
      ->capture_default_str()
      ->check(CLI::Range(uint64_t{1}, uint64_t{10000000}));
  CLI11_PARSE(app, argc, argv);

  herd::agent::AgentOptions opts;
  if (!home.empty() && home[0] != '/') {
    char cwd[4096];
    if (getcwd(cwd, sizeof cwd)) home = absl::StrCat(cwd, "/", home);
  }
  opts.home = home;
  auto parse_duration = [](const std::string& flag, const std::string& v,
                           absl::Duration* out) -> std::string {
    auto ms = herd::ParseDurationMs(v);
    if (!ms.ok()) return absl::StrCat(flag, ": ", ms.status().message());
    if (*ms == 0) return absl::StrCat(flag, ": must be more than 0");
    *out = absl::Milliseconds(*ms);
    return "";
  };
  if (auto e = parse_duration("--sample-interval", sample_interval, &opts.sample_interval);
      !e.empty())
    return Fail(e);
  if (auto e = parse_duration("--smaps-interval", smaps_interval, &opts.smaps_interval);
      !e.empty())
    return Fail(e);
  auto size = herd::ParseSize(log_max_size);
  if (!size.ok()) return Fail(absl::StrCat("--log-max-size: ", size.status().message()));
  opts.log_max_bytes = *size;
  auto unpacked = herd::ParseSize(module_max_unpacked);
  if (!unpacked.ok() || *unpacked == 0) {
    return Fail(absl::StrCat("--module-max-unpacked: ",
                             unpacked.ok() ? "must be more than 0" : unpacked.status().message()));
  }
  opts.module_max_unpacked = *unpacked;
  opts.module_max_files = module_max_files;
  opts.log_retain = log_retain;
  opts.controlplane = controlplane;
  opts.join_token_file = join_token_file;
  if (!join_token_file.empty() && join_token_file[0] != '/') {
    char cwd[4096];
    if (getcwd(cwd, sizeof cwd)) opts.join_token_file = absl::StrCat(cwd, "/", join_token_file);
  }
  auto parsed_labels = herd::ParseLabels(labels);
  if (!parsed_labels.ok()) return Fail(absl::StrCat("--labels: ", parsed_labels.status().message()));
  opts.labels = *parsed_labels;
  opts.tls_ca = tls_ca;
  opts.tls_cert = tls_cert;
  opts.tls_key = tls_key;
  opts.metrics_buffer = metrics_buffer;
  if (controlplane.empty() && (!join_token_file.empty() || !labels.empty())) {
    return Fail("--join-token-file and --labels need --controlplane HOST:PORT");
  }

  // Before the fork, so that a home agentd refuses is reported where it was started.
  if (auto st = herd::agent::PrepareHome(home); !st.ok()) return Fail(std::string(st.message()));

  if (daemon) {
    if (log_file.empty()) log_file = absl::StrCat(home, "/agentd.log");
    int ready[2];
    if (pipe2(ready, O_CLOEXEC) != 0) return Fail("pipe failed");
    pid_t pid = fork();
    if (pid < 0) return Fail("fork failed");
    if (pid > 0) {
      close(ready[1]);
      // One byte 1 when ready; otherwise the reason the daemon gave before exiting (its
      // stderr is /dev/null, and its log may be what it could not open).
      std::string answer;
      char buf[4096];
      ssize_t n;
      while ((n = read(ready[0], buf, sizeof buf)) > 0 || (n < 0 && errno == EINTR)) {
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
    close(ready[0]);
    setsid();
    int devnull = open("/dev/null", O_RDWR);
    dup2(devnull, 0);
    dup2(devnull, 1);
    dup2(devnull, 2);
    if (devnull > 2) close(devnull);
    opts.ready_fd = ready[1];
  }

  // Before any thread starts (spdlog, gRPC), so that every thread inherits the mask.
  herd::agent::BlockAgentSignals();
  herd::LogOptions lopts;
  lopts.level = log_level;
  lopts.file = log_file;
  lopts.to_stderr = !daemon;
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
