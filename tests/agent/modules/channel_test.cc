#include "agent/modules/channel.h"

#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace herd::agent {
namespace {

using json = nlohmann::json;
using ::testing::ElementsAre;
using Result = ModuleChannelState::Result;

const absl::Time kT0 = absl::FromUnixSeconds(1'700'000'000);

std::string Msg(const std::string& type, const json& data) {
  return json{{"type", type}, {"data", data}}.dump();
}

// ---------------------------------------------------------------------------------------
// LineFramer

std::vector<std::string> FeedAll(LineFramer& f, const std::vector<std::string>& chunks) {
  std::vector<std::string> lines;
  for (const auto& c : chunks) {
    f.Feed(c, [&](absl::string_view l) { lines.emplace_back(l); });
  }
  return lines;
}

TEST(LineFramer, SplitsSeveralLinesInOneChunk) {
  LineFramer f(100);
  EXPECT_THAT(FeedAll(f, {"a\nbb\n\nccc\n"}), ElementsAre("a", "bb", "", "ccc"));
}

TEST(LineFramer, JoinsALineSplitAcrossChunksAndHoldsAnUnfinishedOne) {
  LineFramer f(100);
  EXPECT_THAT(FeedAll(f, {"{\"ty", "pe\":1", "}\nnext"}), ElementsAre("{\"type\":1}"));
  EXPECT_THAT(FeedAll(f, {"-line\n"}), ElementsAre("next-line"));
}

TEST(LineFramer, OversizedLineIsDroppedWholeAndCountedAndTheNextLineSurvives) {
  LineFramer f(8);
  std::vector<std::string> lines =
      FeedAll(f, {"0123456", "789abc", "def", "ghi\nok\n", "0123456789\nfine\n"});
  EXPECT_THAT(lines, ElementsAre("ok", "fine"));
  EXPECT_EQ(f.oversized(), 2u);
}

TEST(LineFramer, LineOfExactlyTheBoundIsKept) {
  LineFramer f(4);
  EXPECT_THAT(FeedAll(f, {"abcd\nabcde\n"}), ElementsAre("abcd"));
  EXPECT_EQ(f.oversized(), 1u);
}

// ---------------------------------------------------------------------------------------
// ModuleChannelState

TEST(ChannelState, Pm2IoMonitorShapeKeepsValueTypeUnitAndHistory) {
  ModuleChannelState s;
  ASSERT_EQ(s.HandleLine(Msg("axm:monitor", {{"latency", {{"value", 12.5}, {"type", "histogram"},
                                                          {"unit", "ms"}, {"agg_type", "p95"}}}}),
                         kT0),
            Result::kOk);
  ASSERT_EQ(s.HandleLine(Msg("axm:monitor", {{"latency", {{"value", 7}, {"unit", "ms"}}}}),
                         kT0 + absl::Seconds(1)),
            Result::kOk);
  const auto& p = s.probes().at("latency");
  EXPECT_EQ(p.value(), "7");
  EXPECT_TRUE(p.numeric());
  EXPECT_DOUBLE_EQ(p.number(), 7);
  EXPECT_EQ(p.unit(), "ms");
  EXPECT_EQ(p.updated_at_unix_ms(), absl::ToUnixMillis(kT0 + absl::Seconds(1)));
  const auto* h = s.history("latency");
  ASSERT_NE(h, nullptr);
  ASSERT_EQ(h->size(), 2u);
  EXPECT_DOUBLE_EQ((*h)[0].value, 12.5);
  EXPECT_EQ((*h)[0].at_unix_ms, absl::ToUnixMillis(kT0));
}

TEST(ChannelState, PmxPlainValuesAndNumericStringsWithUnits) {
  ModuleChannelState s;
  s.HandleLine(Msg("axm:monitor", {{"uptime", "83.37"}, {"lag", "0.06ms"}, {"state", "up"},
                                   {"ok", true}, {"version", "1.2.3"}}),
               kT0);
  EXPECT_DOUBLE_EQ(s.probes().at("uptime").number(), 83.37);
  EXPECT_TRUE(s.probes().at("lag").numeric());
  EXPECT_DOUBLE_EQ(s.probes().at("lag").number(), 0.06);
  EXPECT_FALSE(s.probes().at("state").numeric());
  EXPECT_EQ(s.probes().at("state").value(), "up");
  EXPECT_EQ(s.probes().at("ok").value(), "true");
  EXPECT_FALSE(s.probes().at("ok").numeric());
  EXPECT_FALSE(s.probes().at("version").numeric()) << "1.2.3 is text, not 1.2";
  EXPECT_EQ(s.history("state"), nullptr);
}

TEST(ChannelState, ObjectOrArrayValuesAreNotProbes) {
  ModuleChannelState s;
  s.HandleLine(Msg("axm:monitor", {{"nested", {{"value", {{"a", 1}}}}}, {"list", json::array({1})},
                                   {"fine", 1}}),
               kT0);
  EXPECT_EQ(s.probes().size(), 1u);
  EXPECT_TRUE(s.probes().count("fine"));
}

TEST(ChannelState, ProbeCountAndHistoryAreBounded) {
  ChannelLimits limits;
  limits.max_probes = 3;
  limits.probe_history = 4;
  ModuleChannelState s(limits);
  json many = json::object();
  for (int i = 0; i < 10; ++i) many[absl::StrCat("p", i)] = i;
  s.HandleLine(Msg("axm:monitor", many), kT0);
  EXPECT_EQ(s.probes().size(), 3u);
  for (int i = 0; i < 10; ++i) {
    s.HandleLine(Msg("axm:monitor", {{"p0", i}}), kT0 + absl::Seconds(i + 1));
  }
  ASSERT_EQ(s.history("p0")->size(), 4u);
  EXPECT_DOUBLE_EQ(s.history("p0")->back().value, 9);
  EXPECT_DOUBLE_EQ(s.history("p0")->front().value, 6);
}

TEST(ChannelState, LongTextValueIsClipped) {
  ChannelLimits limits;
  limits.max_text_bytes = 10;
  ModuleChannelState s(limits);
  s.HandleLine(Msg("axm:monitor", {{"t", std::string(100, 'x')}}), kT0);
  EXPECT_LT(s.probes().at("t").value().size(), 20u);
  EXPECT_EQ(s.probes().at("t").value().substr(0, 10), std::string(10, 'x'));
}

TEST(ChannelState, ConfigurationSetsWidgetMainProbesAndAnnouncedConf) {
  ModuleChannelState s;
  json widget = {{"type", "generic"},
                 {"logo", "https://x/logo.png"},
                 {"theme", {"#111", "#222", "white", "white"}},
                 {"el", {{"probes", false}, {"actions", true}}},
                 {"block", {{"cpu", false}, {"main_probes", {"b"}}}}};
  s.HandleLine(Msg("axm:option:configuration",
                   {{"module_name", "m"}, {"module_conf", {{"interval", 5}}}, {"widget", widget}}),
               kT0);
  s.HandleLine(Msg("axm:monitor", {{"a", 1}, {"b", 2}, {"c", 3}}), kT0);
  herd::v1::ModuleInfo info;
  s.Fill(&info);
  EXPECT_EQ(info.widget().logo(), "https://x/logo.png");
  EXPECT_THAT(info.widget().theme(), ElementsAre("#111", "#222", "white", "white"));
  EXPECT_FALSE(info.widget().el_probes());
  EXPECT_TRUE(info.widget().el_actions());
  EXPECT_FALSE(info.widget().block_cpu());
  EXPECT_TRUE(info.widget().block_mem()) << "unset block flags default to shown";
  EXPECT_EQ(json::parse(info.announced_conf_json()), (json{{"interval", 5}}));
  auto main = s.MainProbes();
  ASSERT_EQ(main.size(), 1u);
  EXPECT_EQ(main[0].name(), "b");
}

// Recorded from pm2-elasticsearch 2.1.0 under @pm2/io 6 (issue 23): the module's theme
// arrives after @pm2/io's four default colours, and its own are the last four.
TEST(ChannelState, Pm2ioThemeIsTheModulesOwnLastFourColours) {
  ModuleChannelState s;
  json line = json::parse(R"({"type":"axm:option:configuration","data":{"widget":{
      "type":"generic","logo":"https://www.elastic.co/static/img/logo-elastic.png",
      "theme":["#111111","#1B2228","#807C7C","#807C7C","#39bdb1","#1B2228","white","#807C7C"],
      "el":{"probes":true,"actions":true},
      "block":{"issues":true,"meta":true,"main_probes":["Elastic status","Nodes"]}},
      "isModule":true,"module_name":"pm2-elasticsearch"}})");
  s.HandleLine(line.dump(), kT0);
  herd::v1::ModuleInfo info;
  s.Fill(&info);
  EXPECT_THAT(info.widget().theme(), ElementsAre("#39bdb1", "#1B2228", "white", "#807C7C"));
  EXPECT_TRUE(info.widget().block_actions());
}

