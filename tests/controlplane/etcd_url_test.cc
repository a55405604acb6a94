// The etcd client's parts that need no etcd: URL parsing, prefix ends, and how gRPC failures
// become the caller's statuses (and whether another member is tried).
#include <gtest/gtest.h>

#include <string>

#include "controlplane/etcd/etcd_client.h"
#include "controlplane/etcd/etcd_errors.h"

namespace herd::etcd {
namespace {

TEST(ParseEtcdUrl, TakesOneOrSeveralEndpoints) {
  auto one = ParseEtcdUrl("etcd://127.0.0.1:2379");
  ASSERT_TRUE(one.ok()) << one.status();
  EXPECT_EQ(one->endpoints, std::vector<std::string>{"127.0.0.1:2379"});
  EXPECT_FALSE(one->tls);
  auto three = ParseEtcdUrl("etcds://a.example:2379,[::1]:22379,10.0.0.3:1");
  ASSERT_TRUE(three.ok()) << three.status();
  EXPECT_EQ(three->endpoints,
            (std::vector<std::string>{"a.example:2379", "[::1]:22379", "10.0.0.3:1"}));
  EXPECT_TRUE(three->tls);
}

TEST(ParseEtcdUrl, RefusesBadInputNamingWhatIsWrong) {
  struct Case {
    std::string url, says;
  };
  for (const Case& c : std::vector<Case>{
           {"", "does not start with"},
           {"http://127.0.0.1:2379", "does not start with"},
           {"etcd://", "no endpoint"},
           {"etcd://127.0.0.1", "no :PORT"},
           {"etcd://127.0.0.1:0", "valid port"},
           {"etcd://127.0.0.1:65536", "valid port"},
           {"etcd://127.0.0.1:-1", "valid port"},
           {"etcd://127.0.0.1:12ab", "valid port"},
           {"etcd://127.0.0.1:2379,", "empty endpoint"},
           {"etcd://a:1,,b:2", "empty endpoint"},
           {"etcd://:2379", "no host"},
           {"etcd://::1:2379", "brackets"},
           {"etcd://[::1:2379", "bracket"},
           {"etcd://127.0.0.1:2379/path", "valid port"},
           {"etcd://user@host:2379", "character"},
           {"etcd://ho st:2379", "character"},
           {std::string("etcd://h\0st:1", 13), "character"},
       }) {
    auto parsed = ParseEtcdUrl(c.url);
    ASSERT_FALSE(parsed.ok()) << c.url;
    EXPECT_EQ(parsed.status().code(), absl::StatusCode::kInvalidArgument) << c.url;
    EXPECT_NE(parsed.status().message().find(c.says), std::string::npos)
        << c.url << " -> " << parsed.status();
    EXPECT_NE(parsed.status().message().find("etcd://127.0.0.1:2379"), std::string::npos)
        << "the message gives an example: " << parsed.status();
  }
}

TEST(PrefixEnd, IncrementsTheLastByteThatCanBe) {
  EXPECT_EQ(PrefixEnd("/herd/hosts/"), "/herd/hosts0");
  EXPECT_EQ(PrefixEnd("a"), "b");
  EXPECT_EQ(PrefixEnd(std::string("a\xff\xff", 3)), "b");
  EXPECT_EQ(PrefixEnd(std::string("\xff", 1)), std::string(1, '\0'));
  EXPECT_EQ(PrefixEnd(""), std::string(1, '\0'));
}

TEST(MapEtcdError, NoQuorumIsUnavailableNamingTheEndpoints) {
  for (const grpc::Status& s : {
           grpc::Status(grpc::StatusCode::UNAVAILABLE, "etcdserver: no leader"),
           grpc::Status(grpc::StatusCode::UNAVAILABLE, "etcdserver: request timed out"),
           grpc::Status(grpc::StatusCode::DEADLINE_EXCEEDED, "Deadline Exceeded"),
           // The member's handler gave up at the same deadline, first (etcd 3.4's raw Go
           // error: seen from a 3-member cluster with two members killed).
           grpc::Status(grpc::StatusCode::UNKNOWN, "context deadline exceeded"),
           grpc::Status(grpc::StatusCode::UNAVAILABLE, "failed to connect to all addresses"),
       }) {
    absl::Status mapped = MapEtcdError(s, "put /k", "127.0.0.1:1,127.0.0.1:2");
    EXPECT_EQ(mapped.code(), absl::StatusCode::kUnavailable) << mapped;
    EXPECT_EQ(mapped.message().rfind("the store has no quorum: ", 0), 0u) << mapped;
    EXPECT_NE(mapped.message().find("127.0.0.1:1,127.0.0.1:2"), std::string::npos) << mapped;
  }
}

TEST(MapEtcdError, AuthCompactionAndSizeHaveTheirCodes) {
  auto code = [](grpc::StatusCode c, const std::string& m) {
    return MapEtcdError(grpc::Status(c, m), "put /k", "e:1").code();
  };
  EXPECT_EQ(code(grpc::StatusCode::INVALID_ARGUMENT,
                 "etcdserver: authentication failed, invalid user ID or password"),
            absl::StatusCode::kUnauthenticated);
  EXPECT_EQ(code(grpc::StatusCode::INVALID_ARGUMENT, "etcdserver: user name is empty"),
            absl::StatusCode::kUnauthenticated);
  EXPECT_EQ(code(grpc::StatusCode::UNAUTHENTICATED, "etcdserver: invalid auth token"),
            absl::StatusCode::kUnauthenticated);
  EXPECT_EQ(code(grpc::StatusCode::PERMISSION_DENIED, "etcdserver: permission denied"),
            absl::StatusCode::kPermissionDenied);
  EXPECT_EQ(code(grpc::StatusCode::OUT_OF_RANGE,
                 "etcdserver: mvcc: required revision has been compacted"),
            absl::StatusCode::kFailedPrecondition);
  EXPECT_EQ(code(grpc::StatusCode::INVALID_ARGUMENT, "etcdserver: request is too large"),
            absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(code(grpc::StatusCode::RESOURCE_EXHAUSTED, "Received message larger than max"),
            absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(code(grpc::StatusCode::NOT_FOUND, "etcdserver: requested lease not found"),
            absl::StatusCode::kNotFound);
}

TEST(MayTryNextMember, WritesMoveOnOnlyWhenTheyCannotHaveApplied) {
  const grpc::Status refused(grpc::StatusCode::UNAVAILABLE, "Connection refused");
  const grpc::Status no_leader(grpc::StatusCode::UNAVAILABLE, "etcdserver: no leader");
  const grpc::Status timed_out(grpc::StatusCode::UNAVAILABLE, "etcdserver: request timed out");
  const grpc::Status denied(grpc::StatusCode::PERMISSION_DENIED, "etcdserver: permission denied");
  EXPECT_TRUE(MayTryNextMember(refused, /*is_write=*/false, /*was_connected=*/true));
  EXPECT_TRUE(MayTryNextMember(refused, true, false));
  EXPECT_FALSE(MayTryNextMember(refused, true, true));  // lost in flight: may have applied
  EXPECT_TRUE(MayTryNextMember(no_leader, true, true));
  EXPECT_TRUE(MayTryNextMember(timed_out, false, true));
  EXPECT_FALSE(MayTryNextMember(timed_out, true, true));
  // The server's own deadline: a write may have applied, a read may go elsewhere.
  const grpc::Status server_deadline(grpc::StatusCode::UNKNOWN, "context deadline exceeded");
  EXPECT_FALSE(MayTryNextMember(server_deadline, true, true));
  EXPECT_TRUE(MayTryNextMember(server_deadline, false, true));
  EXPECT_FALSE(MayTryNextMember(denied, false, true));
  EXPECT_EQ(ClassifyFailure(grpc::Status(grpc::StatusCode::UNAUTHENTICATED,
                                         "etcdserver: invalid auth token")),
            Failure::kInvalidToken);
}

TEST(EtcdClientConnect, RefusesBadOptions) {
  EXPECT_EQ(Client::Connect(Options{}).status().code(), absl::StatusCode::kInvalidArgument);
  Options o;
  o.endpoints = {"127.0.0.1:1"};
  o.ca_file = "/nonexistent/ca.pem";
  auto c = Client::Connect(o);
  EXPECT_EQ(c.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(c.status().message().find("/nonexistent/ca.pem"), std::string::npos) << c.status();
  o.ca_file.clear();
  o.cert_file = "/nonexistent/client.pem";
  EXPECT_EQ(Client::Connect(o).status().code(), absl::StatusCode::kInvalidArgument);
}

TEST(EtcdClientConnect, AnUnreachableStoreIsNoQuorumOnTheCallNotAtConnect) {
  Options o;
  o.endpoints = {"127.0.0.1:1", "127.0.0.1:2"};
  o.timeout = absl::Seconds(2);
  auto client = Client::Connect(o);
  ASSERT_TRUE(client.ok()) << client.status();
  auto put = (*client)->Put("/k", "v");
  ASSERT_EQ(put.status().code(), absl::StatusCode::kUnavailable) << put.status();
  EXPECT_NE(put.status().message().find("no quorum"), std::string::npos) << put.status();
  EXPECT_NE(put.status().message().find("127.0.0.1:1,127.0.0.1:2"), std::string::npos);
}

TEST(EtcdClientBounds, RefusesWhatEtcdWouldRefuseBeforeSending) {
  Options o;
  o.endpoints = {"127.0.0.1:1"};
  auto client = Client::Connect(o);
  ASSERT_TRUE(client.ok()) << client.status();
  Client& c = **client;
  EXPECT_EQ(c.Put("", "v").status().code(), absl::StatusCode::kInvalidArgument);
  auto big = c.Put("/big", std::string(2 * 1024 * 1024, 'x'));
  EXPECT_EQ(big.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(big.status().message().find("--max-request-bytes"), std::string::npos) << big.status();
  std::vector<Op> ops;
  for (int i = 0; i < 129; ++i) ops.push_back(Op::Put("/k" + std::to_string(i), "v"));
  auto txn = c.Txn({}, ops);
  EXPECT_EQ(txn.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(txn.status().message().find("--max-txn-ops"), std::string::npos) << txn.status();
  EXPECT_EQ(c.LeaseGrant(absl::Milliseconds(500)).status().code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(c.Compact(0).code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(c.RefusedRequests(), 5);
}

}  // namespace
}  // namespace herd::etcd
