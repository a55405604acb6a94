#include "agent/modules/module_config.h"

#include <stdlib.h>
#include <sys/stat.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>

#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace herd::agent {
namespace {

using json = nlohmann::json;
using ::testing::HasSubstr;

// ---------------------------------------------------------------------------------------
// ConvertConfigValue: typed by the manifest default

TEST(ConvertConfigValue, IntegerDefaultTakesIntegersWithSpaces) {
  auto v = ConvertConfigValue(json(1000), "interval", " 250 ");
  ASSERT_TRUE(v.ok()) << v.status();
  EXPECT_TRUE(v->is_number_integer());
  EXPECT_EQ(*v, json(250));
}

TEST(ConvertConfigValue, IntegerDefaultRefusesTextNamingKeyValueAndDefault) {
  auto v = ConvertConfigValue(json(1000), "interval", "fast");
  ASSERT_FALSE(v.ok());
  EXPECT_EQ(v.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(v.status().message(), HasSubstr("interval"));
  EXPECT_THAT(v.status().message(), HasSubstr("\"fast\""));
  EXPECT_THAT(v.status().message(), HasSubstr("an integer"));
  EXPECT_THAT(v.status().message(), HasSubstr("1000"));
}

TEST(ConvertConfigValue, IntegerDefaultRefusesAFraction) {
  EXPECT_FALSE(ConvertConfigValue(json(5), "n", "2.5").ok());
}

TEST(ConvertConfigValue, FloatDefaultTakesNumbersAndRefusesInfinity) {
  auto v = ConvertConfigValue(json(0.5), "ratio", "0.25");
  ASSERT_TRUE(v.ok());
  EXPECT_DOUBLE_EQ(v->get<double>(), 0.25);
  auto whole = ConvertConfigValue(json(0.5), "ratio", "3");
  ASSERT_TRUE(whole.ok());
  EXPECT_TRUE(whole->is_number_float());
  EXPECT_FALSE(ConvertConfigValue(json(0.5), "ratio", "inf").ok());
  EXPECT_FALSE(ConvertConfigValue(json(0.5), "ratio", "half").ok());
}

TEST(ConvertConfigValue, BooleanDefaultTakesTheUsualSpellings) {
  for (const char* t : {"true", "TRUE", "yes", "on", "1"}) {
    auto v = ConvertConfigValue(json(false), "verbose", t);
    ASSERT_TRUE(v.ok()) << t;
    EXPECT_EQ(*v, json(true)) << t;
  }
  for (const char* t : {"false", "No", "off", "0"}) {
    auto v = ConvertConfigValue(json(true), "verbose", t);
    ASSERT_TRUE(v.ok()) << t;
    EXPECT_EQ(*v, json(false)) << t;
  }
  auto bad = ConvertConfigValue(json(true), "verbose", "maybe");
  ASSERT_FALSE(bad.ok());
  EXPECT_THAT(bad.status().message(), HasSubstr("true or false"));
}

TEST(ConvertConfigValue, StringDefaultKeepsTextVerbatim) {
  auto v = ConvertConfigValue(json("hello"), "greeting", "  42  ");
  ASSERT_TRUE(v.ok());
  EXPECT_EQ(*v, json("  42  "));
}

TEST(ConvertConfigValue, NoDefaultAutocastsLikePm2) {
  EXPECT_EQ(*ConvertConfigValue(json(), "k", "true"), json(true));
  EXPECT_EQ(*ConvertConfigValue(json(), "k", "false"), json(false));
  EXPECT_EQ(*ConvertConfigValue(json(), "k", "12"), json(12));
  EXPECT_TRUE(ConvertConfigValue(json(), "k", "12")->is_number_integer());
  EXPECT_DOUBLE_EQ(ConvertConfigValue(json(), "k", "1.5")->get<double>(), 1.5);
  EXPECT_EQ(*ConvertConfigValue(json(), "k", "redis://x"), json("redis://x"));
  EXPECT_EQ(*ConvertConfigValue(json(), "k", ""), json(""));
}

// ---------------------------------------------------------------------------------------
// EffectiveConfig / ConfigEntries

TEST(EffectiveConfig, OverridesAreTypedLikeTheirDefaults) {
  json defaults = {{"interval", 1000}, {"verbose", false}, {"host", "localhost"}};
  json overrides = {{"interval", "5"}, {"verbose", "yes"}};
  json e = EffectiveConfig(defaults, overrides);
  EXPECT_EQ(e, (json{{"interval", 5}, {"verbose", true}, {"host", "localhost"}}));
}

TEST(EffectiveConfig, UnconvertibleOverrideFromAHandEditedFileIsSkipped) {
  json e = EffectiveConfig({{"interval", 1000}}, {{"interval", "soon"}});
  EXPECT_EQ(e["interval"], json(1000));
}

TEST(EffectiveConfig, UndeclaredOverrideIsAutocastAndAdded) {
  json e = EffectiveConfig({{"a", 1}}, {{"extra", "7"}});
  EXPECT_EQ(e["extra"], json(7));
  EXPECT_EQ(e["a"], json(1));
}

TEST(EffectiveConfig, NonObjectInputsGiveTheDefaultsOrNothing) {
  EXPECT_EQ(EffectiveConfig(json(), json()), json::object());
  EXPECT_EQ(EffectiveConfig({{"a", 1}}, json::array()), (json{{"a", 1}}));
}

TEST(ConfigEntries, OneSortedEntryPerKeyWithSource) {
  json defaults = {{"b", 1}, {"a", "x"}};
  json overrides = {{"b", "2"}, {"forced", "on"}};
  auto entries = ConfigEntries(defaults, overrides, "local");
  ASSERT_EQ(entries.size(), 3u);
  EXPECT_EQ(entries[0].key(), "a");
  EXPECT_EQ(entries[0].default_json(), "\"x\"");
  EXPECT_FALSE(entries[0].has_override());
  EXPECT_EQ(entries[0].effective_json(), "\"x\"");
  EXPECT_EQ(entries[0].source(), "default");

  EXPECT_EQ(entries[1].key(), "b");
  EXPECT_TRUE(entries[1].has_override());
  EXPECT_EQ(entries[1].override_value(), "2");
  EXPECT_EQ(entries[1].effective_json(), "2");
  EXPECT_EQ(entries[1].source(), "local");

  EXPECT_EQ(entries[2].key(), "forced");
  EXPECT_EQ(entries[2].default_json(), "");
  EXPECT_EQ(entries[2].effective_json(), "\"on\"");
  EXPECT_EQ(entries[2].source(), "local");
}

TEST(ConfigEntries, OverrideThatCannotApplyIsShownButSourcedFromTheDefault) {
  auto entries = ConfigEntries({{"n", 3}}, {{"n", "three"}}, "local");
  ASSERT_EQ(entries.size(), 1u);
  EXPECT_TRUE(entries[0].has_override());
  EXPECT_EQ(entries[0].override_value(), "three");
  EXPECT_EQ(entries[0].effective_json(), "3");
  EXPECT_EQ(entries[0].source(), "default");
}

// ---------------------------------------------------------------------------------------
// ModuleConfStore

class ModuleConfStoreTest : public ::testing::Test {
 protected:
  void SetUp() override {
    char tmpl[] = "/tmp/herd-modconf-XXXXXX";
    ASSERT_NE(mkdtemp(tmpl), nullptr);
    dir_ = tmpl;
    path_ = dir_ + "/module_conf.json";
  }
  void TearDown() override { std::filesystem::remove_all(dir_); }
  std::string Read() const {
    std::ifstream in(path_);
    std::stringstream ss;
    ss << in.rdbuf();
    return ss.str();
  }
  void Write(const std::string& text) const { std::ofstream(path_) << text; }

  std::string dir_, path_;
};

TEST_F(ModuleConfStoreTest, MissingFileIsAnEmptyStore) {
  ModuleConfStore store(path_);
  ASSERT_TRUE(store.Load().ok());
  EXPECT_EQ(store.Overrides("redis"), json::object());
  EXPECT_FALSE(std::filesystem::exists(path_));
}

TEST_F(ModuleConfStoreTest, SetWritesPm2LayoutWithMode0600AndSurvivesReload) {
  {
    ModuleConfStore store(path_);
    ASSERT_TRUE(store.Load().ok());
    ASSERT_TRUE(store.Set("redis", "port", "6380").ok());
    ASSERT_TRUE(store.Set("redis", "host", "db1").ok());
    ASSERT_TRUE(store.Set("mongo", "uri", "mongodb://x").ok());
  }
  json doc = json::parse(Read());
  EXPECT_EQ(doc, (json{{"redis", {{"port", "6380"}, {"host", "db1"}}},
                       {"mongo", {{"uri", "mongodb://x"}}}}));
  struct stat st;
  ASSERT_EQ(stat(path_.c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 0777, 0600u);

  ModuleConfStore again(path_);
  ASSERT_TRUE(again.Load().ok());
  EXPECT_EQ(again.Overrides("redis")["port"], json("6380"));
}

TEST_F(ModuleConfStoreTest, UnsetReportsWhetherThereWasAnOverrideAndDropsEmptyModules) {
  ModuleConfStore store(path_);
  ASSERT_TRUE(store.Load().ok());
  ASSERT_TRUE(store.Set("redis", "port", "1").ok());
  auto none = store.Unset("redis", "host");
  ASSERT_TRUE(none.ok());
  EXPECT_FALSE(*none);
  auto gone = store.Unset("redis", "port");
  ASSERT_TRUE(gone.ok());
  EXPECT_TRUE(*gone);
  EXPECT_EQ(json::parse(Read()), json::object());
  auto unknown = store.Unset("nosuch", "k");
  ASSERT_TRUE(unknown.ok());
  EXPECT_FALSE(*unknown);
}

TEST_F(ModuleConfStoreTest, EraseRemovesOneModuleOnly) {
  ModuleConfStore store(path_);
  ASSERT_TRUE(store.Load().ok());
  ASSERT_TRUE(store.Set("a", "k", "1").ok());
  ASSERT_TRUE(store.Set("b", "k", "2").ok());
  ASSERT_TRUE(store.Erase("a").ok());
  ASSERT_TRUE(store.Erase("never-set").ok());
  EXPECT_EQ(json::parse(Read()), (json{{"b", {{"k", "2"}}}}));
}

TEST_F(ModuleConfStoreTest, CorruptFileIsRefusedNamingTheFileAndKeptAsItIs) {
  Write("{\"redis\": {\"port\": \"1\"");
  ModuleConfStore store(path_);
  auto s = store.Load();
  ASSERT_FALSE(s.ok());
  EXPECT_EQ(s.code(), absl::StatusCode::kDataLoss);
  EXPECT_THAT(s.message(), HasSubstr(path_));
  EXPECT_EQ(Read(), "{\"redis\": {\"port\": \"1\"");
}

TEST_F(ModuleConfStoreTest, ModuleEntryThatIsNotAnObjectIsRefused) {
  Write("{\"redis\": 5}");
  ModuleConfStore store(path_);
  auto s = store.Load();
  ASSERT_FALSE(s.ok());
  EXPECT_THAT(s.message(), HasSubstr("\"redis\""));
}

TEST_F(ModuleConfStoreTest, FailedSaveLeavesTheStoreUnchangedAndSaysSo) {
  // A parent that is a file fails even for root (directory permissions would not).
  std::string blocked = dir_ + "/file-not-dir";
  std::ofstream(blocked) << "x";
  ModuleConfStore store(blocked + "/module_conf.json");
  auto s = store.Set("redis", "port", "1");
  ASSERT_FALSE(s.ok());
  EXPECT_THAT(s.message(), HasSubstr("not applied"));
  EXPECT_EQ(store.Overrides("redis"), json::object());
}

TEST_F(ModuleConfStoreTest, NumberTooLargeForADoubleIsAnErrorNamingTheFileNotAThrow) {
  Write(R"({"redis": {"port": 1e99999}})");
  ModuleConfStore store(path_);
  absl::Status s;
  EXPECT_NO_THROW(s = store.Load());
  ASSERT_FALSE(s.ok());
  EXPECT_THAT(std::string(s.message()), HasSubstr(path_));
  EXPECT_THAT(std::string(s.message()), HasSubstr("redis.port"));
}

TEST_F(ModuleConfStoreTest, SetRefusesInvalidUtf8InsteadOfThrowingOnSave) {
  ModuleConfStore store(path_);
  ASSERT_TRUE(store.Load().ok());
  absl::Status s;
  EXPECT_NO_THROW(s = store.Set("redis", "host", "db\xff"));
  EXPECT_THAT(std::string(s.message()), HasSubstr("value is not valid UTF-8"));
  EXPECT_FALSE(std::filesystem::exists(path_));
}

TEST(ConvertConfigValue, InvalidUtf8IsRefusedNamingTheKey) {
  for (const json& def : {json("s"), json(), json(1)}) {
    auto v = ConvertConfigValue(def, "greeting", "h\xc3");
    ASSERT_FALSE(v.ok()) << def;
    EXPECT_THAT(std::string(v.status().message()), HasSubstr("greeting: the value is not valid UTF-8"));
  }
}

// ---------------------------------------------------------------------------------------
// Arrays and objects (PM2 passes any JSON: pm2-health's defaults hold both)

TEST(ConvertConfigValue, ArrayDefaultTakesAJsonArrayOfAnything) {
  auto v = ConvertConfigValue(json::array(), "appsExcluded", R"( ["web", 2, {"a": null}] )");
  ASSERT_TRUE(v.ok()) << v.status();
  EXPECT_EQ(*v, json::parse(R"(["web", 2, {"a": null}])"));
  auto empty = ConvertConfigValue(json::array({"exit"}), "events", "[]");
  ASSERT_TRUE(empty.ok());
  EXPECT_EQ(*empty, json::array());
}

TEST(ConvertConfigValue, ObjectDefaultTakesAJsonObject) {
  json def = {{"host", "h"}, {"port", 587}};
  auto v = ConvertConfigValue(def, "smtp", R"({"host": "mail", "port": 25, "extra": [1]})");
  ASSERT_TRUE(v.ok()) << v.status();
  EXPECT_EQ((*v)["port"], 25);
  EXPECT_EQ((*v)["extra"], json::array({1}));
}

TEST(ConvertConfigValue, ArrayOrObjectDefaultRefusesOtherJsonAndNonJsonSayingHowToWriteIt) {
  struct Case {
    json def;
    const char* text;
    const char* want;
  };
  for (const Case& c : {Case{json::array(), "web", "is not a JSON array"},
                        Case{json::array(), "web,api", "is not a JSON array"},
                        Case{json::array(), R"({"a": 1})", "is not a JSON array"},
                        Case{json::array(), "\"web\"", "is not a JSON array"},
                        Case{json::object(), "[1]", "is not a JSON object"},
                        Case{json::object(), "[1", "is not a JSON object"}}) {
    SCOPED_TRACE(c.text);
    auto v = ConvertConfigValue(c.def, "k", c.text);
    ASSERT_FALSE(v.ok());
    std::string m(v.status().message());
    EXPECT_THAT(m, HasSubstr(c.want));
    EXPECT_THAT(m, HasSubstr("k: "));
    EXPECT_THAT(m, HasSubstr(c.def.dump()));  // the default
  }
  auto v = ConvertConfigValue(json::array(), "k", "web");
  EXPECT_THAT(std::string(v.status().message()), HasSubstr("give a JSON literal"));
}

TEST(ConvertConfigValue, NoDefaultTakesAJsonArrayOrObjectAsItselfAndOtherTextAsPm2Does) {
  EXPECT_EQ(*ConvertConfigValue(json(), "k", "[1, \"a\"]"), json::parse("[1, \"a\"]"));
  EXPECT_EQ(*ConvertConfigValue(json(), "k", "{\"a\": 1}"), json::parse("{\"a\": 1}"));
  EXPECT_EQ(*ConvertConfigValue(json(), "k", "[not json"), json("[not json"));
  EXPECT_EQ(*ConvertConfigValue(json(), "k", "42"), json(42));
}

TEST(ConvertConfigValue, AHugeRefusedValueIsQuotedShort) {
  auto v = ConvertConfigValue(json::array(), "k", std::string(100000, 'x'));
  ASSERT_FALSE(v.ok());
  EXPECT_LT(v.status().message().size(), 1000u);
}

TEST(MakeConfigEnvironment, ArraysAndObjectsReachTheModuleAsJsonScalarsAsPm2Strings) {
  json defaults = {{"appsExcluded", json::array()}, {"smtp", {{"port", 587}}}, {"n", 1}};
  // As module_conf.json holds them after `set`, and as a control plane sends them (text).
  json overrides = {{"appsExcluded", json::array({"web"})},
                    {"smtp", R"({"port": 25})"},
                    {"n", "5"}};
  auto env = MakeConfigEnvironment("pm2-health", defaults, overrides);
  ASSERT_TRUE(env.ok()) << env.status();
  EXPECT_EQ(json::parse(env->overrides),
            (json{{"appsExcluded", {"web"}}, {"smtp", {{"port", 25}}}, {"n", "5"}}));
  EXPECT_EQ(json::parse(env->effective),
            (json{{"appsExcluded", {"web"}}, {"smtp", {{"port", 25}}}, {"n", 5}}));
  EXPECT_TRUE(env->refused.empty());
}

TEST(MakeConfigEnvironment, AnOverrideThatDoesNotConvertIsLeftOutWithItsReason) {
  json defaults = {{"appsExcluded", json::array()}, {"n", 1}};
  json overrides = {{"appsExcluded", "web"}, {"n", "2"}};  // a hand edit
  auto env = MakeConfigEnvironment("m", defaults, overrides);
  ASSERT_TRUE(env.ok());
  EXPECT_EQ(json::parse(env->overrides), (json{{"n", "2"}}));
  EXPECT_EQ(json::parse(env->effective)["appsExcluded"], json::array());
  ASSERT_EQ(env->refused.size(), 1u);
  EXPECT_THAT(env->refused[0], HasSubstr("appsExcluded"));
  EXPECT_THAT(env->refused[0], HasSubstr("is not a JSON array"));
}

TEST_F(ModuleConfStoreTest, SetKeepsAnArrayAsJson) {
  ModuleConfStore store(path_);
  ASSERT_TRUE(store.Load().ok());
  ASSERT_TRUE(store.Set("pm2-health", "appsExcluded", json::array({"web", "api"})).ok());
  EXPECT_EQ(json::parse(Read()), (json{{"pm2-health", {{"appsExcluded", {"web", "api"}}}}}));
}

TEST_F(ModuleConfStoreTest, RefreshPicksUpAHandEditAndSetKeepsIt) {
  ModuleConfStore store(path_);
  ASSERT_TRUE(store.Load().ok());
  ASSERT_TRUE(store.Set("redis", "port", "1").ok());
  EXPECT_TRUE(store.Refresh().ok());  // its own write is not an edit
  Write(R"({"redis": {"port": "6390", "host": "edited"}})");
  ASSERT_TRUE(store.Refresh().ok());
  EXPECT_EQ(store.Overrides("redis")["host"], "edited");
  // A set made later reads the file first: the edit is not overwritten.
  Write(R"({"redis": {"port": "6391", "host": "edited again"}})");
  ASSERT_TRUE(store.Set("mongo", "uri", "x").ok());
  json doc = json::parse(Read());
  EXPECT_EQ(doc["redis"]["host"], "edited again");
  EXPECT_EQ(doc["mongo"]["uri"], "x");
}

TEST_F(ModuleConfStoreTest, AnUnreadableHandEditKeepsTheValuesInForceAndBlocksChanges) {
  ModuleConfStore store(path_);
  ASSERT_TRUE(store.Load().ok());
  ASSERT_TRUE(store.Set("redis", "port", "1").ok());
  Write(R"({"redis": {"port": "2",)");
  for (int i = 0; i < 2; ++i) {  // said again until it is fixed
    auto s = store.Refresh();
    ASSERT_FALSE(s.ok());
    EXPECT_THAT(std::string(s.message()), HasSubstr(path_));
    EXPECT_THAT(std::string(s.message()), HasSubstr("stay in force"));
  }
  EXPECT_EQ(store.Overrides("redis")["port"], "1");
  EXPECT_FALSE(store.Set("redis", "port", "3").ok());
  EXPECT_EQ(Read(), R"({"redis": {"port": "2",)");  // the operator's text is not replaced
  Write(R"({"redis": {"port": "4"}})");
  ASSERT_TRUE(store.Refresh().ok());
  EXPECT_EQ(store.Overrides("redis")["port"], "4");
}

}  // namespace
}  // namespace herd::agent
