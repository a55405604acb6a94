#include "cli/render.h"

#include "cli/json_output.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "herd/v1/fleet.pb.h"
#include "nlohmann/json.hpp"

namespace herd::cli {
namespace {

using herd::v1::UnitStatus;
using ::testing::HasSubstr;

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
  EXPECT_EQ(j["units"][0]["state"], "online");
  EXPECT_EQ(j["units"][0]["pid"], 1234);
  EXPECT_TRUE(j["units"][0].contains("last_exit_code"));
}

// -o json is for people and jq: numbers as numbers, enum words, JSON fields as values.
TEST(FriendlyJson, NumbersWordsAndJsonFieldsAsValues) {
  herd::v1::UnitStatus u = Online();
  u.set_state(herd::v1::UNIT_STATE_WAITING_RESTART);
  u.mutable_usage()->set_rss_bytes(uint64_t{1} << 40);  // protobuf's JSON: a string
  nlohmann::json j = FriendlyJson(u);
  EXPECT_EQ(j["state"], "waiting restart");
  EXPECT_TRUE(j["usage"]["rss_bytes"].is_number());
  EXPECT_EQ(j["usage"]["rss_bytes"].get<uint64_t>(), uint64_t{1} << 40);

  herd::v1::TriggerActionResponse r;
  r.set_reply_json(R"({"cleared": 2, "list": [1, "a"]})");
  j = FriendlyJson(r);
  EXPECT_FALSE(j.contains("reply_json"));
  EXPECT_EQ(j["reply"]["cleared"], 2);
  EXPECT_EQ(j["reply"]["list"][1], "a");
  EXPECT_EQ(j["elapsed_ms"], 0);  // zeros kept
  r.set_reply_json("");
  EXPECT_TRUE(FriendlyJson(r)["reply"].is_null());
  r.set_reply_json("not json");
  EXPECT_EQ(FriendlyJson(r)["reply_json"], "not json");
}

TEST(FriendlyJson, MapsAndUnsetMessages) {
  herd::v1::AppSpec spec;
  spec.set_name("api");
  (*spec.mutable_env())["PORT"] = "8080";
  nlohmann::json j = FriendlyJson(spec);
  EXPECT_EQ(j["env"]["PORT"], "8080");
  herd::v1::UnitDetail d;
  EXPECT_FALSE(FriendlyJson(d).contains("module_info"));  // unset message: left out
}

TEST(ToYaml, BlockStyleThatReadsBackAsTheSameJson) {
  nlohmann::json v = {{"name", "api"}, {"pid", 12}, {"text", "true"}, {"num", "123"},
                      {"empty", ""}, {"none", nullptr}, {"ok", true},
                      {"list", {1, "x: y", "off"}}};
  std::string y = ToYaml(v);
  EXPECT_THAT(y, HasSubstr("name: api\n"));
  EXPECT_THAT(y, HasSubstr("pid: 12\n"));
  EXPECT_THAT(y, HasSubstr("text: \"true\"\n"));
  EXPECT_THAT(y, HasSubstr("num: \"123\"\n"));
  EXPECT_THAT(y, HasSubstr("empty: \"\"\n"));
  EXPECT_THAT(y, HasSubstr("none: ~\n"));
  EXPECT_THAT(y, HasSubstr("ok: true\n"));
  EXPECT_THAT(y, HasSubstr("  - \"x: y\"\n"));
  EXPECT_THAT(y, HasSubstr("  - \"off\"\n"));
}

// Fleet output names a host by hostname, with its id when the hostname repeats.
TEST(HostNamer, AddsTheIdOnlyWhenAHostnameRepeats) {
  google::protobuf::RepeatedPtrField<herd::v1::ModuleInstance> mods;
  auto add = [&](const char* id, const char* name) {
    auto* m = mods.Add();
    m->set_host_id(id);
    m->set_hostname(name);
  };
  add("h-1", "web");
  add("h-2", "web");
  add("h-3", "db");
  add("h-3", "db");  // the same host twice (two modules): not a repeat
  auto name = HostNamer(mods);
  EXPECT_EQ(name(mods[0]), "web (h-1)");
  EXPECT_EQ(name(mods[1]), "web (h-2)");
  EXPECT_EQ(name(mods[2]), "db");
}

TEST(Render, ModulePaneShowsProbesAndLastLinesOfModulesOnly) {
  UnitStatus plain = Online();
  UnitStatus mod = Online();
  mod.set_name("pm2-server-monit");
  mod.set_is_module(true);
  auto* p = mod.add_main_probes();
  p->set_name("CPU usage");
  p->set_value("5.9");
  p->set_unit("%");
  std::string out = RenderModulePane({plain, mod}, {{"pm2-server-monit", {"line 1", "err| oops"}}});
  EXPECT_EQ(out, "\nmodules:\npm2-server-monit (online): CPU usage 5.9 %\n  line 1\n  err| oops\n");
  EXPECT_EQ(RenderModulePane({plain}, {}), "");
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
