// The Gateway on a real gRPC server (loopback, a port of its own) over a real Hub on
// SQLite: its raw Connect streams, the metrics messages the hub takes in place and those it
// leaves to be parsed, refusals, and a server shut down with streams open (every stream
// ended, nothing leaked: this suite runs under ASan in CI).
#include <chrono>
#include <memory>
#include <string>
#include <vector>

#include <grpcpp/grpcpp.h>
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "common/clock.h"
#include "controlplane/core/hub.h"
#include "controlplane/core/secrets.h"
#include "controlplane/gateway/gateway_service.h"
#include "controlplane/store/store.h"
#include "herd/v1/gateway.grpc.pb.h"
#include "tests/fakes/store_with_join_token.h"
#include "tests/fakes/fake_hub_store.h"
#include "tests/fakes/fake_scheduler.h"
#include "tests/fakes/temp_dir.h"

namespace herd::controlplane {
namespace {

using ::testing::HasSubstr;
using Stream = grpc::ClientReaderWriter<herd::v1::AgentMessage, herd::v1::ControlMessage>;

class GatewayTest : public ::testing::Test {
 protected:
  void SetUp() override {
    auto store = herd::testing::OpenStoreWithJoinToken(tmp_.Path("herd.db"), "jt");
    ASSERT_TRUE(store.ok()) << store.status();
    // Passes everything through until a test holds its host writes.
    auto flaky = std::make_unique<herd::testing::FlakyHostsStore>(std::move(*store));
    flaky_ = flaky.get();
    store_ = std::move(flaky);
    hub_ = std::make_unique<Hub>(*store_, clock_, HubOptions{});
    ASSERT_TRUE(hub_->Start().ok());
    gateway_ = std::make_unique<GatewayService>(*hub_, sched_);
    grpc::ServerBuilder builder;
    int port = 0;
    builder.AddListeningPort("127.0.0.1:0", grpc::InsecureServerCredentials(), &port);
    builder.RegisterService(gateway_.get());
    server_ = builder.BuildAndStart();
    ASSERT_TRUE(server_ != nullptr && port != 0);
    stub_ = herd::v1::Gateway::NewStub(grpc::CreateChannel(
        absl::StrCat("127.0.0.1:", port), grpc::InsecureChannelCredentials()));
  }
  void TearDown() override { StopServer(); }

  void StopServer() {
    if (server_ == nullptr) return;
    hub_->Stop();
    server_->Shutdown(std::chrono::system_clock::now() + std::chrono::seconds(2));
    server_->Wait();
    server_.reset();
  }

  struct Call {
    std::unique_ptr<grpc::ClientContext> ctx = std::make_unique<grpc::ClientContext>();
    std::unique_ptr<Stream> stream;
  };
  Call Open(const std::string& bearer) {
    Call c;
    if (!bearer.empty()) c.ctx->AddMetadata("authorization", "Bearer " + bearer);
    c.ctx->set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(30));
    c.stream = stub_->Connect(c.ctx.get());
    return c;
  }
  // A host joined through the gateway: its Hello sent, its Welcome read.
  Call Join(const std::string& host_id) {
    Call c = Open("jt");
    herd::v1::AgentMessage hello;
    hello.mutable_hello()->set_host_id(host_id);
    hello.mutable_hello()->set_hostname(host_id);
    EXPECT_TRUE(c.stream->Write(hello));
    herd::v1::ControlMessage welcome;
    EXPECT_TRUE(c.stream->Read(&welcome));
    EXPECT_TRUE(welcome.has_welcome()) << welcome.DebugString();
    return c;
  }
  static herd::v1::MetricsBatch Batch(const std::string& unit, double probe) {
    herd::v1::MetricsBatch b;
    b.set_at_unix_ms(absl::ToUnixMillis(absl::Now()));
    b.mutable_host()->set_cpu_percent(12.5);
    auto* u = b.add_units();
    u->set_name(unit);
    u->mutable_usage()->set_rss_bytes(1 << 20);
    auto* p = u->add_probes();
    p->set_name("queue");
    p->set_numeric(true);
    p->set_number(probe);
    p->set_value(absl::StrCat(probe));
    return b;
  }
  // The host's latest batch as the Fleet API shows it: (unit, probe value), or empty.
  std::string Latest(const std::string& host_id) {
    auto d = hub_->directory().GetHost(host_id);
    if (!d.ok() || d->units_size() == 0 || d->units(0).probes_size() == 0) return "";
    return absl::StrCat(d->units(0).name(), "=", d->units(0).probes(0).value());
  }
  static bool WaitFor(const std::function<bool()>& f) {
    const absl::Time end = absl::Now() + absl::Seconds(10);
    while (absl::Now() < end) {
      if (f()) return true;
      absl::SleepFor(absl::Milliseconds(10));
    }
    return f();
  }

