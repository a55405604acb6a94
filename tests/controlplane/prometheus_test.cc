#include "controlplane/http/prometheus.h"

#include <stdlib.h>
#include <unistd.h>

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <limits>
#include <iterator>
#include <map>
#include <regex>
#include <set>
#include <string>
#include <tuple>
#include <utility>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/fakes/file_util.h"
#include "tests/fakes/temp_dir.h"

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
  p->set_unit("req/s");
  auto* q = u->add_probes();
  q->set_name("Queue Length");
  q->set_numeric(true);
  q->set_number(0.1);
  auto* text = u->add_probes();
  text->set_name("state");
  text->set_value("up");
  return d;
}

InstrumentedStore::OpStats StoreOp(const std::string& op, std::vector<uint64_t> cumulative,
                                   uint64_t count, double sum, uint64_t errors) {
  InstrumentedStore::OpStats s;
  s.op = op;
  s.latency.bounds.assign(LatencyHistogram::kBounds.begin(), LatencyHistogram::kBounds.end());
  s.latency.cumulative = std::move(cumulative);
  s.latency.count = count;
  s.latency.sum_seconds = sum;
  s.errors = errors;
  return s;
}

// Everything a scrape can carry.
SelfMetrics Full() {
  SelfMetrics self;
  self.hub.hosts = 2;
  self.hub.online = 1;
  self.hub.connected = 1;
  self.hub.batches_received = 77;
  self.hub.agent_messages = 80;
  LatencyHistogram delay(Hub::kBatchDelayBounds);
  delay.Observe(absl::Milliseconds(5));
  delay.Observe(absl::Seconds(3));
  delay.Observe(absl::Seconds(40));
  self.hub.batch_delay = delay.Read();
  self.rollouts_running = 1;
  self.rollouts_succeeded = 4;
  self.rollouts_failed = 2;
  self.rollouts_aborted = 0;
  self.store.push_back(StoreOp("read", {5, 8, 9, 9, 9, 9, 9, 9, 9, 9, 9}, 10, 1.25, 0));
  self.store.push_back(StoreOp("write", {0, 0, 1, 2, 3, 3, 3, 3, 3, 3, 3}, 3, 0.02, 1));
  ProcessMetrics p;
  p.cpu_seconds = 1.5;
  p.resident_bytes = 20 << 20;
  p.virtual_bytes = 300 << 20;
  p.open_fds = 17;
  p.max_fds = 1024;
  p.start_time_seconds = 1'799'999'000.25;
  self.process = p;
  return self;
}

// Family name → its TYPE, and every sample's metric name in order, from an exposition; fails
// the test on a sample before its family's header or a second header for one family.
struct Parsed {
  std::map<std::string, std::string> types;
  std::map<std::string, int> helps;
  std::vector<std::string> sample_names;
};
Parsed Parse(const std::string& text) {
  Parsed p;
  std::string current;
  for (absl::string_view line : absl::StrSplit(text, '\n', absl::SkipEmpty())) {
    std::vector<std::string> w = absl::StrSplit(line, absl::MaxSplits(' ', 3));
    if (w[0] == "#") {
      EXPECT_GE(w.size(), 4u) << line;
      if (w[1] == "HELP") {
        ++p.helps[w[2]];
      } else if (w[1] == "TYPE") {
        EXPECT_EQ(p.types.count(w[2]), 0u) << "second TYPE for " << w[2];
        p.types[w[2]] = w[3];
        current = w[2];
      }
      continue;
    }
    std::string name(line.substr(0, line.find_first_of("{ ")));
    p.sample_names.push_back(name);
    bool in_family = name == current;
    if (!in_family && p.types[current] == "histogram") {
      for (const char* suffix : {"_bucket", "_sum", "_count"}) {
        in_family = in_family || name == current + suffix;
      }
    }
    EXPECT_TRUE(in_family) << name << " is outside its family (current " << current << ")";
  }
  return p;
}

TEST(Prometheus, HostAndModuleSeriesInBaseUnits) {
  std::string out = RenderPrometheus({Host()}, SelfMetrics{}, kNow);
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
  EXPECT_THAT(out, HasSubstr(
      "herd_module_state{host=\"web-1\",module=\"redis-mon\",state=\"online\"} 1\n"));
}

