// Hub::OnMessageBytes (metrics taken in place from their wire bytes) against Hub::OnMessage
// (the parsed message): two hosts sent the same batches, one each way, look the same through
// the Fleet API's reads; and what OnMessageBytes must leave to OnMessage (a watched host, a
// batch past the limits, any other message). A real SQLite store, a fake clock and fake
// sessions, as hub_test.cc.
#include <gtest/gtest.h>

#include <memory>
#include <set>
#include <string>
#include <vector>

#include "common/clock.h"
#include "controlplane/core/hub.h"
#include "controlplane/core/secrets.h"
#include "controlplane/store/store.h"
#include "tests/controlplane/metrics_view_test.h"
#include "tests/fakes/store_with_join_token.h"
#include "tests/fakes/fake_host_session.h"
#include "tests/fakes/fake_scheduler.h"
#include "tests/fakes/temp_dir.h"

namespace herd::controlplane {
namespace {

using herd::v1::AgentMessage;
using herd::v1::MetricsBatch;
using testing::RealisticBatch;

class HubMetricsBytesTest : public ::testing::Test {
 protected:
  void SetUp() override {
    auto store = herd::testing::OpenStoreWithJoinToken(tmp_.Path("herd.db"), "jt");
    ASSERT_TRUE(store.ok()) << store.status();
    store_ = std::move(*store);
    options_.series.points = 6;
    options_.series.probe_points = 3;
    hub_ = std::make_unique<Hub>(*store_, sched_, options_);
    ASSERT_TRUE(hub_->Start().ok());
    for (const char* id : {"h1", "h2"}) {
      herd::v1::Hello h;
      h.set_host_id(id);
      h.set_hostname("same.example");
      h.set_agent_version("1.2.3");
      h.set_boot_id("boot");
      auto session = std::make_shared<herd::testing::FakeHostSession>("10.0.0.1:5000");
      ASSERT_TRUE(hub_->Connect("jt", h, session).ok()) << id;
      sessions_.push_back(session);
    }
  }
  void TearDown() override {
    hub_->Stop();
    hub_.reset();
  }

  // h1 gets `m` as its bytes (and must take them), h2 parsed.
  void SendBoth(const AgentMessage& m) {
    EXPECT_TRUE(hub_->OnMessageBytes("h1", sessions_[0].get(), m.SerializeAsString()))
        << m.ShortDebugString().substr(0, 200);
    hub_->OnMessage("h2", sessions_[1].get(), m);
  }
  bool SendBytes(const std::string& host, const AgentMessage& m) {
    return hub_->OnMessageBytes(host, sessions_[host == "h1" ? 0 : 1].get(),
                                m.SerializeAsString());
  }

  herd::v1::Series Query(const std::string& host, const std::string& unit,
                         const std::string& metric) {
    herd::v1::QuerySeriesRequest req;
    req.set_host_id(host);
    req.set_unit(unit);
    req.set_metric(metric);
    auto s = hub_->QuerySeries(req);
    EXPECT_TRUE(s.ok()) << host << " " << unit << " " << metric << ": " << s.status();
    return s.ok() ? *s : herd::v1::Series{};
  }

  // h1 and h2 as the Fleet API shows them, their ids aside.
  void ExpectSameHosts(const MetricsBatch& shape) {
    auto d1 = hub_->GetHost("h1"), d2 = hub_->GetHost("h2");
    ASSERT_TRUE(d1.ok() && d2.ok());
    d2->mutable_host()->set_host_id("h1");
    EXPECT_TRUE(testing::SameMessage(*d1, *d2))
        << d1->ShortDebugString().substr(0, 500) << "\nvs\n" << d2->ShortDebugString().substr(0, 500);
    EXPECT_EQ(d1->units_size(), shape.units_size());
    std::vector<std::pair<std::string, std::string>> series = {
        {"", "cpu"}, {"", "memory_available"}, {"", "load1"}};
    for (const auto& u : shape.units()) {
      series.emplace_back(u.name(), "cpu");
      series.emplace_back(u.name(), "rss");
      for (const auto& p : u.probes()) {
        if (p.numeric()) series.emplace_back(u.name(), "probe:" + p.name());
      }
    }
    for (const auto& [unit, metric] : series) {
      herd::v1::Series s1 = Query("h1", unit, metric), s2 = Query("h2", unit, metric);
      ASSERT_EQ(s1.points_size(), s2.points_size()) << unit << " " << metric;
      EXPECT_GT(s1.points_size(), 0) << unit << " " << metric;
      for (int i = 0; i < s1.points_size(); ++i) {
        EXPECT_EQ(s1.points(i).at_unix_ms(), s2.points(i).at_unix_ms()) << unit << " " << metric;
        EXPECT_EQ(testing::Bits(s1.points(i).value()), testing::Bits(s2.points(i).value()))
            << unit << " " << metric << " point " << i;
      }
    }
    auto m1 = hub_->ListModules(Target({"h1"}), ""), m2 = hub_->ListModules(Target({"h2"}), "");
    ASSERT_TRUE(m1.ok() && m2.ok());
    ASSERT_EQ(m1->size(), m2->size());
    for (size_t i = 0; i < m1->size(); ++i) {
      EXPECT_TRUE(testing::SameMessage((*m1)[i].unit(), (*m2)[i].unit())) << i;
    }
  }

  static herd::v1::Target Target(const std::vector<std::string>& ids) {
    herd::v1::Target t;
    for (const auto& id : ids) t.mutable_hosts()->add_ids(id);
    return t;
  }
  int64_t NowMs() const { return absl::ToUnixMillis(clock_.Now()); }

