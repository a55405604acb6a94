// The etcd client against etcds of their own: etcd's auth (user/password, the token renewed
// after etcd forgets it), TLS with client certificates, and a 3-member cluster losing and
// regaining its quorum.
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <memory>
#include <string>

#include "absl/strings/match.h"
#include "absl/synchronization/notification.h"
#include "controlplane/etcd/etcd_client.h"
#include "tests/fakes/temp_dir.h"
#include "tests/integration/agent_harness.h"
#include "tests/support/etcd_harness.h"

namespace herd::etcd {
namespace {

using herd::testing::EtcdHarness;
using herd::testing::WaitFor;

std::unique_ptr<Client> Connect(Options o) {
  auto client = Client::Connect(o);
  EXPECT_TRUE(client.ok()) << client.status();
  return client.ok() ? *std::move(client) : nullptr;
}

TEST(EtcdClientAuthTest, AuthenticatesAndRefusesAWrongPassword) {
  EtcdHarness etcd;
  ASSERT_TRUE(etcd.Start()) << etcd.error();
  std::string out;
  ASSERT_EQ(etcd.Etcdctl({"user", "add", "root:s3cret"}, &out), 0) << out;
  ASSERT_EQ(etcd.Etcdctl({"auth", "enable"}, &out), 0) << out;

  Options o;
  o.endpoints = etcd.EndpointList();
  o.user = "root";
  o.password = "s3cret";
  auto client = Connect(o);
  ASSERT_NE(client, nullptr);
  ASSERT_TRUE(client->Put("/auth/k", "v").ok());
  EXPECT_EQ((*client->Get("/auth/k"))->value, "v");

  o.password = "wrong";
  auto wrong = Connect(o);
  ASSERT_NE(wrong, nullptr);
  auto refused = wrong->Put("/auth/k", "x");
  EXPECT_EQ(refused.status().code(), absl::StatusCode::kUnauthenticated) << refused.status();

  // A watch with a wrong password ends at once, saying why (retrying would not help).
  absl::Notification ended;
  absl::Status watch_error;
  auto watch = wrong->WatchRange("/auth/", PrefixEnd("/auth/"), 0, [&](const WatchBatch& b) {
    watch_error = b.error;
    ended.Notify();
  });
  ASSERT_TRUE(watch.ok()) << watch.status();
  ASSERT_TRUE(ended.WaitForNotificationWithTimeout(absl::Seconds(10)));
  EXPECT_EQ(watch_error.code(), absl::StatusCode::kUnauthenticated) << watch_error;

  o.user.clear();
  o.password.clear();
  auto anonymous = Connect(o);
  ASSERT_NE(anonymous, nullptr);
  EXPECT_EQ(anonymous->Get("/auth/k").status().code(), absl::StatusCode::kUnauthenticated);

  // etcd's simple tokens live in its memory: after a restart the client's token is invalid,
  // and the client authenticates again by itself.
  etcd.KillMember(0);
  // The harness's health probe (etcdctl without a user) fails once auth is on: the client's
  // own write is the probe here.
  (void)etcd.RestartMember(0, absl::Seconds(1));
  ASSERT_TRUE(etcd.MemberRunning(0));
  EXPECT_TRUE(WaitFor([&] { return client->Put("/auth/k", "after restart").ok(); },
                      absl::Seconds(20)));
  EXPECT_EQ((*client->Get("/auth/k"))->value, "after restart");
}

TEST(EtcdClientTlsTest, SpeaksTlsWithAClientCertificate) {
  EtcdHarness::Options options;
  herd::testing::ScopedTempDir pki;
  ASSERT_FALSE(pki.path().empty());
  options.tls_dir = pki.Path("pki");
  ASSERT_EQ(herd::testing::MakeTestPki(options.tls_dir), "");
  EtcdHarness etcd(options);
  ASSERT_TRUE(etcd.Start()) << etcd.error();

  Options o;
  o.endpoints = etcd.EndpointList();
  o.ca_file = options.tls_dir + "/ca.pem";
  o.cert_file = options.tls_dir + "/client.pem";
  o.key_file = options.tls_dir + "/client.key";
  o.timeout = absl::Seconds(3);
  auto client = Connect(o);
  ASSERT_NE(client, nullptr);
  auto put = client->Put("/tls/k", "v");
  ASSERT_TRUE(put.ok()) << put.status();
  EXPECT_EQ((*client->Get("/tls/k"))->value, "v");

  // Without a client certificate etcd (--client-cert-auth) ends the handshake.
  o.cert_file.clear();
  o.key_file.clear();
  auto no_cert = Connect(o);
  ASSERT_NE(no_cert, nullptr);
  EXPECT_FALSE(no_cert->Get("/tls/k").ok());
  // Plain text to a TLS etcd fails too, as no quorum (nothing answers in its language).
  Options plain;
  plain.endpoints = etcd.EndpointList();
  plain.timeout = absl::Seconds(2);
  auto plain_client = Connect(plain);
  ASSERT_NE(plain_client, nullptr);
  EXPECT_EQ(plain_client->Get("/tls/k").status().code(), absl::StatusCode::kUnavailable);
}

TEST(EtcdClientQuorumTest, NoQuorumRefusesWritesAndRecoversWithoutHelp) {
  EtcdHarness etcd(EtcdHarness::Cluster(3));
  ASSERT_TRUE(etcd.Start()) << etcd.error();
  Options o;
  o.endpoints = etcd.EndpointList();
  o.timeout = absl::Seconds(2);
  auto client = Connect(o);
  ASSERT_NE(client, nullptr);
  ASSERT_TRUE(client->Put("/q/k", "3 members").ok());

  // One member down: a majority remains, nothing noticeable.
  etcd.KillMember(0);
  auto one_down = client->Put("/q/k", "2 members");
  ASSERT_TRUE(one_down.ok()) << one_down.status();

  etcd.KillMember(1);
  const absl::Time before = absl::Now();
  auto refused = client->Put("/q/k", "1 member");
  const absl::Duration took = absl::Now() - before;
  ASSERT_EQ(refused.status().code(), absl::StatusCode::kUnavailable) << refused.status();
  EXPECT_TRUE(absl::StartsWith(refused.status().message(), "the store has no quorum"))
      << refused.status();
  EXPECT_TRUE(absl::StrContains(refused.status().message(), etcd.Endpoint(2))) << refused.status();
  EXPECT_LT(took, o.timeout + absl::Seconds(2));
  // A serializable read is served by the member left, from what it has applied: the last
  // write it was told is committed ("2 members") or, when the leader died before telling it,
  // the one before (etcd's serializable reads may be stale); never the refused one.
  RangeOptions stale;
  stale.serializable = true;
  auto read = client->Range("/q/k", stale);
  ASSERT_TRUE(read.ok()) << read.status();
  ASSERT_EQ(read->kvs.size(), 1u);
  EXPECT_THAT(read->kvs[0].value, ::testing::AnyOf("2 members", "3 members"));

  ASSERT_TRUE(etcd.RestartMember(0));
  ASSERT_TRUE(etcd.RestartMember(1));
  EXPECT_TRUE(WaitFor([&] { return client->Put("/q/k", "back").ok(); }, absl::Seconds(20)));
  EXPECT_EQ((*client->Get("/q/k"))->value, "back");
}

}  // namespace
}  // namespace herd::etcd
