// controlplane: the Herd fleet service. Flags, their checks and the token commands; the
// wiring is controlplane/server.h.
#include <stdio.h>
#include <stdlib.h>
#include <sys/resource.h>
#include <unistd.h>

#include <optional>
#include <string>
#include <tuple>

#include "CLI/CLI.hpp"
#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"
#include "common/crash_handler.h"
#include "common/gateway_protocol.h"
#include "common/logging.h"
#include "common/units.h"
#include "controlplane/server.h"
#include "controlplane/store/store_migration.h"

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

// The command line as given, before the durations are checked.
struct ControlplaneFlags {
  herd::controlplane::ServerOptions o;
  std::string lease = "30s", log_level = "info", log_file;
  std::string hello_timeout = "5s", silent_timeout = "60s", token_recheck = "10s";
  std::string stream_stall = "30s";
  std::string http_header_timeout = "5s", http_idle_timeout = "30s", http_stall_timeout = "30s";
  std::string audit_max_age = "0";
  std::string peer_call_timeout = "5s";
  std::string artifact_max_bytes = "64M";
  // `controlplane token ...`
  std::string token_name, token_role = "viewer";
  // `controlplane migrate ...`
  std::string migrate_from, migrate_to;
  bool migrate_force = false;
  CLI::App* migrate = nullptr;
  CLI::App* token_create = nullptr;
  CLI::App* token_list = nullptr;
  CLI::App* token_revoke = nullptr;
};

// The store, the agents' streams and the Fleet API's.
void AddAgentFlags(CLI::App& app, ControlplaneFlags& f) {
  app.add_option("--data", f.o.data_dir,
                 "Data directory: the SQLite store, tokens (created if missing); required, "
                 "with --store etcd too (token and address files)");
  app.add_option("--listen", f.o.listen, "gRPC address (host:port; port 0 picks a free one)")
      ->capture_default_str();
  app.add_option("--lease", f.lease, "A host is offline once its stream has been gone this long")
      ->capture_default_str();
  app.add_option("--hello-timeout", f.hello_timeout,
                 "End a stream that has not sent Hello this long after it opened")
      ->capture_default_str();
  app.add_option("--silent-timeout", f.silent_timeout,
                 "Close an agent's stream once it has sent nothing this long (at least 10 "
                 "metrics intervals): its host is down or cut off")
      ->capture_default_str();
  app.add_option("--token-recheck", f.token_recheck,
                 "How often the API tokens of open streams (watches, logs, the dashboard's) "
                 "are checked again: a revoked token's streams end")
      ->capture_default_str();
  app.add_option("--metrics-interval-ms", f.o.metrics_interval_ms,
                 "How often agents send metrics")
      ->capture_default_str()
      ->check(CLI::Range(100, 600000));
  app.add_option("--metrics-batches-per-message", f.o.metrics_batches_per_message,
                 "Once --metrics-group-above hosts are connected, agents send their batches "
                 "this many at a time (every sample is kept; a host watched live still sends "
                 "each at once). 1: each batch alone")
      ->capture_default_str()
      ->check(CLI::Range(1u, herd::kMaxMetricsBatchesPerMessage));
  app.add_option("--metrics-group-above", f.o.metrics_group_above,
                 "Connected hosts from which agents are asked to group their batches")
      ->capture_default_str();
}

