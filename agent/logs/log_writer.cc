#include "agent/logs/log_writer.h"

#include <errno.h>
#include <fcntl.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>

#include "absl/strings/str_cat.h"
#include "common/logging.h"
#include "common/utf8.h"

namespace herd::agent {
namespace {

std::shared_ptr<spdlog::logger> Log() {
  static auto log = herd::Logger("logs");
  return log;
}

}  // namespace

LogWriter::LogWriter(uint64_t max_queue_bytes)
    : max_queue_bytes_(max_queue_bytes), thread_([this] { Run(); }) {}

LogWriter::~LogWriter() {
  {
    absl::MutexLock l(&mu_);
    stopping_ = true;
  }
  thread_.join();
  for (auto& [id, sink] : sinks_) {
    if (sink.fd >= 0) close(sink.fd);
  }
}

LogWriter::SinkId LogWriter::Open(const LogSinkOptions& options) {
  absl::MutexLock l(&mu_);
  auto it = by_path_.find(options.path);
  if (it != by_path_.end()) {
    ++refs_[it->second];
    return it->second;
  }
  SinkId id = next_id_++;
  by_path_[options.path] = id;
  refs_[id] = 1;
  pending_opts_[id] = options;
  return id;
}

void LogWriter::Close(SinkId id) {
  absl::MutexLock l(&mu_);
  auto it = refs_.find(id);
  if (it == refs_.end()) return;
  if (--it->second > 0) return;
  refs_.erase(it);
  for (auto p = by_path_.begin(); p != by_path_.end(); ++p) {
    if (p->second == id) {
      by_path_.erase(p);
      break;
    }
  }
  queue_.push_back(Op{Op::kClose, id, ""});
}

bool LogWriter::Write(SinkId id, std::string data) {
  absl::MutexLock l(&mu_);
  if (queued_bytes_ + data.size() > max_queue_bytes_) {
    dropped_bytes_ += data.size();
    ++dropped_writes_;
    return false;
  }
  queued_bytes_ += data.size();
  queue_.push_back(Op{Op::kWrite, id, std::move(data)});
  return true;
}

void LogWriter::Flush() {
  absl::MutexLock l(&mu_);
  uint64_t ticket = ++flush_requested_;
  queue_.push_back(Op{Op::kFlush, 0, ""});
  auto done = [this, ticket]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    return flush_done_ >= ticket;
  };
  mu_.Await(absl::Condition(&done));
}

void LogWriter::ReopenAll() {
  absl::MutexLock l(&mu_);
  queue_.push_back(Op{Op::kReopen, 0, ""});
}

void LogWriter::Run() {
  std::deque<Op> batch;
  while (true) {
    {
      absl::MutexLock l(&mu_);
      auto ready = [this]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
        return !queue_.empty() || stopping_;
      };
      mu_.Await(absl::Condition(&ready));
      if (queue_.empty() && stopping_) return;
      batch.swap(queue_);
      for (auto& [id, opts] : pending_opts_) {
        Sink& s = sinks_[id];
        s.options = std::move(opts);
      }
      pending_opts_.clear();
    }
    uint64_t written = 0;
    uint64_t flushes = 0;
    for (Op& op : batch) {
      switch (op.kind) {
        case Op::kWrite: {
          auto it = sinks_.find(op.id);
          if (it != sinks_.end()) DoWrite(it->second, op.data);
          written += op.data.size();
          break;
        }
        case Op::kClose: {
          auto it = sinks_.find(op.id);
          if (it != sinks_.end()) {
            if (it->second.fd >= 0) close(it->second.fd);
            sinks_.erase(it);
          }
          break;
        }
        case Op::kFlush:
          ++flushes;
          break;
        case Op::kReopen:
          for (auto& [id, sink] : sinks_) {
            if (sink.fd >= 0) close(sink.fd);
            sink.fd = -1;
          }
          break;
      }
    }
    batch.clear();
    absl::MutexLock l(&mu_);
    queued_bytes_ -= std::min(queued_bytes_, written);
    flush_done_ += flushes;
  }
}

bool LogWriter::EnsureOpen(Sink& sink) {
  if (sink.fd >= 0) return true;
  // O_NOFOLLOW: a link planted in logs/ would have a root agent append a unit's output to
  // whatever it points at.
  sink.fd = open(sink.options.path.c_str(),
                 O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC | O_NOFOLLOW, 0640);
  if (sink.fd < 0) {
    if (!sink.failing) {
      Log()->error("event=log_open_failed path={} error=\"{}\"", sink.options.path,
                   errno == ELOOP ? "it is a symbolic link: logs are not written through "
                                    "links (remove it)"
                                  : strerror(errno));
    }
    sink.failing = true;
    return false;
  }
  struct stat st{};
  sink.size = fstat(sink.fd, &st) == 0 ? static_cast<uint64_t>(st.st_size) : 0;
  return true;
}