TEST(Prometheus, ModuleStateIsOneSeriesNamedForTheState) {
  herd::v1::HostDetail d = Host();
  d.mutable_units(0)->set_state(herd::v1::UNIT_STATE_WAITING_RESTART);
  std::string out = RenderPrometheus({d}, SelfMetrics{}, kNow);
  EXPECT_THAT(out, HasSubstr("herd_module_state{host=\"web-1\",module=\"redis-mon\","
                             "state=\"waiting_restart\"} 1\n"));
  EXPECT_THAT(out, HasSubstr("herd_module_up{host=\"web-1\",module=\"redis-mon\"} 0\n"));
  EXPECT_THAT(out, HasSubstr("herd_module_uptime_seconds{host=\"web-1\",module=\"redis-mon\"} 0\n"));
  EXPECT_THAT(out, Not(HasSubstr("state=\"online\"")));
}

TEST(Prometheus, ProbeNamesSanitiseToSnakeCaseFamilies) {
  const std::vector<std::pair<std::string, std::string>> cases = {
      {"latency", "herd_probe_latency"},
      {"Queue Length", "herd_probe_queue_length"},
      {"already_snake_case", "herd_probe_already_snake_case"},
      // camelCase and PascalCase, acronyms and digits.
      {"reqMin", "herd_probe_req_min"},
      {"HTTPRequests", "herd_probe_http_requests"},
      {"getHTTPResponseCode", "herd_probe_get_http_response_code"},
      {"p95Latency", "herd_probe_p95_latency"},
      {"Top10Hosts", "herd_probe_top10_hosts"},
      {"5XX", "herd_probe__5xx"},
      // Runs of anything outside [a-z0-9] are one "_", none at the ends.
      {"  --weird__ name--  ", "herd_probe_weird_name"},
      {"cpu%", "herd_probe_cpu"},
      {"a.x-y z", "herd_probe_a_x_y_z"},
      {"\xc3\x9c" "berCount", "herd_probe_ber_count_value"},  // ÜberCount
      {"caf\xc3\xa9 orders", "herd_probe_caf_orders"},
      // A leading digit.
      {"5xx", "herd_probe__5xx"},
      {"95th percentile", "herd_probe__95th_percentile"},
      // Nothing left.
      {"", "herd_probe_unnamed"},
      {"%", "herd_probe_unnamed"},
      {"\xc3\x9c\xc3\x9c", "herd_probe_unnamed"},
      // Units are the unit label's: words promtool refuses in a gauge's name are left out.
      {"req/s", "herd_probe_req"},
      {"Memory MB", "herd_probe_memory"},
      {"p95 latency (ms)", "herd_probe_p95_latency"},
      {"ms", "herd_probe_unnamed"},
      {"heap_kb_used", "herd_probe_heap_used"},
      {"uptime hours", "herd_probe_uptime"},
      {"size kilobytes", "herd_probe_size"},
      {"days left", "herd_probe_left"},
      {"fuel gauge", "herd_probe_fuel"},
      {"retry counter", "herd_probe_retry"},
      {"req/min", "herd_probe_req_min"},
      {"latency_seconds", "herd_probe_latency_seconds"},
      {"disk bytes", "herd_probe_disk_bytes"},
      {"millis", "herd_probe_millis"},
      // Reserved suffixes: "_value" appended (the family stays a gauge).
      {"errors_total", "herd_probe_errors_total_value"},
      {"total", "herd_probe_total_value"},
      {"requestCount", "herd_probe_request_count_value"},
      {"latency_sum", "herd_probe_latency_sum_value"},
      {"le_bucket", "herd_probe_le_bucket_value"},
      {"started_created", "herd_probe_started_created_value"},
      {"build info", "herd_probe_build_info_value"},
      {"heap MB total", "herd_probe_heap_total_value"},
      {"total errors", "herd_probe_total_errors"},
      {"count_ms", "herd_probe_count_value"},
  };
  const std::regex valid("herd_probe_(_[0-9])?[a-z0-9]+(_[a-z0-9]+)*");
  for (const auto& [probe, family] : cases) {
    const std::string got = ProbeMetricName(probe);
    EXPECT_EQ(got, family) << "probe \"" << probe << "\"";
    EXPECT_TRUE(std::regex_match(got, valid)) << got;
  }
}

