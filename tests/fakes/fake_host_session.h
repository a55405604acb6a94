// FakeHostSession: an agent's stream as the control plane's core sees it (HostSession),
// recording what it was sent and whether it was closed; Send can be made to fail (a stream
// closed or backed up). Thread-safe (send threads call it).
#pragma once

#include <string>
#include <utility>
#include <vector>

#include "absl/synchronization/mutex.h"
#include "controlplane/core/host_session.h"

namespace herd::testing {

class FakeHostSession : public controlplane::HostSession {
 public:
  explicit FakeHostSession(std::string peer = "10.0.0.1:5000") : peer_(std::move(peer)) {}

  bool Send(herd::v1::ControlMessage msg) override {
    absl::MutexLock l(&mu_);
    if (fail_send_) return false;
    sent_.push_back(std::move(msg));
    return true;
  }
  void Close(const std::string& why) override {
    absl::MutexLock l(&mu_);
    closed_ = true;
    ++closes_;
    close_reason_ = why;
  }
  int closes() const {
    absl::MutexLock l(&mu_);
    return closes_;
  }
  std::string Peer() const override { return peer_; }

  void set_fail_send(bool fail) {
    absl::MutexLock l(&mu_);
    fail_send_ = fail;
  }
  std::vector<herd::v1::ControlMessage> sent() const {
    absl::MutexLock l(&mu_);
    return sent_;
  }
  bool closed() const {
    absl::MutexLock l(&mu_);
    return closed_;
  }
  std::string close_reason() const {
    absl::MutexLock l(&mu_);
    return close_reason_;
  }
  std::vector<herd::v1::ConfigSnapshot> configs() const {
    std::vector<herd::v1::ConfigSnapshot> out;
    for (const auto& m : sent()) {
      if (m.has_config()) out.push_back(m.config());
    }
    return out;
  }
  herd::v1::ConfigSnapshot last_config() const {
    auto c = configs();
    return c.empty() ? herd::v1::ConfigSnapshot() : c.back();
  }
  std::vector<herd::v1::ActionRequest> actions() const {
    std::vector<herd::v1::ActionRequest> out;
    for (const auto& m : sent()) {
      if (m.has_action()) out.push_back(m.action());
    }
    return out;
  }
  std::vector<herd::v1::RestartRequest> restarts() const {
    std::vector<herd::v1::RestartRequest> out;
    for (const auto& m : sent()) {
      if (m.has_restart()) out.push_back(m.restart());
    }
    return out;
  }

 private:
  const std::string peer_;
  mutable absl::Mutex mu_;
  std::vector<herd::v1::ControlMessage> sent_ ABSL_GUARDED_BY(mu_);
  bool closed_ ABSL_GUARDED_BY(mu_) = false;
  int closes_ ABSL_GUARDED_BY(mu_) = 0;
  std::string close_reason_ ABSL_GUARDED_BY(mu_);
  bool fail_send_ ABSL_GUARDED_BY(mu_) = false;
};

}  // namespace herd::testing
