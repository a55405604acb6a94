#include "controlplane/core/host_record_writer.h"

#include <pthread.h>

#include <chrono>
#include <utility>
#include <vector>

namespace herd::controlplane {

HostRecordWriter::HostRecordWriter(Store& store, HostRegistry& registry, Scheduler& scheduler)
    : store_(store),
      registry_(registry),
      scheduler_(scheduler),
      log_(herd::Logger("hub")),
      backoff_(BackoffOptions{.initial = absl::Seconds(1),
                              .max = absl::Seconds(30),
                              .multiplier = 2.0,
                              .jitter = 0}) {}

void HostRecordWriter::Start() {
  {
    std::lock_guard<std::mutex> l(mu_);
    if (started_) return;
    started_ = true;
  }
  thread_ = std::thread([this] { Loop(); });
}

void HostRecordWriter::Stop() {
  {
    std::lock_guard<std::mutex> l(mu_);
    stop_ = true;
  }
  work_cv_.notify_all();
  cv_.notify_all();
  if (thread_.joinable()) thread_.join();
  // After the thread: it arms no timer any more. (Cancel waits for a running task, which
  // takes mu_: not held here.)
  Scheduler::Handle timer;
  std::vector<Done> left;  // only if the writer never started
  {
    std::lock_guard<std::mutex> l(mu_);
    timer = std::exchange(retry_timer_, 0);
    exited_ = true;
    left = TakeDone(UINT64_MAX);
  }
  cv_.notify_all();
  scheduler_.Cancel(timer);
  for (Done& d : left) d(absl::UnavailableError("the control plane is stopping"));
}

absl::Status HostRecordWriter::MarkDirty(const std::string& host_id, bool wait, bool full) {
  {
    std::unique_lock<std::mutex> l(mu_);
    if (!exited_) {
      dirty_[host_id] |= full;
      const uint64_t gen = ++queued_gen_;
      if (!wait) {
        l.unlock();
        work_cv_.notify_one();
        return absl::OkStatus();
      }
      work_cv_.notify_one();
      // While the store fails, the writer backs off (up to 30 s): a caller does not wait for
      // that; the record stays queued.
      if (!last_write_.ok()) return last_write_;
      // Monotonic: condition_variable::wait_for measures on steady_clock.
      if (!cv_.wait_for(l, std::chrono::seconds(30),
                        [&] { return written_gen_ >= gen || exited_; })) {
        return absl::DeadlineExceededError("the store did not take the host's record in 30 s");
      }
      if (written_gen_ >= gen) return last_write_;
    }
  }
  // The writer is gone (a host's last messages while the server stops): written here.
  return WriteNow(host_id);
}

absl::Status HostRecordWriter::WriteNow(const std::string& host_id) {
  Entry e = registry_.Find(host_id);
  if (!e) return absl::OkStatus();
  HostRecord record;
  {
    absl::MutexLock hl(&e->mu);
    record = e->s.record;
  }
  absl::Status s = store_.PutHosts({record});
  if (!s.ok()) log_->error("event=host_not_saved host={} error=\"{}\"", host_id, s.message());
  return s;
}

void HostRecordWriter::MarkDirtyThen(const std::string& host_id, Done done) {
  {
    std::unique_lock<std::mutex> l(mu_);
    if (!exited_) {
      dirty_[host_id] = true;
      const uint64_t gen = ++queued_gen_;
      absl::Status failing = last_write_;
      if (failing.ok()) done_.emplace_back(gen, std::move(done));
      l.unlock();
      work_cv_.notify_one();
      if (!failing.ok()) done(std::move(failing));
      return;
    }
  }
  done(WriteNow(host_id));
}

std::vector<HostRecordWriter::Done> HostRecordWriter::TakeDone(uint64_t gen) {
  std::vector<Done> out;
  while (!done_.empty() && done_.front().first <= gen) {
    out.push_back(std::move(done_.front().second));
    done_.pop_front();
  }
  return out;
}

absl::Status HostRecordWriter::Flush() {
  std::unique_lock<std::mutex> l(mu_);
  const uint64_t gen = queued_gen_;
  // While the store fails (a retry is waiting), the last failure is the answer: a caller
  // does not wait out the backoff.
  cv_.wait(l, [&] { return written_gen_ >= gen || exited_ || !started_ || retry_wait_; });
  return last_write_;
}

uint64_t HostRecordWriter::attempts() const {
  std::lock_guard<std::mutex> l(mu_);
  return attempts_;
}

void HostRecordWriter::WaitForAttempts(uint64_t n) {
  std::unique_lock<std::mutex> l(mu_);
  cv_.wait(l, [&] { return attempts_ >= n || exited_; });
}

absl::Status HostRecordWriter::Write(const std::map<std::string, bool>& batch) {
  // Whole records for new hosts and changed inventories; for acks, only the status (an
  // ack of a fleet-wide change would otherwise rewrite every host's labels and modules).
  std::vector<HostRecord> records;
  std::vector<HostStatus> status;
  for (const auto& [id, full] : batch) {
    Entry e = registry_.Find(id);
    if (!e) continue;
    absl::MutexLock hl(&e->mu);
    if (full) {
      records.push_back(e->s.record);
    } else {
      status.push_back({id, e->s.record.last_seen_unix_ms, e->s.record.acked_config_version});
    }
  }
  const Clock& clock = scheduler_.clock();
  const absl::Time t0 = clock.Monotonic();
  absl::Status s = records.empty() ? absl::OkStatus() : store_.PutHosts(records);
  if (s.ok() && !status.empty()) s = store_.PutHostStatus(status);
  log_->debug("event=hosts_saved records={} status={} ms={}", records.size(), status.size(),
              absl::ToInt64Milliseconds(clock.Monotonic() - t0));
  return s;
}

void HostRecordWriter::ArmRetry() {
  retry_wait_ = true;
  // Under mu_, so the retry is planned before anyone sees the failure. (RunAfter never runs
  // the task inside the call; the task takes mu_ on the scheduler's thread.)
  retry_timer_ = scheduler_.RunAfter(backoff_.Next(), [this] {
    {
      std::lock_guard<std::mutex> l(mu_);
      retry_wait_ = false;
      retry_timer_ = 0;
    }
    work_cv_.notify_one();
  });
}

void HostRecordWriter::Loop() {
  pthread_setname_np(pthread_self(), "hub-writer");
  std::unique_lock<std::mutex> l(mu_);
  while (true) {
    work_cv_.wait(l, [&] { return (!dirty_.empty() && !retry_wait_) || stop_; });
    if (dirty_.empty()) break;  // stopping, nothing left
    std::map<std::string, bool> batch;
    batch.swap(dirty_);
    const uint64_t gen = queued_gen_;
    const bool last = stop_;
    l.unlock();
    absl::Status s = Write(batch);
    if (!s.ok()) {
      log_->error("event=hosts_not_saved hosts={} error=\"{}\" retry={}", batch.size(),
                  s.message(), last ? "no (stopping)" : "yes");
    }
    l.lock();
    last_write_ = s;
    if (s.ok()) {
      backoff_.Reset();
    } else if (!last) {
      // Nothing is lost: the records are written again with the next batch.
      for (const auto& [id, full] : batch) dirty_[id] |= full;
      ArmRetry();
    }
    // The callers answered before the write counts as done: once Flush or WaitForAttempts
    // returns, so has every MarkDirtyThen callback of the records it wrote.
    std::vector<Done> done = TakeDone(gen);
    if (!done.empty()) {
      l.unlock();
      for (Done& d : done) d(s);
      l.lock();
    }
    written_gen_ = gen;
    ++attempts_;
    cv_.notify_all();
    if (last) break;
  }
  exited_ = true;
  // None is left (each was queued with a record the last write took); defensively, none waits
  // for ever.
  std::vector<Done> left = TakeDone(UINT64_MAX);
  l.unlock();
  cv_.notify_all();
  for (Done& d : left) d(absl::UnavailableError("the control plane is stopping"));
}

}  // namespace herd::controlplane
