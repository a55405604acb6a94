// A warning per event at most every 10 s, with how many of that event were not logged since:
// a flood of refusals (connections, requests, streams turned away by the HTTP listener's
// limits) costs a counter increment each, not a log line each. Thread-safe.
#pragma once

#include <chrono>
#include <cstdint>
#include <memory>
#include <string>
#include <unordered_map>

#include "absl/base/thread_annotations.h"
#include "absl/synchronization/mutex.h"
#include "spdlog/logger.h"

namespace herd::controlplane::httpd {

class RateLimitedLog {
 public:
  explicit RateLimitedLog(std::shared_ptr<spdlog::logger> log) : log_(std::move(log)) {}

  void Warn(const char* event, const std::string& detail);

 private:
  struct Entry {
    bool logged = false;
    std::chrono::steady_clock::time_point last;
    uint64_t suppressed = 0;
  };
  std::shared_ptr<spdlog::logger> log_;
  absl::Mutex mu_;
  std::unordered_map<std::string, Entry> entries_ ABSL_GUARDED_BY(mu_);
};

}  // namespace herd::controlplane::httpd
