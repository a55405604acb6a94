// controlplane: the Herd fleet service. Flags only; the wiring is controlplane/server.h.
#include <stdio.h>
#include <stdlib.h>
#include <sys/resource.h>
#include <unistd.h>

#include <string>
#include <tuple>

#include "CLI/CLI.hpp"
#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"
#include "common/logging.h"
#include "common/units.h"
#include "controlplane/server.h"

namespace {

int Fail(const std::string& msg) {
  fprintf(stderr, "controlplane: %s\n", msg.c_str());
  return 1;
}

std::string Absolute(std::string p) {
  if (!p.empty() && p[0] != '/') {
    char cwd[4096];
    if (getcwd(cwd, sizeof cwd)) p = absl::StrCat(cwd, "/", p);
  }
  return p;
}

// gRPC's "tcp_read_chunks" (on by default in 1.51) gives every connection's pending read an
// 8 KiB buffer, and a 64 KiB one once two messages arrived together; an idle connection keeps
// it. With 10,000 agents that was most of the difference between 107 and 160 KiB per agent
// (bench/README.md). Turned off, reads are sized by the connection's recent reads and capped by
// GRPC_ARG_TCP_MAX_READ_CHUNK_SIZE (server.cc). An operator's own GRPC_EXPERIMENTS is kept;
// it decides if it names this experiment.
void TuneGrpcExperiments() {
  const char* set = getenv("GRPC_EXPERIMENTS");
  std::string value = set ? set : "";
  if (value.find("tcp_read_chunks") != std::string::npos) return;
  value = value.empty() ? "-tcp_read_chunks" : absl::StrCat(value, ",-tcp_read_chunks");
  setenv("GRPC_EXPERIMENTS", value.c_str(), 1);
}

}  // namespace

