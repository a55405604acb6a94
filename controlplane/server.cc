#include "controlplane/server.h"

#include <errno.h>
#include <signal.h>
#include <string.h>
#include <sys/stat.h>

#include <atomic>
#include <climits>
#include <functional>
#include <memory>
#include <vector>

#include "absl/cleanup/cleanup.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_replace.h"
#include "absl/strings/strip.h"
#include "common/atomic_file.h"
#include "common/clock.h"
#include "common/logging.h"
#include "common/scheduler.h"
#include "controlplane/core/hub.h"
#include "controlplane/core/secrets.h"
#include "controlplane/fleet/fleet_service.h"
#include "controlplane/fleet/deploy_rollouts.h"
#include "controlplane/fleet/rollouts.h"
#include "controlplane/gateway/gateway_service.h"
#include "controlplane/http/http_server.h"
#include "controlplane/http/prometheus.h"
#include "controlplane/replication.h"
#include "controlplane/store/instrumented_store.h"
#include "controlplane/store/store.h"
#include "grpcpp/ext/proto_server_reflection_plugin.h"
#include "grpcpp/grpcpp.h"
#include "grpcpp/health_check_service_interface.h"

namespace herd::controlplane {
namespace {

// SQLite in the data directory, or etcd (--store); the directory is made either way.
absl::StatusOr<OpenedStore> OpenStore(const ServerOptions& options) {
  StoreLocation location = options.store;
  location.data_dir = options.data_dir;
  return OpenStoreAt(location);
}

absl::StatusOr<std::string> AddToken(Store& store, const std::string& name, Role role) {
  auto secret = NewSecret(role == Role::kOperator ? "ho_" : "hv_");
  if (!secret.ok()) return secret.status();
  ApiToken t;
  t.name = name;
  t.role = role;
  t.secret_sha256 = Sha256Hex(*secret);
  t.created_at_unix_ms = absl::ToUnixMillis(absl::Now());
  if (auto s = store.AddToken(t); !s.ok()) return s;
  return *secret;
}

std::string ReadSecretFile(const std::string& path) {
  auto text = ReadFileToString(path);
  return text.ok() ? std::string(absl::StripAsciiWhitespace(*text)) : "";
}

// The join token: created on first start, or adopted from the file when it was replaced by
// hand. With replicas (etcd) the first one creates it and the others' files are copies: a
// file that differs is reported, not adopted.
absl::Status BootstrapJoinToken(Store& store, const std::string& dir, bool shared_store,
                                const std::shared_ptr<spdlog::logger>& log) {
  const std::string join_path = absl::StrCat(dir, "/join-token");
  auto join_hash = store.GetSetting("join_token_sha256");
  if (!join_hash.ok()) return join_hash.status();
  std::string join = ReadSecretFile(join_path);
  if (join.empty() && join_hash->has_value()) {
    if (shared_store) {
      log->warn("event=join_token_file_missing path={} hint=\"the store already has a join "
                "token (another replica made it): copy join-token from that replica's --data "
                "directory here if agents are to read it from this one\"",
                join_path);
    } else {
      log->warn("event=join_token_file_missing path={} (agents with a credential still "
                "connect; new agents need a join token: delete the setting by removing herd.db "
                "or write a new token to the file and restart)",
                join_path);
    }
    return absl::OkStatus();
  }
  if (shared_store && join_hash->has_value() && **join_hash != Sha256Hex(join)) {
    // Not adopted: replicas' files would take turns replacing the fleet's join token.
    log->warn("event=join_token_file_differs path={} hint=\"this file is not the fleet's join "
              "token (another replica set it): agents given it are refused; copy join-token "
              "from that replica. To replace the fleet's join token, delete <prefix>/settings/"
              "join_token_sha256 with etcdctl and restart the replica holding the new file\"",
              join_path);
    return absl::OkStatus();
  }
  if (join.empty()) {
    auto s = NewSecret("hj_");
    if (!s.ok()) return s.status();
    join = *s;
    if (auto w = WriteFileAtomically(join_path, join + "\n", 0600); !w.ok()) return w;
    log->info("event=join_token_created path={}", join_path);
  }
  if (!join_hash->has_value() || **join_hash != Sha256Hex(join)) {
    if (auto s = store.PutSetting("join_token_sha256", Sha256Hex(join)); !s.ok()) return s;
  }
  return absl::OkStatus();
}

// The first API tokens (admin, viewer) when the store has none. With replicas, one that
// starts on a store that has them (or loses the race to make them) makes no other: it says
// where its operator's files are.
absl::Status BootstrapApiTokens(Store& store, const std::string& dir,
                                const std::shared_ptr<spdlog::logger>& log) {
  auto tokens = store.ListTokens();
  if (!tokens.ok()) return tokens.status();
  bool made = false;
  if (tokens->empty()) {
    for (auto [name, role, file] : {std::tuple{"admin", Role::kOperator, "operator-token"},
                                    std::tuple{"viewer", Role::kViewer, "viewer-token"}}) {
      auto secret = AddToken(store, name, role);
      if (secret.status().code() == absl::StatusCode::kAlreadyExists) break;  // another replica
      if (!secret.ok()) return secret.status();
      std::string path = absl::StrCat(dir, "/", file);
      if (auto w = WriteFileAtomically(path, *secret + "\n", 0600); !w.ok()) return w;
      log->info("event=api_token_created name={} path={}", name, path);
      made = true;
    }
  }
  const std::string operator_file = absl::StrCat(dir, "/operator-token");
  if (!made && ReadSecretFile(operator_file).empty()) {
    log->warn("event=api_token_files_missing path={} hint=\"the store already has API tokens "
              "(made by the first replica that started on it): copy operator-token and "
              "viewer-token from that replica's --data directory, or make a new one with "
              "`controlplane token create NAME --role operator` and the same --data/--store "
              "flags\"",
              operator_file);
  }
  return absl::OkStatus();
}

// First start: a join token and two API tokens, written to files only the owner can read.
// Later starts: the files are checked against the store's hashes (a file replaced by hand is
// adopted: its hash is stored).
absl::Status Bootstrap(Store& store, const std::string& dir, bool shared_store,
                       std::shared_ptr<spdlog::logger> log) {
  if (auto s = BootstrapJoinToken(store, dir, shared_store, log); !s.ok()) return s;
  return BootstrapApiTokens(store, dir, log);
}

std::shared_ptr<grpc::ServerCredentials> Credentials(const ServerOptions& o) {
  if (o.tls_cert.empty()) return grpc::InsecureServerCredentials();
  grpc::SslServerCredentialsOptions ssl(
      o.client_ca.empty() ? GRPC_SSL_DONT_REQUEST_CLIENT_CERTIFICATE
                          : GRPC_SSL_REQUEST_AND_REQUIRE_CLIENT_CERTIFICATE_AND_VERIFY);
  auto cert = ReadFileToString(o.tls_cert);
  auto key = ReadFileToString(o.tls_key);
  if (!cert.ok() || !key.ok()) return nullptr;
  ssl.pem_key_cert_pairs.push_back({*key, *cert});
  if (!o.client_ca.empty()) {
    auto ca = ReadFileToString(o.client_ca);
    if (!ca.ok()) return nullptr;
    ssl.pem_root_certs = *ca;
  }
  return grpc::SslServerCredentials(ssl);
}

// How long calls still open at shutdown may take before they are cancelled.
constexpr absl::Duration kShutdownGrace = absl::Seconds(3);

// SIGTERM/SIGINT are taken by sigwait (WaitForShutdownSignal); block them in every thread.
sigset_t BlockShutdownSignals() {
  sigset_t mask;
  sigemptyset(&mask);
  sigaddset(&mask, SIGTERM);
  sigaddset(&mask, SIGINT);
  pthread_sigmask(SIG_BLOCK, &mask, nullptr);
  signal(SIGPIPE, SIG_IGN);
  return mask;
}

int WaitForShutdownSignal(const sigset_t& mask) {
  int sig = 0;
  sigwait(&mask, &sig);
  return sig;
}

// The store, with every call timed for /metrics (`metrics` points into `store`); the etcd
// client (if any) is declared first so that it outlives the store.
struct TimedStore {
  std::unique_ptr<etcd::Client> etcd_client;
  std::unique_ptr<Store> store;
  const InstrumentedStore* metrics = nullptr;
  std::string description;
};

absl::StatusOr<TimedStore> OpenTimedStore(const ServerOptions& options) {
  auto opened = OpenStore(options);
  if (!opened.ok()) return opened.status();
  auto timed = std::make_unique<InstrumentedStore>(std::move(opened->store));
  TimedStore out;
  out.etcd_client = std::move(opened->etcd_client);
  out.metrics = timed.get();
  out.store = std::move(timed);
  out.description = opened->description;
  return out;
}

HubOptions MakeHubOptions(const ServerOptions& options) {
  HubOptions hopts;
  hopts.lease = options.lease;
  hopts.metrics_interval_ms = options.metrics_interval_ms;
  hopts.metrics_batches_per_message = options.metrics_batches_per_message;
  hopts.metrics_group_above = options.metrics_group_above;
  hopts.silent_stream_timeout = options.silent_stream_timeout;
  hopts.send_threads = 2;  // fan-outs leave the gRPC thread that asked (HubOptions)
  hopts.limits = options.agent_limits;
  hopts.series.max_series = options.max_series_per_host;
  hopts.max_config_value_bytes = options.max_config_value_bytes;
  hopts.max_module_config_bytes = options.max_module_config_bytes;
  // A replica may be reached by a host that registered through another one moments ago.
  hopts.read_unknown_hosts = options.store.on_etcd();
  return hopts;
}

GatewayOptions MakeGatewayOptions(const ServerOptions& options) {
  GatewayOptions gopts;
  gopts.hello_timeout = options.hello_timeout;
  gopts.max_artifact_fetches = options.max_artifact_fetches;
  return gopts;
}

FleetStreamOptions MakeFleetStreamOptions(const ServerOptions& options) {
  FleetStreamOptions streams;
  streams.token_recheck = options.token_recheck;
  streams.queue.stall_timeout = options.stream_stall_timeout;
  streams.max_streams = options.max_streams;
  streams.max_streams_per_token = options.max_streams_per_token;
  return streams;
}

// The gRPC server: the agents' Gateway and the Fleet API on one port, with health checks
// and reflection.
class GrpcEndpoint {
 public:
  // Builds and starts it; the address actually bound (port 0 resolved).
  absl::StatusOr<std::string> Start(const ServerOptions& options,
                                    const std::vector<grpc::Service*>& services);
  // Cancels the calls still open after `grace` and waits for them; nothing if not started.
  void Stop(absl::Duration grace);
  // For the HTTP listener's JSON API, which transcodes to the Fleet API in process.
  std::shared_ptr<grpc::Channel> InProcessChannel() {
    return server_->InProcessChannel(grpc::ChannelArguments());
  }

