// HostSampler: the whole machine's CPU (from /proc/stat deltas), memory (/proc/meminfo) and
// load (/proc/loadavg), through a /proc root so tests can use a fake tree.
#pragma once

#include <cstdint>
#include <string>

#include "herd/v1/gateway.pb.h"

namespace herd::agent {

class HostSampler {
 public:
  explicit HostSampler(std::string proc_root = "/proc") : root_(std::move(proc_root)) {}
  // CPU is the busy share since the previous call (0 on the first).
  herd::v1::HostUsage Sample();

 private:
  std::string root_;
  uint64_t last_busy_ = 0, last_total_ = 0;
};

}  // namespace herd::agent