// The HTTP listener (dashboard, JSON API, /metrics).
void AddHttpFlags(CLI::App& app, ControlplaneFlags& f) {
  app.add_option("--http", f.o.http_listen,
                 "Serve the dashboard, the JSON API, /metrics, /healthz and /readyz on this "
                 "address (host:port; port 0 picks a free one). HTTPS with --tls-cert");
  app.add_option("--http-max-streams", f.o.http.max_streams,
                 "Live streams (dashboard views, ndjson API streams) served at once; each holds "
                 "a thread")
      ->capture_default_str()
      ->check(CLI::Range(1, 4096));
  app.add_option("--http-max-streams-per-token", f.o.http.max_streams_per_token,
                 "Live streams one API token may hold at once (so that one viewer cannot take "
                 "every stream)")
      ->capture_default_str()
      ->check(CLI::Range(1, 4096));
  app.add_option("--http-stream-stall-timeout", f.http_stall_timeout,
                 "End a stream (and close any HTTP connection) whose client has not taken "
                 "written data for this long")
      ->capture_default_str();
  app.add_option("--http-stream-queue-bytes", f.o.http.stream_queue_bytes,
                 "End a stream whose client is this many bytes behind")
      ->capture_default_str()
      ->check(CLI::Range(size_t{4096}, size_t{1} << 30));
  app.add_option("--http-max-connections", f.o.http.max_connections,
                 "HTTP connections open at once; past it the oldest idle one is closed, or the "
                 "new one refused")
      ->capture_default_str()
      ->check(CLI::Range(size_t{1}, size_t{1} << 20));
  app.add_option("--http-max-connections-per-ip", f.o.http.max_connections_per_ip,
                 "HTTP connections open at once from one client address (same rule)")
      ->capture_default_str()
      ->check(CLI::Range(size_t{1}, size_t{1} << 20));
  app.add_option("--http-header-timeout", f.http_header_timeout,
                 "Close an HTTP connection whose TLS handshake, or request (header and body), "
                 "takes longer than this")
      ->capture_default_str();
  app.add_option("--http-idle-timeout", f.http_idle_timeout,
                 "Close a keep-alive HTTP connection idle this long")
      ->capture_default_str();
  app.add_option("--http-workers", f.o.http.workers,
                 "Threads for HTTP API calls and /metrics; requests wait for one in a queue of "
                 "--http-max-queued, past which they get 503")
      ->capture_default_str()
      ->check(CLI::Range(1, 1024));
  app.add_option("--http-max-queued", f.o.http.max_queued, "See --http-workers")
      ->capture_default_str()
      ->check(CLI::Range(0, 65536));
  app.add_option("--http-max-requests-per-ip", f.o.http.max_requests_per_ip,
                 "HTTP API calls and scrapes in progress (running or queued) from one client "
                 "address; past it 429")
      ->capture_default_str()
      ->check(CLI::Range(1, 65536));
}

// What /metrics shows, and what one host and one API client may make the control plane keep.
void AddLimitFlags(CLI::App& app, ControlplaneFlags& f) {
  app.add_option("--metrics-max-probe-series", f.o.metrics_max_probe_series,
                 "/metrics shows one series per host, module and numeric probe while the fleet "
                 "has at most this many, and none above (herd_controlplane_probe_series_omitted "
                 "says so); host and module series are always shown")
      ->capture_default_str();
  app.add_option("--metrics-max-probe-series-per-host", f.o.metrics_max_probe_series_per_host,
                 "/metrics leaves out the probe series of a host that has more than this many "
                 "(herd_host_probe_series_omitted names it); the other hosts' stay")
      ->capture_default_str();
  // What one host may make the control plane keep (docs/controlplane.md, "Limits").
  herd::controlplane::AgentLimits& lim = f.o.agent_limits;
  app.add_option("--max-units-per-host", lim.max_units, "Units kept from one host's batch")
      ->capture_default_str()->check(CLI::Range(1, 1000000));
  app.add_option("--max-probes-per-unit", lim.max_probes_per_unit, "Probes kept per unit")
      ->capture_default_str()->check(CLI::Range(0, 1000000));
  app.add_option("--max-modules-per-host", lim.max_modules, "Modules kept from one host's inventory")
      ->capture_default_str()->check(CLI::Range(1, 1000000));
  app.add_option("--max-batch-bytes", lim.max_batch_bytes,
                 "A host's metrics batch is cut (its last units) to this size")
      ->capture_default_str()->check(CLI::Range(4096, 1 << 30));
  app.add_option("--max-series-per-host", f.o.max_series_per_host,
                 "Series of recent history kept per host")
      ->capture_default_str()->check(CLI::Range(16, 1 << 24));
  app.add_option("--max-message-bytes", f.o.max_message_bytes,
                 "Largest gRPC message accepted (an agent's batch or inventory, an API request)")
      ->capture_default_str()->check(CLI::Range(1 << 20, 1 << 30));
  app.add_option("--max-config-value-bytes", f.o.max_config_value_bytes,
                 "Largest config value SetConfig accepts (as JSON)")
      ->capture_default_str()->check(CLI::Range(16, 120 * 1024));
  app.add_option("--max-module-config-bytes", f.o.max_module_config_bytes,
                 "Largest config of one module (its overrides together, as JSON): it reaches "
                 "the module in one environment variable, which the kernel caps at 128 KiB")
      ->capture_default_str()->check(CLI::Range(16, 120 * 1024));
  app.add_option("--stream-stall-timeout", f.stream_stall,
                 "End a Fleet API stream (watch, logs) whose reader has read nothing this long "
                 "while messages wait")
      ->capture_default_str();
  app.add_option("--max-streams", f.o.max_streams, "Fleet API streams open at once")
      ->capture_default_str()->check(CLI::Range(1, 1000000));
  app.add_option("--max-streams-per-token", f.o.max_streams_per_token,
                 "Fleet API streams one API token may hold open at once")
      ->capture_default_str()->check(CLI::Range(1, 1000000));
}

