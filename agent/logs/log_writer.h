// LogWriter: writes units' output to log files on its own thread, so that a slow or full
// disk never blocks the event loop, and therefore never blocks a child writing to its pipe
// (the loop keeps draining pipes whatever the disk does).
//
// Bounded: at most `max_queue_bytes` wait to be written; beyond that new data is dropped and
// counted (dropped_bytes/dropped_writes, shown by `agentctl info` and logged), rather than
// growing memory without limit. Rotation is built in (what pm2-logrotate adds to PM2): when a
// file would pass max_bytes it is renamed to NAME.1 (NAME.1 to NAME.2, ...) and only `retain`
// rotated files are kept. A write error (ENOSPC, EIO) is logged once per sink until a write
// succeeds again, and the data is counted as dropped; the sink reopens its file on the next
// write.
//
// Thread-safe. Sinks are keyed by path: opening the same path twice (merged logs) returns
// the same sink with a reference count.
#pragma once

#include <atomic>
#include <cstdint>
#include <deque>
#include <string>
#include <thread>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"

namespace herd::agent {

struct LogSinkOptions {
  std::string path;
  uint64_t max_bytes = 10 << 20;  // 0 = never rotate
  uint32_t retain = 5;            // rotated files kept
};

class LogWriter {
 public:
  using SinkId = uint64_t;

  explicit LogWriter(uint64_t max_queue_bytes = 16 << 20);
  // Writes what is queued, then stops the thread.
  ~LogWriter();
  LogWriter(const LogWriter&) = delete;
  LogWriter& operator=(const LogWriter&) = delete;

  SinkId Open(const LogSinkOptions& options);
  void Close(SinkId id);
  // Queues data (complete lines) for the sink; false if dropped because the queue is full.
  bool Write(SinkId id, std::string data);
  // Blocks until everything queued so far is written (tests, shutdown).
  void Flush();
  // Closes every file after what is queued: the next write to each opens its path again
  // (PM2's reloadLogs, after a rotation that renamed the files).
  void ReopenAll();

  uint64_t dropped_bytes() const { return dropped_bytes_.load(); }
  uint64_t dropped_writes() const { return dropped_writes_.load(); }

 private:
  struct Sink {
    LogSinkOptions options;
    int refs = 0;
    int fd = -1;
    uint64_t size = 0;
    bool failing = false;
  };
  struct Op {
    enum Kind { kWrite, kClose, kFlush, kReopen } kind;
    SinkId id;
    std::string data;
  };

  void Run();
  void DoWrite(Sink& sink, const std::string& data);
  bool EnsureOpen(Sink& sink);
  void Rotate(Sink& sink);

  const uint64_t max_queue_bytes_;
  absl::Mutex mu_;
  std::deque<Op> queue_ ABSL_GUARDED_BY(mu_);
  uint64_t queued_bytes_ ABSL_GUARDED_BY(mu_) = 0;
  uint64_t flush_requested_ ABSL_GUARDED_BY(mu_) = 0;
  uint64_t flush_done_ ABSL_GUARDED_BY(mu_) = 0;
  bool stopping_ ABSL_GUARDED_BY(mu_) = false;
  SinkId next_id_ ABSL_GUARDED_BY(mu_) = 1;
  absl::flat_hash_map<std::string, SinkId> by_path_ ABSL_GUARDED_BY(mu_);
  absl::flat_hash_map<SinkId, int> refs_ ABSL_GUARDED_BY(mu_);
  // Touched only by the writer thread (created there on the first op for an id).
  absl::flat_hash_map<SinkId, Sink> sinks_;
  absl::flat_hash_map<SinkId, LogSinkOptions> pending_opts_ ABSL_GUARDED_BY(mu_);
  std::atomic<uint64_t> dropped_bytes_{0};
  std::atomic<uint64_t> dropped_writes_{0};
  std::thread thread_;
};

// The last `n` lines of a file (without newlines), reading backwards from the end, so a
// large log costs only what is returned. A missing file is an empty result. A unit writes
// any bytes; the lines come back as UTF-8 (others replaced by U+FFFD), as the protobuf
// messages that carry them must be.
absl::StatusOr<std::vector<std::string>> ReadLastLines(const std::string& path, size_t n);

}  // namespace herd::agent
