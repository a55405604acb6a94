// Helpers the Supervisor's files share (supervisor*.cc); not part of its interface.
#pragma once

#include <sys/types.h>

#include <cstdint>

#include "absl/strings/str_cat.h"
#include "absl/time/time.h"
#include "agent/procfs/proc_sampler.h"
#include "common/atomic_file.h"

namespace herd::agent::supervisor_internal {

inline int64_t UnixMs(absl::Time t) { return absl::ToUnixMillis(t); }

// A process's start time in clock ticks since boot (0 if it is gone): with the PID, it tells
// a process from a later one that reuses the PID.
inline uint64_t ReadStartTicks(pid_t pid) {
  auto content = ReadFileToString(absl::StrCat("/proc/", pid, "/stat"));
  StatFields f;
  if (!content.ok() || !ParseStat(*content, &f)) return 0;
  return f.start_ticks;
}

}  // namespace herd::agent::supervisor_internal
