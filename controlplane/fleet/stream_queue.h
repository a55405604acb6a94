// StreamQueue: the outbound queue of one Fleet API server stream (WatchMetrics, WatchRollout,
// StreamLogs), without gRPC, so its bounds are unit-tested on their own (QueuedWriter in
// fleet_service.cc drives it under its lock and issues the writes).
//
// A stream's reader may fall behind, or stop reading: 200 WatchMetrics streams that never
// read grew the control plane by 75 MB in a minute when the queue was bounded in messages
// only (issue 20). So the queue is bounded in messages *and* bytes: past either, the oldest
// message not being written is dropped (counted). And a reader that has not taken the
// message being written for `stall_timeout` while others wait is taken as gone: Push says
// so, and the writer ends the stream with RESOURCE_EXHAUSTED. Times are monotonic.
#pragma once

#include <cstddef>
#include <cstdint>
#include <deque>
#include <utility>

#include "absl/time/time.h"
#include "common/clock.h"

namespace herd::controlplane {

struct StreamQueueLimits {
  size_t max_messages = 256;
  size_t max_bytes = 1 << 20;
  absl::Duration stall_timeout = absl::Seconds(30);
};

// T is a protobuf message (ByteSizeLong measures it).
template <typename T>
class StreamQueue {
 public:
  StreamQueue(StreamQueueLimits limits, const Clock& clock) : limits_(limits), clock_(clock) {}

  enum class Pushed {
    kWrite,    // no write was in progress: write front() now
    kQueued,   // queued behind the write in progress
    kStalled,  // not queued: the write in progress has waited past stall_timeout
  };
  Pushed Push(T msg) {
    if (Stalled()) return Pushed::kStalled;
    const size_t size = msg.ByteSizeLong();
    bytes_ += size;
    if (!writing_) {
      in_flight_ = {std::move(msg), size};
      writing_ = true;
      write_started_ = clock_.Monotonic();
      return Pushed::kWrite;
    }
    waiting_.push_back({std::move(msg), size});
    // The oldest waiting message goes first. The one being written stays (gRPC holds it:
    // it is kept apart, where dropping others cannot move it), and so does the newest (a
    // single message larger than max_bytes is still sent).
    while (waiting_.size() > 1 &&
           (waiting_.size() + 1 > limits_.max_messages || bytes_ > limits_.max_bytes)) {
      bytes_ -= waiting_.front().second;
      waiting_.pop_front();
      ++dropped_;
    }
    return Pushed::kQueued;
  }

  // The write of front() finished: true when the next one should start (front() again).
  bool WriteDone() {
    if (!writing_) return false;
    bytes_ -= in_flight_.second;
    in_flight_ = {};
    writing_ = false;
    if (waiting_.empty()) return false;
    in_flight_ = std::move(waiting_.front());
    waiting_.pop_front();
    writing_ = true;
    write_started_ = clock_.Monotonic();
    return true;
  }
  // Writing stopped for good (the stream failed): nothing is written any more.
  void WriteFailed() {
    writing_ = false;
    in_flight_ = {};
    DropWaiting();
    bytes_ = 0;
  }

  // Drops every message but the one being written.
  void DropWaiting() {
    for (const auto& w : waiting_) bytes_ -= w.second;
    waiting_.clear();
  }

  // A write has been in progress for longer than stall_timeout.
  bool Stalled() const {
    return writing_ && clock_.Monotonic() - write_started_ > limits_.stall_timeout;
  }

  // The message being written (valid until WriteDone).
  T* front() { return writing_ ? &in_flight_.first : nullptr; }
  bool writing() const { return writing_; }
  // Messages held: the one being written and those waiting.
  size_t size() const { return waiting_.size() + (writing_ ? 1 : 0); }
  size_t bytes() const { return bytes_; }
  // Messages dropped for the bounds since the last call.
  uint64_t TakeDropped() { return std::exchange(dropped_, 0); }
  // How long the write in progress has waited.
  absl::Duration WriteWait() const {
    return writing_ ? clock_.Monotonic() - write_started_ : absl::ZeroDuration();
  }

 private:
  const StreamQueueLimits limits_;
  const Clock& clock_;
  std::pair<T, size_t> in_flight_;  // with its size
  std::deque<std::pair<T, size_t>> waiting_;
  size_t bytes_ = 0;  // in_flight_ and waiting_
  bool writing_ = false;
  absl::Time write_started_;
  uint64_t dropped_ = 0;
};

}  // namespace herd::controlplane
