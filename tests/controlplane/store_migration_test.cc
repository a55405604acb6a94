// controlplane migrate: a SQLite store copied into etcd (FakeEtcd) reads back the same through
// the etcd store, every list compared; a prefix holding a store is refused without --force.
#include "controlplane/store/store_migration.h"

#include <gmock/gmock.h>
#include <google/protobuf/util/message_differencer.h>
#include <gtest/gtest.h>

#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "tests/controlplane/store_contract_test.h"
#include "tests/fakes/fake_etcd.h"

namespace herd::controlplane::testing {
namespace {

using ::testing::HasSubstr;

bool Same(const google::protobuf::Message& a, const google::protobuf::Message& b) {
  return google::protobuf::util::MessageDifferencer::Equals(a, b);
}

template <typename T>
void ExpectSameProtos(const std::vector<T>& a, const std::vector<T>& b) {
  ASSERT_EQ(a.size(), b.size());
  for (size_t i = 0; i < a.size(); ++i) EXPECT_TRUE(Same(a[i], b[i])) << i;
}

class StoreMigrationTest : public ::testing::Test {
 protected:
  void SetUp() override {
    sqlite_ = Must(OpenSqliteStore(path_));
    for (int i = 0; i < 300; ++i) {  // more than one Txn of hosts
      HostRecord h;
      h.host_id = absl::StrCat("host-", i);
      h.hostname = absl::StrCat("h", i);
      h.labels = {{"env", i % 2 ? "prod" : "dev"}};
      h.credential_sha256 = std::string(64, 'c');
      h.acked_config_version = 3;
      herd::v1::ModuleInventory m;
      m.set_name("weather");
      h.modules = {m};
      HERD_ASSERT_OK(sqlite_->PutHost(h));
    }
    for (int i = 0; i < 4; ++i) {
      herd::v1::Override o;
      o.mutable_scope()->set_selector(absl::StrCat("env=", i));
      o.set_module("weather");
      o.set_key("interval");
      o.set_value(absl::StrCat(i));
      Must(sqlite_->SetOverride(o));
    }
    herd::v1::Scope global;
    global.set_global(true);
    Must(sqlite_->UnsetOverride(herd::v1::Scope(global), "never", "set"));
    herd::v1::Override gone;
    *gone.mutable_scope() = global;
    gone.set_module("weather");
    gone.set_key("gone");
    gone.set_value("x");
    Must(sqlite_->SetOverride(gone));
    Must(sqlite_->UnsetOverride(global, "weather", "gone"));  // revision 6, 4 overrides
    for (const char* name : {"admin", "viewer", "ci"}) {
      ApiToken t;
      t.name = name;
      t.role = Role::kOperator;
      t.secret_sha256 = absl::StrCat("sha-", name);
      HERD_ASSERT_OK(sqlite_->AddToken(t));
    }
    for (int i = 0; i < 3; ++i) {
      herd::v1::Rollout r;
      r.set_id(absl::StrCat("r", i));
      r.set_created_at_unix_ms(100);  // ties: insertion order decides
      HERD_ASSERT_OK(sqlite_->PutRollout(r));
    }
    for (int i = 0; i < 5; ++i) {
      herd::v1::AuditEntry e;
      e.set_at_unix_ms(i == 4 ? 1 : 10 + i);
      e.set_action(absl::StrCat("a", i));
      HERD_ASSERT_OK(sqlite_->AppendAudit(e));
    }
    HERD_ASSERT_OK(sqlite_->PutSetting("join_token_sha256", "abc"));
  }

  TempDir dir_;
  std::string path_ = dir_.path() + "/herd.db";
  std::unique_ptr<Store> sqlite_;
  herd::testing::FakeEtcd etcd_;
};

TEST_F(StoreMigrationTest, EveryRecordReadsBackTheSameFromEtcd) {
  MigrationReport report = Must(MigrateToEtcd(*sqlite_, path_, etcd_, "/herd", false));
  EXPECT_EQ(report.hosts, 300u);
  EXPECT_EQ(report.overrides, 4u);
  EXPECT_EQ(report.config_revision, 6u);
  EXPECT_THAT(DescribeMigration(report), HasSubstr("300 hosts"));
  auto etcd = Must(OpenEtcdStore(etcd_, "/herd"));

  EXPECT_TRUE(Must(etcd->ListHosts()) == Must(sqlite_->ListHosts()));
  EXPECT_EQ(Must(etcd->ConfigRevision()), 6u) << "agents' acked versions stay valid";
  ExpectSameProtos(Must(etcd->ListOverrides("")), Must(sqlite_->ListOverrides("")));
  auto tokens = Must(etcd->ListTokens());
  auto want_tokens = Must(sqlite_->ListTokens());
  ASSERT_EQ(tokens.size(), want_tokens.size());
  for (size_t i = 0; i < tokens.size(); ++i) {
    EXPECT_EQ(tokens[i].name, want_tokens[i].name);
    EXPECT_EQ(tokens[i].secret_sha256, want_tokens[i].secret_sha256);
    EXPECT_EQ(tokens[i].role, want_tokens[i].role);
  }
  EXPECT_EQ(Must(etcd->FindTokenBySecretHash("sha-ci")).name, "ci");
  ExpectSameProtos(Must(etcd->ListRollouts(100)), Must(sqlite_->ListRollouts(100)));
  ExpectSameProtos(Must(etcd->ListAudit(100)), Must(sqlite_->ListAudit(100)));
  EXPECT_EQ(Must(etcd->GetSetting("join_token_sha256")), "abc");
  // The next change continues from the revision it had.
  herd::v1::Override o;
  o.mutable_scope()->set_global(true);
  o.set_module("weather");
  o.set_key("k");
  o.set_value("v");
  EXPECT_EQ(Must(etcd->SetOverride(o)).revision, 7u);
}

TEST_F(StoreMigrationTest, APrefixHoldingAStoreIsRefusedWithoutForce) {
  Must(MigrateToEtcd(*sqlite_, path_, etcd_, "/herd", false));
  const auto before = etcd_.Dump("/herd/");
  absl::StatusOr<MigrationReport> again = MigrateToEtcd(*sqlite_, path_, etcd_, "/herd", false);
  EXPECT_EQ(again.status().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_THAT(std::string(again.status().message()), HasSubstr("--force"));
  EXPECT_EQ(etcd_.Dump("/herd/"), before) << "nothing written";
  // Another prefix is free.
  HERD_EXPECT_OK(MigrateToEtcd(*sqlite_, path_, etcd_, "/other", false).status());
}

TEST_F(StoreMigrationTest, ForceReplacesWhatThePrefixHeld) {
  Must(MigrateToEtcd(*sqlite_, path_, etcd_, "/herd", false));
  HERD_ASSERT_OK(sqlite_->DeleteHost("host-0"));
  MigrationReport report = Must(MigrateToEtcd(*sqlite_, path_, etcd_, "/herd", true));
  EXPECT_GT(report.keys_replaced, 0);
  auto etcd = Must(OpenEtcdStore(etcd_, "/herd"));
  EXPECT_EQ(Must(etcd->ListHosts()).size(), 299u);
  EXPECT_EQ(Must(etcd->ListAudit(100)).size(), 5u) << "not appended twice";
}

}  // namespace
}  // namespace herd::controlplane::testing
