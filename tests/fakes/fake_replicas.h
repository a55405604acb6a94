// FakeReplicas: a ReplicaDirectory (controlplane/cluster/cluster.h) the test sets: which
// replicas are live (and their addresses), who holds which host, and the peer secret. Several
// replicas in one test process each get their own, set alike (or not, to test what a stale
// directory does). Thread-safe.
#pragma once

#include <map>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "absl/synchronization/mutex.h"
#include "controlplane/cluster/cluster.h"

namespace herd::testing {

class FakeReplicas final : public controlplane::ReplicaDirectory {
 public:
  explicit FakeReplicas(std::string self_id, std::string secret = "peer-secret")
      : self_id_(std::move(self_id)), secret_(std::move(secret)) {}

  // A live replica (this one's own entry is not among Peers()).
  void SetReplica(const std::string& id, const std::string& address) {
    absl::MutexLock l(&mu_);
    replicas_[id] = controlplane::ReplicaInfo{id, address, 0};
  }
  // The replica leaves (its hosts stay held by it until Hold says otherwise).
  void RemoveReplica(const std::string& id) {
    absl::MutexLock l(&mu_);
    replicas_.erase(id);
  }
  // `replica` holds the host's stream ("" : none does).
  void Hold(const std::string& host_id, const std::string& replica) {
    absl::MutexLock l(&mu_);
    if (replica.empty()) {
      holders_.erase(host_id);
    } else {
      holders_[host_id] = replica;
    }
  }
  void set_peer_secret(std::string s) {
    absl::MutexLock l(&mu_);
    secret_ = std::move(s);
  }

  const std::string& self_id() const override { return self_id_; }
  std::vector<controlplane::ReplicaInfo> Peers() const override {
    absl::MutexLock l(&mu_);
    std::vector<controlplane::ReplicaInfo> out;
    for (const auto& [id, r] : replicas_) {
      if (id != self_id_) out.push_back(r);
    }
    return out;
  }
  std::optional<controlplane::ReplicaInfo> HolderOf(const std::string& host_id) const override {
    absl::MutexLock l(&mu_);
    auto it = holders_.find(host_id);
    if (it == holders_.end()) return std::nullopt;
    auto r = replicas_.find(it->second);
    if (r != replicas_.end()) return r->second;
    return controlplane::ReplicaInfo{it->second, "", 0};  // a replica this one has not seen
  }
  std::string peer_secret() const override {
    absl::MutexLock l(&mu_);
    return secret_;
  }
  int64_t lease_id() const override { return 0; }

 private:
  const std::string self_id_;
  mutable absl::Mutex mu_;
  std::string secret_ ABSL_GUARDED_BY(mu_);
  std::map<std::string, controlplane::ReplicaInfo> replicas_ ABSL_GUARDED_BY(mu_);
  std::map<std::string, std::string> holders_ ABSL_GUARDED_BY(mu_);
};

}  // namespace herd::testing
