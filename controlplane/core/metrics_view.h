// A metrics batch as the hub records it, read in place from its wire bytes: the agents'
// batches are nearly all of the control plane's ingest (10,000 hosts send 10,000 a second,
// each of hundreds of fields), and parsing each into protobuf objects (every string its own
// allocation, then the newest one serialized again as the host's latest state) was a third
// of the control plane's CPU. Reading one here allocates nothing: names are views into the
// message, values are read as they pass, and the bytes themselves become the latest state.
//
// Only a batch protobuf would parse to exactly the same values is read here: anything
// unusual (a field with an unexpected wire type, a submessage given twice, which protobuf
// merges, invalid UTF-8 in a string, a truncated field) or past the host's limits
// (agent_limits.h) is refused, and the caller parses the message and bounds it as before.
// So this reader decides nothing about what is accepted; tests/fuzz/metrics_view_fuzz.cc
// checks that whatever it reads protobuf reads the same.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "controlplane/core/agent_limits.h"
#include "herd/v1/gateway.pb.h"

namespace herd::controlplane {

struct ProbeView {
  std::string_view name;
  double number = 0;
  bool numeric = false;
};

struct UnitView {
  std::string_view name;
  double cpu_percent = 0;
  uint64_t rss_bytes = 0;
  uint32_t first_probe = 0;  // its probes are probes()[first_probe, first_probe + probes)
  uint32_t probes = 0;
};

class MetricsBatchView {
 public:
  // Reads `bytes`, a MetricsBatch, without copying it (the view points into it: `bytes` must
  // outlive it). False if protobuf might read it differently, or it is past `limits`.
  bool Read(std::string_view bytes, const AgentLimits& limits);
  // A parsed batch (the view points into it: it must outlive the view).
  void From(const herd::v1::MetricsBatch& batch);

  int64_t at_unix_ms() const { return at_unix_ms_; }
  uint64_t dropped_batches() const { return dropped_batches_; }
  bool replayed() const { return replayed_; }
  double host_cpu_percent() const { return host_cpu_percent_; }
  uint64_t host_memory_available_bytes() const { return host_memory_available_; }
  double host_load1() const { return host_load1_; }
  const std::vector<UnitView>& units() const { return units_; }
  const std::vector<ProbeView>& probes() const { return probes_; }

  // The host's usage, as a message (what host listings show).
  void HostUsageTo(herd::v1::HostUsage* out) const;
  // The whole batch as wire bytes (a copy of those read, or the parsed batch serialized):
  // the host's latest state, parsed only when someone asks for it.
  void WireTo(std::string* out) const;

  // Forgets the batch (nothing left pointing into it). The vectors keep their capacity for
  // the next one, up to kKeptProbes probes and kKeptUnits units: a view kept per thread
  // does not hold on to what one batch at the limits made it grow to (a 16 MiB message of
  // empty probes is millions of them).
  void Clear();
  static constexpr size_t kKeptProbes = 16384, kKeptUnits = 1024;
  // Heap bytes the view holds (tests).
  size_t MemoryBytes() const {
    return units_.capacity() * sizeof(UnitView) + probes_.capacity() * sizeof(ProbeView);
  }

 private:
  void Reset();

  std::string_view wire_;   // Read: the batch's bytes
  std::string_view host_;   // Read: its HostUsage's bytes (empty if absent)
  const herd::v1::MetricsBatch* parsed_ = nullptr;  // From
  int64_t at_unix_ms_ = 0;
  uint64_t dropped_batches_ = 0;
  bool replayed_ = false;
  double host_cpu_percent_ = 0, host_load1_ = 0;
  uint64_t host_memory_available_ = 0;
  // Kept between reads (a stream's batches reuse them).
  std::vector<UnitView> units_;
  std::vector<ProbeView> probes_;
};

// The batches of an AgentMessage's wire bytes when it is a metrics message in its usual
// form (one `metrics` field, or one `metrics_batches` field of at most `max_batches`
// batches and nothing else): views of each batch's bytes, oldest first. False for any
// other message, or one in an unusual form (parse it then).
bool MetricsBatchesOf(std::string_view agent_message, size_t max_batches,
                      std::vector<std::string_view>* batches);

}  // namespace herd::controlplane