 private:
  std::unique_ptr<grpc::Server> server_;
};

void TuneChannels(grpc::ServerBuilder& builder) {
  // No keepalive pings from this side: with them on, gRPC re-arms a timer on every read of
  // every connection, and Debian's libgrpc (built without NDEBUG) also tracks each timer in
  // a debug hash table whose chains it walks: 8 % of the control plane's CPU at 10,000
  // agents. Dead agents are noticed by the hub instead (a stream silent for a minute is
  // closed: HubOptions::silent_stream_timeout), and agents ping us every 20 s to notice a
  // dead control plane; these settings accept their pings.
  builder.AddChannelArgument(GRPC_ARG_KEEPALIVE_TIME_MS, INT_MAX);
  builder.AddChannelArgument(GRPC_ARG_HTTP2_MIN_RECV_PING_INTERVAL_WITHOUT_DATA_MS, 5000);
  builder.AddChannelArgument(GRPC_ARG_KEEPALIVE_PERMIT_WITHOUT_CALLS, 1);
  // An idle connection keeps the buffer of its next read: sized by its recent reads, at most
  // 4 KiB (effective with the "tcp_read_chunks" experiment off, controlplane_main.cc). An
  // agent's batch of 10 modules × 10 probes (~4.3 KiB) takes two reads. At 5,000 agents:
  // 8 KiB → 4 KiB saved 4 KiB per agent at the same CPU; 2 KiB saved 2 more for 20 % more CPU.
  builder.AddChannelArgument(GRPC_ARG_TCP_MAX_READ_CHUNK_SIZE, 4096);
  // No bandwidth-delay-product probing: gRPC pings every connection to size its receive
  // window, starting every 100 ms and slowing down only by 0.1-0.2 s every other ping (ten
  // minutes to reach its 10 s), each ping an answer from the agent and a timer here. At
  // 10,000 agents that was 0.87 → 0.67-0.74 of a core for the control plane and 0.96 →
  // 0.58-0.64 for the simulated agents, and it is what brought a fleet-wide config change
  // under 1 s (bench/README.md). Agents' messages are small; the fixed 64 KiB window of each
  // stream holds a dozen batches.
  builder.AddChannelArgument(GRPC_ARG_HTTP2_BDP_PROBE, 0);
}

absl::StatusOr<std::string> GrpcEndpoint::Start(const ServerOptions& options,
                                                const std::vector<grpc::Service*>& services) {
  auto creds = Credentials(options);
  if (!creds) {
    return absl::InvalidArgumentError(
        "cannot read --tls-cert / --tls-key / --client-ca: check the paths and permissions");
  }
  grpc::EnableDefaultHealthCheckService(true);
  grpc::reflection::InitProtoReflectionServerBuilderPlugin();
  grpc::ServerBuilder builder;
  int port = 0;
  builder.AddListeningPort(options.listen, creds, &port);
  for (grpc::Service* service : services) builder.RegisterService(service);
  builder.SetMaxReceiveMessageSize(static_cast<int>(options.max_message_bytes));
  TuneChannels(builder);
  server_ = builder.BuildAndStart();
  if (!server_ || port == 0) {
    return absl::UnavailableError(absl::StrCat(
        "cannot listen on ", options.listen,
        ": is another controlplane running there? choose another --listen"));
  }
  std::string host = options.listen.substr(0, options.listen.rfind(':'));
  return absl::StrCat(host, ":", port);
}

void GrpcEndpoint::Stop(absl::Duration grace) {
  if (!server_) return;
  server_->Shutdown(absl::ToChronoTime(absl::Now() + grace));
  server_->Wait();
}

// What /metrics renders: the fleet (hosts one at a time, each under its own lock only, so a
// scrape of a large fleet holds up no agent) and the control plane itself. Called on the
// HTTP server's workers once it has started; `http` is read then.
std::function<std::string(bool)> MakeMetricsHandler(
    const ServerOptions& options, Hub& hub, const Replication& replication,
    RolloutEngine& rollouts, FleetService& fleet_api, const InstrumentedStore& store_metrics,
    const Clock& clock, std::shared_ptr<spdlog::logger> log,
    const std::unique_ptr<HttpServer>* http) {
  ExpositionOptions exposition;
  exposition.max_probe_series = options.metrics_max_probe_series;
  exposition.max_probe_series_per_host = options.metrics_max_probe_series_per_host;
  auto omitting = std::make_shared<std::atomic<bool>>(false);
  return [&hub, &replication, &rollouts, &store_metrics, &clock, &fleet_api, exposition,
          omitting, log, http](bool fleet) {
    FleetExposition e(clock.Now(), exposition);
    // On replicas, each shows the hosts it holds (replication.h: Prometheus scrapes them all).
    if (fleet) {
      hub.VisitHosts([&e, &replication](const herd::v1::HostDetail& d) {
        if (replication.Exposes(d.host().host_id())) e.AddHost(d);
      });
    }
    if (fleet && e.probes_omitted() != omitting->exchange(e.probes_omitted())) {
      if (e.probes_omitted()) {
        log->warn("event=metrics_probes_omitted series={} max={} hint=\"raise "
                  "--metrics-max-probe-series, or query probes through the Fleet API\"",
                  e.probe_series(), exposition.max_probe_series);
      } else {
        log->info("event=metrics_probes_shown series={}", e.probe_series());
      }
    }
    SelfMetrics self;
    self.hub = hub.stats();
    const RolloutEngine::Counts r = rollouts.counts();
    self.rollouts_running = r.running;
    self.rollouts_succeeded = r.succeeded;
    self.rollouts_failed = r.failed;
    self.rollouts_aborted = r.aborted;
    self.store = store_metrics.Stats();
    const StreamTokens::Counts streams = fleet_api.stream_counts();
    self.fleet_streams_open = streams.open;
    self.fleet_stream_messages_dropped = streams.dropped;
    self.fleet_streams_ended_stalled = streams.stalled;
    self.fleet_streams_refused = streams.refused;
    if (*http != nullptr) self.http = (*http)->stats();
    if (const ArtifactStore* a = fleet_api.artifacts()) self.artifacts = a->counts();
    if (auto p = ReadProcessMetrics(); p.ok()) self.process = *p;
    return fleet ? e.Finish(self) : RenderControlPlane(self);
  };
}

HttpServerOptions MakeHttpOptions(const ServerOptions& options) {
  HttpServerOptions hopts = options.http;
  hopts.listen = options.http_listen;
  hopts.tls_cert = options.tls_cert;
  hopts.tls_key = options.tls_key;
  // mTLS covers this listener as it does gRPC's, unless the operator exempts it.
  if (!options.http_no_client_cert) hopts.client_ca = options.client_ca;
  hopts.metrics_public = options.metrics_public;
  return hopts;
}

void WriteAddressFile(const std::string& data_dir, const char* name, const std::string& address,
                      const std::shared_ptr<spdlog::logger>& log) {
  if (auto w = WriteFileAtomically(absl::StrCat(data_dir, "/", name), address + "\n", 0600);
      !w.ok()) {
    log->warn("event={}_not_written error=\"{}\"", absl::StrReplaceAll(name, {{"-", "_"}}),
              w.message());
  }
}

// The HTTP listener (dashboard, JSON API, /metrics), started; its address ("off" when
// there is none).
absl::StatusOr<std::string> StartHttp(const ServerOptions& options, Hub& hub,
                                      const Replication& replication, RolloutEngine& rollouts,
                                      FleetService& fleet,
                                      const InstrumentedStore& store_metrics, GrpcEndpoint& grpc,
                                      std::shared_ptr<spdlog::logger> log,
                                      std::unique_ptr<HttpServer>* http) {
  if (options.http_listen.empty()) return std::string("off");
  HttpHandlers handlers;
  handlers.metrics = MakeMetricsHandler(options, hub, replication, rollouts, fleet,
                                        store_metrics, SystemClock::Get(), log, http);
  handlers.ready = [&replication] { return replication.Ready(); };
  handlers.authorize_read = [&fleet](const std::string& bearer) {
    return fleet.AuthenticateToken(bearer, false).status();
  };
  *http = std::make_unique<HttpServer>(MakeHttpOptions(options), grpc.InProcessChannel(),
                                       std::move(handlers));
  auto bound = (*http)->Start();
  if (!bound.ok()) {
    http->reset();
    return bound.status();
  }
  WriteAddressFile(options.data_dir, "http-address", *bound, log);
  return *bound;
}

void LogReady(const std::shared_ptr<spdlog::logger>& log, const ServerOptions& options,
              const std::string& listen, const std::string& http_address, bool http,
              const std::string& store, const std::string& replica) {
  log->info("event=ready version={} pid={} listen={} http={} tls={} mtls={} http_mtls={} data={} "
            "store=\"{}\" replica={} artifacts={}",
            HERD_VERSION, getpid(), listen, http_address, !options.tls_cert.empty(),
            !options.client_ca.empty(),
            http && !options.client_ca.empty() && !options.http_no_client_cert,
            options.data_dir, store, replica,
            options.artifacts_dir.empty() ? "off" : options.artifacts_dir);
}

// The uploaded module artifacts' directory; none (null) without --artifacts-dir on etcd.
absl::StatusOr<std::unique_ptr<ArtifactStore>> OpenArtifacts(const ServerOptions& options) {
  if (options.artifacts_dir.empty()) return std::unique_ptr<ArtifactStore>();
  ArtifactStoreOptions aopts;
  aopts.dir = options.artifacts_dir;
  aopts.max_bytes = options.artifact_max_bytes;
  return ArtifactStore::Open(aopts, SystemClock::Get());
}

}  // namespace

absl::Status RunServer(const ServerOptions& options) {
  auto log = herd::Logger("controlplane");
  const sigset_t shutdown_signals = BlockShutdownSignals();
  if (auto s = CheckReplicaAddress(options); !s.ok()) return s;
  auto timed = OpenTimedStore(options);
  if (!timed.ok()) return timed.status();
  Store& store = *timed->store;
  if (auto s = Bootstrap(store, options.data_dir, options.store.on_etcd(), log); !s.ok()) {
    return s;
  }

  // Every part is built before any starts, so that each outlives the whole shutdown below;
  // the timers' two threads first, as every part plans tasks on them. `timers` has what must
  // keep time and never waits on the disk (the hub's sweep and write retries, the gateway's
  // Hello deadlines, the peer router's refresh); `store_tasks` what uses the store (the
  // rollouts' steps, the Fleet API's token checks), so that a slow store delays no deadline.
  ThreadScheduler timers(SystemClock::Get(), "cp-timers");
  ThreadScheduler store_tasks(SystemClock::Get(), "cp-store-tasks");
  Hub hub(store, timers, MakeHubOptions(options));
  auto replication = Replication::Create(options, timed->etcd_client.get(), store, hub, timers);
  if (!replication.ok()) return replication.status();
  Replication& repl = **replication;
  auto artifacts = OpenArtifacts(options);  // null without an artifacts directory
  if (!artifacts.ok()) return artifacts.status();
  DeployMover deploys(hub, hub, store_tasks);  // outlives the rollouts that use it
  RolloutEngine rollouts(hub, repl.relay(), hub, store, store_tasks, repl.ownership());
  rollouts.set_mover(&deploys);
  GatewayService gateway(hub, timers, MakeGatewayOptions(options));
  FleetService fleet(FleetBackends::Of(hub), store, rollouts, store_tasks,
                     MakeFleetStreamOptions(options));
  repl.Attach(fleet);
  gateway.ServeArtifacts(artifacts->get());
  fleet.KeepArtifacts(artifacts->get());
  GrpcEndpoint grpc_server;
  std::unique_ptr<HttpServer> http;
  bool serving = false;

  // The guards stop what started, the last declared first: the HTTP listener, rollouts
  // (handed over to other replicas), forwarded calls and the replicas' sync, the hub (agents'
  // streams), the lease, then the gRPC server (its Shutdown waits for the calls still open).
  absl::Cleanup log_stopped = [&] {
    if (serving) log->info("event=stopped");
  };
  absl::Cleanup stop_grpc = [&] { grpc_server.Stop(kShutdownGrace); };
  absl::Cleanup stop_membership = [&] { repl.StopMembership(); };
  if (auto s = hub.Start(); !s.ok()) return s;
  absl::Cleanup stop_hub = [&] { hub.Stop(); };
  // A single node starts its rollouts before serving (those a previous run left RUNNING are
  // closed first); a replica once it has joined (its lease owns rollouts), after the server
  // is bound (its address is what it advertises).
  // Stopped after the rollouts (declared before them): a rollout handed over at stop must
  // not first see its restarts on peers' hosts cancelled, as failures.
  absl::Cleanup stop_forwarding = [&] { repl.StopForwarding(); };
  if (!repl.on()) {
    if (auto s = rollouts.Start(); !s.ok()) return s;
  }
  absl::Cleanup stop_rollouts = [&] { rollouts.Stop(); };
  std::vector<grpc::Service*> services = {&gateway, &fleet};
  for (grpc::Service* extra : repl.services()) services.push_back(extra);
  auto bound = grpc_server.Start(options, services);
  if (!bound.ok()) return bound.status();
  if (repl.on()) {
    if (auto s = repl.Start(*bound); !s.ok()) return s;
    if (auto s = rollouts.Start(); !s.ok()) return s;
  }
  absl::Cleanup stop_http = [&] {
    if (http) http->Stop();
  };
  auto http_address = StartHttp(options, hub, repl, rollouts, fleet, *timed->metrics,
                                grpc_server, log, &http);
  if (!http_address.ok()) return http_address.status();
  // Written last: tools and tests take it to mean that everything is serving.
  WriteAddressFile(options.data_dir, "listen-address", *bound, log);
  LogReady(log, options, *bound, *http_address, http != nullptr, timed->description,
           repl.on() ? options.replica_id : "-");
  serving = true;
  const int sig = WaitForShutdownSignal(shutdown_signals);
  log->info("event=shutdown_begin signal={}", strsignal(sig));
  return absl::OkStatus();
}

absl::StatusOr<std::string> CreateToken(const ServerOptions& options, const std::string& name,
                                        bool operator_role) {
  if (name.empty() || name.size() > 64) {
    return absl::InvalidArgumentError("a token name is 1-64 characters");
  }
  auto opened = OpenStore(options);
  if (!opened.ok()) return opened.status();
  return AddToken(*opened->store, name, operator_role ? Role::kOperator : Role::kViewer);
}

absl::StatusOr<std::vector<std::pair<std::string, std::string>>> ListTokens(
    const ServerOptions& options) {
  auto opened = OpenStore(options);
  if (!opened.ok()) return opened.status();
  auto tokens = opened->store->ListTokens();
  if (!tokens.ok()) return tokens.status();
  std::vector<std::pair<std::string, std::string>> out;
  for (const auto& t : *tokens) {
    out.emplace_back(t.name, t.role == Role::kOperator ? "operator" : "viewer");
  }
  return out;
}

absl::Status RevokeToken(const ServerOptions& options, const std::string& name) {
  auto opened = OpenStore(options);
  if (!opened.ok()) return opened.status();
  return opened->store->DeleteToken(name);
}

}  // namespace herd::controlplane
