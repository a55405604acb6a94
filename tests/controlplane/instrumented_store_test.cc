// InstrumentedStore: it passes the Store contract around SQLite, sorts calls into reads and
// writes, puts each in the right latency bucket and counts only real storage errors.
#include "controlplane/store/instrumented_store.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <string>
#include <vector>

#include "common/clock.h"
#include "common/logging.h"
#include "tests/controlplane/store_contract_test.h"

namespace herd::controlplane::testing {
namespace {

INSTANTIATE_TEST_SUITE_P(
    InstrumentedSqlite, StoreContractTest,
    ::testing::Values(StoreBackend{
        "instrumented_sqlite",
        [](const std::string& dir) -> absl::StatusOr<std::unique_ptr<Store>> {
          auto inner = OpenSqliteStore(dir + "/controlplane.db");
          if (!inner.ok()) return inner.status();
          return std::make_unique<InstrumentedStore>(std::move(*inner));
        }}),
    StoreBackendName);

// Every call takes `delay` on the fake clock and answers `status`.
class ScriptedStore final : public Store {
 public:
  explicit ScriptedStore(FakeClock& clock) : clock_(clock) {}
  absl::Duration delay;
  absl::Status status;

  absl::Status PutHost(const HostRecord&) override { return Answer(); }
  absl::Status PutHosts(const std::vector<HostRecord>&) override { return Answer(); }
  absl::Status PutHostStatus(const std::vector<HostStatus>&) override { return Answer(); }
  absl::StatusOr<HostRecord> GetHost(const std::string&) override { return Or<HostRecord>(); }
  absl::StatusOr<std::vector<HostRecord>> ListHosts() override {
    return Or<std::vector<HostRecord>>();
  }
  absl::Status DeleteHost(const std::string&) override { return Answer(); }
  absl::StatusOr<uint64_t> ConfigRevision() override { return Or<uint64_t>(); }
  absl::StatusOr<ConfigWrite> SetOverride(const herd::v1::Override&) override {
    return Or<ConfigWrite>();
  }
  absl::StatusOr<ConfigWrite> UnsetOverride(const herd::v1::Scope&, const std::string&,
                                            const std::string&) override {
    return Or<ConfigWrite>();
  }
  absl::StatusOr<std::vector<herd::v1::Override>> ListOverrides(const std::string&) override {
    return Or<std::vector<herd::v1::Override>>();
  }
  absl::Status PutRollout(const herd::v1::Rollout&) override { return Answer(); }
  absl::StatusOr<herd::v1::Rollout> GetRollout(const std::string&) override {
    return Or<herd::v1::Rollout>();
  }
  absl::StatusOr<std::vector<herd::v1::Rollout>> ListRollouts(size_t) override {
    return Or<std::vector<herd::v1::Rollout>>();
  }
  absl::Status AddToken(const ApiToken&) override { return Answer(); }
  absl::StatusOr<ApiToken> FindTokenBySecretHash(const std::string&) override {
    return Or<ApiToken>();
  }
  absl::StatusOr<std::vector<ApiToken>> ListTokens() override {
    return Or<std::vector<ApiToken>>();
  }
  absl::Status DeleteToken(const std::string&) override { return Answer(); }
  absl::Status AppendAudit(const herd::v1::AuditEntry&) override { return Answer(); }
  absl::StatusOr<std::vector<herd::v1::AuditEntry>> ListAudit(size_t) override {
    return Or<std::vector<herd::v1::AuditEntry>>();
  }
  absl::Status PutSetting(const std::string&, const std::string&) override { return Answer(); }
  absl::StatusOr<std::optional<std::string>> GetSetting(const std::string&) override {
    return Or<std::optional<std::string>>();
  }

 private:
  absl::Status Answer() {
    clock_.Advance(delay);
    return status;
  }
  template <typename T>
  absl::StatusOr<T> Or() {
    if (auto s = Answer(); !s.ok()) return s;
    return T{};
  }
  FakeClock& clock_;
};

class InstrumentedStoreTest : public ::testing::Test {
 protected:
  InstrumentedStoreTest() {
    auto inner = std::make_unique<ScriptedStore>(clock_);
    inner_ = inner.get();
    store_ = std::make_unique<InstrumentedStore>(std::move(inner), clock_);
  }
  InstrumentedStore::OpStats Op(const std::string& name) const {
    for (const auto& s : store_->Stats()) {
      if (s.op == name) return s;
    }
    ADD_FAILURE() << "no op " << name;
    return {};
  }

