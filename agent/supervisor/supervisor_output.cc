// Supervisor: units' output, cut into lines for the log files and the followers.
#include "agent/supervisor/supervisor.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/strip.h"
#include "agent/supervisor/app_spec.h"
#include "agent/supervisor/supervisor_internal.h"
#include "common/atomic_file.h"
#include "common/units.h"
#include "common/utf8.h"

namespace herd::agent {

using herd::v1::AppSpec;
using herd::v1::UnitState;
using herd::v1::UnitStatus;
using supervisor_internal::ReadStartTicks;
using supervisor_internal::UnixMs;

namespace {

constexpr size_t kMaxLineBytes = 64 << 10;     // a longer "line" is cut here
constexpr size_t kMaxReadPerWakeup = 256 << 10; // fairness between units
constexpr int kPipeBytes = 1 << 20;             // room for bursts while the loop is busy

}  // namespace

// One pipe per stream for the unit's lifetime: every process of the unit writes to the same
// one, so output of a restarted process follows in order.
void Supervisor::OpenOutput(Unit& u) {
  u.out.name = "out";
  u.err.name = "err";
  const std::string name = u.spec.name();
  for (OutputStream* s : {&u.out, &u.err}) {
    int fds[2];
    if (pipe2(fds, O_CLOEXEC | O_NONBLOCK) != 0) {
      log_->error("event=pipe_failed unit={} error=\"{}\"", name, strerror(errno));
      continue;
    }
    // The child's end must block (programs do not expect EAGAIN on stdout).
    fcntl(fds[1], F_SETFL, fcntl(fds[1], F_GETFL) & ~O_NONBLOCK);
    fcntl(fds[0], F_SETPIPE_SZ, kPipeBytes);
    s->read_fd = fds[0];
    s->write_fd = fds[1];
    auto watch = loop_.WatchFd(s->read_fd, EPOLLIN, [this, name, s](uint32_t) {
      auto it = units_.find(name);
      if (it != units_.end()) OnOutput(*it->second, *s);
    });
    if (watch.ok()) s->watch = *watch;
  }
}

void Supervisor::CloseOutput(Unit& u) {
  for (OutputStream* s : {&u.out, &u.err}) {
    if (s->watch) loop_.UnwatchFd(s->watch);
    if (s->read_fd >= 0) close(s->read_fd);
    if (s->write_fd >= 0) close(s->write_fd);
    if (s->sink) logs_.Close(s->sink);
    *s = OutputStream{};
  }
}

void Supervisor::OnOutput(Unit& u, OutputStream& s) {
  if (s.read_fd < 0) return;
  char buf[64 << 10];
  size_t total = 0;
  while (total < kMaxReadPerWakeup) {
    ssize_t n = read(s.read_fd, buf, sizeof buf);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) break;
    total += static_cast<size_t>(n);
    EmitLines(u, s, absl::string_view(buf, static_cast<size_t>(n)), false);
  }
}

void Supervisor::EmitLines(Unit& u, OutputStream& s, absl::string_view data, bool flush_partial) {
  std::string batch;
  std::string prefix;
  if (u.timestamp) {
    prefix = absl::StrCat(u.timestamp->Format(loop_.clock().Now(), options_.time_zone), ": ");
  }
  auto emit = [&](absl::string_view line) {
    batch.append(prefix);
    batch.append(line.data(), line.size());
    batch.push_back('\n');
    if (!followers_.empty()) {
      herd::v1::LogLine l;
      l.set_stream(s.name);
      l.set_unit(u.spec.name());
      // Output is bytes; a protobuf string must be UTF-8 or the peer cannot read the message
      // (a unit printing 0xFF would end the control plane's stream of this agent).
      l.set_text(ToValidUtf8(absl::StrCat(prefix, line)));
      // A sink may unfollow (itself or another): by a copy of the ids, and each sink
      // copied before it runs, so that nothing it erases is in use.
      std::vector<uint64_t> ids;
      for (const auto& [id, f] : followers_) {
        if (f.unit.empty() || f.unit == u.spec.name()) ids.push_back(id);
      }
      for (uint64_t id : ids) {
        auto it = followers_.find(id);
        if (it == followers_.end()) continue;
        LineSink sink = it->second.sink;
        sink(l);
      }
    }
  };
  while (!data.empty()) {
    size_t nl = data.find('\n');
    if (nl == absl::string_view::npos) {
      s.partial.append(data.data(), data.size());
      break;
    }
    if (s.partial.empty()) {
      emit(data.substr(0, nl));
    } else {
      s.partial.append(data.data(), nl);
      emit(s.partial);
      s.partial.clear();
    }
    data.remove_prefix(nl + 1);
  }
  if (s.partial.size() >= kMaxLineBytes || (flush_partial && !s.partial.empty())) {
    emit(s.partial);
    s.partial.clear();
  }
  if (!batch.empty()) logs_.Write(s.sink, std::move(batch));
}

void Supervisor::NoteInLog(const std::string& name, const std::string& line) {
  auto it = units_.find(name);
  if (it == units_.end() || it->second->err.sink == 0) return;
  // Written on its own, not through EmitLines: a line the unit has half written stays whole.
  logs_.Write(it->second->err.sink, absl::StrCat(line, "\n"));
}

absl::StatusOr<uint64_t> Supervisor::Follow(const std::string& name, LineSink sink) {
  if (!units_.count(name)) {
    return absl::NotFoundError(absl::StrCat("no unit named \"", name,
                                            "\": `agentctl list` shows the units on this host"));
  }
  uint64_t id = next_follow_id_++;
  followers_[id] = Follower{name, std::move(sink)};
  return id;
}

uint64_t Supervisor::FollowAll(LineSink sink) {
  uint64_t id = next_follow_id_++;
  followers_[id] = Follower{"", std::move(sink)};
  return id;
}

void Supervisor::Unfollow(uint64_t id) { followers_.erase(id); }

}  // namespace herd::agent
