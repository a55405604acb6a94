// The control plane process: opens the store, bootstraps secrets on first start, runs the
// Hub, rollouts, the gRPC server (Gateway + Fleet + health + reflection) and the HTTP
// listener, and stops cleanly on SIGTERM/SIGINT: the HTTP listener, rollouts, the hub (which
// ends the agents' streams), then the gRPC server (open calls get 3 s). RunServer builds
// every part first and starts them in turn; cleanup guards stop what started, so an error on
// the way stops only that.
//
// The store: SQLite (herd.db in the data directory) by default, or etcd (options.store, from
// --store etcd://...; replicas share it). On etcd the first replica to start makes the join
// and API tokens; the others find them in the store and say to copy the files from it.
//
// Files in the data directory (all 0600): herd.db (SQLite, WAL), join-token (give it to
// agentd --join-token-file), operator-token and viewer-token (API tokens created on first
// start), listen-address and http-address (the addresses actually bound, for tools and
// tests).
#pragma once

#include <string>
#include <utility>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "controlplane/core/agent_limits.h"
#include "controlplane/http/http_server.h"
#include "controlplane/store/store_location.h"

namespace herd::controlplane {

struct ServerOptions {
  // Required even on etcd: the token files and address files live there.
  std::string data_dir;
  // Where the store is (its data_dir is ignored: data_dir above is used).
  StoreLocation store;
  // Replicas over one etcd (issue 22; parsed here, used by the replica wiring): this
  // replica's id (--replica-id; default hostname:port of --listen) and the host:port peers
  // dial (--advertise; empty = the address bound).
  std::string replica_id;
  std::string advertise;
  // PeerLinkOptions::call_timeout (--peer-call-timeout).
  absl::Duration peer_call_timeout = absl::Seconds(5);
  std::string listen = "127.0.0.1:7070";
  absl::Duration lease = absl::Seconds(30);
  // GatewayOptions::hello_timeout and HubOptions::silent_stream_timeout.
  absl::Duration hello_timeout = absl::Seconds(5);
  absl::Duration silent_stream_timeout = absl::Seconds(60);
  // How often the Fleet API's open streams' tokens are looked up again (StreamTokens).
  absl::Duration token_recheck = absl::Seconds(10);
  uint32_t metrics_interval_ms = 1000;
  // HubOptions' fields of the same names: large fleets send their batches grouped.
  uint32_t metrics_batches_per_message = 5;
  size_t metrics_group_above = 1000;
  std::string tls_cert, tls_key, client_ca;
  // HTTP(S) for the dashboard, JSON API, /metrics and health; empty = none.
  std::string http_listen;
  bool metrics_public = false;
  // The HTTP listener's limits (connections, timeouts, workers, streams: HttpServerOptions);
  // its address, TLS files and metrics_public come from the fields above.
  HttpServerOptions http;
  // With client_ca: the HTTPS listener does not ask for a client certificate (bearer tokens
  // alone), which is otherwise required there as on gRPC.
  bool http_no_client_cert = false;
  // /metrics shows per-probe series only while the fleet has at most this many, and a
  // host's only while it has at most metrics_max_probe_series_per_host.
  uint64_t metrics_max_probe_series = 100000;
  uint64_t metrics_max_probe_series_per_host = 2048;
  // Per host (HubOptions::limits, SeriesOptions::max_series), and the largest message an
  // agent (or any gRPC client) may send.
  AgentLimits agent_limits;
  size_t max_series_per_host = 2048;
  size_t max_message_bytes = 16 << 20;
  // SetConfig's bounds (HubOptions).
  size_t max_config_value_bytes = 32 * 1024;
  size_t max_module_config_bytes = 48 * 1024;
  // The Fleet API's streams (FleetStreamOptions).
  absl::Duration stream_stall_timeout = absl::Seconds(30);
  size_t max_streams = 1024;
  size_t max_streams_per_token = 32;
  // Uploaded module artifacts (ArtifactStoreOptions, GatewayOptions): empty dir = none kept.
  std::string artifacts_dir;
  uint64_t artifact_max_bytes = 64ull << 20;
  size_t max_artifact_fetches = 64;
};

absl::Status RunServer(const ServerOptions& options);

// Token management on a store that may be in use by a running control plane (its data_dir
// and store: SQLite or etcd).
absl::StatusOr<std::string> CreateToken(const ServerOptions& options, const std::string& name,
                                        bool operator_role);
absl::StatusOr<std::vector<std::pair<std::string, std::string>>> ListTokens(
    const ServerOptions& options);
absl::Status RevokeToken(const ServerOptions& options, const std::string& name);

}  // namespace herd::controlplane
