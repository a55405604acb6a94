// The recent metric history of one host, kept compact because the control plane holds it
// for every host of the fleet (bench/README.md, "control plane memory"):
//   - one ring of sample times per host (every series of a batch shares its time);
//   - one ring of float values per series, indexed by the sample's sequence number, so a
//     point costs 4 bytes; a series absent from a batch holds NaN there; all rings in one
//     exactly-sized arena, the series sorted by key (no hash table slack);
//   - resource series (host and unit cpu/rss/...) keep `points` samples, probe series
//     (metric "probe:<name>") the last `probe_points` of them.
// Samples arrive in time order; an older one (a late replay) is not added to the history
// (its values still reach the latest state and watchers) and is counted.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "herd/v1/fleet.pb.h"

namespace herd::controlplane {

struct SeriesOptions {
  // At one batch per second: 3 minutes of CPU and memory, 1 minute of each probe.
  size_t points = 180;
  size_t probe_points = 60;
  // Series per host beyond which new ones are not recorded (a module inventing probe names),
  // once those with nothing left in the history (units gone) have been dropped.
  size_t max_series = 2048;
};

class HostSeries {
 public:
  HostSeries() = default;
  explicit HostSeries(SeriesOptions options) : options_(options) {}

  // Starts the sample of one batch taken at `at_ms`; false (and Add does nothing) if it is
  // older than the newest sample.
  bool Begin(int64_t at_ms);
  // A value of the current sample. `unit` empty = the host itself.
  void Add(std::string_view unit, std::string_view metric, double value);

  // The points of a series at or after `since_ms`, oldest first; false if there is no such
  // series.
  bool Points(std::string_view unit, std::string_view metric, int64_t since_ms,
              std::vector<herd::v1::Point>* out) const;

  uint64_t dropped_late() const { return dropped_late_; }
  uint64_t dropped_series() const { return dropped_series_; }
  // Heap bytes held, for tests and benchmarks.
  size_t MemoryBytes() const;

 private:
  // One series: its key in keys_, its ring in values_ (values[seq % capacity]).
  struct Entry {
    uint32_t key_offset = 0, key_size = 0;
    uint32_t value_offset = 0, capacity = 0;
    uint64_t last_seq = 0;  // last sample written (sample numbers start at 1)
  };
  size_t Capacity(std::string_view metric) const;
  std::string_view Key(const Entry& e) const;
  Entry* Find(std::string_view unit, std::string_view metric);
  const Entry* Find(std::string_view unit, std::string_view metric) const;
  Entry* Insert(std::string_view unit, std::string_view metric);
  void DropStale();

  SeriesOptions options_;
  std::vector<int64_t> times_;  // times_[seq % points]
  uint64_t seq_ = 0;            // samples begun
  bool accepting_ = false;
  // Sorted by key ("<unit>\n<metric>"); keys and values live in two arenas sized exactly.
  std::vector<Entry> entries_;
  std::string keys_;
  std::vector<float> values_;
  size_t cursor_ = 0;  // where the next Add of this batch probably is
  uint64_t dropped_late_ = 0, dropped_series_ = 0;
};

}  // namespace herd::controlplane
