#include "agent/modules/channel_endpoint.h"

#include <errno.h>
#include <fcntl.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>

#include "absl/strings/str_cat.h"
#include "common/log_escape.h"

namespace herd::agent {

using json = nlohmann::json;

ChannelEndpoint::ChannelEndpoint(EventLoop& loop, std::string module, ChannelLimits limits,
                                 absl::Duration action_timeout)
    : loop_(loop),
      module_(std::move(module)),
      limits_(limits),
      log_(herd::Logger("modules")),
      state_(limits),
      actions_(loop, module_, action_timeout) {}

ChannelEndpoint::~ChannelEndpoint() {
  if (agent_fd_ >= 0) {
    loop_.UnwatchFd(watch_);
    close(agent_fd_);
  }
  if (child_fd_ >= 0) close(child_fd_);
}

int ChannelEndpoint::Open() {
  int sv[2];
  if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) != 0) {
    log_->error("event=socketpair_failed module={} error=\"{}\"", module_, strerror(errno));
    return -1;
  }
  fcntl(sv[0], F_SETFL, fcntl(sv[0], F_GETFL) | O_NONBLOCK);
  agent_fd_ = sv[0];
  child_fd_ = sv[1];
  return child_fd_;
}

void ChannelEndpoint::Attach(pid_t pid) {
  if (child_fd_ >= 0) {
    close(child_fd_);
    child_fd_ = -1;
  }
  if (agent_fd_ < 0) return;
  if (pid == 0) {
    Close("spawn failed");
    return;
  }
  state_.ResetForNewProcess();
  framer_ = std::make_unique<LineFramer>(limits_.max_line_bytes);
  state_.on_reply = [this](const std::string& action, const json& ret) {
    actions_.OnReply(action, ret);
  };
  state_.on_scoped = [this](const std::string& action, const std::string& uuid,
                            const std::string& kind, const json& data) {
    actions_.OnScoped(action, uuid, kind, data);
  };
  auto watch = loop_.WatchFd(agent_fd_, EPOLLIN | EPOLLRDHUP, [this](uint32_t) { Drain(); });
  if (!watch.ok()) {
    log_->error("event=channel_watch_failed module={} error=\"{}\"", module_,
                watch.status().message());
    Close("watch failed");
    return;
  }
  watch_ = *watch;
  state_.set_connected(true);
}

void ChannelEndpoint::Drain() {
  if (agent_fd_ < 0) return;
  char buf[65536];
  size_t budget = 1 << 20;  // per wakeup, so one module cannot starve the loop
  const absl::Time now = loop_.clock().Now();
  while (budget > 0) {
    ssize_t n = read(agent_fd_, buf, sizeof buf);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) return;
    if (n <= 0) {
      Close(n == 0 ? "closed by the module" : strerror(errno));
      return;
    }
    budget -= std::min(budget, static_cast<size_t>(n));
    uint64_t oversized_before = framer_->oversized();
    framer_->Feed(absl::string_view(buf, static_cast<size_t>(n)),
                  [&](absl::string_view line) { HandleLine(line, now); });
    if (uint64_t over = framer_->oversized() - oversized_before; over > 0) {
      state_.count_oversized(over);
      log_->warn("event=channel_line_too_long module={} limit_bytes={} total={}", module_,
                 limits_.max_line_bytes, state_.stats().oversized_lines());
    }
  }
}

void ChannelEndpoint::HandleLine(absl::string_view line, absl::Time now) {
  if (line.empty()) return;
  if (log_->should_log(spdlog::level::trace)) {
    log_->trace("event=channel_line module={} line=\"{}\"", module_, EscapeForLog(line, 300));
  }
  auto r = state_.HandleLine(line, now);
  if (r == ModuleChannelState::Result::kOk) return;
  const auto& st = state_.stats();
  uint64_t bad = st.invalid_json() + st.unknown_types() + st.flood_dropped();
  // The first few and then every 1000th, so a broken module cannot flood our log.
  if (bad <= 5 || bad % 1000 == 0) {
    const char* what = r == ModuleChannelState::Result::kInvalidJson   ? "invalid_json"
                       : r == ModuleChannelState::Result::kFlood       ? "flood"
                       : r == ModuleChannelState::Result::kUnknownType ? "unknown_type"
                                                                       : "invalid_message";
    log_->warn("event=channel_bad_message module={} kind={} total_bad={} line=\"{}\"", module_,
               what, bad, EscapeForLog(line, 120));
  }
}

void ChannelEndpoint::Close(const std::string& why) {
  if (child_fd_ >= 0) {
    close(child_fd_);
    child_fd_ = -1;
  }
  if (agent_fd_ < 0) return;
  if (watch_) loop_.UnwatchFd(watch_);
  watch_ = 0;
  close(agent_fd_);
  agent_fd_ = -1;
  state_.set_connected(false);
  log_->info("event=channel_closed module={} reason=\"{}\"", module_, why);
  actions_.FailAll(why);
}

bool ChannelEndpoint::SendLine(const std::string& line) {
  if (agent_fd_ < 0) return false;
  std::string data = line + "\n";
  size_t off = 0;
  while (off < data.size()) {
    ssize_t n = send(agent_fd_, data.data() + off, data.size() - off, MSG_NOSIGNAL);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) return false;  // full (the module does not read) or gone
    off += static_cast<size_t>(n);
  }
  return true;
}

void ChannelEndpoint::Trigger(const herd::v1::TriggerActionRequest& req,
                              PendingActions::Done done) {
  if (agent_fd_ < 0 || !state_.stats().connected()) {
    return done(absl::UnavailableError(absl::StrCat(
        module_, " is not connected (not running, or it closed its channel)")));
  }
  actions_.Trigger(req, state_, [this](const std::string& line) { return SendLine(line); },
                   std::move(done));
}

}  // namespace herd::agent

