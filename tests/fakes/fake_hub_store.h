// FlakyHostsStore: a Store that passes everything to a real one, but whose host writes
// (PutHosts, PutHostStatus) fail while `fail_puts` is set — a full disk, for the hub's
// write-behind of host records. Counts the host writes tried.
#pragma once

#include <atomic>
#include <condition_variable>
#include <mutex>
#include <memory>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "controlplane/store/store.h"

namespace herd::testing {

// Passes everything to a real store, but PutHosts fails while `fail_puts` is set.
class FlakyHostsStore final : public controlplane::Store {
 public:
  explicit FlakyHostsStore(std::unique_ptr<controlplane::Store> inner) : inner_(std::move(inner)) {}
  std::atomic<bool> fail_puts{false};
  std::atomic<int> put_calls{0};

  absl::Status PutHost(const controlplane::HostRecord& h) override { return PutHosts({h}); }
  // While held, host writes (HoldAudit: audit appends) wait, a slow store, until Release();
  // WaitForHeldPuts(n) waits until n host writes are waiting.
  void Hold() {
    std::lock_guard<std::mutex> l(gate_mu_);
    held_ = true;
  }
  void HoldAudit() {
    std::lock_guard<std::mutex> l(gate_mu_);
    held_audit_ = true;
  }
  void Release() {
    {
      std::lock_guard<std::mutex> l(gate_mu_);
      held_ = false;
      held_audit_ = false;
    }
    gate_cv_.notify_all();
  }
  void WaitForHeldPuts(int n) {
    std::unique_lock<std::mutex> l(gate_mu_);
    gate_cv_.wait(l, [&] { return held_puts_ >= n; });
  }

  absl::Status PutHosts(const std::vector<controlplane::HostRecord>& hosts) override {
    ++put_calls;
    {
      std::unique_lock<std::mutex> l(gate_mu_);
      ++held_puts_;
      gate_cv_.notify_all();
      gate_cv_.wait(l, [&] { return !held_; });
      --held_puts_;
    }
    if (fail_puts) return absl::ResourceExhaustedError("disk full (injected)");
    return inner_->PutHosts(hosts);
  }
  absl::Status PutHostStatus(const std::vector<controlplane::HostStatus>& status) override {
    ++put_calls;
    if (fail_puts) return absl::ResourceExhaustedError("disk full (injected)");
    return inner_->PutHostStatus(status);
  }
  absl::StatusOr<controlplane::HostRecord> GetHost(const std::string& id) override { return inner_->GetHost(id); }
  absl::StatusOr<std::vector<controlplane::HostRecord>> ListHosts() override { return inner_->ListHosts(); }
  absl::Status DeleteHost(const std::string& id) override { return inner_->DeleteHost(id); }
  absl::StatusOr<uint64_t> ConfigRevision() override { return inner_->ConfigRevision(); }
  absl::StatusOr<controlplane::ConfigWrite> SetOverride(const herd::v1::Override& o) override {
    return inner_->SetOverride(o);
  }
  absl::StatusOr<controlplane::ConfigWrite> UnsetOverride(const herd::v1::Scope& s, const std::string& m,
                                            const std::string& k) override {
    return inner_->UnsetOverride(s, m, k);
  }
  absl::StatusOr<std::vector<herd::v1::Override>> ListOverrides(const std::string& m) override {
    return inner_->ListOverrides(m);
  }
  absl::Status PutRollout(const herd::v1::Rollout& r) override { return inner_->PutRollout(r); }
  absl::StatusOr<herd::v1::Rollout> GetRollout(const std::string& id) override {
    return inner_->GetRollout(id);
  }
  absl::StatusOr<std::vector<herd::v1::Rollout>> ListRollouts(size_t n) override {
    return inner_->ListRollouts(n);
  }
  absl::Status AddToken(const controlplane::ApiToken& t) override { return inner_->AddToken(t); }
  absl::StatusOr<controlplane::ApiToken> FindTokenBySecretHash(const std::string& h) override {
    return inner_->FindTokenBySecretHash(h);
  }
  absl::StatusOr<std::vector<controlplane::ApiToken>> ListTokens() override { return inner_->ListTokens(); }
  absl::Status DeleteToken(const std::string& n) override { return inner_->DeleteToken(n); }
  absl::Status AppendAudit(const herd::v1::AuditEntry& e) override {
    {
      std::unique_lock<std::mutex> l(gate_mu_);
      gate_cv_.wait(l, [&] { return !held_audit_; });
    }
    return inner_->AppendAudit(e);
  }
  absl::StatusOr<std::vector<herd::v1::AuditEntry>> ListAudit(size_t n) override {
    return inner_->ListAudit(n);
  }
  absl::Status PutSetting(const std::string& k, const std::string& v) override {
    return inner_->PutSetting(k, v);
  }
  absl::StatusOr<std::optional<std::string>> GetSetting(const std::string& k) override {
    return inner_->GetSetting(k);
  }

 private:
  std::mutex gate_mu_;
  std::condition_variable gate_cv_;
  bool held_ = false;
  bool held_audit_ = false;
  int held_puts_ = 0;
  std::unique_ptr<controlplane::Store> inner_;
};

}  // namespace herd::testing