// Each numeric probe is a gauge family of its own, with the probe's name kept exactly (and its
// unit) as labels.
TEST(Prometheus, ProbesAreGaugesNamedForTheProbeLabelledWithNameAndUnit) {
  std::string out = RenderPrometheus({Host()}, SelfMetrics{}, kNow);
  EXPECT_THAT(out, HasSubstr("# TYPE herd_probe_req gauge\n"
                             "herd_probe_req{host=\"web-1\",module=\"redis-mon\","
                             "probe=\"req/s\",unit=\"req/s\"} 42.5\n"));
  EXPECT_THAT(out, HasSubstr("# TYPE herd_probe_queue_length gauge\n"
                             "herd_probe_queue_length{host=\"web-1\",module=\"redis-mon\","
                             "probe=\"Queue Length\"} 0.1\n"));
  EXPECT_THAT(out, Not(HasSubstr("probe=\"state\"")));  // text probes are not series
  EXPECT_THAT(out, Not(HasSubstr("herd_probe_state")));
  EXPECT_THAT(out, Not(HasSubstr("herd_module_probe_value")));
}

// Probes whose names sanitise alike (in one module or across modules and hosts) share one
// family, under one HELP and TYPE, as distinct series.
TEST(Prometheus, ProbesThatSanitiseAlikeShareAFamilyAsDistinctSeries) {
  herd::v1::HostDetail a = Host(), b = Host();
  b.mutable_host()->set_host_id("web-2");
  for (auto* d : {&a, &b}) {
    auto* u = d->mutable_units(0);
    u->clear_probes();
    for (const auto& [name, unit, value] :
         std::vector<std::tuple<std::string, std::string, double>>{
             {"Memory MB", "MB", 10}, {"memory", "", 20}, {"Memory GB", "GB", 30}}) {
      auto* p = u->add_probes();
      p->set_name(name);
      p->set_unit(unit);
      p->set_numeric(true);
      p->set_number(value + (d == &b ? 1 : 0));
    }
  }
  b.mutable_units(0)->set_name("other-mod");
  std::string out = RenderPrometheus({a, b}, SelfMetrics{}, kNow);
  const std::string f = "herd_probe_memory";
  const std::string w1 = f + "{host=\"web-1\",module=\"redis-mon\",probe=";
  const std::string w2 = f + "{host=\"web-2\",module=\"other-mod\",probe=";
  EXPECT_THAT(out, HasSubstr("# TYPE " + f + " gauge\n" +
                             w1 + "\"Memory MB\",unit=\"MB\"} 10\n" +
                             w1 + "\"memory\"} 20\n" +
                             w1 + "\"Memory GB\",unit=\"GB\"} 30\n" +
                             w2 + "\"Memory MB\",unit=\"MB\"} 11\n" +
                             w2 + "\"memory\"} 21\n" +
                             w2 + "\"Memory GB\",unit=\"GB\"} 31\n"));
  Parsed p = Parse(out);
  EXPECT_EQ(p.helps[f], 1);
  EXPECT_EQ(std::count(p.sample_names.begin(), p.sample_names.end(), f), 6);
  // Every series of the exposition is distinct.
  std::set<std::string> series;
  for (absl::string_view line : absl::StrSplit(out, '\n', absl::SkipEmpty())) {
    if (absl::StartsWith(line, "#")) continue;
    EXPECT_TRUE(series.insert(std::string(line.substr(0, line.rfind(' ')))).second) << line;
  }
}

// HELP is the same text for every probe family: nothing the module chose, so nothing to
// escape there (and a probe name that would need it stays in the escaped label).
TEST(Prometheus, ProbeHelpCarriesNothingOfTheModule) {
  herd::v1::HostDetail d = Host();
  d.mutable_units(0)->mutable_probes(0)->set_name("x\\y\nz \"q\"");
  d.mutable_units(0)->mutable_probes(1)->set_name("errors_total");
  std::string out = RenderPrometheus({d}, SelfMetrics{}, kNow);
  const std::string help =
      " Module probe: latest value of the module's numeric probe (original name in label "
      "probe, unit in label unit).\n";
  EXPECT_THAT(out, HasSubstr("# HELP herd_probe_x_y_z_q" + help +
                             "# TYPE herd_probe_x_y_z_q gauge\n"
                             "herd_probe_x_y_z_q{host=\"web-1\",module=\"redis-mon\","
                             "probe=\"x\\\\y\\nz \\\"q\\\"\",unit=\"req/s\"} 42.5\n"));
  EXPECT_THAT(out, HasSubstr("# HELP herd_probe_errors_total_value" + help +
                             "# TYPE herd_probe_errors_total_value gauge\n"));
}

