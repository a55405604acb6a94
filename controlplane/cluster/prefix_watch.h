// PrefixWatch: keeps a consumer current with every key under an etcd prefix — a Range, then
// a Watch from the revision after it. When etcd ends the watch (the revisions it would resume
// from were compacted, or it was cancelled), the keys are read again and watched from there,
// on the PrefixWatch's own thread (a watch cannot be replaced from its own callback), after
// a backoff while etcd fails. While etcd is unreachable the client's watch resumes by itself
// (etcd_client.h): nothing to do here then.
//
// The consumer sees `on_snapshot` (every key, at a revision) and then the batches after that
// revision, in order; after a re-read, a snapshot again (it replaces what it knew: keys
// deleted meanwhile are absent from it). Both run one at a time, on the client's watch
// thread or this one's, and must not block for long.
#pragma once

#include <condition_variable>
#include <cstdint>
#include <functional>
#include <memory>
#include <mutex>
#include <string>
#include <thread>

#include "absl/status/status.h"
#include "common/backoff.h"
#include "common/logging.h"
#include "controlplane/etcd/etcd_client.h"

namespace herd::controlplane {

// etcd's range_end for every key starting with `prefix` (etcd::PrefixEnd's rule, here so
// the cluster code does not depend on the client's implementation for it).
std::string RangeEndOfPrefix(const std::string& prefix);

class PrefixWatch {
 public:
  struct Handlers {
    std::function<void(const etcd::RangeResult&)> on_snapshot;
    std::function<void(const etcd::WatchBatch&)> on_batch;
  };

  PrefixWatch(etcd::Client& client, std::string prefix, Handlers handlers,
              BackoffOptions retry, std::string name);
  ~PrefixWatch() { Stop(); }
  PrefixWatch(const PrefixWatch&) = delete;
  PrefixWatch& operator=(const PrefixWatch&) = delete;

  // The first read and watch, on the caller's thread (its error, e.g. UNAVAILABLE, if etcd
  // cannot answer: nothing is started then), and the thread that redoes them.
  absl::Status Start();
  // Ends the watch and the thread; no handler runs after it returns. Idempotent.
  void Stop();

  // Re-reads done after the watch ended (for tests and logs), and a wait until there are
  // `n` (false when Stop came first).
  uint64_t resyncs() const;
  bool WaitResyncs(uint64_t n);

 private:
  // Reads the keys, hands them over and watches from the revision after them.
  absl::Status Sync();
  void Loop();

  etcd::Client& client_;
  const std::string prefix_;
  const Handlers handlers_;
  const std::string name_;
  std::shared_ptr<spdlog::logger> log_;
  Backoff backoff_;  // the thread's only

  std::unique_ptr<etcd::Watch> watch_;  // Sync's (Start's caller, then the thread)

  mutable std::mutex mu_;
  std::condition_variable cv_;
  bool resync_ = false;  // the watch ended: read again
  bool stop_ = false;
  bool started_ = false;
  uint64_t resyncs_ = 0;
  std::thread thread_;
};

}  // namespace herd::controlplane