void AddTlsAndLogFlags(CLI::App& app, ControlplaneFlags& f) {
  app.add_flag("--metrics-public", f.o.metrics_public,
               "Serve /metrics without a token (default: a viewer or operator token)");
  app.add_option("--tls-cert", f.o.tls_cert, "PEM certificate chain: serve TLS");
  app.add_option("--tls-key", f.o.tls_key, "PEM private key for --tls-cert");
  app.add_option("--client-ca", f.o.client_ca,
                 "PEM CA bundle: require client certificates signed by it (mTLS), on the gRPC "
                 "port and on the HTTPS port (--http)");
  app.add_flag("--http-no-client-cert", f.o.http_no_client_cert,
               "With --client-ca: do not ask HTTPS clients (browsers, scrapers) for a "
               "certificate; they get in with a bearer token alone. gRPC still requires one");
  app.add_option("--log-level", f.log_level, "trace, debug, info, warn, error, critical, off")
      ->capture_default_str();
  app.add_option("--log-file", f.log_file, "Also write the log here");
}

// Uploaded module artifacts (issue 24).
void AddArtifactFlags(CLI::App& app, ControlplaneFlags& f) {
  app.add_option("--artifacts-dir", f.o.artifacts_dir,
                 "Keep uploaded module archives here (default: DATA/artifacts with SQLite; "
                 "with --store etcd, none unless given: a directory every replica mounts)");
  app.add_option("--artifact-max-bytes", f.artifact_max_bytes,
                 "The largest module archive kept (e.g. 64M)")
      ->capture_default_str();
  app.add_option("--max-artifact-fetches", f.o.max_artifact_fetches,
                 "Artifact downloads by agents served at once (more wait and retry)")
      ->capture_default_str()->check(CLI::Range(1, 100000));
}

// Where the store is: SQLite in --data, or etcd (replicas, issue 22; docs/controlplane.md).
void AddStoreFlags(CLI::App& app, ControlplaneFlags& f) {
  herd::controlplane::StoreLocation& s = f.o.store;
  app.add_option("--store", s.url,
                 "etcd://HOST:PORT[,HOST:PORT...] (etcds:// for TLS): keep the store in etcd, "
                 "shared by replicas. Default: SQLite in --data");
  app.add_option("--etcd-prefix", s.etcd_prefix, "The store's keys in etcd start with this")
      ->capture_default_str();
  app.add_option("--etcd-ca", s.etcd_ca, "PEM CA that signed etcd's certificates (TLS)");
  app.add_option("--etcd-cert", s.etcd_cert, "PEM client certificate for etcd (mTLS)");
  app.add_option("--etcd-key", s.etcd_key, "PEM private key for --etcd-cert");
  app.add_option("--etcd-user", s.etcd_user,
                 "etcd user (etcd's auth), with --etcd-password-file");
  app.add_option("--etcd-password-file", s.etcd_password_file,
                 "File holding --etcd-user's password");
  app.add_option("--audit-max-entries", s.etcd.audit_max_entries,
                 "etcd store: keep at most this many audit entries (0: no limit); the oldest "
                 "go as new ones are appended")
      ->capture_default_str();
  app.add_option("--audit-max-age", f.audit_max_age,
                 "etcd store: drop audit entries older than this (e.g. 2160h for 90 days; "
                 "0: no limit)")
      ->capture_default_str();
  app.add_option("--replica-id", f.o.replica_id,
                 "This replica's name among the replicas on one etcd (default: hostname:port "
                 "of --listen; hostname-pid when that port is 0)");
  app.add_option("--advertise", f.o.advertise,
                 "host:port other replicas dial to reach this one (default: the address bound)");
  app.add_option("--peer-call-timeout", f.peer_call_timeout,
                 "Replicas: a call forwarded to another replica (a listing's share, a config "
                 "change, a restart) fails past this; an action waits its own timeout plus 10s")
      ->capture_default_str();
}

void AddMigrateCommand(CLI::App& app, ControlplaneFlags& f) {
  f.migrate = app.add_subcommand(
      "migrate", "Copy a single node's store (--from its --data directory) into etcd (--to), "
                 "with the --etcd-* flags");
  f.migrate->fallthrough();
  f.migrate->add_option("--from", f.migrate_from, "The data directory holding herd.db")
      ->required();
  f.migrate->add_option("--to", f.migrate_to, "etcd://HOST:PORT[,HOST:PORT...]")->required();
  f.migrate->add_flag("--force", f.migrate_force,
                      "Delete what the --etcd-prefix already holds and write over it");
}

