// HostRecordWriter: host records written behind, so that no agent's message waits on the
// disk. MarkDirty queues a host; one writer thread writes every host queued since its last
// write in one transaction (whole records for new hosts and changed inventories, only the
// status — last seen, acked version — for the rest), reading each record from the
// HostRegistry when it gets to it.
//
// Threads and time: the blocking store write is on the writer's own thread, woken by a
// condition (work queued, a retry due, or Stop), never polling. After a failed write nothing
// is lost (the hosts stay queued) and the next try waits a herd::Backoff (1 s doubling to
// 30 s, no jitter: one writer), timed by a Scheduler task on the monotonic clock that wakes
// the thread, so tests drive retries with a FakeScheduler. Its lock (mu_) is taken after a
// host's in the hub's order; it is held neither across the store write nor while reading
// a host.
#pragma once

#include <condition_variable>
#include <cstdint>
#include <deque>
#include <functional>
#include <map>
#include <mutex>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "common/backoff.h"
#include "common/logging.h"
#include "common/scheduler.h"
#include "controlplane/core/host_registry.h"
#include "controlplane/store/store.h"

namespace herd::controlplane {

class HostRecordWriter {
 public:
  HostRecordWriter(Store& store, HostRegistry& registry, Scheduler& scheduler);
  ~HostRecordWriter() { Stop(); }
  HostRecordWriter(const HostRecordWriter&) = delete;
  HostRecordWriter& operator=(const HostRecordWriter&) = delete;

  void Start();
  // Writes what is still queued (once, without retrying), then ends the thread. Afterwards
  // MarkDirty writes on the caller's thread. Idempotent.
  void Stop();

  // Queues the host's record (its state when the writer gets to it), whole or (`full`
  // false: only last_seen and the acked version changed) its status; with `wait`, returns
  // once a write that includes it has finished (its status), or at once with the last
  // failure while the store fails (the record stays queued).
  absl::Status MarkDirty(const std::string& host_id, bool wait, bool full = true);
  // MarkDirty (whole record) without a thread waiting: `done` runs with the status of the
  // first write that includes the record, on the writer's thread, outside its lock. While the
  // store fails, it runs at once on the caller's thread with the last failure (the record
  // stays queued), as MarkDirty(wait) returns; after Stop, once written on the caller's.
  // A fleet registering at once: each Hello parks here instead of holding one of gRPC's few
  // callback threads for a store round trip, so one write takes all those queued meanwhile.
  using Done = std::function<void(absl::Status)>;
  void MarkDirtyThen(const std::string& host_id, Done done);
  // Waits until every record queued so far is written (or the write failed: its status;
  // while a retry waits, at once with the last failure).
  absl::Status Flush();

  // Writes tried so far (for tests), and a wait for the n-th to finish.
  uint64_t attempts() const;
  void WaitForAttempts(uint64_t n);

 private:
  void Loop();
  // One transaction for `batch` (host id → full).
  absl::Status Write(const std::map<std::string, bool>& batch);
  // After a failed write (mu_ held): the thread waits until the backoff's task wakes it.
  void ArmRetry();
  // Takes the callbacks whose record the write of generation `gen` included (mu_ held).
  std::vector<Done> TakeDone(uint64_t gen);
  // Writes the host's record on the caller's thread (after the writer left).
  absl::Status WriteNow(const std::string& host_id);

  Store& store_;
  HostRegistry& registry_;
  Scheduler& scheduler_;
  std::shared_ptr<spdlog::logger> log_;
  Backoff backoff_;  // the writer thread's only

  mutable std::mutex mu_;
  // Two conditions, so that a record queued wakes the writer alone: with one, each of 10,000
  // registrations waiting for its write was woken by every other one queued (a thundering
  // herd that slowed a fleet's registration).
  std::condition_variable work_cv_;  // the writer's: work, a retry due, stop
  std::condition_variable cv_;       // callers': a write finished, or the writer left
  std::map<std::string, bool> dirty_;  // host id → full
  std::deque<std::pair<uint64_t, Done>> done_;  // by generation, ascending
  uint64_t queued_gen_ = 0;
  uint64_t written_gen_ = 0;
  uint64_t attempts_ = 0;
  absl::Status last_write_;
  bool retry_wait_ = false;  // a failed write's backoff is running
  Scheduler::Handle retry_timer_ = 0;
  bool stop_ = false;
  bool started_ = false;
  bool exited_ = false;
  std::thread thread_;
};

}  // namespace herd::controlplane
