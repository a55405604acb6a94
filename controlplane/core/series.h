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
//     there; all rings in one exactly-sized arena;
//   - which series there are (their keys, sorted, and where each one's rings are) is a
//     Layout shared by every host with the same series: a fleet of one kind holds one. A
//     host whose series change gets a copy of its own, shared again (interned by content)
//     at its next sample. Per series and host there remain its rings and 12 bytes of state.
// Samples arrive in time order; an older one (a late replay) is not added to the history
// (its values still reach the latest state and watchers) and is counted.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "common/interner.h"
#include "herd/v1/fleet.pb.h"

namespace herd::controlplane {

struct SeriesOptions {
  // Resource series (host and unit cpu, rss, memory_available, load1): the last `points`
  // samples, and the means of the last `coarse_points` blocks of `coarse_every` samples (the
  // block in progress aside; those blocks cover the fine window too, where they are not shown).
  // Probe series ("probe:<name>"): `probe_points` and `probe_coarse_points`. At one batch a
  // second the defaults keep CPU and memory for 5 minutes (1 at 1 s, 4 at 10 s) and each probe
  // for 2 minutes at 10 s: under 16 KiB for a host of 10 modules × 10 probes
  // (its layout shared).
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
  // Heap bytes held by this host alone (a layout shared with other hosts not counted), for
  // tests and benchmarks.
  size_t MemoryBytes() const;
  // The shared layout this host uses (null while it has its own), for tests: hosts with the
  // same series have the same.
  const void* SharedLayout() const { return draft_ ? nullptr : layout_.get(); }

 private:
  // Where a series is: its key in the layout's keys, its fine then coarse ring in a host's
  // values (fine[seq % fine], coarse[block % coarse]).
  struct Slot {
    uint32_t key_offset = 0;
    uint32_t value_offset = 0;
    uint16_t key_size = 0;
    bool probe = false;
  };
  struct Layout {
    std::string keys;
    std::vector<Slot> slots;  // sorted by key ("<unit>\n<metric>")
    size_t values = 0;        // floats of a host's rings
  };
  // A series' state on this host (parallel to the layout's slots): the last sample written
  // (sample numbers start at 1) and the running sum of its values in that sample's block.
  struct State {
    uint32_t last_seq = 0;
    float block_sum = 0;
    uint16_t block_count = 0;
  };
  // Every host's layouts, shared by content.
  static Interner<Layout>& Layouts();
  const Layout& layout() const;
  // Makes `next` (sorted slots; their offsets are computed here) this host's own layout, and
  // moves every kept series' rings and state there: `from[i]` is the index in the current
  // layout of next's slot i, or -1 for a new series.
  void Relayout(Layout next, const std::vector<int64_t>& from);

  size_t Fine(const Slot& s) const { return s.probe ? options_.probe_points : options_.points; }
  size_t Coarse(const Slot& s) const {
    return s.probe ? options_.probe_coarse_points : options_.coarse_points;
  }
  uint32_t Every() const { return static_cast<uint32_t>(options_.coarse_every); }
  uint32_t Block(uint32_t seq) const { return (seq - 1) / Every(); }
  // The mean of the block in progress of a series (NaN if it has no value yet).
  static float BlockMean(const State& st);
  // What a query shows of a series: fine samples from fine_first on, the means of blocks
  // [block_begin, block_end).
  struct Window {
    uint32_t fine_first = 0;
    uint32_t block_begin = 0, block_end = 0;
  };
  Window Shown(const Slot& s, const State& st) const;
  // A series with no fine tier shows the block in progress as its mean so far.
  bool ShowsBlockInProgress(const Slot& s, const State& st) const;
  std::string_view Key(const Layout& l, const Slot& s) const;
  // The index of a series in the layout, or -1.
  int64_t Find(std::string_view unit, std::string_view metric);
  int64_t Find(std::string_view unit, std::string_view metric) const;
  int64_t Insert(std::string_view unit, std::string_view metric);
  void DropStale();

  SeriesOptions options_;
  std::vector<int64_t> times_;        // times_[seq % size]: each sample's time
  std::vector<int64_t> block_times_;  // block_times_[block % size]: its last sample's time
  // Samples begun; 32 bits last 136 years at one batch a second.
  uint32_t seq_ = 0;
  bool accepting_ = false;
  // The shared layout, or this host's own while its series change (then layout_ is null).
  std::shared_ptr<const Layout> layout_;
  std::unique_ptr<Layout> draft_;
  std::vector<State> states_;
  std::vector<float> values_;  // exactly sized
  size_t cursor_ = 0;  // where the next Add of this batch probably is
  uint32_t stale_dropped_seq_ = 0;  // the sample in which DropStale last ran
  uint64_t dropped_late_ = 0, dropped_series_ = 0;
};

}  // namespace herd::controlplane