TEST(ChannelState, MainProbesWithoutWidgetAreTheFirstByName) {
  ModuleChannelState s;
  s.HandleLine(Msg("axm:monitor", {{"d", 1}, {"a", 1}, {"c", 1}, {"b", 1}}), kT0);
  auto main = s.MainProbes(2);
  ASSERT_EQ(main.size(), 2u);
  EXPECT_EQ(main[0].name(), "a");
  EXPECT_EQ(main[1].name(), "b");
}

TEST(ChannelState, PidAnnouncementAcceptsNumbersStringsAndArraysAndLaterAnnouncementsMerge) {
  ModuleChannelState s;
  s.HandleLine(Msg("axm:option:configuration", {{"pid", {1234, "5678", -1, "x", {9}}}}), kT0);
  EXPECT_THAT(s.pid_override(), ElementsAre(1234, 5678));
  // pmx sends a second announcement without pid ({"error": true}): the pid stays.
  s.HandleLine(Msg("axm:option:configuration", {{"error", true}}), kT0);
  EXPECT_THAT(s.pid_override(), ElementsAre(1234, 5678));
  EXPECT_FALSE(s.pid_join()) << "PM2's default: the pid replaces the module's own";
  s.HandleLine(Msg("axm:option:configuration", {{"pid", 42}, {"pid_join", true}}), kT0);
  EXPECT_THAT(s.pid_override(), ElementsAre(42));
  EXPECT_TRUE(s.pid_join());
}

