#include "agent/modules/module_config_service.h"

#include <stdlib.h>

#include <filesystem>
#include <map>
#include <optional>

#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace herd::agent {
namespace {

namespace fs = std::filesystem;
using ::testing::ElementsAre;
using ::testing::HasSubstr;
using ::testing::IsEmpty;
using json = nlohmann::json;
using ConfigResult = absl::StatusOr<herd::v1::ModuleConfig>;

// The registry as the service sees it: modules with defaults, and restarts that are recorded
// (and fail when told to).
class FakeModules final : public ConfiguredModules {
 public:
  std::vector<std::string> ModuleNames() const override {
    std::vector<std::string> names;
    for (const auto& [n, d] : defaults) names.push_back(n);
    return names;
  }
  const json* Defaults(const std::string& module) const override {
    auto it = defaults.find(module);
    return it == defaults.end() ? nullptr : &it->second;
  }
  void RestartForConfig(const std::string& module,
                        std::function<void(absl::Status)> done) override {
    restarted.push_back(module);
    auto it = restart_fails.find(module);
    done(it == restart_fails.end() ? absl::OkStatus() : it->second);
  }

  std::map<std::string, json> defaults;
  std::map<std::string, absl::Status> restart_fails;
  std::vector<std::string> restarted;
};

class ModuleConfigServiceTest : public ::testing::Test {
 protected:
  void SetUp() override {
    std::string tmpl = ::testing::TempDir() + "/herd-confsvc-XXXXXX";
    ASSERT_NE(mkdtemp(tmpl.data()), nullptr);
    home_ = tmpl;
    modules_.defaults["cache"] = json{{"size", 10}, {"label", "c"}};
    modules_.defaults["web"] = json{{"port", 80}};
    modules_.defaults["idle"] = json{{"debug", false}};
    service_ = std::make_unique<ModuleConfigService>(home_, modules_);
    ASSERT_TRUE(service_->Load().ok());
  }
  void TearDown() override { fs::remove_all(home_); }

  static herd::v1::ConfigSnapshot Snapshot(
      uint64_t version, const std::map<std::string, std::map<std::string, std::string>>& values) {
    herd::v1::ConfigSnapshot snap;
    snap.set_version(version);
    for (const auto& [module, kv] : values) {
      auto& m = (*snap.mutable_modules())[module];
      for (const auto& [k, v] : kv) (*m.mutable_values())[k] = v;
    }
    return snap;
  }
  herd::v1::ConfigAck Apply(const herd::v1::ConfigSnapshot& snap) {
    std::optional<herd::v1::ConfigAck> ack;
    modules_.restarted.clear();
    service_->ApplySnapshot(snap, [&](herd::v1::ConfigAck a) { ack = std::move(a); });
    EXPECT_TRUE(ack.has_value()) << "ApplySnapshot did not answer";
    return ack.value_or(herd::v1::ConfigAck());
  }
  std::string Value(const std::string& module, const std::string& key) const {
    json o = service_->Overrides(module);
    return o.contains(key) ? o[key].get<std::string>() : "";
  }

