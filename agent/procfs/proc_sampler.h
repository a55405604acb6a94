// ProcSampler: per-process CPU and memory from /proc, for every supervised unit.
//
// Why it keeps files open: each tracked PID's /proc/PID/stat (and its main thread's
// `children` list) is opened once and re-read with pread at offset 0 on every tick. That is
// ~3x cheaper than open/read/close per tick (see bench/README.md), and it is also safer: an fd
// on /proc/PID is bound to that process, so once it dies reads fail with ESRCH instead of
// silently reading a new process that reused the PID.
//
// A unit is sampled as a tree: its root PIDs (the main process and/or PIDs from pid files)
// plus every descendant found through /proc/PID/task/PID/children (children forked by
// the main thread, which covers node, python and shells). Values are summed over the tree.
// PSS and USS come from smaps_rollup, which is expensive, on a slower period chosen by the
// caller.
//
// The /proc root is a constructor argument so that tests run the sampler on a fake tree.
// Not thread-safe: owned and called by the agent's loop.
#pragma once

#include <sys/types.h>

#include <cstdint>
#include <string>
#include <vector>

#include "absl/strings/string_view.h"
#include "absl/container/flat_hash_map.h"
#include "absl/time/time.h"

namespace herd::agent {

// What to sample for one unit.
struct SampleTarget {
  std::string key;
  std::vector<pid_t> roots;
  bool include_descendants = true;
};

// The result for one unit, in the order of the targets given.
struct TreeUsage {
  std::string key;
  double cpu_percent = 0;  // percent of one core
  uint64_t rss_bytes = 0;
  uint64_t pss_bytes = 0;  // only when smaps was read this tick
  uint64_t uss_bytes = 0;
  uint32_t threads = 0;
  bool smaps_read = false;
  std::vector<pid_t> pids;  // the processes found alive and sampled
};

// Parsed fields of /proc/PID/stat that the sampler uses.
struct StatFields {
  pid_t ppid = 0;
  uint64_t cpu_ticks = 0;   // utime + stime
  uint32_t threads = 0;
  uint64_t start_ticks = 0; // starttime since boot, identifies the process across PID reuse
  uint64_t rss_pages = 0;
};
// Parses the content of /proc/PID/stat; false if malformed. The comm field may contain
// spaces and parentheses: fields are counted from the last ')'. The sampler's view of
// common/proc_stat.h's ParseProcStat (which says what is wrong), kept for its callers.
bool ParseStat(absl::string_view content, StatFields* out);

struct SmapsRollup {
  uint64_t pss_bytes = 0;
  uint64_t uss_bytes = 0;
};
bool ParseSmapsRollup(absl::string_view content, SmapsRollup* out);

class ProcSampler {
 public:
  // clk_tck and page_size default to the running system's values.
  explicit ProcSampler(std::string proc_root = "/proc", long clk_tck = 0, long page_size = 0);
  ~ProcSampler();
  ProcSampler(const ProcSampler&) = delete;
  ProcSampler& operator=(const ProcSampler&) = delete;

  // Samples every target at monotonic time `now`. CPU % of a process is its CPU time since
  // the previous tick that saw it, over the elapsed time; a process seen for the first time
  // contributes 0 %. Processes no longer found are forgotten (their fds closed).
  std::vector<TreeUsage> Sample(absl::Time now, const std::vector<SampleTarget>& targets,
                                bool read_smaps);

  // Number of processes currently tracked (open fds / 2, roughly).
  size_t tracked() const { return procs_.size(); }

 private:
  struct Tracked {
    int stat_fd = -1;
    int children_fd = -1;
    int smaps_fd = -1;
    uint64_t start_ticks = 0;
    uint64_t last_cpu_ticks = 0;
    absl::Time last_time;
    uint64_t seen_tick = 0;
    SmapsRollup smaps;
  };
  Tracked* Open(pid_t pid);
  void Close(Tracked& t);
  // Reads into buf_ with pread(fd, offset 0); returns the content or nullopt on failure.
  bool PreadAll(int fd, std::string* out);
  void ReadChildren(Tracked& t, std::vector<pid_t>* out);

  const std::string root_;
  const double clk_tck_;
  const uint64_t page_size_;
  uint64_t tick_ = 0;
  absl::flat_hash_map<pid_t, Tracked> procs_;
  std::string buf_;
};

}  // namespace herd::agent
