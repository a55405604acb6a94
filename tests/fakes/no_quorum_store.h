// NoQuorumStore: a Store that passes everything to a real one, but fails every call with
// etcd's UNAVAILABLE "the store has no quorum" while `no_quorum` is set — what the etcd store
// answers while etcd has no leader, for tests of the hub's behaviour then (streams and config
// kept, writes retried, connects served from memory).
#pragma once

#include <atomic>
#include <memory>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "controlplane/store/store.h"

namespace herd::testing {

class NoQuorumStore final : public controlplane::Store {
 public:
  explicit NoQuorumStore(std::unique_ptr<controlplane::Store> inner) : inner_(std::move(inner)) {}
  std::atomic<bool> no_quorum{false};

  absl::Status PutHost(const controlplane::HostRecord& host) override {
    if (no_quorum) return Refused();
    return inner_->PutHost(host);
  }
  absl::Status PutHosts(const std::vector<controlplane::HostRecord>& hosts) override {
    if (no_quorum) return Refused();
    return inner_->PutHosts(hosts);
  }
  absl::Status PutHostStatus(const std::vector<controlplane::HostStatus>& status) override {
    if (no_quorum) return Refused();
    return inner_->PutHostStatus(status);
  }
  absl::StatusOr<controlplane::HostRecord> GetHost(const std::string& host_id) override {
    if (no_quorum) return Refused();
    return inner_->GetHost(host_id);
  }
  absl::StatusOr<std::vector<controlplane::HostRecord>> ListHosts() override {
    if (no_quorum) return Refused();
    return inner_->ListHosts();
  }
  absl::Status DeleteHost(const std::string& host_id) override {
    if (no_quorum) return Refused();
    return inner_->DeleteHost(host_id);
  }
  absl::StatusOr<uint64_t> ConfigRevision() override {
    if (no_quorum) return Refused();
    return inner_->ConfigRevision();
  }
  absl::StatusOr<controlplane::ConfigWrite> SetOverride(
      const herd::v1::Override& o) override {
    if (no_quorum) return Refused();
    return inner_->SetOverride(o);
  }
  absl::StatusOr<controlplane::ConfigWrite> UnsetOverride(
      const herd::v1::Scope& scope, const std::string& module, const std::string& key) override {
    if (no_quorum) return Refused();
    return inner_->UnsetOverride(scope, module, key);
  }
  absl::StatusOr<std::vector<herd::v1::Override>> ListOverrides(
      const std::string& module) override {
    if (no_quorum) return Refused();
    return inner_->ListOverrides(module);
  }
  absl::Status PutRollout(const herd::v1::Rollout& rollout) override {
    if (no_quorum) return Refused();
    return inner_->PutRollout(rollout);
  }
  absl::StatusOr<herd::v1::Rollout> GetRollout(const std::string& id) override {
    if (no_quorum) return Refused();
    return inner_->GetRollout(id);
  }
  absl::StatusOr<std::vector<herd::v1::Rollout>> ListRollouts(size_t limit) override {
    if (no_quorum) return Refused();
    return inner_->ListRollouts(limit);
  }
  absl::Status AddToken(const controlplane::ApiToken& token) override {
    if (no_quorum) return Refused();
    return inner_->AddToken(token);
  }
  absl::StatusOr<controlplane::ApiToken> FindTokenBySecretHash(
      const std::string& secret_sha256) override {
    if (no_quorum) return Refused();
    return inner_->FindTokenBySecretHash(secret_sha256);
  }
  absl::StatusOr<std::vector<controlplane::ApiToken>> ListTokens() override {
    if (no_quorum) return Refused();
    return inner_->ListTokens();
  }
  absl::Status DeleteToken(const std::string& name) override {
    if (no_quorum) return Refused();
    return inner_->DeleteToken(name);
  }
  absl::Status AppendAudit(const herd::v1::AuditEntry& entry) override {
    if (no_quorum) return Refused();
    return inner_->AppendAudit(entry);
  }
  absl::StatusOr<std::vector<herd::v1::AuditEntry>> ListAudit(size_t limit) override {
    if (no_quorum) return Refused();
    return inner_->ListAudit(limit);
  }
  absl::Status PutSetting(const std::string& key, const std::string& value) override {
    if (no_quorum) return Refused();
    return inner_->PutSetting(key, value);
  }
  absl::StatusOr<std::optional<std::string>> GetSetting(const std::string& key) override {
    if (no_quorum) return Refused();
    return inner_->GetSetting(key);
  }

 private:
  static absl::Status Refused() {
    return absl::UnavailableError(
        "the store has no quorum: etcd at no-quorum-store did not answer (injected)");
  }
  std::unique_ptr<controlplane::Store> inner_;
};

}  // namespace herd::testing