TEST(ChannelState, ActionsRegisterWithTypeAndArity) {
  ModuleChannelState s;
  s.HandleLine(Msg("axm:action", {{"action_name", "flush"}, {"arity", 2}}), kT0);
  s.HandleLine(Msg("axm:action", {{"action_name", "tail"}, {"action_type", "scoped"}}), kT0);
  s.HandleLine(Msg("axm:action", {{"action_name", "km:heapdump"}}), kT0);
  s.HandleLine(Msg("axm:action", {{"action_name", ""}}), kT0);
  herd::v1::ModuleInfo info;
  s.Fill(&info);
  ASSERT_EQ(info.actions_size(), 3);
  EXPECT_EQ(info.actions(0).name(), "flush");
  EXPECT_EQ(info.actions(0).type(), "custom");
  EXPECT_EQ(info.actions(0).arity(), 2u);
  EXPECT_EQ(info.actions(1).name(), "km:heapdump");
  EXPECT_EQ(info.actions(1).type(), "internal");
  EXPECT_EQ(info.actions(2).type(), "scoped");
  EXPECT_TRUE(s.has_action("tail"));
  EXPECT_FALSE(s.has_action("nope"));
}

TEST(ChannelState, ReplyAndScopedMessagesReachTheirCallbacks) {
  ModuleChannelState s;
  std::vector<std::string> seen;
  s.on_reply = [&](const std::string& name, const json& ret) {
    seen.push_back(absl::StrCat("reply ", name, " ", ret.dump()));
  };
  s.on_scoped = [&](const std::string& name, const std::string& uuid, const std::string& kind,
                    const json& data) {
    seen.push_back(absl::StrCat(kind, " ", name, " ", uuid, " ", data.dump()));
  };
  s.HandleLine(Msg("axm:reply", {{"action_name", "flush"}, {"return", {{"ok", true}}}}), kT0);
  s.HandleLine(Msg("axm:scoped_action:stream",
                   {{"action_name", "tail"}, {"uuid", "u1"}, {"data", "line"}}),
               kT0);
  s.HandleLine(Msg("axm:scoped_action:end", {{"action_name", "tail"}, {"uuid", "u1"}}), kT0);
  EXPECT_EQ(s.HandleLine(Msg("axm:reply", "not an object"), kT0), Result::kInvalidMessage);
  EXPECT_THAT(seen, ElementsAre("reply flush {\"ok\":true}", "stream tail u1 \"line\"",
                                "end tail u1 null"));
}