// Debian's promtool (the prometheus package), when installed, accepts every family above.
TEST(Prometheus, AwkwardProbeNamesPassPromtool) {
  const char* promtool = "/usr/bin/promtool";
  if (access(promtool, X_OK) != 0) GTEST_SKIP() << promtool << " is not installed";
  herd::v1::HostDetail d = Host();
  auto* u = d.mutable_units(0);
  u->clear_probes();
  int i = 0;
  for (const char* name :
       {"req/s", "Memory MB", "memory", "reqMin", "HTTPRequests", "errors_total",
        "p95 latency (ms)", "5xx", "\xc3\x9c" "berCount", "%", "ms", "uptime hours",
        "size kilobytes", "fuel gauge", "retry counter", "latency_sum", "le_bucket",
        "requestCount", "build info", "started_created", "heap MB total", "x\\y\n\"z\"",
        "a b c d h m s", "total", "latency_seconds"}) {
    auto* p = u->add_probes();
    p->set_name(name);
    p->set_unit(i % 2 ? "ms" : "");
    p->set_numeric(true);
    p->set_number(++i);
  }
  ::herd::testing::ScopedTempDir tmp("herd-promtool");
  const std::string metrics = tmp.WriteFile("metrics.txt", RenderPrometheus({d}, Full(), kNow));
  const std::string cmd =
      std::string(promtool) + " check metrics < " + metrics + " > " + tmp.Path("out.txt") + " 2>&1";
  const int rc = system(cmd.c_str());
  const std::string findings = ::herd::testing::ReadFile(tmp.Path("out.txt"));
  EXPECT_EQ(rc, 0) << findings;
  EXPECT_EQ(findings, "");
}

TEST(Prometheus, ControlPlaneCountersAndGauges) {
  std::string out = RenderPrometheus({}, Full(), kNow);
  EXPECT_THAT(out, HasSubstr("# TYPE herd_controlplane_agent_messages_total counter\n"
                             "herd_controlplane_agent_messages_total 80\n"));
  EXPECT_THAT(out, HasSubstr("herd_controlplane_connected_agents 1\n"));
  EXPECT_THAT(out, HasSubstr("herd_controlplane_metric_batches_total 77\n"));
  EXPECT_THAT(out, HasSubstr("# TYPE herd_controlplane_rollouts_running gauge\n"
                             "herd_controlplane_rollouts_running 1\n"));
  EXPECT_THAT(out, HasSubstr("# TYPE herd_controlplane_rollouts_total counter\n"
                             "herd_controlplane_rollouts_total{state=\"succeeded\"} 4\n"
                             "herd_controlplane_rollouts_total{state=\"failed\"} 2\n"
                             "herd_controlplane_rollouts_total{state=\"aborted\"} 0\n"));
}

TEST(Prometheus, BatchDelayIsAHistogramInSeconds) {
  std::string out = RenderPrometheus({}, Full(), kNow);
  const std::string f = "herd_controlplane_metric_batch_delay_seconds";
  EXPECT_THAT(out, HasSubstr("# TYPE " + f + " histogram\n" + f + "_bucket{le=\"0.01\"} 1\n"));
  EXPECT_THAT(out, HasSubstr(f + "_bucket{le=\"2.5\"} 1\n" + f + "_bucket{le=\"5\"} 2\n"));
  EXPECT_THAT(out, HasSubstr(f + "_bucket{le=\"30\"} 2\n" + f + "_bucket{le=\"60\"} 3\n" + f +
                             "_bucket{le=\"+Inf\"} 3\n" + f + "_sum 43.005\n" + f + "_count 3\n"));
}

