// QueuedWriter: the Fleet API's server streams (WatchMetrics, WatchRollout, StreamLogs, and
// the streams a replica forwards from its peers) write through a bounded queue
// (StreamQueue), one write at a time; what the hub or a peer hands them arrives on other
// threads, through a WriterGuard that the stream clears when it is done.
#pragma once

#include <memory>
#include <string>

#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"
#include "common/clock.h"
#include "common/logging.h"
#include "controlplane/fleet/fleet_service.h"
#include "controlplane/fleet/stream_queue.h"
#include "grpcpp/grpcpp.h"

namespace herd::controlplane {

// A server-streaming reactor with a bounded queue (StreamQueue): writes are issued one at a
// time; a reader that falls behind loses the oldest messages (counted) rather than growing
// memory, and one that stops reading (the write in progress waits past the stall timeout
// while more arrive, or at a poll) has its stream ended with RESOURCE_EXHAUSTED.
template <typename T>
class QueuedWriter : public grpc::ServerWriteReactor<T> {
 public:
  // The stream's headers go out at once (gRPC holds them until the reactor is bound): a
  // client then knows the stream is open, before its first message.
  QueuedWriter(grpc::CallbackServerContext* ctx, StreamQueueLimits limits, const Clock& clock,
               StreamTokens& tokens, const char* what)
      : ctx_(ctx),
        tokens_(tokens),
        what_(what),
        queue_(limits, clock),
        stall_timeout_(limits.stall_timeout) {
    this->StartSendInitialMetadata();
  }

  // False once ending or finished.
  bool Push(const T& msg) {
    absl::MutexLock l(&mu_);
    if (finished_ || ending_) return false;
    const auto pushed = queue_.Push(msg);
    if (const uint64_t dropped = queue_.TakeDropped()) tokens_.CountDropped(dropped);
    switch (pushed) {
      case StreamQueue<T>::Pushed::kWrite:
        this->StartWrite(queue_.front());
        break;
      case StreamQueue<T>::Pushed::kQueued:
        break;
      case StreamQueue<T>::Pushed::kStalled:
        EndStalledLocked();
        return false;
    }
    return true;
  }
  // Ends the stream if its reader has stalled (StreamTokens' poll). One ended so that is
  // still open at the next poll (its status waits behind data its reader does not read) is
  // cancelled: until then a reader that comes back reads why it ended.
  void EndIfStalled() {
    absl::MutexLock l(&mu_);
    if (stalled_) {
      ctx_->TryCancel();
    } else if (!finished_ && queue_.Stalled()) {
      EndStalledLocked();
    }
  }
  // Finishes once everything queued is written; with `drop_queued`, once the write in
  // progress is (a stream whose token was revoked gets nothing more).
  void End(const grpc::Status& s, bool drop_queued = false) {
    absl::MutexLock l(&mu_);
    if (finished_ || ending_) return;
    ending_ = true;
    end_status_ = s;
    if (drop_queued) queue_.DropWaiting();
    if (!queue_.writing()) FinishLocked();
  }
  void OnWriteDone(bool ok) override {
    absl::MutexLock l(&mu_);
    if (!ok) {
      queue_.WriteFailed();
      if (!finished_) {
        finished_ = true;
        this->Finish(grpc::Status::CANCELLED);
      }
      return;
    }
    if (queue_.WriteDone()) {
      if (!finished_) {
        this->StartWrite(queue_.front());
        return;
      }
      queue_.WriteFailed();  // finished while stalled: nothing more goes out
      return;
    }
    if (ending_) FinishLocked();
  }

 protected:
  void FinishLocked() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    if (finished_) return;
    finished_ = true;
    this->Finish(end_status_);
  }
  bool finished() {
    absl::MutexLock l(&mu_);
    return finished_;
  }

 private:
  // Finished now, with what waits dropped: the write in progress may never complete (its
  // reader is not reading), so the status is not held behind it; the reader that comes back
  // reads what was in flight, then the status.
  void EndStalledLocked() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    const size_t waiting = queue_.size(), bytes = queue_.bytes();
    const absl::Duration waited = queue_.WriteWait();
    queue_.DropWaiting();
    tokens_.CountStalled();
    Logger("fleet")->warn(
        "event=stream_ended_stalled stream={} waited_s={} queued={} queued_bytes={} "
        "hint=\"the client stopped reading its stream; it was ended\"",
        what_, absl::ToInt64Seconds(waited), waiting, bytes);
    ending_ = true;
    finished_ = true;
    stalled_ = true;
    this->Finish(grpc::Status(
        grpc::StatusCode::RESOURCE_EXHAUSTED,
        absl::StrCat("the reader fell behind: nothing was read from this ", what_, " stream for ",
                     absl::FormatDuration(waited), " (the limit is ",
                     absl::FormatDuration(stall_timeout_), ") while ", waiting,
                     " messages waited; read the stream as it comes, and open it again")));
  }

  grpc::CallbackServerContext* const ctx_;
  StreamTokens& tokens_;
  const char* const what_;
  absl::Mutex mu_;
  bool stalled_ ABSL_GUARDED_BY(mu_) = false;  // ended by EndStalledLocked
  StreamQueue<T> queue_ ABSL_GUARDED_BY(mu_);
  const absl::Duration stall_timeout_;
  bool ending_ ABSL_GUARDED_BY(mu_) = false;
  bool finished_ ABSL_GUARDED_BY(mu_) = false;
  grpc::Status end_status_ ABSL_GUARDED_BY(mu_);
};

// Callbacks from the hub or the rollout engine run outside their locks, possibly while the
// stream ends: they reach the writer through this guard, which OnDone clears.
template <typename W>
struct WriterGuard {
  absl::Mutex mu;
  W* self ABSL_GUARDED_BY(mu) = nullptr;
};

// Ends the writer behind `guard`, if it is still there (StreamTokens' End).
template <typename G>
StreamTokens::End EndThrough(std::shared_ptr<G> guard) {
  return [guard = std::move(guard)](const grpc::Status& s) {
    absl::MutexLock l(&guard->mu);
    if (guard->self) guard->self->End(s, /*drop_queued=*/true);
  };
}

// Ends the writer behind `guard` if its reader stalled (StreamTokens' Poll).
template <typename G>
StreamTokens::Poll PollThrough(std::shared_ptr<G> guard) {
  return [guard = std::move(guard)] {
    absl::MutexLock l(&guard->mu);
    if (guard->self) guard->self->EndIfStalled();
  };
}

// What a stream needs to register itself.
struct StreamContext {
  grpc::CallbackServerContext* ctx;
  StreamTokens& tokens;
  StreamQueueLimits limits;
  const Clock& clock;
  std::string token_hash;  // empty: the stream was refused at its opening
  std::string who;         // the token's name
};

}  // namespace herd::controlplane
