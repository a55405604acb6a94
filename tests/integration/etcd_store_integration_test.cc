// The control plane on an etcd store, with the real binaries and a real etcd on loopback:
// two replicas sharing one etcd bootstrap the tokens once (the second says to copy the files),
// a token of one works on the other, the token commands work on etcd, and `controlplane
// migrate` moves a single node's SQLite store into etcd, refusing to write over it twice.
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <string>
#include <vector>

#include "common/atomic_file.h"
#include "tests/fakes/file_util.h"
#include "tests/integration/agent_harness.h"
#include "tests/support/etcd_harness.h"

namespace herd::testing {
namespace {

using ::testing::HasSubstr;

std::string Controlplane() { return AgentHarness::BinDir() + "/controlplane"; }

class EtcdStoreIntegrationTest : public ::testing::Test {
 protected:
  void SetUp() override { ASSERT_TRUE(etcd_.Start()) << etcd_.error(); }
  std::vector<std::string> StoreArgs() const { return {"--store", etcd_.Url()}; }

  EtcdHarness etcd_;
};

TEST_F(EtcdStoreIntegrationTest, SecondReplicaFindsTheTokensAndMakesNoOther) {
  ControlPlaneHarness a, b;
  ASSERT_TRUE(a.Start(StoreArgs())) << a.last_error();
  ASSERT_TRUE(b.Start(StoreArgs())) << b.last_error();
  EXPECT_TRUE(ReadFile(b.OperatorTokenFile()).empty()) << "no second admin token";
  EXPECT_THAT(ReadFile(b.output_path()), HasSubstr("api_token_files_missing"));
  EXPECT_THAT(ReadFile(b.output_path()), HasSubstr("copy operator-token"));
  // A's operator token is the fleet's: it works on B.
  CmdResult on_b = b.Ctl({"audit"}, a.OperatorTokenFile());
  EXPECT_EQ(on_b.exit_code, 0) << on_b.err;

  CmdResult list = herd::testing::Run({Controlplane(), "--data", b.data_dir(), "--store", etcd_.Url(),
                        "token", "list"});
  ASSERT_EQ(list.exit_code, 0) << list.err;
  EXPECT_THAT(list.out, HasSubstr("admin"));
  EXPECT_THAT(list.out, HasSubstr("viewer"));
  CmdResult created = herd::testing::Run({Controlplane(), "--data", b.data_dir(), "--store", etcd_.Url(),
                           "token", "create", "ci", "--role", "operator"});
  ASSERT_EQ(created.exit_code, 0) << created.err;
  // Made through B's flags, it works on A.
  const std::string ci_file = b.Path("ci-token");
  ASSERT_TRUE(WriteFileAtomically(ci_file, created.out, 0600).ok());
  EXPECT_EQ(a.Ctl({"audit"}, ci_file).exit_code, 0);
  a.Stop();
  b.Stop();
}

TEST_F(EtcdStoreIntegrationTest, AReplicasDifferentJoinTokenFileIsNotAdopted) {
  ControlPlaneHarness a, b;
  ASSERT_TRUE(a.Start(StoreArgs())) << a.last_error();
  std::string fleet_hash;
  ASSERT_EQ(etcd_.Etcdctl({"get", "/herd/settings/join_token_sha256", "--print-value-only"},
                          &fleet_hash), 0);
  ASSERT_TRUE(WriteFileAtomically(b.JoinTokenFile(), "hj_another\n", 0600).ok());
  ASSERT_TRUE(b.Start(StoreArgs())) << b.last_error();
  EXPECT_THAT(ReadFile(b.output_path()), HasSubstr("join_token_file_differs"));
  std::string after;
  ASSERT_EQ(etcd_.Etcdctl({"get", "/herd/settings/join_token_sha256", "--print-value-only"},
                          &after), 0);
  EXPECT_EQ(after, fleet_hash) << "A's join token stays the fleet's";
  a.Stop();
  b.Stop();
}

TEST_F(EtcdStoreIntegrationTest, MigrateMovesASingleNodeAndRefusesToWriteOverIt) {
  ControlPlaneHarness single;
  ASSERT_TRUE(single.Start()) << single.last_error();
  ASSERT_EQ(single.Ctl({"set", "svc:greeting", "hello", "--global", "--force"}).exit_code, 0);
  ASSERT_EQ(single.Ctl({"set", "svc:greeting", "bonjour", "--global", "--force"}).exit_code, 0);
  single.Stop();

  CmdResult moved = herd::testing::Run({Controlplane(), "migrate", "--from", single.data_dir(), "--to",
                         etcd_.Url()});
  ASSERT_EQ(moved.exit_code, 0) << moved.err;
  EXPECT_THAT(moved.out, HasSubstr("1 config overrides (config revision 2)"));
  EXPECT_THAT(moved.out, HasSubstr("2 API tokens"));
  CmdResult again = herd::testing::Run({Controlplane(), "migrate", "--from", single.data_dir(), "--to",
                         etcd_.Url()});
  EXPECT_NE(again.exit_code, 0);
  EXPECT_THAT(again.err, HasSubstr("--force"));

  // The same data directory (its token files) on the etcd store: same config, same revision.
  ASSERT_TRUE(single.Start(StoreArgs())) << single.last_error();
  CmdResult conf = single.Ctl({"conf", "svc", "--fleet"});
  EXPECT_EQ(conf.exit_code, 0) << conf.err;
  EXPECT_THAT(conf.out, HasSubstr("bonjour"));
  std::string revision;
  ASSERT_EQ(etcd_.Etcdctl({"get", "/herd/config/revision", "--print-value-only"}, &revision), 0);
  EXPECT_EQ(revision, "2\n");
  // Its log holds both starts: the tokens were made by the first (SQLite) one only.
  const std::string log = ReadFile(single.output_path());
  size_t created = 0;
  for (size_t at = log.find("api_token_created"); at != std::string::npos;
       at = log.find("api_token_created", at + 1)) {
    ++created;
  }
  EXPECT_EQ(created, 2u) << log;
  single.Stop();
}

}  // namespace
}  // namespace herd::testing