TEST(Prometheus, StoreLatencyIsAHistogramPerKindWithCumulativeBuckets) {
  std::string out = RenderPrometheus({}, Full(), kNow);
  const std::string f = "herd_controlplane_store_operation_duration_seconds";
  EXPECT_THAT(out, HasSubstr("# TYPE " + f + " histogram\n" + f +
                             "_bucket{op=\"read\",le=\"0.0005\"} 5\n" + f +
                             "_bucket{op=\"read\",le=\"0.001\"} 8\n" + f +
                             "_bucket{op=\"read\",le=\"0.0025\"} 9\n"));
  EXPECT_THAT(out, HasSubstr(f + "_bucket{op=\"read\",le=\"1\"} 9\n" + f +
                             "_bucket{op=\"read\",le=\"+Inf\"} 10\n" + f +
                             "_sum{op=\"read\"} 1.25\n" + f + "_count{op=\"read\"} 10\n" + f +
                             "_bucket{op=\"write\",le=\"0.0005\"} 0\n"));
  EXPECT_THAT(out, HasSubstr(f + "_sum{op=\"write\"} 0.02\n" + f + "_count{op=\"write\"} 3\n"));
  EXPECT_THAT(out, HasSubstr("# TYPE herd_controlplane_store_errors_total counter\n"
                             "herd_controlplane_store_errors_total{op=\"read\"} 0\n"
                             "herd_controlplane_store_errors_total{op=\"write\"} 1\n"));
  // Eleven bounds and +Inf for each kind.
  Parsed p = Parse(out);
  EXPECT_EQ(std::count(p.sample_names.begin(), p.sample_names.end(), f + "_bucket"), 24);
}

TEST(Prometheus, ProcessMetricsUseTheStandardNamesAndAreLeftOutWhenUnknown) {
  std::string out = RenderPrometheus({}, Full(), kNow);
  EXPECT_THAT(out, HasSubstr("# TYPE process_cpu_seconds_total counter\n"
                             "process_cpu_seconds_total 1.5\n"));
  EXPECT_THAT(out, HasSubstr("process_resident_memory_bytes 20971520\n"));
  EXPECT_THAT(out, HasSubstr("process_virtual_memory_bytes 314572800\n"));
  EXPECT_THAT(out, HasSubstr("process_open_fds 17\n"));
  EXPECT_THAT(out, HasSubstr("process_max_fds 1024\n"));
  EXPECT_THAT(out, HasSubstr("process_start_time_seconds 1.79999900025e+09\n"));
  SelfMetrics none = Full();
  none.process.reset();
  none.store.clear();
  std::string bare = RenderPrometheus({}, none, kNow);
  EXPECT_THAT(bare, Not(HasSubstr("process_")));
  EXPECT_THAT(bare, Not(HasSubstr("store_")));
}

TEST(Prometheus, HttpRefusalsAreCountedByReasonAndLeftOutWithoutHttp) {
  SelfMetrics self = Full();
  HttpStats h;
  h.connections = 12;
  h.streams = 3;
  h.shed_idle = 1900;
  h.timed_out = 7;
  h.requests_shed_queue_full = 2;
  h.streams_refused_token = 5;
  h.streams_ended_stalled = 1;
  self.http = h;
  std::string out = RenderControlPlane(self);
  EXPECT_THAT(out, HasSubstr("herd_controlplane_http_connections 12\n"));
  EXPECT_THAT(out, HasSubstr("herd_controlplane_http_streams 3\n"));
  EXPECT_THAT(out, HasSubstr("# TYPE herd_controlplane_http_connections_closed_total counter\n"));
  EXPECT_THAT(out, HasSubstr("herd_controlplane_http_connections_closed_total"
                             "{reason=\"idle_shed\"} 1900\n"));
  EXPECT_THAT(out,
              HasSubstr("herd_controlplane_http_connections_closed_total{reason=\"timeout\"} 7\n"));
  EXPECT_THAT(out,
              HasSubstr("herd_controlplane_http_requests_shed_total{reason=\"queue_full\"} 2\n"));
  EXPECT_THAT(out,
              HasSubstr("herd_controlplane_http_streams_closed_total{reason=\"token_limit\"} 5\n"));
  EXPECT_THAT(out,
              HasSubstr("herd_controlplane_http_streams_closed_total{reason=\"stalled\"} 1\n"));
  self.http.reset();
  EXPECT_THAT(RenderControlPlane(self), Not(HasSubstr("herd_controlplane_http_")));
  EXPECT_THAT(RenderControlPlane(self), Not(HasSubstr("artifact")));
  ArtifactStore::Counts a;
  a.uploaded = 2;
  a.fetches_refused = 9;
  a.bytes_served = 123456;
  self.artifacts = a;
  out = RenderControlPlane(self);
  EXPECT_THAT(out, HasSubstr("herd_controlplane_artifacts_uploaded_total 2\n"));
  EXPECT_THAT(out, HasSubstr("herd_controlplane_artifact_fetches_refused_total 9\n"));
  EXPECT_THAT(out, HasSubstr("herd_controlplane_artifact_served_bytes_total 123456\n"));
}