  std::string home_;
  FakeModules modules_;
  std::unique_ptr<ModuleConfigService> service_;
};

TEST_F(ModuleConfigServiceTest, ALocalSetIsKeptAndRestartsOnlyThatModule) {
  herd::v1::SetConfigRequest req;
  req.set_module("cache");
  req.set_key("size");
  req.set_value("64");
  std::optional<ConfigResult> out;
  service_->Set(req, [&](ConfigResult r) { out = std::move(r); });
  ASSERT_TRUE(out.has_value() && out->ok()) << out->status();
  EXPECT_THAT(modules_.restarted, ElementsAre("cache"));
  EXPECT_EQ((*out)->module(), "cache");
  // Typed like its default in the module's environment; a string in PM2's variable.
  auto env = service_->EnvironmentOf("cache", modules_.defaults["cache"]);
  ASSERT_TRUE(env.ok());
  EXPECT_EQ(json::parse(env->effective)["size"], 64);
  EXPECT_EQ(json::parse(env->overrides)["size"], "64");
  // Kept in module_conf.json.
  ModuleConfigService reloaded(home_, modules_);
  ASSERT_TRUE(reloaded.Load().ok());
  EXPECT_EQ(reloaded.Overrides("cache")["size"], "64");
}

TEST_F(ModuleConfigServiceTest, ALocalSetIsRefusedWithWhatToFix) {
  auto set = [&](const std::string& module, const std::string& key, const std::string& value,
                 bool force) {
    herd::v1::SetConfigRequest req;
    req.set_module(module);
    req.set_key(key);
    req.set_value(value);
    req.set_force(force);
    std::optional<ConfigResult> out;
    service_->Set(req, [&](ConfigResult r) { out = std::move(r); });
    return out->status();
  };
  EXPECT_EQ(set("nosuch", "size", "1", false).code(), absl::StatusCode::kNotFound);
  EXPECT_THAT(std::string(set("cache", "bad key", "1", false).message()),
              HasSubstr("is not a valid key"));
  EXPECT_THAT(std::string(set("cache", "ttl", "1", false).message()),
              HasSubstr("cache does not declare \"ttl\" (its keys: label, size); use --force"));
  EXPECT_EQ(set("cache", "size", "lots", false).code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(std::string(set("cache", "label", std::string(70 * 1024, 'x'), true).message()),
              HasSubstr("longer than 64 KiB"));
  EXPECT_THAT(modules_.restarted, IsEmpty());
  EXPECT_TRUE(service_->Overrides("cache").empty());
  // Forced, an undeclared key is taken.
  EXPECT_TRUE(set("cache", "ttl", "5", true).ok());
}

TEST_F(ModuleConfigServiceTest, LocalSetAndUnsetAreRefusedInManagedMode) {
  ASSERT_TRUE(service_->EnableManaged("cp.example:7443").ok());
  herd::v1::SetConfigRequest req;
  req.set_module("cache");
  req.set_key("size");
  req.set_value("64");
  std::optional<ConfigResult> out;
  service_->Set(req, [&](ConfigResult r) { out = std::move(r); });
  ASSERT_TRUE(out.has_value());
  EXPECT_EQ(out->status().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_THAT(std::string(out->status().message()),
              HasSubstr("owned by the control plane at cp.example:7443: set it there"));
  herd::v1::UnsetConfigRequest unset;
  unset.set_module("cache");
  unset.set_key("size");
  out.reset();
  service_->Unset(unset, [&](ConfigResult r) { out = std::move(r); });
  EXPECT_EQ(out->status().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_THAT(modules_.restarted, IsEmpty());
}

class SnapshotTest : public ModuleConfigServiceTest {
 protected:
  void SetUp() override {
    ModuleConfigServiceTest::SetUp();
    ASSERT_TRUE(service_->EnableManaged("cp:7443").ok());
  }
};

TEST_F(SnapshotTest, AnAcceptedSnapshotRestartsExactlyTheModulesWhoseValuesChanged) {
  herd::v1::ConfigAck ack = Apply(Snapshot(1, {{"cache", {{"size", "64"}}}}));
  EXPECT_TRUE(ack.accepted());
  EXPECT_EQ(ack.version(), 1u);
  EXPECT_THAT(ack.restarted(), ElementsAre("cache"));
  EXPECT_THAT(modules_.restarted, ElementsAre("cache"));
  EXPECT_EQ(service_->version(), 1u);
  EXPECT_EQ(Value("cache", "size"), "64");

  // cache unchanged, web changed, idle untouched.
  ack = Apply(Snapshot(2, {{"cache", {{"size", "64"}}}, {"web", {{"port", "8080"}}}}));
  EXPECT_TRUE(ack.accepted());
  EXPECT_THAT(ack.restarted(), ElementsAre("web"));
  EXPECT_THAT(modules_.restarted, ElementsAre("web"));

  // A value removed is a change too.
  ack = Apply(Snapshot(3, {{"web", {{"port", "8080"}}}}));
  EXPECT_THAT(modules_.restarted, ElementsAre("cache"));
  EXPECT_EQ(Value("cache", "size"), "");

  // The snapshot is cached: a restarted agent applies it before the control plane is back.
  ModuleConfigService restarted(home_, modules_);
  ASSERT_TRUE(restarted.EnableManaged("cp:7443").ok());
  EXPECT_EQ(restarted.version(), 3u);
  EXPECT_EQ(restarted.Overrides("web")["port"], "8080");
}

TEST_F(SnapshotTest, ASnapshotWithOneBadValueIsRejectedWholeKeepingTheLastGoodOne) {
  ASSERT_TRUE(Apply(Snapshot(1, {{"web", {{"port", "80"}}}})).accepted());
  herd::v1::ConfigAck ack =
      Apply(Snapshot(2, {{"web", {{"port", "8080"}}}, {"cache", {{"size", "huge"}}}}));
  EXPECT_FALSE(ack.accepted());
  EXPECT_EQ(ack.version(), 2u);
  ASSERT_EQ(ack.rejections_size(), 1);
  EXPECT_EQ(ack.rejections(0).module(), "cache");
  EXPECT_EQ(ack.rejections(0).key(), "size");
  EXPECT_FALSE(ack.rejections(0).reason().empty());
  EXPECT_THAT(modules_.restarted, IsEmpty());
  EXPECT_EQ(service_->version(), 1u);
  EXPECT_EQ(Value("web", "port"), "80");  // not 8080: nothing of v2 applied
}

TEST_F(SnapshotTest, AnUnknownModuleRejectsTheSnapshot) {
  herd::v1::ConfigAck ack = Apply(Snapshot(1, {{"nosuch", {{"a", "1"}}}, {"web", {{"port", "81"}}}}));
  EXPECT_FALSE(ack.accepted());
  ASSERT_EQ(ack.rejections_size(), 1);
  EXPECT_EQ(ack.rejections(0).module(), "nosuch");
  EXPECT_EQ(ack.rejections(0).reason(), "no such module on this host");
  EXPECT_EQ(service_->version(), 0u);
  EXPECT_THAT(modules_.restarted, IsEmpty());
}

TEST_F(SnapshotTest, ValuesTooLargeForTheEnvironmentRejectTheSnapshot) {
  herd::v1::ConfigAck ack =
      Apply(Snapshot(1, {{"cache", {{"label", std::string(130 * 1024, 'v')}}}}));
  EXPECT_FALSE(ack.accepted());
  ASSERT_EQ(ack.rejections_size(), 1);
  EXPECT_THAT(ack.rejections(0).reason(), HasSubstr("over the kernel's limit"));
  EXPECT_EQ(service_->version(), 0u);
}

TEST_F(SnapshotTest, AModuleThatCannotStartNacksAndIsTriedAgainWithTheNextSnapshot) {
  modules_.restart_fails["cache"] = absl::FailedPreconditionError("cache could not start");
  herd::v1::ConfigAck ack = Apply(Snapshot(1, {{"cache", {{"size", "64"}}}}));
  EXPECT_FALSE(ack.accepted());
  ASSERT_EQ(ack.rejections_size(), 1);
  EXPECT_EQ(ack.rejections(0).module(), "cache");
  EXPECT_EQ(ack.rejections(0).reason(), "cache could not start");
  EXPECT_EQ(service_->version(), 1u);  // in force: the next snapshot replaces it
  // Same values again: cache is restarted again rather than acked as applied.
  modules_.restart_fails.clear();
  ack = Apply(Snapshot(2, {{"cache", {{"size", "64"}}}}));
  EXPECT_TRUE(ack.accepted());
  EXPECT_THAT(modules_.restarted, ElementsAre("cache"));
}

TEST_F(SnapshotTest, ConfigShowsTheControlPlaneScopeOfEachValue) {
  herd::v1::ConfigSnapshot snap = Snapshot(1, {{"cache", {{"size", "64"}}}});
  (*(*snap.mutable_modules())["cache"].mutable_sources())["size"] = "selector:role=db";
  ASSERT_TRUE(Apply(snap).accepted());
  auto configs = service_->Get("cache");
  ASSERT_TRUE(configs.ok());
  ASSERT_EQ(configs->size(), 1u);
  std::map<std::string, std::string> sources;
  for (const auto& e : (*configs)[0].entries()) sources[e.key()] = e.source();
  EXPECT_EQ(sources["size"], "selector:role=db");
  EXPECT_EQ(sources["label"], "default");
  EXPECT_EQ(service_->Get("nosuch").status().code(), absl::StatusCode::kNotFound);
  EXPECT_EQ(service_->Get("")->size(), 3u);
}

}  // namespace
}  // namespace herd::agent
