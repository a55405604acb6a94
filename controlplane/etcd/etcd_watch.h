// EtcdWatch: one watch of etcd_client.h, on a thread of its own with one Watch stream to one
// member at a time. When the stream breaks (the member died, lost its leader — the stream
// carries "hasleader" — or the network failed) it opens another on the next member after a
// backoff, from the revision after the last one delivered, so no event is lost or repeated.
// Compaction of that revision ends the watch with a `compacted` batch; a cancel by etcd, a
// refused password or a permission denied ends it with an error batch. Destroying it cancels the stream and joins the thread (not from
// inside its own callback).
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <thread>

#include "absl/base/thread_annotations.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "common/backoff.h"
#include "controlplane/etcd/etcd_client.h"
#include "controlplane/etcd/etcd_connection.h"

namespace herd::etcd {

class EtcdWatch final : public Watch {
 public:
  EtcdWatch(std::shared_ptr<EtcdConnection> connection, std::string key, std::string range_end,
            int64_t start_revision, std::function<void(const WatchBatch&)> on_batch);
  ~EtcdWatch() override;

 private:
  void Run();
  // One stream, until it breaks (false: open another) or the watch is over (true).
  bool RunStream(size_t member_index, Backoff& backoff);
  // Delivers what a response carries; true when it ends the watch.
  bool Handle(const etcdserverpb::WatchResponse& response, Backoff& backoff);
  // Delivers a batch with `error` (the watch is over); true.
  bool EndWithError(absl::Status error);
  // Waits `d` or until destruction; true when destroying.
  bool WaitStop(absl::Duration d);

  const std::shared_ptr<EtcdConnection> connection_;
  const std::string key_, range_end_;
  const std::function<void(const WatchBatch&)> on_batch_;
  // The next revision to receive (0 until the first stream is created "from now"). Only the
  // watch's thread uses it.
  int64_t next_revision_;

  absl::Mutex mu_;
  bool stopping_ ABSL_GUARDED_BY(mu_) = false;
  // The open stream's context, so the destructor can cancel a blocked Read.
  grpc::ClientContext* context_ ABSL_GUARDED_BY(mu_) = nullptr;
  std::thread thread_;
};

}  // namespace herd::etcd