TEST(Prometheus, EveryFamilyHasOneHelpAndOneTypeBeforeItsSamples) {
  herd::v1::HostDetail a = Host(), b = Host();
  b.mutable_host()->set_host_id("web-2");
  b.mutable_host()->set_online(false);
  std::string out = RenderPrometheus({a, b}, Full(), kNow);
  EXPECT_THAT(out, HasSubstr("herd_host_up{host=\"web-2\"} 0\n"));
  Parsed p = Parse(out);
  ASSERT_FALSE(p.types.empty());
  for (const auto& [name, type] : p.types) {
    EXPECT_EQ(p.helps[name], 1) << name;
    EXPECT_THAT(type, ::testing::AnyOf("gauge", "counter", "histogram")) << name;
    EXPECT_EQ(type == "counter", absl::EndsWith(name, "_total")) << name;
  }
  EXPECT_EQ(p.helps.size(), p.types.size());
}

TEST(Prometheus, LabelValuesAreEscaped) {
  EXPECT_EQ(EscapeLabelValue("a\"b\\c\nd"), "a\\\"b\\\\c\\nd");
  herd::v1::HostDetail d = Host();
  d.mutable_host()->set_host_id("we\"ird\\host\nx");
  d.mutable_units(0)->mutable_probes(0)->set_name("say \"hi\"");
  std::string out = RenderPrometheus({d}, SelfMetrics{}, kNow);
  EXPECT_THAT(out, HasSubstr("herd_host_up{host=\"we\\\"ird\\\\host\\nx\"} 1\n"));
  EXPECT_THAT(out, HasSubstr("probe=\"say \\\"hi\\\"\""));
  // A raw newline never splits a sample.
  for (absl::string_view line : absl::StrSplit(out, '\n', absl::SkipEmpty())) {
    EXPECT_TRUE(absl::StartsWith(line, "# ") || absl::StartsWith(line, "herd_")) << line;
  }
}

TEST(Prometheus, NumbersAreExactAndSpecialValuesUseTheExpositionSpelling) {
  SelfMetrics self;
  self.store.push_back(StoreOp("read", std::vector<uint64_t>(11, 0), 0,
                               std::numeric_limits<double>::quiet_NaN(), 0));
  ProcessMetrics p;
  p.cpu_seconds = 0.1;
  p.resident_bytes = 1e18;
  p.start_time_seconds = std::numeric_limits<double>::infinity();
  self.process = p;
  std::string out = RenderPrometheus({}, self, kNow);
  EXPECT_THAT(out, HasSubstr("process_cpu_seconds_total 0.1\n"));
  EXPECT_THAT(out, HasSubstr("process_resident_memory_bytes 1e+18\n"));
  EXPECT_THAT(out, HasSubstr("process_start_time_seconds +Inf\n"));
  EXPECT_THAT(out, HasSubstr("_sum{op=\"read\"} NaN\n"));
  EXPECT_THAT(out, Not(HasSubstr("process_max_fds")));  // unlimited
}

// A fake /proc: this process's stat, limits and fds, and the boot time.
class ProcFixture : public ::testing::Test {
 protected:
  void SetUp() override { std::filesystem::create_directories(root_ + "/self/fd"); }
  void Write(const std::string& rel, const std::string& text) { dir_.WriteFile(rel, text); }
  ::herd::testing::ScopedTempDir dir_{"herd-proc"};
  const std::string root_ = dir_.path();
};