void LogWriter::Rotate(Sink& sink) {
  const std::string& base = sink.options.path;
  close(sink.fd);
  sink.fd = -1;
  const uint32_t retain = sink.options.retain;
  if (retain == 0) {
    unlink(base.c_str());
  } else {
    // Drop the oldest beyond retention (also cleans up after retention was lowered).
    unlink(absl::StrCat(base, ".", retain).c_str());
    for (uint32_t i = retain - 1; i >= 1; --i) {
      std::string from = absl::StrCat(base, ".", i);
      std::string to = absl::StrCat(base, ".", i + 1);
      rename(from.c_str(), to.c_str());  // ENOENT for gaps is fine
    }
    if (rename(base.c_str(), absl::StrCat(base, ".1").c_str()) != 0 && errno != ENOENT) {
      Log()->warn("event=log_rotate_failed path={} error=\"{}\"", base, strerror(errno));
    }
  }
  sink.size = 0;
}

void LogWriter::DoWrite(Sink& sink, const std::string& data) {
  if (!EnsureOpen(sink)) {
    dropped_bytes_ += data.size();
    ++dropped_writes_;
    return;
  }
  if (sink.options.max_bytes > 0 && sink.size > 0 &&
      sink.size + data.size() > sink.options.max_bytes) {
    // Someone else may have truncated the file (pm2-logrotate copies a log, then truncates
    // it): its size now, not what was written to it, decides.
    struct stat st{};
    if (fstat(sink.fd, &st) == 0) sink.size = static_cast<uint64_t>(st.st_size);
  }
  if (sink.options.max_bytes > 0 && sink.size > 0 &&
      sink.size + data.size() > sink.options.max_bytes) {
    Rotate(sink);
    if (!EnsureOpen(sink)) {
      dropped_bytes_ += data.size();
      ++dropped_writes_;
      return;
    }
  }
  size_t off = 0;
  while (off < data.size()) {
    ssize_t n = write(sink.fd, data.data() + off, data.size() - off);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) {
      if (!sink.failing) {
        Log()->error("event=log_write_failed path={} error=\"{}\" action=dropping_until_writable",
                     sink.options.path, strerror(errno));
      }
      sink.failing = true;
      dropped_bytes_ += data.size() - off;
      ++dropped_writes_;
      close(sink.fd);
      sink.fd = -1;
      return;
    }
    off += static_cast<size_t>(n);
    sink.size += static_cast<uint64_t>(n);
  }
  if (sink.failing) {
    Log()->info("event=log_write_recovered path={}", sink.options.path);
    sink.failing = false;
  }
}

absl::StatusOr<std::vector<std::string>> ReadLastLines(const std::string& path, size_t n) {
  std::vector<std::string> lines;
  if (n == 0) return lines;
  int fd = open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) {
    if (errno == ENOENT) return lines;
    return absl::UnavailableError(absl::StrCat("cannot read ", path, ": ", strerror(errno)));
  }
  struct stat st{};
  fstat(fd, &st);
  off_t end = st.st_size;
  std::string tail;  // the bytes from `pos` to end
  constexpr off_t kChunk = 16 << 10;
  constexpr size_t kMaxBytes = 8 << 20;
  off_t pos = end;
  auto count_lines = [&] {
    size_t c = 0;
    // A trailing newline ends the last line; it does not start a new one.
    size_t limit = tail.size() && tail.back() == '\n' ? tail.size() - 1 : tail.size();
    for (size_t i = 0; i < limit; ++i) c += tail[i] == '\n';
    return c;
  };
  while (pos > 0 && count_lines() < n && tail.size() < kMaxBytes) {
    off_t len = std::min(kChunk, pos);
    pos -= len;
    std::string chunk(static_cast<size_t>(len), '\0');
    ssize_t r = pread(fd, chunk.data(), chunk.size(), pos);
    if (r < 0) {
      int err = errno;
      close(fd);
      return absl::UnavailableError(absl::StrCat("cannot read ", path, ": ", strerror(err)));
    }
    chunk.resize(static_cast<size_t>(r));
    tail.insert(0, chunk);
  }
  close(fd);
  if (!tail.empty() && tail.back() == '\n') tail.pop_back();
  if (tail.empty()) return lines;
  size_t stop = tail.size();
  while (lines.size() < n && stop > 0) {
    size_t nl = tail.rfind('\n', stop - 1);
    if (nl == std::string::npos) {
      // The remaining text is a whole first line only if we read from the file's start.
      if (pos == 0) lines.push_back(ToValidUtf8(absl::string_view(tail).substr(0, stop)));
      break;
    }
    lines.push_back(ToValidUtf8(absl::string_view(tail).substr(nl + 1, stop - nl - 1)));
    stop = nl;
  }
  std::reverse(lines.begin(), lines.end());
  return lines;
}

}  // namespace herd::agent
