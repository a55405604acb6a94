// The etcd harness itself: a cluster comes up, loses quorum when two of three members die,
// and recovers when they come back (what the replica tests rely on).
#include "tests/support/etcd_harness.h"

#include <gtest/gtest.h>

#include <string>

#include "tests/integration/agent_harness.h"

namespace herd::testing {
namespace {

TEST(EtcdHarnessTest, SingleMemberStoresAndReadsAKey) {
  EtcdHarness etcd;
  ASSERT_TRUE(etcd.Start()) << etcd.error();
  ASSERT_EQ(etcd.Etcdctl({"put", "/t/k", "v1"}), 0);
  std::string out;
  ASSERT_EQ(etcd.Etcdctl({"get", "/t/k", "--print-value-only"}, &out), 0);
  EXPECT_EQ(out, "v1\n");
}

TEST(EtcdHarnessTest, ClusterLosesAndRegainsQuorum) {
  EtcdHarness etcd(EtcdHarness::Cluster(3));
  ASSERT_TRUE(etcd.Start()) << etcd.error();
  ASSERT_EQ(etcd.Etcdctl({"put", "/t/k", "before"}), 0);
  etcd.KillMember(1);
  etcd.KillMember(2);
  EXPECT_FALSE(etcd.MemberRunning(1));
  std::string out;
  EXPECT_NE(etcd.Etcdctl({"put", "/t/k", "during"}, &out), 0) << out;
  ASSERT_TRUE(etcd.RestartMember(1)) << "member 1 did not come back";
  ASSERT_TRUE(etcd.RestartMember(2)) << "member 2 did not come back";
  ASSERT_TRUE(WaitFor([&] { return etcd.Etcdctl({"put", "/t/k", "after"}) == 0; }));
  ASSERT_EQ(etcd.Etcdctl({"get", "/t/k", "--print-value-only"}, &out), 0);
  EXPECT_EQ(out, "after\n");
}

}  // namespace
}  // namespace herd::testing
