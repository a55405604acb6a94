#include "controlplane/store/instrumented_store.h"

#include <algorithm>
#include <limits>
#include <utility>

#include "common/logging.h"

namespace herd::controlplane {
namespace {

const absl::Status& StatusOf(const absl::Status& s) { return s; }
template <typename T>
const absl::Status& StatusOf(const absl::StatusOr<T>& s) {
  return s.status();
}

// Answers the Store contract gives for a request (a missing record, a bad or duplicate one)
// are not failures of the store.
bool IsStorageError(const absl::Status& s) {
  return !s.ok() && !absl::IsNotFound(s) && !absl::IsInvalidArgument(s) &&
         !absl::IsAlreadyExists(s);
}

}  // namespace

InstrumentedStore::InstrumentedStore(std::unique_ptr<Store> inner, const Clock& clock)
    : inner_(std::move(inner)), clock_(clock) {}

std::vector<InstrumentedStore::OpStats> InstrumentedStore::Stats() const {
  std::vector<OpStats> out;
  for (Op op : {Op::kRead, Op::kWrite}) {
    const Counters& c = ops_[static_cast<size_t>(op)];
    out.push_back({OpName(op), c.latency.Read(), c.errors.load(std::memory_order_relaxed)});
  }
  return out;
}

void InstrumentedStore::Record(Op op, absl::Duration took, const absl::Status& status) {
  Counters& c = ops_[static_cast<size_t>(op)];
  c.latency.Observe(took);
  if (!IsStorageError(status)) return;
  c.errors.fetch_add(1, std::memory_order_relaxed);
  const int64_t now_ns = absl::ToUnixNanos(clock_.Monotonic());
  int64_t last = last_error_log_ns_.load(std::memory_order_relaxed);
  if (last != std::numeric_limits<int64_t>::min() && now_ns - last < absl::ToInt64Nanoseconds(absl::Seconds(10))) {
    unlogged_errors_.fetch_add(1, std::memory_order_relaxed);
    return;
  }
  if (!last_error_log_ns_.compare_exchange_strong(last, now_ns)) {
    unlogged_errors_.fetch_add(1, std::memory_order_relaxed);
    return;
  }
  static auto log = herd::Logger("store");
  log->error("event=store_failed op={} error=\"{}\" not_logged_since={}", OpName(op),
             status.message(), unlogged_errors_.exchange(0));
}

template <typename F>
auto InstrumentedStore::Timed(Op op, F&& call) -> decltype(call()) {
  const absl::Time start = clock_.Monotonic();
  auto result = call();
  Record(op, clock_.Monotonic() - start, StatusOf(result));
  return result;
}

absl::Status InstrumentedStore::PutHost(const HostRecord& host) {
  return Timed(Op::kWrite, [&] { return inner_->PutHost(host); });
}
absl::Status InstrumentedStore::PutHosts(const std::vector<HostRecord>& hosts) {
  return Timed(Op::kWrite, [&] { return inner_->PutHosts(hosts); });
}
absl::Status InstrumentedStore::PutHostStatus(const std::vector<HostStatus>& status) {
  return Timed(Op::kWrite, [&] { return inner_->PutHostStatus(status); });
}
absl::StatusOr<HostRecord> InstrumentedStore::GetHost(const std::string& host_id) {
  return Timed(Op::kRead, [&] { return inner_->GetHost(host_id); });
}
absl::StatusOr<std::vector<HostRecord>> InstrumentedStore::ListHosts() {
  return Timed(Op::kRead, [&] { return inner_->ListHosts(); });
}
absl::Status InstrumentedStore::DeleteHost(const std::string& host_id) {
  return Timed(Op::kWrite, [&] { return inner_->DeleteHost(host_id); });
}
absl::StatusOr<uint64_t> InstrumentedStore::ConfigRevision() {
  return Timed(Op::kRead, [&] { return inner_->ConfigRevision(); });
}
absl::StatusOr<ConfigWrite> InstrumentedStore::SetOverride(const herd::v1::Override& override) {
  return Timed(Op::kWrite, [&] { return inner_->SetOverride(override); });
}
absl::StatusOr<ConfigWrite> InstrumentedStore::UnsetOverride(const herd::v1::Scope& scope,
                                                             const std::string& module,
                                                             const std::string& key) {
  return Timed(Op::kWrite, [&] { return inner_->UnsetOverride(scope, module, key); });
}
absl::StatusOr<std::vector<herd::v1::Override>> InstrumentedStore::ListOverrides(
    const std::string& module) {
  return Timed(Op::kRead, [&] { return inner_->ListOverrides(module); });
}
absl::Status InstrumentedStore::PutRollout(const herd::v1::Rollout& rollout) {
  return Timed(Op::kWrite, [&] { return inner_->PutRollout(rollout); });
}
absl::StatusOr<herd::v1::Rollout> InstrumentedStore::GetRollout(const std::string& id) {
  return Timed(Op::kRead, [&] { return inner_->GetRollout(id); });
}
absl::StatusOr<std::vector<herd::v1::Rollout>> InstrumentedStore::ListRollouts(size_t limit) {
  return Timed(Op::kRead, [&] { return inner_->ListRollouts(limit); });
}
absl::Status InstrumentedStore::AddToken(const ApiToken& token) {
  return Timed(Op::kWrite, [&] { return inner_->AddToken(token); });
}
absl::StatusOr<ApiToken> InstrumentedStore::FindTokenBySecretHash(
    const std::string& secret_sha256) {
  return Timed(Op::kRead, [&] { return inner_->FindTokenBySecretHash(secret_sha256); });
}
absl::StatusOr<std::vector<ApiToken>> InstrumentedStore::ListTokens() {
  return Timed(Op::kRead, [&] { return inner_->ListTokens(); });
}
absl::Status InstrumentedStore::DeleteToken(const std::string& name) {
  return Timed(Op::kWrite, [&] { return inner_->DeleteToken(name); });
}
absl::Status InstrumentedStore::AppendAudit(const herd::v1::AuditEntry& entry) {
  return Timed(Op::kWrite, [&] { return inner_->AppendAudit(entry); });
}
absl::Status InstrumentedStore::AppendAudits(const std::vector<herd::v1::AuditEntry>& entries) {
  return Timed(Op::kWrite, [&] { return inner_->AppendAudits(entries); });
}
absl::StatusOr<std::vector<herd::v1::AuditEntry>> InstrumentedStore::ListAudit(size_t limit) {
  return Timed(Op::kRead, [&] { return inner_->ListAudit(limit); });
}
absl::Status InstrumentedStore::PutSetting(const std::string& key, const std::string& value) {
  return Timed(Op::kWrite, [&] { return inner_->PutSetting(key, value); });
}
absl::StatusOr<std::optional<std::string>> InstrumentedStore::GetSetting(const std::string& key) {
  return Timed(Op::kRead, [&] { return inner_->GetSetting(key); });
}

}  // namespace herd::controlplane
