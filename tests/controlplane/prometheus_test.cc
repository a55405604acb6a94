#include "controlplane/http/prometheus.h"

#include <string>

#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace herd::controlplane {
namespace {

using ::testing::HasSubstr;
using ::testing::Not;

const absl::Time kNow = absl::FromUnixSeconds(1'800'000'000);

herd::v1::HostDetail Host() {
  herd::v1::HostDetail d;
  auto* h = d.mutable_host();
  h->set_host_id("web-1");
  h->set_hostname("web1.example");
  h->set_agent_version("0.1.0");
  h->set_online(true);
  h->mutable_usage()->set_cpu_percent(25);
  h->mutable_usage()->set_memory_total_bytes(8 << 20);
  h->mutable_usage()->set_memory_available_bytes(4 << 20);
  h->mutable_usage()->set_load1(0.5);
  auto* u = d.add_units();
  u->set_name("redis-mon");
  u->set_is_module(true);
  u->set_state(herd::v1::UNIT_STATE_ONLINE);
  u->set_restarts(3);
  u->set_started_at_unix_ms(absl::ToUnixMillis(kNow - absl::Seconds(90)));
  u->mutable_usage()->set_cpu_percent(150);
  u->mutable_usage()->set_rss_bytes(1234);
  u->set_issues_count(2);
  auto* p = u->add_probes();
  p->set_name("req/s");
  p->set_numeric(true);
  p->set_number(42.5);
  auto* text = u->add_probes();
  text->set_name("state");
  text->set_value("up");
  return d;
}

TEST(Prometheus, HostAndModuleSeriesInBaseUnits) {
  Hub::Stats stats;
  std::string out = RenderPrometheus({Host()}, stats, kNow);
  EXPECT_THAT(out, HasSubstr("# TYPE herd_host_up gauge\nherd_host_up{host=\"web-1\"} 1\n"));
  EXPECT_THAT(out, HasSubstr("herd_host_cpu_usage_ratio{host=\"web-1\"} 0.25\n"));
  EXPECT_THAT(out, HasSubstr("herd_host_memory_available_bytes{host=\"web-1\"} 4194304\n"));
  EXPECT_THAT(out, HasSubstr(
      "herd_host_info{host=\"web-1\",hostname=\"web1.example\",agent_version=\"0.1.0\"} 1\n"));
  const std::string m = "{host=\"web-1\",module=\"redis-mon\"}";
  EXPECT_THAT(out, HasSubstr("herd_module_cpu_usage_ratio" + m + " 1.5\n"));
  EXPECT_THAT(out, HasSubstr("# TYPE herd_module_restarts_total counter\nherd_module_restarts_total" + m + " 3\n"));
  EXPECT_THAT(out, HasSubstr("herd_module_uptime_seconds" + m + " 90\n"));
  EXPECT_THAT(out, HasSubstr("herd_module_memory_rss_bytes" + m + " 1234\n"));
  EXPECT_THAT(out, HasSubstr("herd_module_issues_total" + m + " 2\n"));
  EXPECT_THAT(out, HasSubstr("herd_probe_req_s" + m + " 42.5\n"));
  EXPECT_THAT(out, Not(HasSubstr("herd_probe_state")));  // text probes are not series
}

TEST(Prometheus, EachFamilyHasOneHeaderAndControlPlaneCountersAreThere) {
  herd::v1::HostDetail a = Host(), b = Host();
  b.mutable_host()->set_host_id("web-2");
  b.mutable_host()->set_online(false);
  Hub::Stats stats;
  stats.hosts = 2;
  stats.connected = 1;
  stats.batches_received = 77;
  std::string out = RenderPrometheus({a, b}, stats, kNow);
  size_t first = out.find("# TYPE herd_host_up gauge");
  ASSERT_NE(first, std::string::npos);
  EXPECT_EQ(out.find("# TYPE herd_host_up gauge", first + 1), std::string::npos);
  EXPECT_THAT(out, HasSubstr("herd_host_up{host=\"web-2\"} 0\n"));
  EXPECT_THAT(out, HasSubstr("herd_controlplane_connected_agents 1\n"));
  EXPECT_THAT(out, HasSubstr("herd_controlplane_metric_batches_total 77\n"));
}

TEST(Prometheus, NamesAndLabelValuesAreSanitised) {
  EXPECT_EQ(SanitizeMetricName("req/s latency"), "req_s_latency");
  EXPECT_EQ(SanitizeMetricName("95th"), "_95th");
  EXPECT_EQ(SanitizeMetricName(""), "_");
  EXPECT_EQ(EscapeLabelValue("a\"b\\c\nd"), "a\\\"b\\\\c\\nd");
}

}  // namespace
}  // namespace herd::controlplane
