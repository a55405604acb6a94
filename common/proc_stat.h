// Parsing of Linux's /proc/PID/stat and /proc/stat (proc(5)), for the agent's ProcSampler
// (every supervised process, every tick) and the control plane's own process metrics
// (/metrics). Text in, values out: no file access here, so the parsers run on canned text in
// tests (tests/common/proc_stat_test.cc).
//
// /proc/PID/stat is "PID (COMM) STATE PPID ...": COMM is the process's name as it set it, up
// to 64 bytes, and may hold spaces and parentheses, so fields are counted from the LAST ')'.
// Fields past 24 (rss) are not read. Nothing here throws, reads past its input or allocates
// in proportion to it; malformed input is an InvalidArgument naming the field (the caller
// adds the file's path).
#pragma once

#include <sys/types.h>

#include <cstddef>
#include <cstdint>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"

namespace herd {

// A /proc/PID/stat longer than this is not one (the kernel writes well under 1 KiB).
inline constexpr size_t kMaxProcStatBytes = 64 << 10;

// The fields of /proc/PID/stat that Herd reads (proc(5) field numbers in comments).
struct ProcStat {
  char state = '?';          // 3
  pid_t ppid = 0;            // 4
  uint64_t utime_ticks = 0;  // 14, clock ticks (sysconf(_SC_CLK_TCK))
  uint64_t stime_ticks = 0;  // 15
  uint32_t threads = 0;      // 20
  uint64_t start_ticks = 0;  // 22, since boot: identifies the process across PID reuse
  uint64_t vsize_bytes = 0;  // 23
  uint64_t rss_pages = 0;    // 24; the kernel's signed value, a negative one read as 0

  // utime + stime, saturating rather than wrapping on absurd values.
  uint64_t cpu_ticks() const;
};

// Parses the content of /proc/PID/stat. InvalidArgument when the text is over
// kMaxProcStatBytes, has no "(COMM)", ends before field 24 (a truncated read), or holds a
// field that is not a number of its type (including one too large for it).
absl::StatusOr<ProcStat> ParseProcStat(absl::string_view content);

// The boot time (the "btime" line, seconds since the Unix epoch) from the content of
// /proc/stat; InvalidArgument when there is no such line or it is not a positive number.
absl::StatusOr<uint64_t> ParseBootTime(absl::string_view proc_stat);

}  // namespace herd