void AddTokenCommands(CLI::App& app, ControlplaneFlags& f) {
  auto* token = app.add_subcommand("token", "Manage API tokens (viewer: reads; operator: changes)");
  token->require_subcommand(1);
  token->fallthrough();
  f.token_create = token->add_subcommand("create", "Create a token and print its secret once");
  f.token_create->add_option("name", f.token_name, "Name (appears in the audit log)")->required();
  f.token_create->add_option("--role", f.token_role, "viewer or operator")
      ->capture_default_str()
      ->check(CLI::IsMember({"viewer", "operator"}));
  f.token_list = token->add_subcommand("list", "List tokens (names and roles)");
  f.token_revoke = token->add_subcommand("revoke", "Delete a token");
  f.token_revoke->add_option("name", f.token_name, "Name")->required();
}

absl::Status ParsePositiveDuration(const char* flag, const std::string& text, absl::Duration* out) {
  auto d = herd::ParseDurationMs(text);
  if (!d.ok() || *d == 0) {
    return absl::InvalidArgumentError(
        absl::StrCat(flag, ": ", d.ok() ? "must be more than 0" : d.status().message()));
  }
  *out = absl::Milliseconds(*d);
  return absl::OkStatus();
}

// --audit-max-age ("0" = no limit) and the replica's defaults.
absl::Status CheckStoreFlags(ControlplaneFlags& f) {
  herd::controlplane::ServerOptions& o = f.o;
  if (f.audit_max_age != "0") {
    absl::Duration age;
    if (auto st = ParsePositiveDuration("--audit-max-age", f.audit_max_age, &age); !st.ok()) {
      return st;
    }
    o.store.etcd.audit_max_age = age;
  }
  if (!o.store.url.empty() && o.store.etcd_prefix.empty()) {
    return absl::InvalidArgumentError("--etcd-prefix must not be empty (e.g. /herd)");
  }
  auto max = herd::ParseSize(f.artifact_max_bytes);
  if (!max.ok() || *max == 0) {
    return absl::InvalidArgumentError(absl::StrCat(
        "--artifact-max-bytes: ", max.ok() ? "must be more than 0" : max.status().message()));
  }
  o.artifact_max_bytes = *max;
  if (o.artifacts_dir.empty() && o.store.url.empty()) o.artifacts_dir = o.data_dir + "/artifacts";
  if (!o.artifacts_dir.empty()) o.artifacts_dir = Absolute(o.artifacts_dir);
  if (o.replica_id.empty()) {
    char host[256] = {};
    gethostname(host, sizeof host - 1);
    const std::string port = o.listen.substr(o.listen.rfind(':') + 1);
    // Port 0 is picked at bind: the process id tells replicas on one machine apart then.
    o.replica_id = port == "0" ? absl::StrCat(host, "-", getpid()) : absl::StrCat(host, ":", port);
  }
  return absl::OkStatus();
}

// The durations into the options, and the TLS flags that only go together; the error
// names the flag.
absl::Status CheckFlags(ControlplaneFlags& f) {
  herd::controlplane::ServerOptions& o = f.o;
  if (*f.migrate) return absl::OkStatus();  // its own flags, checked by RunMigrate
  if (o.data_dir.empty()) {
    return absl::InvalidArgumentError("--data is required (a directory for the store, tokens "
                                      "and address files; created if missing)");
  }
  o.data_dir = Absolute(o.data_dir);
  if (auto st = CheckStoreFlags(f); !st.ok()) return st;
  for (auto [flag, text, out] :
       {std::tuple{"--lease", &f.lease, &o.lease},
        std::tuple{"--hello-timeout", &f.hello_timeout, &o.hello_timeout},
        std::tuple{"--silent-timeout", &f.silent_timeout, &o.silent_stream_timeout},
        std::tuple{"--token-recheck", &f.token_recheck, &o.token_recheck},
        std::tuple{"--stream-stall-timeout", &f.stream_stall, &o.stream_stall_timeout},
        std::tuple{"--http-header-timeout", &f.http_header_timeout, &o.http.header_timeout},
        std::tuple{"--http-idle-timeout", &f.http_idle_timeout, &o.http.idle_timeout},
        std::tuple{"--http-stream-stall-timeout", &f.http_stall_timeout,
                   &o.http.stream_stall_timeout},
        std::tuple{"--peer-call-timeout", &f.peer_call_timeout, &o.peer_call_timeout}}) {
    if (auto st = ParsePositiveDuration(flag, *text, out); !st.ok()) return st;
  }
  if (o.tls_cert.empty() != o.tls_key.empty()) {
    return absl::InvalidArgumentError("--tls-cert and --tls-key go together");
  }
  if (!o.client_ca.empty() && o.tls_cert.empty()) {
    return absl::InvalidArgumentError("--client-ca (mTLS) needs --tls-cert and --tls-key");
  }
  if (o.http_no_client_cert && (o.client_ca.empty() || o.http_listen.empty())) {
    return absl::InvalidArgumentError(
        "--http-no-client-cert exempts the HTTPS port (--http) from --client-ca: give both, or "
        "leave it out");
  }
  return absl::OkStatus();
}

