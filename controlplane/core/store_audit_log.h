// StoreAuditLog: the AuditLog (fleet_interfaces.h) kept in the Store, with the clock's wall
// time on each entry. A failed append is logged, not returned: who changed what must not
// stop the change itself. Thread-safe (the store is).
//
// AuditLater appends from threads of its own (kWorkers, started at its first use), for
// entries many hosts make at once (a fleet registering): the gRPC thread that took the Hello
// does not wait for the store. Each worker takes up to kAppendBatch waiting entries at a time
// (Store::AppendAudits: one Txn on etcd), and the workers' concurrent appends are what the
// etcd store writes together (group commit). At most kMaxQueued wait (beside those being
// appended); past that they are dropped, counted and logged. Stop() (or destruction)
// appends what waits, then ends the workers.
// So an entry made with AuditLater may be listed after one Audit appended later (each says
// when it was made): an operator's change is not held behind a fleet's registrations.
#pragma once

#include <condition_variable>
#include <cstdint>
#include <deque>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "common/clock.h"
#include "common/logging.h"
#include "controlplane/core/fleet_interfaces.h"
#include "controlplane/store/store.h"

namespace herd::controlplane {

class StoreAuditLog final : public AuditLog {
 public:
  // `max_queued`: entries waiting for AuditLater's workers (tests make it small).
  StoreAuditLog(Store& store, const Clock& clock, size_t max_queued = kMaxQueued)
      : store_(store), clock_(clock), max_queued_(max_queued), log_(herd::Logger("hub")) {}

  // Every entry made before the call is in the list (those waiting are appended first).
  absl::StatusOr<std::vector<herd::v1::AuditEntry>> ListAudit(size_t limit) const override {
    {
      std::unique_lock l(mu_);
      idle_.wait(l, [&] { return queue_.empty() && in_flight_ == 0; });
    }
    return store_.ListAudit(limit);
  }
  ~StoreAuditLog() override { Stop(); }

  void Audit(const std::string& actor, const std::string& action,
             const std::string& detail_json) override {
    Append(Entry(actor, action, detail_json));
  }

  // As Audit, without waiting for the store (see above).
  void AuditLater(const std::string& actor, const std::string& action,
                  const std::string& detail_json) {
    herd::v1::AuditEntry e = Entry(actor, action, detail_json);
    std::unique_lock l(mu_);
    if (stopping_) {  // no worker any more: appended here, without holding the lock
      l.unlock();
      return Append(e);
    }
    if (queue_.size() >= max_queued_) {
      if (dropped_++ % 1000 == 0) {
        log_->warn("event=audit_dropped action={} dropped={} hint=\"the store is not keeping "
                   "up with the entries hosts make\"", action, dropped_);
      }
      return;
    }
    queue_.push_back(std::move(e));
    if (workers_.empty()) {
      for (int i = 0; i < kWorkers; ++i) workers_.emplace_back([this] { Run(); });
    }
    cv_.notify_one();
  }
  uint64_t dropped() const {
    std::lock_guard l(mu_);
    return dropped_;
  }
  void Stop() {
    {
      std::lock_guard l(mu_);
      stopping_ = true;
    }
    cv_.notify_all();
    for (std::thread& t : workers_) t.join();
    workers_.clear();
  }

  static constexpr size_t kMaxQueued = 10000;
  static constexpr int kWorkers = 8;
  static constexpr size_t kAppendBatch = 32;

 private:
  herd::v1::AuditEntry Entry(const std::string& actor, const std::string& action,
                             const std::string& detail_json) const {
    herd::v1::AuditEntry e;
    e.set_at_unix_ms(absl::ToUnixMillis(clock_.Now()));
    e.set_actor(actor);
    e.set_action(action);
    e.set_detail_json(detail_json);
    return e;
  }
  void Append(const herd::v1::AuditEntry& e) {
    if (auto s = store_.AppendAudit(e); !s.ok()) {
      log_->error("event=audit_not_saved action={} error=\"{}\"", e.action(), s.message());
    }
  }
  // Each worker appends up to kAppendBatch waiting entries in one call (one etcd Txn).
  void Run() {
    std::unique_lock l(mu_);
    std::vector<herd::v1::AuditEntry> batch;
    for (;;) {
      cv_.wait(l, [&] { return stopping_ || !queue_.empty(); });
      if (queue_.empty()) return;  // stopping, nothing left
      batch.clear();
      while (!queue_.empty() && batch.size() < kAppendBatch) {
        batch.push_back(std::move(queue_.front()));
        queue_.pop_front();
      }
      in_flight_ += static_cast<int>(batch.size());
      l.unlock();
      if (auto s = store_.AppendAudits(batch); !s.ok()) {
        log_->error("event=audit_not_saved entries={} error=\"{}\"", batch.size(), s.message());
      }
      l.lock();
      in_flight_ -= static_cast<int>(batch.size());
      if (in_flight_ == 0 && queue_.empty()) idle_.notify_all();
    }
  }

  Store& store_;
  const Clock& clock_;
  const size_t max_queued_;
  std::shared_ptr<spdlog::logger> log_;
  mutable std::mutex mu_;
  std::condition_variable cv_;
  mutable std::condition_variable idle_;  // the queue is empty and no append is running
  int in_flight_ = 0;
  std::deque<herd::v1::AuditEntry> queue_;
  uint64_t dropped_ = 0;
  bool stopping_ = false;
  std::vector<std::thread> workers_;
};

}  // namespace herd::controlplane