TEST_F(ProcFixture, ProcessMetricsComeFromStatLimitsAndFds) {
  const long ticks = sysconf(_SC_CLK_TCK);
  const long page = sysconf(_SC_PAGESIZE);
  // The command may hold spaces and parentheses; fields count from the last ')'.
  Write("self/stat",
        "4242 (control (plane) x) S 1 4242 4242 0 -1 4194560 100 0 0 0 " +
            std::to_string(3 * ticks) + " " + std::to_string(ticks / 2) +
            " 0 0 20 0 12 0 " + std::to_string(50 * ticks) + " 104857600 2560 "
            "18446744073709551615 1 1 0 0 0 0 0 0 0 0 0 0 17 1 0 0 0 0 0\n");
  Write("stat", "cpu  1 2 3 4\nintr 5\nbtime 1700000000\nprocesses 9\n");
  Write("self/limits",
        "Limit                     Soft Limit           Hard Limit           Units     \n"
        "Max open files            4096                 524288               files     \n");
  for (const char* fd : {"0", "1", "2", "7"}) Write(std::string("self/fd/") + fd, "");
  auto m = ReadProcessMetrics(root_);
  ASSERT_TRUE(m.ok()) << m.status();
  EXPECT_DOUBLE_EQ(m->cpu_seconds, 3.0 + static_cast<double>(ticks / 2) / ticks);
  EXPECT_DOUBLE_EQ(m->virtual_bytes, 104857600);
  EXPECT_DOUBLE_EQ(m->resident_bytes, 2560.0 * page);
  EXPECT_DOUBLE_EQ(m->start_time_seconds, 1700000050);
  EXPECT_DOUBLE_EQ(m->open_fds, 4);
  EXPECT_DOUBLE_EQ(m->max_fds, 4096);
}

TEST_F(ProcFixture, UnreadableOrMalformedProcIsAnError) {
  EXPECT_FALSE(ReadProcessMetrics(root_).ok());
  Write("self/stat", "4242 (x) S 1 2 3\n");
  Write("stat", "btime 1700000000\n");
  auto m = ReadProcessMetrics(root_);
  EXPECT_FALSE(m.ok());
  EXPECT_THAT(std::string(m.status().message()), HasSubstr("self/stat"));
}

TEST(ProcessMetrics, ThisProcessHasPlausibleNumbers) {
  auto m = ReadProcessMetrics();
  ASSERT_TRUE(m.ok()) << m.status();
  EXPECT_GT(m->resident_bytes, 1 << 20);
  EXPECT_GE(m->virtual_bytes, m->resident_bytes);
  EXPECT_GE(m->open_fds, 3);
  const double now = static_cast<double>(absl::ToUnixSeconds(absl::Now()));
  EXPECT_LE(m->start_time_seconds, now + 1);
  EXPECT_GT(m->start_time_seconds, now - 3600);
}

}  // namespace
}  // namespace herd::controlplane

