// HubOptions (what the server tunes) and HubStats (what /metrics reads) of the hub and its
// components (hub.h).
#pragma once

#include <array>
#include <cstddef>
#include <cstdint>

#include "absl/time/time.h"
#include "common/latency_histogram.h"
#include "controlplane/core/agent_limits.h"
#include "controlplane/core/series.h"

namespace herd::controlplane {

struct HubOptions {
  // A host whose stream has been gone longer than this is shown offline.
  absl::Duration lease = absl::Seconds(30);
  // A connected agent that has sent nothing for this long (or 10 metrics intervals, if that
  // is longer: it sends a batch every interval) is taken as gone, its host down or cut off,
  // and its stream is closed. This is how the control plane notices dead agents, instead of
  // HTTP/2 keepalive pings of its own (server.cc).
  absl::Duration silent_stream_timeout = absl::Seconds(60);
  // Recent history kept per host (controlplane/core/series.h).
  SeriesOptions series;
  size_t events_kept = 100;
  uint32_t metrics_interval_ms = 1000;
  // Once this many hosts are connected, each is asked to send its batches this many at a
  // time (Welcome.metrics_batches_per_message; a host watched live by name still sends each
  // at once). Every sample is kept; the fleet's messages, each a cost in the kernel and in
  // gRPC, are divided by it (bench/README.md). 1: always each batch alone.
  uint32_t metrics_batches_per_message = 1;
  size_t metrics_group_above = 1000;
  // Extra time a relayed request may take beyond its own timeout before the hub fails it.
  absl::Duration request_grace = absl::Seconds(5);
  // Threads that hand messages to sessions (0: the caller's thread; send_pool.h). The server
  // uses a few; tests use 0 to see sends at once. A host's messages always go through the
  // same thread, in order.
  size_t send_threads = 0;
  // What one host may make the control plane hold (controlplane/core/agent_limits.h).
  AgentLimits limits;
  // The join token's hash is read from the store at most this often (every Connect needs
  // it: 10,000 agents reconnecting at once would otherwise be 10,000 reads). Another process
  // may write it (a new token adopted at start), so it is not cached for ever.
  absl::Duration join_token_cache = absl::Seconds(5);
  // A module's config as SetConfig checks it: one value, and all of the module's overrides
  // that can apply to one host together, measured as the JSON agentd puts in the module's
  // environment. One environment variable may not exceed 128 KiB (Linux's MAX_ARG_STRLEN),
  // and the module's defaults share that variable with them.
  size_t max_config_value_bytes = 32 * 1024;
  // Replicas (issue 22): a host presenting its credential that is not in memory is read
  // from the store (it registered through another replica, whose record has not reached
  // this one's watch yet). Off on a single node: every host is in memory from the start.
  bool read_unknown_hosts = false;
  size_t max_module_config_bytes = 48 * 1024;
  // Joins waiting for their new credential's write (Hub::ConnectAsync); past it a join is
  // refused (RESOURCE_EXHAUSTED) and the agent retries after its backoff. Each waiting join
  // holds its stream and its Hello (an inventory, up to AgentLimits' bound).
  size_t max_pending_joins = 10000;
};

// Counters for /metrics and tests.
struct HubStats {
  uint64_t hosts = 0, online = 0, connected = 0;
  uint64_t batches_received = 0, batches_dropped_by_agents = 0;
  uint64_t config_pushes = 0, config_nacks = 0;
  // Every message agents sent (Hellos included, stale streams and refused Hellos too).
  uint64_t agent_messages = 0;
  // From a batch's time (the agent's clock) to its processing here, live batches only (not
  // those replayed after a reconnect; of a group, its newest). Seconds of delay mean the
  // control plane (or its machine) is behind: everything it does for agents waits as long.
  LatencyHistogram::Snapshot batch_delay;
  // What agents sent past a per-host limit, by kind (AgentLimits; Limit indexes it).
  std::array<uint64_t, kLimitKinds> limited{};
  // Connects that read the join token's hash from the store (the rest used the cache).
  uint64_t join_token_reads = 0;
  // Joins refused because max_pending_joins were waiting for the store.
  uint64_t joins_refused = 0;
  // Audit entries dropped because StoreAuditLog::kMaxQueued waited for the store.
  uint64_t audit_dropped = 0;

  static constexpr std::array<double, 12> kBatchDelayBounds = {0.01, 0.025, 0.05, 0.1, 0.25, 0.5,
                                                               1,    2.5,   5,    10,  30,   60};
};

}  // namespace herd::controlplane