TEST(ChannelState, IssuesAreCountedAndTheLatestKept) {
  ChannelLimits limits;
  limits.kept_issues = 3;
  ModuleChannelState s(limits);
  for (int i = 0; i < 5; ++i) {
    s.HandleLine(Msg("process:exception",
                     {{"message", absl::StrCat("boom ", i)}, {"stack", "at x"}, {"name", "TypeError"}}),
                 kT0 + absl::Seconds(i));
  }
  s.HandleLine(Msg("process:exception", "plain text"), kT0 + absl::Seconds(9));
  herd::v1::ModuleInfo info;
  s.Fill(&info);
  EXPECT_EQ(info.issues_count(), 6u);
  ASSERT_EQ(info.issues_size(), 3);
  EXPECT_EQ(info.issues(0).message(), "boom 3");
  EXPECT_EQ(info.issues(0).name(), "TypeError");
  EXPECT_EQ(info.issues(0).stack(), "at x");
  EXPECT_EQ(info.issues(2).message(), "plain text");
  EXPECT_EQ(info.issues(2).name(), "Error");
  EXPECT_EQ(info.issues(2).at_unix_ms(), absl::ToUnixMillis(kT0 + absl::Seconds(9)));
}

// pm2-elasticsearch raised 438 identical "No Living connections" in 8 minutes: one group.
TEST(ChannelState, IdenticalIssuesAreOneGroupWithCountFirstAndLastTime) {
  ModuleChannelState s;
  for (int i = 0; i < 438; ++i) {
    s.HandleLine(Msg("process:exception", {{"message", "No Living connections"},
                                           {"stack", absl::StrCat("at ", i)}}),
                 kT0 + absl::Seconds(i));
  }
  s.HandleLine(Msg("process:exception", {{"message", "other"}}), kT0 + absl::Seconds(500));
  // The first one again: its group moves last (latest), still one group.
  s.HandleLine(Msg("process:exception", {{"message", "No Living connections"}}),
               kT0 + absl::Seconds(600));
  herd::v1::ModuleInfo info;
  s.Fill(&info);
  EXPECT_EQ(info.issues_count(), 440u);
  ASSERT_EQ(info.issues_size(), 2);
  EXPECT_EQ(info.issues(0).message(), "other");
  EXPECT_EQ(info.issues(0).count(), 1u);
  const auto& g = info.issues(1);
  EXPECT_EQ(g.message(), "No Living connections");
  EXPECT_EQ(g.count(), 439u);
  EXPECT_EQ(g.first_at_unix_ms(), absl::ToUnixMillis(kT0));
  EXPECT_EQ(g.at_unix_ms(), absl::ToUnixMillis(kT0 + absl::Seconds(600)));
  EXPECT_EQ(g.stack(), "");  // the latest one's (it had none)

  EXPECT_EQ(s.ClearIssues(), 2u);
  herd::v1::ModuleInfo cleared;
  s.Fill(&cleared);
  EXPECT_EQ(cleared.issues_size(), 0);
  EXPECT_EQ(cleared.issues_count(), 0u);
}

TEST(ChannelState, EventsKeepNameAndDataWithoutTheNameField) {
  ModuleChannelState s;
  s.HandleLine(Msg("human:event", {{"__name", "backup done"}, {"size", 12}}), kT0);
  herd::v1::ModuleInfo info;
  s.Fill(&info);
  ASSERT_EQ(info.events_size(), 1);
  EXPECT_EQ(info.events(0).name(), "backup done");
  EXPECT_EQ(json::parse(info.events(0).data_json()), (json{{"size", 12}}));
}

TEST(ChannelState, GarbageIsCountedByKindAndNeverStopsTheChannel) {
  ModuleChannelState s;
  EXPECT_EQ(s.HandleLine("not json", kT0), Result::kInvalidJson);
  EXPECT_EQ(s.HandleLine("[1,2]", kT0), Result::kInvalidMessage);
  EXPECT_EQ(s.HandleLine("{\"type\": 5}", kT0), Result::kInvalidMessage);
  EXPECT_EQ(s.HandleLine(Msg("who:knows", 1), kT0), Result::kUnknownType);
  EXPECT_EQ(s.HandleLine(Msg("application:dependencies", {{"x", "1"}}), kT0), Result::kOk);
  EXPECT_EQ(s.HandleLine(Msg("axm:monitor", {{"still", 1}}), kT0), Result::kOk);
  EXPECT_EQ(s.stats().invalid_json(), 1u);
  EXPECT_EQ(s.stats().unknown_types(), 3u);
  EXPECT_EQ(s.stats().messages(), 2u);
  EXPECT_TRUE(s.probes().count("still"));
}