  FakeClock clock_;
  ScriptedStore* inner_;
  std::unique_ptr<InstrumentedStore> store_;
};

TEST_F(InstrumentedStoreTest, ReadsAndWritesAreTimedApart) {
  inner_->delay = absl::Microseconds(300);
  (void)store_->GetHost("h");
  (void)store_->ListHosts();
  (void)store_->ConfigRevision();
  (void)store_->ListOverrides();
  (void)store_->GetRollout("r");
  (void)store_->ListRollouts(5);
  (void)store_->FindTokenBySecretHash("x");
  (void)store_->ListTokens();
  (void)store_->ListAudit(5);
  (void)store_->GetSetting("k");
  inner_->delay = absl::Milliseconds(3);
  (void)store_->PutHost({});
  (void)store_->DeleteHost("h");
  (void)store_->SetOverride({});
  (void)store_->UnsetOverride({}, "m", "k");
  (void)store_->PutRollout({});
  (void)store_->AddToken({});
  (void)store_->DeleteToken("t");
  (void)store_->AppendAudit({});
  (void)store_->PutSetting("k", "v");

  auto stats = store_->Stats();
  ASSERT_EQ(stats.size(), 2u);
  EXPECT_EQ(stats[0].op, "read");
  EXPECT_EQ(stats[1].op, "write");
  const auto read = Op("read").latency;
  EXPECT_EQ(read.count, 10u);
  EXPECT_NEAR(read.sum_seconds, 0.003, 1e-9);
  EXPECT_EQ(read.cumulative.front(), 10u);  // all within 0.5 ms
  const auto write = Op("write").latency;
  EXPECT_EQ(write.count, 9u);
  EXPECT_NEAR(write.sum_seconds, 0.027, 1e-9);
  ASSERT_EQ(write.bounds.size(), write.cumulative.size());
  for (size_t i = 0; i < write.bounds.size(); ++i) {
    // 3 ms: above the 2.5 ms bucket, within the 5 ms one.
    EXPECT_EQ(write.cumulative[i], write.bounds[i] >= 0.005 ? 9u : 0u) << write.bounds[i];
  }
}

TEST_F(InstrumentedStoreTest, OnlyStorageFailuresAreErrors) {
  for (absl::Status s : {absl::NotFoundError("no host"), absl::InvalidArgumentError("bad"),
                         absl::AlreadyExistsError("taken"), absl::OkStatus()}) {
    inner_->status = s;
    (void)store_->GetHost("h");
    (void)store_->AddToken({});
  }
  EXPECT_EQ(Op("read").errors, 0u);
  EXPECT_EQ(Op("write").errors, 0u);
  inner_->status = absl::UnavailableError("disk gone");
  EXPECT_TRUE(absl::IsUnavailable(store_->GetHost("h").status()));  // passed through
  inner_->status = absl::ResourceExhaustedError("disk full");
  EXPECT_TRUE(absl::IsResourceExhausted(store_->PutSetting("k", "v")));
  (void)store_->AppendAudit({});
  EXPECT_EQ(Op("read").errors, 1u);
  EXPECT_EQ(Op("write").errors, 2u);
  EXPECT_EQ(Op("read").latency.count, 5u);  // failed calls are timed too
}

// A store that fails (a full disk) is logged, not only returned to the caller: once, then at
// most every 10 s with how many failures were not logged in between.
TEST_F(InstrumentedStoreTest, StorageFailuresAreLoggedAtMostEveryTenSeconds) {
  ::herd::testing::ScopedTempDir dir("herd-store-log");
  const std::string log = dir.Path("cp.log");
  LogOptions o;
  o.file = log;
  o.to_stderr = false;
  ASSERT_TRUE(InitLogging(o).ok());
  auto lines = [&] {
    std::ifstream in(log);
    std::vector<std::string> out;
    for (std::string l; std::getline(in, l);) {
      if (l.find("event=store_failed") != std::string::npos) out.push_back(l);
    }
    return out;
  };
  inner_->status = absl::ResourceExhaustedError("database or disk is full");
  for (int i = 0; i < 5; ++i) (void)store_->PutSetting("k", "v");
  spdlog::apply_all([](const std::shared_ptr<spdlog::logger>& l) { l->flush(); });
  auto first = lines();
  ASSERT_EQ(first.size(), 1u);
  EXPECT_NE(first[0].find("op=write error=\"database or disk is full\""), std::string::npos)
      << first[0];
  clock_.Advance(absl::Seconds(11));
  (void)store_->GetHost("h");
  spdlog::apply_all([](const std::shared_ptr<spdlog::logger>& l) { l->flush(); });
  auto second = lines();
  ASSERT_EQ(second.size(), 2u);
  EXPECT_NE(second[1].find("op=read"), std::string::npos) << second[1];
  EXPECT_NE(second[1].find("not_logged_since=4"), std::string::npos) << second[1];
  ASSERT_TRUE(InitLogging(LogOptions{}).ok());
}

}  // namespace
}  // namespace herd::controlplane::testing