int main(int argc, char** argv) {
  TuneGrpcExperiments();
#ifdef NDEBUG
  // Debian's Abseil is built with its lock-order (deadlock) detector on, which records every
  // mutex in one global graph under one global lock: with a mutex per host it serialized the
  // whole control plane at fleet scale (bench/README.md). Debug builds and the tests keep it.
  absl::SetMutexDeadlockDetectionMode(absl::OnDeadlockCycle::kIgnore);
#endif
  CLI::App app{
      "controlplane: the Herd fleet service. Agents connect to it (agentd --controlplane); it "
      "owns configuration (global, label selector, host), fans out restarts and actions, keeps "
      "recent metrics, and serves the Fleet API to agentctl and other services."};
  app.set_version_flag("--version", HERD_VERSION);
  app.require_subcommand(0, 1);
  herd::controlplane::ServerOptions o;
  std::string lease = "30s", log_level = "info", log_file;
  std::string hello_timeout = "5s", silent_timeout = "60s", token_recheck = "10s";
  std::string stream_stall = "30s";
  app.add_option("--data", o.data_dir, "Data directory: the SQLite store, tokens (created if missing)")
      ->required();
  app.add_option("--listen", o.listen, "gRPC address (host:port; port 0 picks a free one)")
      ->capture_default_str();
  app.add_option("--lease", lease, "A host is offline once its stream has been gone this long")
      ->capture_default_str();
  app.add_option("--hello-timeout", hello_timeout,
                 "End a stream that has not sent Hello this long after it opened")
      ->capture_default_str();
  app.add_option("--silent-timeout", silent_timeout,
                 "Close an agent's stream once it has sent nothing this long (at least 10 "
                 "metrics intervals): its host is down or cut off")
      ->capture_default_str();
  app.add_option("--token-recheck", token_recheck,
                 "How often the API tokens of open streams (watches, logs, the dashboard's) "
                 "are checked again: a revoked token's streams end")
      ->capture_default_str();
  app.add_option("--metrics-interval-ms", o.metrics_interval_ms,
                 "How often agents send metrics")
      ->capture_default_str()
      ->check(CLI::Range(100, 600000));
  app.add_option("--http", o.http_listen,
                 "Serve the dashboard, the JSON API, /metrics, /healthz and /readyz on this "
                 "address (host:port; port 0 picks a free one). HTTPS with --tls-cert");
  app.add_option("--http-max-streams", o.http_max_streams,
                 "Live streams (dashboard views, ndjson API streams) served at once; each holds "
                 "a thread")
      ->capture_default_str()
      ->check(CLI::Range(1, 4096));
  app.add_option("--metrics-max-probe-series", o.metrics_max_probe_series,
                 "/metrics shows one series per host, module and numeric probe while the fleet "
                 "has at most this many, and none above (herd_controlplane_probe_series_omitted "
                 "says so); host and module series are always shown")
      ->capture_default_str();
  app.add_option("--metrics-max-probe-series-per-host", o.metrics_max_probe_series_per_host,
                 "/metrics leaves out the probe series of a host that has more than this many "
                 "(herd_host_probe_series_omitted names it); the other hosts' stay")
      ->capture_default_str();
  // What one host may make the control plane keep (docs/controlplane.md, "Limits").
  herd::controlplane::AgentLimits& lim = o.agent_limits;
  app.add_option("--max-units-per-host", lim.max_units, "Units kept from one host's batch")
      ->capture_default_str()->check(CLI::Range(1, 1000000));
  app.add_option("--max-probes-per-unit", lim.max_probes_per_unit, "Probes kept per unit")
      ->capture_default_str()->check(CLI::Range(0, 1000000));
  app.add_option("--max-modules-per-host", lim.max_modules, "Modules kept from one host's inventory")
      ->capture_default_str()->check(CLI::Range(1, 1000000));
  app.add_option("--max-batch-bytes", lim.max_batch_bytes,
                 "A host's metrics batch is cut (its last units) to this size")
      ->capture_default_str()->check(CLI::Range(4096, 1 << 30));
  app.add_option("--max-series-per-host", o.max_series_per_host,
                 "Series of recent history kept per host")
      ->capture_default_str()->check(CLI::Range(16, 1 << 24));
  app.add_option("--max-message-bytes", o.max_message_bytes,
                 "Largest gRPC message accepted (an agent's batch or inventory, an API request)")
      ->capture_default_str()->check(CLI::Range(1 << 20, 1 << 30));
  app.add_option("--max-config-value-bytes", o.max_config_value_bytes,
                 "Largest config value SetConfig accepts (as JSON)")
      ->capture_default_str()->check(CLI::Range(16, 120 * 1024));
  app.add_option("--max-module-config-bytes", o.max_module_config_bytes,
                 "Largest config of one module (its overrides together, as JSON): it reaches "
                 "the module in one environment variable, which the kernel caps at 128 KiB")
      ->capture_default_str()->check(CLI::Range(16, 120 * 1024));
  app.add_option("--stream-stall-timeout", stream_stall,
                 "End a Fleet API stream (watch, logs) whose reader has read nothing this long "
                 "while messages wait")
      ->capture_default_str();
  app.add_option("--max-streams", o.max_streams, "Fleet API streams open at once")
      ->capture_default_str()->check(CLI::Range(1, 1000000));
  app.add_option("--max-streams-per-token", o.max_streams_per_token,
                 "Fleet API streams one API token may hold open at once")
      ->capture_default_str()->check(CLI::Range(1, 1000000));
  app.add_flag("--metrics-public", o.metrics_public,
               "Serve /metrics without a token (default: a viewer or operator token)");
  app.add_option("--tls-cert", o.tls_cert, "PEM certificate chain: serve TLS");
  app.add_option("--tls-key", o.tls_key, "PEM private key for --tls-cert");
  app.add_option("--client-ca", o.client_ca,
                 "PEM CA bundle: require client certificates signed by it (mTLS)");
  app.add_option("--log-level", log_level, "trace, debug, info, warn, error, critical, off")
      ->capture_default_str();
  app.add_option("--log-file", log_file, "Also write the log here");

  auto* token = app.add_subcommand("token", "Manage API tokens (viewer: reads; operator: changes)");
  token->require_subcommand(1);
  std::string token_name, token_role = "viewer";
  auto* token_create = token->add_subcommand("create", "Create a token and print its secret once");
  token_create->add_option("name", token_name, "Name (appears in the audit log)")->required();
  token_create->add_option("--role", token_role, "viewer or operator")
      ->capture_default_str()
      ->check(CLI::IsMember({"viewer", "operator"}));
  auto* token_list = token->add_subcommand("list", "List tokens (names and roles)");
  auto* token_revoke = token->add_subcommand("revoke", "Delete a token");
  token_revoke->add_option("name", token_name, "Name")->required();

  CLI11_PARSE(app, argc, argv);
  o.data_dir = Absolute(o.data_dir);
  auto ms = herd::ParseDurationMs(lease);
  if (!ms.ok() || *ms == 0) return Fail(absl::StrCat("--lease: ", ms.ok() ? "must be more than 0" : ms.status().message()));
  o.lease = absl::Milliseconds(*ms);
  for (auto [flag, text, out] : {std::tuple{"--hello-timeout", &hello_timeout, &o.hello_timeout},
                                 std::tuple{"--silent-timeout", &silent_timeout,
                                            &o.silent_stream_timeout},
                                 std::tuple{"--token-recheck", &token_recheck, &o.token_recheck},
                                 std::tuple{"--stream-stall-timeout", &stream_stall,
                                            &o.stream_stall_timeout}}) {
    auto d = herd::ParseDurationMs(*text);
    if (!d.ok() || *d == 0) {
      return Fail(absl::StrCat(flag, ": ", d.ok() ? "must be more than 0" : d.status().message()));
    }
    *out = absl::Milliseconds(*d);
  }
  if (o.tls_cert.empty() != o.tls_key.empty()) {
    return Fail("--tls-cert and --tls-key go together");
  }
  if (!o.client_ca.empty() && o.tls_cert.empty()) {
    return Fail("--client-ca (mTLS) needs --tls-cert and --tls-key");
  }

  herd::LogOptions lopts;
  lopts.level = log_level;
  lopts.file = log_file;
  if (auto st = herd::InitLogging(lopts); !st.ok()) return Fail(std::string(st.message()));

  if (*token_create) {
    auto secret = herd::controlplane::CreateToken(o.data_dir, token_name, token_role == "operator");
    if (!secret.ok()) return Fail(std::string(secret.status().message()));
    printf("%s\n", secret->c_str());
    return 0;
  }
  if (*token_list) {
    auto tokens = herd::controlplane::ListTokens(o.data_dir);
    if (!tokens.ok()) return Fail(std::string(tokens.status().message()));
    printf("%-24s %s\n", "NAME", "ROLE");
    for (const auto& [name, role] : *tokens) printf("%-24s %s\n", name.c_str(), role.c_str());
    return 0;
  }
  if (*token_revoke) {
    auto st = herd::controlplane::RevokeToken(o.data_dir, token_name);
    if (!st.ok()) return Fail(std::string(st.message()));
    printf("token %s revoked\n", token_name.c_str());
    return 0;
  }
  // One descriptor per connected agent: take the hard limit (as servers commonly do).
  rlimit rl{};
  if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < rl.rlim_max) {
    rl.rlim_cur = rl.rlim_max;
    setrlimit(RLIMIT_NOFILE, &rl);
  }
  absl::Status st = herd::controlplane::RunServer(o);
  if (!st.ok()) {
    herd::Logger("controlplane")->error("event=start_failed error=\"{}\"", st.message());
    return Fail(std::string(st.message()));
  }
  return 0;
}
