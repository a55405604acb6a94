// InstrumentedStore: a Store decorator that times every call of the store it wraps and counts
// its storage errors, for /metrics (herd_controlplane_store_operation_duration_seconds and
// herd_controlplane_store_errors_total).
//
// Calls are grouped in two kinds, reads (Get*, List*, ConfigRevision, Find*) and writes
// (Put*, Set*, Unset*, Add*, Delete*, Append*), each with one latency histogram: two kinds
// keep the exposition small (one histogram is 14 series) while still telling a slow disk
// (writes: fsync) from a slow query. An answer that is part of the contract (NotFound,
// InvalidArgument, AlreadyExists) is not an error; anything else that is not OK is.
//
// Recording is lock-free: a call costs two monotonic clock reads and a few relaxed atomic
// increments, so the decorator adds nothing measurable next to SQLite.
#pragma once

#include <array>
#include <atomic>
#include <cstdint>
#include <limits>
#include <memory>
#include <string>
#include <span>
#include <vector>

#include "absl/time/time.h"
#include "common/clock.h"
#include "common/latency_histogram.h"
#include "controlplane/store/store.h"

namespace herd::controlplane {

class InstrumentedStore final : public Store {
 public:
  enum class Op { kRead, kWrite };
  static const char* OpName(Op op) { return op == Op::kRead ? "read" : "write"; }

  // One kind of call, as /metrics shows it.
  struct OpStats {
    std::string op;  // "read" or "write"
    LatencyHistogram::Snapshot latency;
    uint64_t errors = 0;
  };

  // `clock` measures durations (its Monotonic time); tests pass a FakeClock.
  explicit InstrumentedStore(std::unique_ptr<Store> inner,
                             const Clock& clock = SystemClock::Get());

  // Reads then writes.
  std::vector<OpStats> Stats() const;

  absl::Status PutHost(const HostRecord& host) override;
  absl::Status PutHosts(const std::vector<HostRecord>& hosts) override;
  absl::Status PutHostStatus(const std::vector<HostStatus>& status) override;
  absl::StatusOr<HostRecord> GetHost(const std::string& host_id) override;
  absl::StatusOr<std::vector<HostRecord>> ListHosts() override;
  absl::Status DeleteHost(const std::string& host_id) override;
  absl::StatusOr<uint64_t> ConfigRevision() override;
  absl::StatusOr<ConfigWrite> SetOverride(const herd::v1::Override& override) override;
  absl::StatusOr<ConfigWrite> UnsetOverride(const herd::v1::Scope& scope,
                                            const std::string& module,
                                            const std::string& key) override;
  absl::StatusOr<std::vector<herd::v1::Override>> ListOverrides(
      const std::string& module = "") override;
  absl::Status PutRollout(const herd::v1::Rollout& rollout) override;
  absl::StatusOr<herd::v1::Rollout> GetRollout(const std::string& id) override;
  absl::StatusOr<std::vector<herd::v1::Rollout>> ListRollouts(size_t limit) override;
  absl::Status AddToken(const ApiToken& token) override;
  absl::StatusOr<ApiToken> FindTokenBySecretHash(const std::string& secret_sha256) override;
  absl::StatusOr<std::vector<ApiToken>> ListTokens() override;
  absl::Status DeleteToken(const std::string& name) override;
  absl::Status AppendAudit(const herd::v1::AuditEntry& entry) override;
  absl::Status AppendAudits(const std::vector<herd::v1::AuditEntry>& entries) override;
  absl::StatusOr<std::vector<herd::v1::AuditEntry>> ListAudit(size_t limit) override;
  absl::Status PutSetting(const std::string& key, const std::string& value) override;
  absl::StatusOr<std::optional<std::string>> GetSetting(const std::string& key) override;

 private:
  struct Counters {
    LatencyHistogram latency;
    std::atomic<uint64_t> errors{0};
  };

  // Runs `call`, recording its duration and outcome under `op`.
  template <typename F>
  auto Timed(Op op, F&& call) -> decltype(call());
  void Record(Op op, absl::Duration took, const absl::Status& status);

  const std::unique_ptr<Store> inner_;
  const Clock& clock_;
  std::array<Counters, 2> ops_;
  // A failing store (a full disk, a lost etcd) is logged, at most once per 10 s with how many
  // failures were not logged: the caller gets the error, the operator must see it too.
  std::atomic<int64_t> last_error_log_ns_{std::numeric_limits<int64_t>::min()};
  std::atomic<uint64_t> unlogged_errors_{0};
};

}  // namespace herd::controlplane
