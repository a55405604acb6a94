// The HTTP listener's parts that need no socket: request parsing and responses
// (http_messages.h) and the worker pool's bounds (worker_pool.h). The listener itself is
// driven end to end by tests/integration/http_limits_test.cc and dashboard_test.cc.
#include "controlplane/http/http_messages.h"

#include <string>
#include <vector>

#include "absl/synchronization/notification.h"
#include "controlplane/http/worker_pool.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace herd::controlplane::httpd {
namespace {

using ::testing::HasSubstr;

Request WithAuthorization(const std::string& value) {
  Request req{boost::beast::http::verb::post, "/api/v1/ListHosts", 11};
  req.set(boost::beast::http::field::authorization, value);
  return req;
}

TEST(HttpBearer, NoHeaderOrAnEmptyOneIsNoToken) {
  Request req{boost::beast::http::verb::get, "/metrics", 11};
  auto none = Bearer(req);
  ASSERT_TRUE(none.ok());
  EXPECT_EQ(*none, "");
  auto empty = Bearer(WithAuthorization(""));
  ASSERT_TRUE(empty.ok());
  EXPECT_EQ(*empty, "");
}

TEST(HttpBearer, TakesTheTokenOfEitherCase) {
  EXPECT_EQ(*Bearer(WithAuthorization("Bearer abc-DEF_123")), "abc-DEF_123");
  EXPECT_EQ(*Bearer(WithAuthorization("bearer x.y~z+/=")), "x.y~z+/=");
}

TEST(HttpBearer, RefusesOtherSchemesAndBytesNoTokenHas) {
  auto basic = Bearer(WithAuthorization("Basic dXNlcjpwYXNz"));
  ASSERT_FALSE(basic.ok());
  EXPECT_EQ(basic.status().code(), absl::StatusCode::kUnauthenticated);
  EXPECT_THAT(std::string(basic.status().message()), HasSubstr("Bearer <token>"));
  for (const std::string& bad : std::vector<std::string>{"Bearer a,b", "Bearer a b", "Bearer a\"b",
                                                        "Bearer \xc3\xbc",
                                                        "Bearer " + std::string(257, 'a')}) {
    auto s = Bearer(WithAuthorization(bad));
    ASSERT_FALSE(s.ok()) << bad;
    EXPECT_THAT(std::string(s.status().message()), HasSubstr("paste it again")) << bad;
  }
}

TEST(HttpSplitHostPort, ReadsV4V6AndAnEmptyHost) {
  std::string host;
  int port = 0;
  ASSERT_TRUE(SplitHostPort("127.0.0.1:8080", &host, &port).ok());
  EXPECT_EQ(host, "127.0.0.1");
  EXPECT_EQ(port, 8080);
  ASSERT_TRUE(SplitHostPort("[::1]:0", &host, &port).ok());
  EXPECT_EQ(host, "::1");
  EXPECT_EQ(port, 0);
  ASSERT_TRUE(SplitHostPort(":9", &host, &port).ok());
  EXPECT_EQ(host, "0.0.0.0");
}

TEST(HttpSplitHostPort, RefusesAddressesWithoutAUsablePort) {
  std::string host;
  int port = 0;
  for (const char* bad : {"localhost", "h:", "h:http", "h:65536", "h:-1"}) {
    absl::Status s = SplitHostPort(bad, &host, &port);
    ASSERT_FALSE(s.ok()) << bad;
    EXPECT_THAT(std::string(s.message()), HasSubstr("expected HOST:PORT")) << bad;
  }
}

TEST(HttpQueryParam, FindsAndPercentDecodes) {
  EXPECT_EQ(QueryParam("a=1&scope=fleet", "scope"), "fleet");
  EXPECT_EQ(QueryParam("scope=control%70lane", "scope"), "controlplane");
  EXPECT_EQ(QueryParam("q=a+b%2", "q"), "a b%2");  // a cut escape stays as written
  EXPECT_EQ(QueryParam("scope", "scope"), "");
  EXPECT_EQ(QueryParam("scopes=x", "scope"), "");
  EXPECT_EQ(QueryParam("", "scope"), "");
}

TEST(HttpResponses, CarryTheSecurityHeadersAndTheStatus) {
  Response r = ErrorResponse(11, absl::NotFoundError("no host h1"));
  EXPECT_EQ(r.result_int(), 404);
  EXPECT_EQ(r[boost::beast::http::field::content_type], "application/json");
  EXPECT_EQ(r["X-Content-Type-Options"], "nosniff");
  EXPECT_EQ(r["X-Frame-Options"], "DENY");
  EXPECT_EQ(r[boost::beast::http::field::cache_control], "no-cache");
  EXPECT_THAT(r.body(), HasSubstr("no host h1"));
  Response t = TextResponse(10, 431, "too big\n");
  EXPECT_EQ(t.result_int(), 431);
  EXPECT_EQ(t.version(), 10u);
  EXPECT_EQ(t[boost::beast::http::field::content_type], "text/plain");
}

TEST(HttpWorkerPool, RefusesPastItsThreadsAndQueueAndAfterStop) {
  WorkerPool pool(/*max_threads=*/1, /*max_queued=*/1);
  absl::Notification release, first_running;
  int ran = 0;
  ASSERT_TRUE(pool.Submit([&] {
    first_running.Notify();
    release.WaitForNotification();
    ++ran;
  }));
  first_running.WaitForNotification();
  EXPECT_TRUE(pool.Submit([&] { ++ran; }));    // waits in the queue
  EXPECT_FALSE(pool.Submit([&] { ++ran; }));   // thread busy, queue full
  release.Notify();
  pool.Stop();  // the queued job may be dropped; the running one finishes
  EXPECT_GE(ran, 1);
  EXPECT_FALSE(pool.Submit([&] { ++ran; }));
}

}  // namespace
}  // namespace herd::controlplane::httpd
