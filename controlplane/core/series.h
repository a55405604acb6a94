// The recent metric history of one host, kept compact because the control plane holds it
// for every host of the fleet (bench/README.md, "Fleet scale"). Two tiers per series:
//   - fine: the last samples as they came (one point per batch);
//   - coarse: the mean of each block of `coarse_every` consecutive samples, for longer.
// A query returns the coarse points older than the fine window, then the fine points.
// Layout:
//   - one ring of sample times and one of block end times per host (every series of a batch
//     shares its time);
//   - per series, a fine ring and a coarse ring of floats indexed by sample or block number,
//     so a point costs 4 bytes; a series absent from a sample (or a whole block) holds NaN
//     there; all rings in one exactly-sized arena, the series sorted by key (no hash table
//     slack).
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
  // Resource series (host and unit cpu, rss, memory_available, load1): the last `points`
  // samples, and the means of the last `coarse_points` blocks of `coarse_every` samples (the
  // block in progress aside; those blocks cover the fine window too, where they are not shown).
  // Probe series ("probe:<name>"): `probe_points` and `probe_coarse_points`. At one batch a
  // second the defaults keep CPU and memory for 5 minutes (1 at 1 s, 4 at 10 s) and each probe
  // for 2 minutes at 10 s: under 20 KiB for a host of 10 modules × 10 probes.
  size_t points = 60;
  size_t probe_points = 0;
  size_t coarse_every = 10;
  size_t coarse_points = 30;
  size_t probe_coarse_points = 12;
  // Series per host beyond which new ones are not recorded (a module inventing probe names),
  // once those with nothing left in the history (units gone) have been dropped.
  size_t max_series = 2048;
};

class HostSeries {
 public:
  HostSeries() : HostSeries(SeriesOptions{}) {}
  explicit HostSeries(SeriesOptions options);

  // Starts the sample of one batch taken at `at_ms`; false (and Add does nothing) if it is
  // older than the newest sample.
  bool Begin(int64_t at_ms);
  // A value of the current sample. `unit` empty = the host itself. A series given twice in
  // one sample keeps the first value.
  void Add(std::string_view unit, std::string_view metric, double value);

  // The points of a series at or after `since_ms`, oldest first (coarse, then fine; a series
  // with no fine tier shows the block in progress as its mean so far); false if there is no
  // such series.
  bool Points(std::string_view unit, std::string_view metric, int64_t since_ms,
              std::vector<herd::v1::Point>* out) const;

  uint64_t dropped_late() const { return dropped_late_; }
  uint64_t dropped_series() const { return dropped_series_; }
  // Heap bytes held, for tests and benchmarks.
  size_t MemoryBytes() const;

 private:
  // One series: its key in keys_, its fine then coarse ring in values_ (fine[seq % fine],
  // coarse[block % coarse]), and the running sum of its values in the block of last_seq.
  struct Entry {
    uint32_t key_offset = 0;
    uint32_t value_offset = 0;
    uint32_t last_seq = 0;  // last sample written (sample numbers start at 1)
    float block_sum = 0;
    uint16_t key_size = 0;
    uint16_t block_count = 0;
    bool probe = false;
  };
  size_t Fine(const Entry& e) const { return e.probe ? options_.probe_points : options_.points; }
  size_t Coarse(const Entry& e) const {
    return e.probe ? options_.probe_coarse_points : options_.coarse_points;
  }
  uint32_t Every() const { return static_cast<uint32_t>(options_.coarse_every); }
  uint32_t Block(uint32_t seq) const { return (seq - 1) / Every(); }
  // The mean of the block in progress of a series (NaN if it has no value yet).
  static float BlockMean(const Entry& e);
  // What a query shows of a series: fine samples from fine_first on, the means of blocks
  // [block_begin, block_end).
  struct Window {
    uint32_t fine_first = 0;
    uint32_t block_begin = 0, block_end = 0;
  };
  Window Shown(const Entry& e) const;
  // A series with no fine tier shows the block in progress as its mean so far.
  bool ShowsBlockInProgress(const Entry& e) const;
  std::string_view Key(const Entry& e) const;
  Entry* Find(std::string_view unit, std::string_view metric);
  const Entry* Find(std::string_view unit, std::string_view metric) const;
  Entry* Insert(std::string_view unit, std::string_view metric);
  void DropStale();

  SeriesOptions options_;
  std::vector<int64_t> times_;        // times_[seq % size]: each sample's time
  std::vector<int64_t> block_times_;  // block_times_[block % size]: its last sample's time
  // Samples begun; 32 bits last 136 years at one batch a second.
  uint32_t seq_ = 0;
  bool accepting_ = false;
  // Sorted by key ("<unit>\n<metric>"); keys and values live in two arenas sized exactly.
  std::vector<Entry> entries_;
  std::string keys_;
  std::vector<float> values_;
  size_t cursor_ = 0;  // where the next Add of this batch probably is
  uint64_t dropped_late_ = 0, dropped_series_ = 0;
};

}  // namespace herd::controlplane
