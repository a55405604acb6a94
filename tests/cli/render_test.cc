#include "cli/render.h"

#include "gtest/gtest.h"
#include "nlohmann/json.hpp"

namespace herd::cli {
namespace {

using herd::v1::UnitStatus;

const absl::Time kNow = absl::FromUnixSeconds(1'800'000'000);

UnitStatus Online() {
  UnitStatus u;
  u.set_name("api");
  u.set_state(herd::v1::UNIT_STATE_ONLINE);
  u.set_pid(1234);
  u.set_restarts(2);
  u.set_started_at_unix_ms(absl::ToUnixMillis(kNow - absl::Minutes(5)));
  u.mutable_usage()->set_cpu_percent(12.34);
  u.mutable_usage()->set_rss_bytes(45 << 20);
  return u;
}

TEST(Render, UnitTableHasHeaderAndAlignedRow) {
  UnitStatus stopped;
  stopped.set_name("worker-long-name");
  stopped.set_state(herd::v1::UNIT_STATE_STOPPED);
  std::string t = RenderUnitTable({Online(), stopped}, kNow);
  EXPECT_EQ(t,
            "NAME              STATUS   PID   CPU    MEMORY  RESTARTS  UPTIME\n"
            "api               online   1234  12.3%  45.0M   2         5m\n"
            "worker-long-name  stopped  -     -      -       0         0\n");
}

TEST(Render, StateNamesAreReadable) {
  EXPECT_EQ(StateName(herd::v1::UNIT_STATE_WAITING_RESTART), "waiting restart");
  EXPECT_EQ(StateName(herd::v1::UNIT_STATE_ERRORED), "errored");
}

TEST(Render, JsonUsesProtoFieldNamesAndKeepsZeros) {
  herd::v1::ListResponse r;
  *r.add_units() = Online();
  auto j = nlohmann::json::parse(ToJson(r));
  EXPECT_EQ(j["units"][0]["name"], "api");
  EXPECT_EQ(j["units"][0]["state"], "UNIT_STATE_ONLINE");
  EXPECT_EQ(j["units"][0]["pid"], 1234);
  EXPECT_TRUE(j["units"][0].contains("last_exit_code"));
}

TEST(Render, DetailShowsReasonAndEvents) {
  herd::v1::UnitDetail d;
  d.mutable_spec()->set_name("api");
  d.mutable_spec()->set_max_memory_restart_bytes(200 << 20);
  d.mutable_status()->set_state(herd::v1::UNIT_STATE_ERRORED);
  d.mutable_status()->set_status_reason("too many unstable restarts");
  auto* e = d.add_events();
  e->set_kind("errored");
  e->set_detail("exited with code 1");
  std::string out = RenderDetail(d, kNow);
  EXPECT_NE(out.find("reason"), std::string::npos);
  EXPECT_NE(out.find("too many unstable restarts"), std::string::npos);
  EXPECT_NE(out.find("max memory restart  200.0M"), std::string::npos);
  EXPECT_NE(out.find("errored  exited with code 1"), std::string::npos);
}

TEST(Render, TopShowsAgentLineAndBars) {
  herd::v1::AgentInfo info;
  info.set_version("0.1.0");
  info.set_pid(99);
  info.set_sample_interval_ms(1000);
  std::string out = RenderTop(info, {Online()}, kNow);
  EXPECT_NE(out.find("agentd 0.1.0  pid 99"), std::string::npos);
  EXPECT_NE(out.find("[||"), std::string::npos);  // the memory bar of the largest unit is full
}

}  // namespace
}  // namespace herd::cli