// `controlplane token create|list|revoke`: the exit code, or nothing when no token command
// was given.
std::optional<int> RunTokenCommand(const ControlplaneFlags& f) {
  const herd::controlplane::ServerOptions& options = f.o;
  if (*f.token_create) {
    auto secret = herd::controlplane::CreateToken(options, f.token_name, f.token_role == "operator");
    if (!secret.ok()) return Fail(std::string(secret.status().message()));
    printf("%s\n", secret->c_str());
    return 0;
  }
  if (*f.token_list) {
    auto tokens = herd::controlplane::ListTokens(options);
    if (!tokens.ok()) return Fail(std::string(tokens.status().message()));
    printf("%-24s %s\n", "NAME", "ROLE");
    for (const auto& [name, role] : *tokens) printf("%-24s %s\n", name.c_str(), role.c_str());
    return 0;
  }
  if (*f.token_revoke) {
    auto st = herd::controlplane::RevokeToken(options, f.token_name);
    if (!st.ok()) return Fail(std::string(st.message()));
    printf("token %s revoked\n", f.token_name.c_str());
    return 0;
  }
  return std::nullopt;
}

// `controlplane migrate --from DIR --to etcd://...`: prints what it moved.
int RunMigrate(ControlplaneFlags& f) {
  herd::controlplane::StoreLocation to = f.o.store;
  to.url = f.migrate_to;
  to.data_dir.clear();
  auto report = herd::controlplane::MigrateSqliteDirToEtcd(Absolute(f.migrate_from), to,
                                                           f.migrate_force);
  if (!report.ok()) return Fail(std::string(report.status().message()));
  printf("migrated to %s prefix %s: %s\n", f.migrate_to.c_str(), to.etcd_prefix.c_str(),
         herd::controlplane::DescribeMigration(*report).c_str());
  return 0;
}

// One descriptor per connected agent and per HTTP connection: take the hard limit (as
// servers commonly do); HTTP connections are bounded below it (--http-max-connections).
void RaiseDescriptorLimit(const herd::controlplane::ServerOptions& o) {
  rlimit rl{};
  if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < rl.rlim_max) {
    rl.rlim_cur = rl.rlim_max;
    setrlimit(RLIMIT_NOFILE, &rl);
  }
  if (!o.http_listen.empty() && getrlimit(RLIMIT_NOFILE, &rl) == 0 &&
      rl.rlim_cur != RLIM_INFINITY && rl.rlim_cur < o.http.max_connections + 256) {
    herd::Logger("controlplane")
        ->warn("event=low_fd_limit nofile={} http_max_connections={} hint=\"raise the hard "
               "limit (LimitNOFILE= in the unit, ulimit -Hn) or lower --http-max-connections: "
               "connections past the limit fail to be accepted\"",
               rl.rlim_cur, o.http.max_connections);
  }
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
  ControlplaneFlags flags;
  AddAgentFlags(app, flags);
  AddHttpFlags(app, flags);
  AddLimitFlags(app, flags);
  AddTlsAndLogFlags(app, flags);
  AddStoreFlags(app, flags);
  AddArtifactFlags(app, flags);
  AddTokenCommands(app, flags);
  AddMigrateCommand(app, flags);
  CLI11_PARSE(app, argc, argv);
  if (auto st = CheckFlags(flags); !st.ok()) return Fail(std::string(st.message()));

  herd::LogOptions lopts;
  lopts.level = flags.log_level;
  lopts.file = flags.log_file;
  if (auto st = herd::InitLogging(lopts); !st.ok()) return Fail(std::string(st.message()));
  herd::InstallCrashHandlers("controlplane");
  if (*flags.migrate) return RunMigrate(flags);
  if (std::optional<int> exit_code = RunTokenCommand(flags)) return *exit_code;

  RaiseDescriptorLimit(flags.o);
  absl::Status st = herd::controlplane::RunServer(flags.o);
  if (!st.ok()) {
    herd::Logger("controlplane")->error("event=start_failed error=\"{}\"", st.message());
    return Fail(std::string(st.message()));
  }
  return 0;
}