  herd::testing::ScopedTempDir tmp_;
  FakeClock clock_;
  testing::FakeScheduler sched_{clock_};
  std::unique_ptr<Store> store_;
  herd::testing::FlakyHostsStore* flaky_ = nullptr;  // store_
  std::unique_ptr<Hub> hub_;
  std::unique_ptr<GatewayService> gateway_;
  std::unique_ptr<grpc::Server> server_;
  std::unique_ptr<herd::v1::Gateway::Stub> stub_;
};

// Batches alone and in groups reach the host's state, for each of several hosts.
TEST_F(GatewayTest, MetricsAloneAndInGroupsReachTheirHostsState) {
  std::vector<Call> calls;
  for (int i = 0; i < 7; ++i) calls.push_back(Join(absl::StrCat("h", i)));
  for (int i = 0; i < 7; ++i) {
    herd::v1::AgentMessage m;
    if (i % 2 == 0) {
      *m.mutable_metrics() = Batch("svc", i);
    } else {
      *m.mutable_metrics_batches()->add_batches() = Batch("svc", 100 + i);
      *m.mutable_metrics_batches()->add_batches() = Batch("svc", i);  // the newest: last
    }
    ASSERT_TRUE(calls[i].stream->Write(m));
  }
  for (int i = 0; i < 7; ++i) {
    const std::string host = absl::StrCat("h", i);
    EXPECT_TRUE(WaitFor([&] { return Latest(host) == absl::StrCat("svc=", i); }))
        << host << ": " << Latest(host);
  }
}

// A message that is no AgentMessage ends the stream with a status that says so. Here a
// batch with a unit name that is not UTF-8: the hub does not take it in place, and protobuf
// refuses it (proto3 strings are UTF-8). The host's earlier state stays.
TEST_F(GatewayTest, AMessageThatDoesNotParseEndsTheStreamWithWhy) {
  Call c = Join("bad-host");
  herd::v1::AgentMessage good;
  *good.mutable_metrics() = Batch("svc", 1);
  ASSERT_TRUE(c.stream->Write(good));
  ASSERT_TRUE(WaitFor([&] { return Latest("bad-host") == "svc=1"; }));
  herd::v1::AgentMessage bad;
  *bad.mutable_metrics() = Batch(std::string("sv\xff\xfe", 4), 2);
  (void)c.stream->Write(bad);  // protobuf logs that it is not UTF-8, and sends it
  herd::v1::ControlMessage m;
  while (c.stream->Read(&m)) {
  }
  grpc::Status st = c.stream->Finish();
  EXPECT_EQ(st.error_code(), grpc::StatusCode::INVALID_ARGUMENT) << st.error_message();
  EXPECT_THAT(st.error_message(), HasSubstr("not a herd.v1.AgentMessage"));
  EXPECT_EQ(Latest("bad-host"), "svc=1");
}

TEST_F(GatewayTest, AStreamWithoutCredentialsIsRefused) {
  Call c = Open("");
  herd::v1::ControlMessage m;
  EXPECT_FALSE(c.stream->Read(&m));
  grpc::Status st = c.stream->Finish();
  EXPECT_EQ(st.error_code(), grpc::StatusCode::UNAUTHENTICATED);
  EXPECT_THAT(st.error_message(), HasSubstr("authorization: Bearer"));
}

TEST_F(GatewayTest, AWrongJoinTokenIsRefusedAfterTheHello) {
  Call c = Open("not-the-token");
  herd::v1::AgentMessage hello;
  hello.mutable_hello()->set_host_id("intruder");
  hello.mutable_hello()->set_hostname("intruder");
  (void)c.stream->Write(hello);
  herd::v1::ControlMessage m;
  EXPECT_FALSE(c.stream->Read(&m));
  EXPECT_EQ(c.stream->Finish().error_code(), grpc::StatusCode::UNAUTHENTICATED);
}

// The server stops with streams open (some joined, some before their Hello): each is ended
// and every stream is deleted (ASan would report a leak).
TEST_F(GatewayTest, StoppingWithStreamsOpenEndsThemAll) {
  std::vector<Call> calls;
  for (int i = 0; i < 5; ++i) calls.push_back(Join(absl::StrCat("s", i)));
  for (int i = 0; i < 3; ++i) calls.push_back(Open("jt"));  // no Hello yet
  for (int i = 0; i < 5; ++i) {
    herd::v1::AgentMessage m;
    *m.mutable_metrics() = Batch("svc", i);
    ASSERT_TRUE(calls[i].stream->Write(m));
  }
  ASSERT_TRUE(WaitFor([&] { return Latest("s4") == "svc=4"; }));
  StopServer();
  for (auto& c : calls) {
    herd::v1::ControlMessage m;
    while (c.stream->Read(&m)) {
    }
    EXPECT_FALSE(c.stream->Finish().ok());
  }
}

// A host connecting again on a new stream replaces its old one, which is ended with why.
TEST_F(GatewayTest, ASecondStreamForAHostEndsTheFirstWithWhy) {
  Call first = Join("twice");
  Call second = Join("twice");
  herd::v1::ControlMessage m;
  while (first.stream->Read(&m)) {
  }
  grpc::Status st = first.stream->Finish();
  EXPECT_EQ(st.error_code(), grpc::StatusCode::ABORTED);
  EXPECT_THAT(st.error_message(), HasSubstr("connected again"));
  herd::v1::AgentMessage b;
  *b.mutable_metrics() = Batch("svc", 9);
  ASSERT_TRUE(second.stream->Write(b));
  EXPECT_TRUE(WaitFor([&] { return Latest("twice") == "svc=9"; }));
}

// A stream that ends while the hub still answers its Hello (a join waits for its new
// credential's write, held here): the stream is kept until the answer comes, which then
// finds it over and lets it go (ASan would report a use after free or a leak). The host
// joins again afterwards as any other.
TEST_F(GatewayTest, AStreamEndedWhileItsJoinIsWrittenGoesWithTheAnswer) {
  flaky_->Hold();
  {
    Call c = Open("jt");
    herd::v1::AgentMessage hello;
    hello.mutable_hello()->set_host_id("gone-early");
    hello.mutable_hello()->set_hostname("gone-early");
    ASSERT_TRUE(c.stream->Write(hello));
    flaky_->WaitForHeldPuts(1);  // the join's record is being written
    c.ctx->TryCancel();          // and the agent goes away meanwhile
    herd::v1::ControlMessage m;
    EXPECT_FALSE(c.stream->Read(&m));
    EXPECT_EQ(c.stream->Finish().error_code(), grpc::StatusCode::CANCELLED);
  }
  absl::SleepFor(absl::Milliseconds(200));  // the server's side of the call ends first
  flaky_->Release();
  Call again = Join("gone-early");
  herd::v1::AgentMessage b;
  *b.mutable_metrics() = Batch("svc", 5);
  ASSERT_TRUE(again.stream->Write(b));
  EXPECT_TRUE(WaitFor([&] { return Latest("gone-early") == "svc=5"; }));
}

}  // namespace
}  // namespace herd::controlplane