  herd::testing::ScopedTempDir tmp_;
  std::unique_ptr<Store> store_;
  FakeClock clock_;
  herd::testing::FakeScheduler sched_{clock_};
  HubOptions options_;
  std::unique_ptr<Hub> hub_;
  std::vector<std::shared_ptr<herd::testing::FakeHostSession>> sessions_;
};

TEST_F(HubMetricsBytesTest, BatchesTakenInPlaceLeaveTheHostAsParsedOnesDo) {
  const int64_t t0 = NowMs() - 60000;
  MetricsBatch shape;
  uint64_t dropped = 0;
  for (int i = 0; i < 8; ++i) {
    MetricsBatch b = RealisticBatch(4, 7);  // a NaN among the probes
    b.set_at_unix_ms(t0 + i * 1000);
    b.mutable_host()->set_cpu_percent(10 + i);
    b.mutable_units(1)->mutable_usage()->set_rss_bytes(1000 * i);
    b.mutable_units(2)->mutable_probes(0)->set_number(i * 0.5);
    b.set_dropped_batches(i % 3);
    AgentMessage m;
    if (i % 2 == 0) {
      *m.mutable_metrics() = b;
    } else {
      // A group: the batch, one replayed (older), then the batch again a little later.
      MetricsBatch late = b;
      late.set_replayed(true);
      late.set_at_unix_ms(t0 - 5000 + i);
      *m.mutable_metrics_batches()->add_batches() = late;
      *m.mutable_metrics_batches()->add_batches() = b;
      b.set_at_unix_ms(b.at_unix_ms() + 500);
      *m.mutable_metrics_batches()->add_batches() = b;
    }
    dropped += (i % 2 == 0 ? 1 : 3) * static_cast<uint64_t>(i % 3);
    SendBoth(m);
    clock_.Advance(absl::Seconds(1));
    shape = b;
  }
  ExpectSameHosts(shape);
  EXPECT_EQ(hub_->GetHost("h1")->host().dropped_batches(), dropped);
  const auto stats = hub_->stats();
  EXPECT_EQ(stats.batches_received, 2u * (4 + 4 * 3));
  for (uint64_t n : stats.limited) EXPECT_EQ(n, 0u);
}

TEST_F(HubMetricsBytesTest, AWatchedHostsBatchesAreLeftToOnMessage) {
  AgentMessage m;
  *m.mutable_metrics() = RealisticBatch(1, 1);
  m.mutable_metrics()->set_at_unix_ms(NowMs());
  const uint64_t w1 = hub_->WatchMetrics({"h1"}, [](const herd::v1::HostMetrics&) {});
  EXPECT_FALSE(SendBytes("h1", m));
  EXPECT_TRUE(SendBytes("h2", m));  // not watched
  hub_->Unwatch(w1);
  EXPECT_TRUE(SendBytes("h1", m));
  const uint64_t all = hub_->WatchMetrics({}, [](const herd::v1::HostMetrics&) {});
  EXPECT_FALSE(SendBytes("h1", m));
  EXPECT_FALSE(SendBytes("h2", m));
  hub_->Unwatch(all);
  EXPECT_TRUE(SendBytes("h2", m));
  EXPECT_EQ(hub_->stats().batches_received, 3u);  // only those taken
}

TEST_F(HubMetricsBytesTest, OtherMessagesAreLeftToOnMessage) {
  AgentMessage event;
  event.mutable_event()->set_unit("api");
  event.mutable_event()->set_kind("started");
  AgentMessage inventory;
  inventory.mutable_inventory()->add_modules()->set_name("m");
  AgentMessage ack;
  ack.mutable_config_ack()->set_version(1);
  for (const AgentMessage& m : {event, inventory, ack, AgentMessage()}) {
    EXPECT_FALSE(SendBytes("h1", m)) << m.ShortDebugString();
  }
  EXPECT_FALSE(hub_->OnMessageBytes("h1", sessions_[0].get(), "\xff\xff garbage"));
  EXPECT_EQ(hub_->stats().batches_received, 0u);
}

// Past a limit: left to OnMessage, which bounds it and counts the cut; the same for both.
TEST_F(HubMetricsBytesTest, ABatchPastTheLimitsIsLeftToOnMessage) {
  AgentMessage m;
  *m.mutable_metrics() = RealisticBatch(AgentLimits{}.max_units + 1, 1);
  m.mutable_metrics()->set_at_unix_ms(NowMs());
  EXPECT_FALSE(SendBytes("h1", m));
  m.mutable_metrics()->mutable_units()->RemoveLast();
  EXPECT_TRUE(SendBytes("h1", m));
  AgentMessage bad;  // not UTF-8: protobuf refuses it, the gateway drops it
  *bad.mutable_metrics() = RealisticBatch(1, 1);
  bad.mutable_metrics()->mutable_units(0)->set_name("\xff");
  EXPECT_FALSE(SendBytes("h1", bad));
}

TEST_F(HubMetricsBytesTest, AStaleSessionsBatchIsTakenAndDropped) {
  AgentMessage m;
  *m.mutable_metrics() = RealisticBatch(1, 1);
  m.mutable_metrics()->set_at_unix_ms(NowMs());
  herd::testing::FakeHostSession stale;
  EXPECT_TRUE(hub_->OnMessageBytes("h1", &stale, m.SerializeAsString()));
  EXPECT_TRUE(hub_->OnMessageBytes("nohost", sessions_[0].get(), m.SerializeAsString()));
  EXPECT_EQ(hub_->stats().batches_received, 0u);
  EXPECT_EQ(hub_->GetHost("h1")->units_size(), 0);
}

}  // namespace
}  // namespace herd::controlplane
