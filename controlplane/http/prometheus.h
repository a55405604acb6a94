// The Prometheus text exposition (format 0.0.4) of the fleet: hosts, units and modules with
// their numeric probes, and the control plane's own numbers (hub counters, rollouts, store
// latency, process). Pure rendering: the HTTP server hands it a snapshot.
//
// Names follow Prometheus conventions and pass `promtool check metrics`: base units (bytes,
// seconds, ratios of one core), `_total` for counters, labels `host` (the host id) and
// `module` on fleet series only. Each numeric module probe is a gauge in a family of its own
// name, herd_probe_<sanitised name> (ProbeMetricName), labelled host, module, probe (the
// probe's name exactly as the module reported it) and unit (the probe's unit, when it has
// one). Probe names are chosen by module authors ("req/s", "Memory MB", "reqMin"...), so two
// of them may sanitise to one family: the probe label keeps their series apart.
#pragma once

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "controlplane/core/hub.h"
#include "controlplane/http/http_stats.h"
#include "controlplane/store/instrumented_store.h"
#include "controlplane/core/artifact_store.h"
#include "herd/v1/fleet.pb.h"

namespace herd::controlplane {

// The standard process_* metrics of the control plane itself (client libraries' names).
struct ProcessMetrics {
  double cpu_seconds = 0;         // user + system
  double resident_bytes = 0;
  double virtual_bytes = 0;
  double open_fds = 0;
  double max_fds = 0;             // soft limit; 0 when unlimited
  double start_time_seconds = 0;  // since the Unix epoch
};

// The control plane's own numbers, gathered at each scrape.
struct SelfMetrics {
  Hub::Stats hub;
  uint64_t rollouts_running = 0;
  uint64_t rollouts_succeeded = 0, rollouts_failed = 0, rollouts_aborted = 0;
  // Per kind of store call (InstrumentedStore::Stats()); none when the store is not timed.
  std::vector<InstrumentedStore::OpStats> store;
  // Absent where /proc cannot be read.
  std::optional<ProcessMetrics> process;
  // The Fleet API's server streams (WatchMetrics, WatchRollout, StreamLogs): open now,
  // messages dropped for a reader behind (its queue full), streams ended because their
  // reader stopped reading, streams refused because their token held its share of slots.
  uint64_t fleet_streams_open = 0;
  uint64_t fleet_stream_messages_dropped = 0;
  uint64_t fleet_streams_ended_stalled = 0;
  uint64_t fleet_streams_refused = 0;
  // The HTTP listener's refusals and open connections; absent without --http.
  std::optional<HttpStats> http;
  // Module artifacts kept and served; absent when the control plane keeps none.
  std::optional<ArtifactStore::Counts> artifacts;
};

struct ExpositionOptions {
  // Numeric probe series (one per host, module and probe) shown at most: above this, none
  // is shown and herd_controlplane_probe_series_omitted says so. 10,000 hosts with 100
  // probes each would be a million series in one scrape; fleet and module series stay.
  uint64_t max_probe_series = 100000;
  // Probe series of one host shown at most: a host with more has none of its own shown
  // (herd_host_probe_series_omitted names it) and does not count towards max_probe_series,
  // so one host cannot take the other hosts' probes out of the exposition.
  uint64_t max_probe_series_per_host = 2048;
};

// The fleet's exposition, built one host at a time (the hub hands hosts over one by one,
// so the whole fleet is never held parsed in memory).
class FleetExposition {
 public:
  FleetExposition(absl::Time now, ExpositionOptions options);
  ~FleetExposition();
  FleetExposition(const FleetExposition&) = delete;
  FleetExposition& operator=(const FleetExposition&) = delete;

  void AddHost(const herd::v1::HostDetail& host);
  // The text: the hosts' families and the control plane's own, in name order. Once.
  std::string Finish(const SelfMetrics& self);

  // Probe series seen so far (those of hosts past their own cap aside), and whether they
  // exceed the fleet's cap (and are left out).
  uint64_t probe_series() const;
  bool probes_omitted() const;
  // Hosts whose probe series were left out for exceeding max_probe_series_per_host.
  uint64_t hosts_probes_omitted() const;

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
  const absl::Time now_;
  const ExpositionOptions options_;
};

// The control plane's own families only (no host, module or probe series).
std::string RenderControlPlane(const SelfMetrics& self);

// FleetExposition over `hosts`.
std::string RenderPrometheus(const std::vector<herd::v1::HostDetail>& hosts,
                             const SelfMetrics& self, absl::Time now,
                             ExpositionOptions options = {});

// Reads this process's metrics from `proc_root` (/proc: self/stat, self/limits, self/fd, stat).
absl::StatusOr<ProcessMetrics> ReadProcessMetrics(const std::string& proc_root = "/proc");

// The family of a numeric probe: "herd_probe_" + the probe's name in snake_case. camelCase and
// PascalCase split into words ("reqMin" → req_min, "HTTPRequests" → http_requests), lower
// case, every run of characters outside [a-z0-9] one "_", none leading or trailing; words that
// `promtool check metrics` refuses in a gauge's name are left out (unit abbreviations such as
// "s", "ms", "mb"; non-base units such as "hours", "kilobytes"; metric type names such as
// "gauge"), as units belong in the unit label; then empty → "unnamed", a leading digit gets
// "_" in front, and a name ending in a reserved suffix (_total, _count, _sum, _bucket,
// _created, _info) gets "_value" appended.
std::string ProbeMetricName(const std::string& probe_name);

// Escapes a label value (\\, \", \n).
std::string EscapeLabelValue(const std::string& value);

}  // namespace herd::controlplane
