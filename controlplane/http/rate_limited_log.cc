#include "controlplane/http/rate_limited_log.h"

#include <utility>

namespace herd::controlplane::httpd {

void RateLimitedLog::Warn(const char* event, const std::string& detail) {
  const auto now = std::chrono::steady_clock::now();
  uint64_t suppressed = 0;
  {
    absl::MutexLock l(&mu_);
    Entry& e = entries_[event];
    if (e.logged && now - e.last < std::chrono::seconds(10)) {
      ++e.suppressed;
      return;
    }
    e.logged = true;
    e.last = now;
    suppressed = std::exchange(e.suppressed, 0);
  }
  log_->warn("event={} {} not_logged_since_last={}", event, detail, suppressed);
}

}  // namespace herd::controlplane::httpd
