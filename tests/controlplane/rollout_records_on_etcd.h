// RolloutRecordsOnEtcd: the rollouts part of a Store, kept in etcd as EtcdStore keeps them
// (<prefix>/rollouts/<id>: a serialized herd.v1.Rollout), for the tests of rollouts across
// replicas (which need the records' writes to reach etcd watches) on FakeEtcd or a real etcd;
// the other parts of Store are not used there and answer UNIMPLEMENTED.
#pragma once

#include <algorithm>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "absl/strings/str_cat.h"
#include "controlplane/etcd/etcd_client.h"
#include "controlplane/store/store.h"

namespace herd::controlplane {

class RolloutRecordsOnEtcd final : public Store {
 public:
  using Rollout = herd::v1::Rollout;

  RolloutRecordsOnEtcd(etcd::Client& etcd, std::string prefix)
      : etcd_(etcd), prefix_(std::move(prefix)) {}
  absl::Status PutRollout(const Rollout& r) override {
    return etcd_.Put(Key(r.id()), r.SerializeAsString()).status();
  }
  absl::StatusOr<Rollout> GetRollout(const std::string& id) override {
    auto kv = etcd_.Get(Key(id));
    if (!kv.ok()) return kv.status();
    if (!kv->has_value()) return absl::NotFoundError(id);
    Rollout r;
    if (!r.ParseFromString((*kv)->value)) return absl::DataLossError(id);
    return r;
  }
  absl::StatusOr<std::vector<Rollout>> ListRollouts(size_t limit) override {
    etcd::RangeOptions all;
    all.range_end = absl::StrCat(prefix_, "/rollouts0");  // the prefix's range end
    auto kvs = etcd_.Range(Key(""), all);
    if (!kvs.ok()) return kvs.status();
    std::vector<Rollout> out;
    for (const auto& kv : kvs->kvs) out.emplace_back().ParseFromString(kv.value);
    std::stable_sort(out.begin(), out.end(), [](const Rollout& a, const Rollout& b) {
      return a.created_at_unix_ms() > b.created_at_unix_ms();
    });
    if (out.size() > limit) out.resize(limit);
    return out;
  }

  absl::Status PutHost(const HostRecord&) override { return No(); }
  absl::Status PutHosts(const std::vector<HostRecord>&) override { return No(); }
  absl::Status PutHostStatus(const std::vector<HostStatus>&) override { return No(); }
  absl::StatusOr<HostRecord> GetHost(const std::string&) override { return No(); }
  absl::StatusOr<std::vector<HostRecord>> ListHosts() override { return No(); }
  absl::Status DeleteHost(const std::string&) override { return No(); }
  absl::StatusOr<uint64_t> ConfigRevision() override { return No(); }
  absl::StatusOr<ConfigWrite> SetOverride(const herd::v1::Override&) override { return No(); }
  absl::StatusOr<ConfigWrite> UnsetOverride(const herd::v1::Scope&, const std::string&,
                                            const std::string&) override {
    return No();
  }
  absl::StatusOr<std::vector<herd::v1::Override>> ListOverrides(const std::string&) override {
    return No();
  }
  absl::Status AddToken(const ApiToken&) override { return No(); }
  absl::StatusOr<ApiToken> FindTokenBySecretHash(const std::string&) override { return No(); }
  absl::StatusOr<std::vector<ApiToken>> ListTokens() override { return No(); }
  absl::Status DeleteToken(const std::string&) override { return No(); }
  absl::Status AppendAudit(const herd::v1::AuditEntry&) override { return No(); }
  absl::StatusOr<std::vector<herd::v1::AuditEntry>> ListAudit(size_t) override { return No(); }
  absl::Status PutSetting(const std::string&, const std::string&) override { return No(); }
  absl::StatusOr<std::optional<std::string>> GetSetting(const std::string&) override {
    return No();
  }

 private:
  std::string Key(const std::string& id) const {
    return absl::StrCat(prefix_, "/rollouts/", id);
  }
  static absl::Status No() { return absl::UnimplementedError("not a rollout"); }
  etcd::Client& etcd_;
  const std::string prefix_;
};

}  // namespace herd::controlplane