namespace herd::controlplane {
namespace {

// Above the cap no probe series is shown at all (not a partial fleet), and the exposition
// says so; host and module series stay. The cap counts series, across hosts.
TEST(Prometheus, ProbeSeriesAboveTheCapAreLeftOutAndCounted) {
  herd::v1::HostDetail a = Host(), b = Host();
  b.mutable_host()->set_host_id("web-2");
  ExpositionOptions roomy;
  roomy.max_probe_series = 4;  // two numeric probes per host
  std::string fits = RenderPrometheus({a, b}, SelfMetrics{}, kNow, roomy);
  EXPECT_THAT(fits, HasSubstr("herd_probe_req{host=\"web-2\""));
  EXPECT_THAT(fits, HasSubstr("herd_controlplane_probe_series 4\n"));
  EXPECT_THAT(fits, HasSubstr("herd_controlplane_probe_series_omitted 0\n"));

  ExpositionOptions tight;
  tight.max_probe_series = 3;
  std::string out = RenderPrometheus({a, b}, SelfMetrics{}, kNow, tight);
  EXPECT_THAT(out, Not(HasSubstr("herd_probe_")));
  EXPECT_THAT(out, HasSubstr("herd_controlplane_probe_series 4\n"));
  EXPECT_THAT(out, HasSubstr("herd_controlplane_probe_series_omitted 1\n"));
  EXPECT_THAT(out, HasSubstr("herd_module_up{host=\"web-2\",module=\"redis-mon\"} 1\n"));

  // Built host by host, as the server does: the same text.
  FleetExposition e(kNow, tight);
  e.AddHost(a);
  EXPECT_FALSE(e.probes_omitted());
  e.AddHost(b);
  EXPECT_TRUE(e.probes_omitted());
  EXPECT_EQ(e.probe_series(), 4u);
  EXPECT_EQ(e.Finish(SelfMetrics{}), out);
}

// One host with 120,000 probe series took every host's probes out of /metrics (issue 20):
// the cap is per host first. A host past its own cap has none of its probes shown, is named,
// and leaves the fleet's budget to the others.
TEST(Prometheus, OneHostPastItsProbeCapLosesOnlyItsOwnProbes) {
  herd::v1::HostDetail normal = Host();
  herd::v1::HostDetail noisy = Host();
  noisy.mutable_host()->set_host_id("noisy");
  auto* u = noisy.mutable_units(0);
  for (int i = 0; i < 5000; ++i) {
    auto* p = u->add_probes();
    p->set_name(absl::StrCat("p", i));
    p->set_numeric(true);
    p->set_number(i);
  }
  ExpositionOptions options;
  options.max_probe_series = 1000;
  options.max_probe_series_per_host = 100;
  FleetExposition e(kNow, options);
  e.AddHost(noisy);
  e.AddHost(normal);
  const std::string out = e.Finish(SelfMetrics{});
  EXPECT_FALSE(e.probes_omitted());
  EXPECT_EQ(e.hosts_probes_omitted(), 1u);
  EXPECT_EQ(e.probe_series(), 2u);
  EXPECT_THAT(out, HasSubstr("herd_probe_req{host=\"web-1\""));
  EXPECT_THAT(out, Not(HasSubstr("herd_probe_req{host=\"noisy\"")));
  EXPECT_THAT(out, Not(HasSubstr("herd_probe_p0")));
  EXPECT_THAT(out, HasSubstr("herd_host_probe_series_omitted{host=\"noisy\"} 5002\n"));
  EXPECT_THAT(out, HasSubstr("herd_controlplane_probe_series_omitted_hosts 1\n"));
  EXPECT_THAT(out, HasSubstr("herd_controlplane_probe_series_omitted 0\n"));
  // Its other series stay.
  EXPECT_THAT(out, HasSubstr("herd_module_up{host=\"noisy\",module=\"redis-mon\"} 1\n"));
  Parse(out);
}

TEST(Prometheus, AgentLimitAndStreamCountersAreExposed) {
  SelfMetrics self;
  self.hub.limited[static_cast<size_t>(Limit::kUnits)] = 4950;
  self.hub.join_token_reads = 3;
  self.hub.joins_refused = 6;
  self.hub.audit_dropped = 8;
  self.fleet_streams_open = 2;
  self.fleet_stream_messages_dropped = 7;
  self.fleet_streams_ended_stalled = 1;
  self.fleet_streams_refused = 5;
  const std::string out = RenderControlPlane(self);
  EXPECT_THAT(out, HasSubstr("herd_controlplane_agent_limited_total{limit=\"units\"} 4950\n"));
  EXPECT_THAT(out, HasSubstr("herd_controlplane_agent_limited_total{limit=\"series\"} 0\n"));
  EXPECT_THAT(out, HasSubstr("herd_controlplane_join_token_reads_total 3\n"));
  EXPECT_THAT(out, HasSubstr("herd_controlplane_joins_refused_total 6\n"));
  EXPECT_THAT(out, HasSubstr("herd_controlplane_audit_dropped_total 8\n"));
  EXPECT_THAT(out, HasSubstr("herd_controlplane_fleet_streams 2\n"));
  EXPECT_THAT(out, HasSubstr("herd_controlplane_fleet_stream_dropped_messages_total 7\n"));
  EXPECT_THAT(out, HasSubstr("herd_controlplane_fleet_streams_ended_stalled_total 1\n"));
  EXPECT_THAT(out, HasSubstr("herd_controlplane_fleet_streams_refused_total 5\n"));
  Parse(out);
}

}  // namespace
}  // namespace herd::controlplane