TEST(ChannelState, FloodBeyondTheRateIsDroppedUntilTheNextSecond) {
  ChannelLimits limits;
  limits.max_messages_per_second = 5;
  ModuleChannelState s(limits);
  int ok = 0, flood = 0;
  for (int i = 0; i < 8; ++i) {
    auto r = s.HandleLine(Msg("axm:monitor", {{"n", i}}), kT0 + absl::Milliseconds(i * 10));
    (r == Result::kFlood ? flood : ok)++;
  }
  EXPECT_EQ(ok, 5);
  EXPECT_EQ(flood, 3);
  EXPECT_EQ(s.stats().flood_dropped(), 3u);
  EXPECT_DOUBLE_EQ(s.probes().at("n").number(), 4);
  EXPECT_EQ(s.HandleLine(Msg("axm:monitor", {{"n", 99}}), kT0 + absl::Seconds(1)), Result::kOk);
  EXPECT_DOUBLE_EQ(s.probes().at("n").number(), 99);
}

TEST(ChannelState, NewProcessDropsRegistrationsButKeepsIssuesAndHistory) {
  ModuleChannelState s;
  s.HandleLine(Msg("axm:action", {{"action_name", "flush"}}), kT0);
  s.HandleLine(Msg("axm:monitor", {{"n", 1}}), kT0);
  s.HandleLine(Msg("axm:option:configuration", {{"pid", 77}}), kT0);
  s.HandleLine(Msg("process:exception", {{"message", "old"}}), kT0);
  s.ResetForNewProcess();
  EXPECT_FALSE(s.has_action("flush"));
  EXPECT_TRUE(s.probes().empty());
  EXPECT_TRUE(s.pid_override().empty());
  ASSERT_NE(s.history("n"), nullptr);
  herd::v1::ModuleInfo info;
  s.Fill(&info);
  EXPECT_EQ(info.issues_count(), 1u);
}

TEST(ChannelState, StatsCarryConnectionAndOversizedCounts) {
  ModuleChannelState s;
  s.set_connected(true);
  s.count_oversized(2);
  s.count_oversized(1);
  herd::v1::ModuleInfo info;
  s.Fill(&info);
  EXPECT_TRUE(info.channel().connected());
  EXPECT_EQ(info.channel().oversized_lines(), 3u);
}

// A module's line nested 200,000 deep parsed (iteratively) and then overflowed the stack when
// a handler copied or dumped it: agentd died.
TEST(ChannelState, DeeplyNestedLineIsInvalidJsonNotACrash) {
  ModuleChannelState st;
  std::string deep = R"({"type":"human:event","data":)" + std::string(200000, '[') +
                     std::string(200000, ']') + "}";
  EXPECT_EQ(st.HandleLine(deep, kT0), Result::kInvalidJson);
  EXPECT_EQ(st.stats().invalid_json(), 1u);
}

TEST(ChannelState, NumberTooLargeForADoubleIsInvalidJson) {
  ModuleChannelState st;
  EXPECT_EQ(st.HandleLine(R"({"type":"axm:monitor","data":{"p":1e99999}})", kT0),
            Result::kInvalidJson);
}

// Clipping cut inside a UTF-8 sequence, so the probe value was not UTF-8 and the ModuleInfo
// carrying it could not be parsed by agentctl or the control plane.
TEST(ChannelState, ClippedTextStaysValidUtf8) {
  ChannelLimits limits;
  limits.max_text_bytes = 9;
  ModuleChannelState st(limits);
  // "é" is two bytes: a cut after 9 bytes would split the fifth one.
  std::string value;
  for (int i = 0; i < 8; ++i) value += "\xc3\xa9";
  ASSERT_EQ(st.HandleLine(Msg("axm:monitor", {{"p", value}}), kT0), Result::kOk);
  herd::v1::ModuleInfo info;
  st.Fill(&info);
  ASSERT_EQ(info.probes_size(), 1);
  EXPECT_EQ(info.probes(0).value(), "\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9…");
  herd::v1::ModuleInfo back;
  EXPECT_TRUE(back.ParseFromString(info.SerializeAsString()));
}

}  // namespace
}  // namespace herd::agent
