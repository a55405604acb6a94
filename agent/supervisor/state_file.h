// StateFile: what the agent must remember across its own restarts (PM2's dump/resurrect):
// every unit's spec, whether the operator wants it running, and the process group it last
// ran as (so that processes orphaned by an agent crash are stopped before being started
// again, instead of running twice).
//
// Writes happen on a background thread (latest snapshot wins), because an fsync on the event
// loop would add milliseconds to every restart. The file is replaced atomically, so a crash
// or a full disk leaves the previous state intact; a failed write is logged and tried again
// (after 1 s, doubling up to 30 s) until it succeeds or a newer snapshot replaces it.
#pragma once

#include <sys/types.h>

#include <cstdint>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/synchronization/mutex.h"
#include "herd/v1/types.pb.h"

namespace herd::agent {

struct PersistedUnit {
  herd::v1::AppSpec spec;
  bool desired_running = false;
  pid_t pid = 0;             // last main process (its process group id), 0 = none
  uint64_t start_ticks = 0;  // its start time, to recognise it despite PID reuse
};

std::string SerializeState(const std::vector<PersistedUnit>& units);
// `origin` names the file in error messages.
absl::StatusOr<std::vector<PersistedUnit>> ParseState(absl::string_view json,
                                                      absl::string_view origin);

class StateFile {
 public:
  explicit StateFile(std::string path);
  ~StateFile();  // writes the pending snapshot, if any
  StateFile(const StateFile&) = delete;
  StateFile& operator=(const StateFile&) = delete;

  // Nothing stored yet is an empty list; a corrupt file is an error naming it.
  absl::StatusOr<std::vector<PersistedUnit>> Load() const;
  // Queues a snapshot; returns at once.
  void Save(std::string content);
  // Blocks until the latest snapshot is on disk; returns its write status.
  absl::Status Flush();
  // Snapshots queued since construction (each Save), written or superseded.
  uint64_t saves() const;
  const std::string& path() const { return path_; }

 private:
  void Run();

  const std::string path_;
  mutable absl::Mutex mu_;
  std::optional<std::string> pending_ ABSL_GUARDED_BY(mu_);
  uint64_t queued_ ABSL_GUARDED_BY(mu_) = 0;
  uint64_t written_ ABSL_GUARDED_BY(mu_) = 0;
  absl::Status last_status_ ABSL_GUARDED_BY(mu_);
  bool stopping_ ABSL_GUARDED_BY(mu_) = false;
  std::thread thread_;
};

}  // namespace herd::agent
