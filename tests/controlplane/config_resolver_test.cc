// One host's configuration from stored overrides: precedence, installed modules, sources,
// and the helpers the hub uses to decide whether to push.
#include "controlplane/core/config_resolver.h"
#include "controlplane/core/deployments.h"
#include "controlplane/store/store.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <map>
#include <set>
#include <string>
#include <vector>

namespace herd::controlplane {
namespace {

using herd::v1::ConfigSnapshot;
using herd::v1::Override;
using herd::v1::Scope;
using Labels = std::map<std::string, std::string>;

Scope Global() {
  Scope s;
  s.set_global(true);
  return s;
}
Scope Selector(const std::string& text) {
  Scope s;
  s.set_selector(text);
  return s;
}
Scope HostScope(const std::string& id) {
  Scope s;
  s.set_host_id(id);
  return s;
}

Override Make(const Scope& scope, const std::string& module, const std::string& key,
              const std::string& value, int64_t updated_at = 1000) {
  Override o;
  *o.mutable_scope() = scope;
  o.set_module(module);
  o.set_key(key);
  o.set_value(value);
  o.set_updated_at_unix_ms(updated_at);
  o.set_updated_by("test");
  return o;
}

// value and source of module:key in the snapshot ("<absent>" when not there).
std::string ValueOf(const ConfigSnapshot& s, const std::string& module, const std::string& key) {
  auto m = s.modules().find(module);
  if (m == s.modules().end()) return "<absent>";
  auto v = m->second.values().find(key);
  return v == m->second.values().end() ? "<absent>" : v->second;
}
std::string SourceOf(const ConfigSnapshot& s, const std::string& module, const std::string& key) {
  auto m = s.modules().find(module);
  if (m == s.modules().end()) return "<absent>";
  auto v = m->second.sources().find(key);
  return v == m->second.sources().end() ? "<absent>" : v->second;
}

const Labels kProdWeb = {{"env", "prod"}, {"role", "web"}};
const std::set<std::string> kApp = {"app"};

// The hub interns resolved snapshots by their deterministic bytes (Hub::Shared) and compares
// them by address: equal content must give equal bytes, and any difference in a module, key,
// value or source different ones.
bool SameConfig(const ConfigSnapshot& a, const ConfigSnapshot& b) {
  return DeterministicBytes(a) == DeterministicBytes(b);
}

// ---------------------------------------------------------------------------------------
// ResolveHostConfig

TEST(ResolveHostConfigTest, NoOverridesGivesEmptySnapshot) {
  ConfigSnapshot s = ResolveHostConfig({}, "h1", kProdWeb, kApp);
  EXPECT_EQ(s.modules_size(), 0);
  EXPECT_EQ(s.version(), 0u);
}

TEST(ResolveHostConfigTest, GlobalApplies) {
  ConfigSnapshot s =
      ResolveHostConfig({Make(Global(), "app", "interval", "2000")}, "h1", kProdWeb, kApp);
  EXPECT_EQ(ValueOf(s, "app", "interval"), "2000");
  EXPECT_EQ(SourceOf(s, "app", "interval"), "global");
  EXPECT_EQ(s.modules_size(), 1);
}

TEST(ResolveHostConfigTest, SelectorBeatsGlobalAndHostBeatsSelector) {
  // Newest first in the input, so only the scope level can explain the result.
  std::vector<Override> all = {
      Make(Global(), "app", "interval", "1", 3000),
      Make(Selector("env=prod"), "app", "interval", "2", 2000),
      Make(HostScope("h1"), "app", "interval", "3", 1000),
  };
  ConfigSnapshot s = ResolveHostConfig(all, "h1", kProdWeb, kApp);
  EXPECT_EQ(ValueOf(s, "app", "interval"), "3");
  EXPECT_EQ(SourceOf(s, "app", "interval"), "host");

  // Another host with the same labels: the selector wins over global.
  s = ResolveHostConfig(all, "h2", kProdWeb, kApp);
  EXPECT_EQ(ValueOf(s, "app", "interval"), "2");
  EXPECT_EQ(SourceOf(s, "app", "interval"), "selector:env=prod");

  // Labels the selector does not match: global.
  s = ResolveHostConfig(all, "h3", {{"env", "dev"}}, kApp);
  EXPECT_EQ(ValueOf(s, "app", "interval"), "1");
  EXPECT_EQ(SourceOf(s, "app", "interval"), "global");
}

TEST(ResolveHostConfigTest, OrderOfInputDoesNotMatter) {
  std::vector<Override> all = {
      Make(HostScope("h1"), "app", "k", "host", 1),
      Make(Selector("role=web"), "app", "k", "sel", 2),
      Make(Global(), "app", "k", "global", 3),
  };
  std::vector<Override> reversed(all.rbegin(), all.rend());
  ConfigSnapshot a = ResolveHostConfig(all, "h1", kProdWeb, kApp);
  ConfigSnapshot b = ResolveHostConfig(reversed, "h1", kProdWeb, kApp);
  EXPECT_EQ(ValueOf(a, "app", "k"), "host");
  EXPECT_TRUE(SameConfig(a, b));
}

TEST(ResolveHostConfigTest, MoreSpecificSelectorWinsEvenIfOlder) {
  std::vector<Override> all = {
      Make(Selector("env=prod,role=web"), "app", "k", "two-terms", 1000),
      Make(Selector("env=prod"), "app", "k", "one-term", 9000),
  };
  ConfigSnapshot s = ResolveHostConfig(all, "h1", kProdWeb, kApp);
  EXPECT_EQ(ValueOf(s, "app", "k"), "two-terms");
  EXPECT_EQ(SourceOf(s, "app", "k"), "selector:env=prod,role=web");
  // Reversed input: same answer.
  s = ResolveHostConfig({all[1], all[0]}, "h1", kProdWeb, kApp);
  EXPECT_EQ(ValueOf(s, "app", "k"), "two-terms");
}

TEST(ResolveHostConfigTest, SameSpecificityNewerSelectorWins) {
  std::vector<Override> all = {
      Make(Selector("role=web"), "app", "k", "newer", 5000),
      Make(Selector("env=prod"), "app", "k", "older", 1000),
  };
  ConfigSnapshot s = ResolveHostConfig(all, "h1", kProdWeb, kApp);
  EXPECT_EQ(ValueOf(s, "app", "k"), "newer");
  EXPECT_EQ(SourceOf(s, "app", "k"), "selector:role=web");
  s = ResolveHostConfig({all[1], all[0]}, "h1", kProdWeb, kApp);
  EXPECT_EQ(ValueOf(s, "app", "k"), "newer");

  // Swap the times: the other one wins.
  all[0].set_updated_at_unix_ms(1000);
  all[1].set_updated_at_unix_ms(5000);
  s = ResolveHostConfig(all, "h1", kProdWeb, kApp);
  EXPECT_EQ(ValueOf(s, "app", "k"), "older");
  EXPECT_EQ(SourceOf(s, "app", "k"), "selector:env=prod");
}

TEST(ResolveHostConfigTest, HostBeatsNewerSelectorAndSelectorBeatsNewerGlobal) {
  std::vector<Override> all = {
      Make(HostScope("h1"), "app", "a", "host", 1),
      Make(Selector("env=prod,role=web"), "app", "a", "sel", 100),
      Make(Selector("env=prod"), "app", "b", "sel", 1),
      Make(Global(), "app", "b", "global", 100),
  };
  ConfigSnapshot s = ResolveHostConfig(all, "h1", kProdWeb, kApp);
  EXPECT_EQ(ValueOf(s, "app", "a"), "host");
  EXPECT_EQ(ValueOf(s, "app", "b"), "sel");
}

TEST(ResolveHostConfigTest, KeysFromDifferentScopesMerge) {
  std::vector<Override> all = {
      Make(Global(), "app", "a", "1"),
      Make(Selector("role=web"), "app", "b", "2"),
      Make(HostScope("h1"), "app", "c", "3"),
      Make(Global(), "db", "pool", "10"),
  };
  ConfigSnapshot s = ResolveHostConfig(all, "h1", kProdWeb, {"app", "db"});
  EXPECT_EQ(s.modules_size(), 2);
  EXPECT_EQ(s.modules().at("app").values_size(), 3);
  EXPECT_EQ(SourceOf(s, "app", "a"), "global");
  EXPECT_EQ(SourceOf(s, "app", "b"), "selector:role=web");
  EXPECT_EQ(SourceOf(s, "app", "c"), "host");
  EXPECT_EQ(ValueOf(s, "db", "pool"), "10");
  EXPECT_EQ(s.modules().at("app").sources_size(), 3);
}

TEST(ResolveHostConfigTest, OnlyInstalledModules) {
  std::vector<Override> all = {
      Make(Global(), "app", "a", "1"),
      Make(Global(), "missing", "a", "1"),
      Make(HostScope("h1"), "missing", "b", "2"),
  };
  ConfigSnapshot s = ResolveHostConfig(all, "h1", kProdWeb, kApp);
  EXPECT_EQ(s.modules_size(), 1);
  EXPECT_EQ(s.modules().count("missing"), 0u);
  EXPECT_EQ(ResolveHostConfig(all, "h1", kProdWeb, {}).modules_size(), 0);
}

TEST(ResolveHostConfigTest, NonMatchingScopesAreIgnored) {
  std::vector<Override> all = {
      Make(HostScope("h2"), "app", "a", "other host"),
      Make(Selector("env=dev"), "app", "b", "dev"),
      Make(Selector("role!=web"), "app", "c", "not web"),
      Make(Selector("bad selector!"), "app", "d", "bad"),
      Make(Scope(), "app", "e", "no scope"),
  };
  Scope not_global;
  not_global.set_global(false);
  all.push_back(Make(not_global, "app", "f", "global=false"));
  ConfigSnapshot s = ResolveHostConfig(all, "h1", kProdWeb, kApp);
  EXPECT_EQ(s.modules_size(), 0) << s.DebugString();
}

TEST(ResolveHostConfigTest, SelectorSourceIsCanonical) {
  ConfigSnapshot s = ResolveHostConfig(
      {Make(Selector(" role = web ,env=prod,env=prod"), "app", "k", "v")}, "h1", kProdWeb, kApp);
  EXPECT_EQ(SourceOf(s, "app", "k"), "selector:env=prod,role=web");
}

TEST(ResolveHostConfigTest, NegatedSelectorMatchesHostWithoutTheLabel) {
  ConfigSnapshot s = ResolveHostConfig({Make(Selector("canary!=true"), "app", "k", "v")}, "h1",
                                       kProdWeb, kApp);
  EXPECT_EQ(ValueOf(s, "app", "k"), "v");
  EXPECT_EQ(SourceOf(s, "app", "k"), "selector:canary!=true");
}

// ---------------------------------------------------------------------------------------
// ScopeMatches

TEST(ScopeMatchesTest, EachKindOfScope) {
  EXPECT_TRUE(ScopeMatches(Global(), "h1", {}));
  Scope not_global;
  not_global.set_global(false);
  EXPECT_FALSE(ScopeMatches(not_global, "h1", {}));
  EXPECT_FALSE(ScopeMatches(Scope(), "h1", kProdWeb));

  EXPECT_TRUE(ScopeMatches(HostScope("h1"), "h1", {}));
  EXPECT_FALSE(ScopeMatches(HostScope("h1"), "h2", {}));
  EXPECT_FALSE(ScopeMatches(HostScope(""), "h1", {}));

  EXPECT_TRUE(ScopeMatches(Selector("env=prod"), "h1", kProdWeb));
  EXPECT_TRUE(ScopeMatches(Selector("env=prod, role!=db"), "h1", kProdWeb));
  EXPECT_FALSE(ScopeMatches(Selector("env=dev"), "h1", kProdWeb));
  EXPECT_FALSE(ScopeMatches(Selector("env=prod"), "h1", {}));
}

TEST(ScopeMatchesTest, BadSelectorMatchesNone) {
  for (const char* bad : {"", "env", "env=prod,,x=y", "e v=1", "role!=a b"}) {
    EXPECT_FALSE(ScopeMatches(Selector(bad), "h1", kProdWeb)) << bad;
    EXPECT_FALSE(ScopeMatches(Selector(bad), "h1", {})) << bad;
  }
}

// ---------------------------------------------------------------------------------------
// Telling snapshots apart (SameConfig, above).

ConfigSnapshot Snap(uint64_t version,
                    const std::map<std::string, std::map<std::string,
                                                         std::pair<std::string, std::string>>>&
                        modules) {
  ConfigSnapshot s;
  s.set_version(version);
  for (const auto& [mod, kvs] : modules) {
    auto& m = (*s.mutable_modules())[mod];
    for (const auto& [k, vs] : kvs) {
      (*m.mutable_values())[k] = vs.first;
      (*m.mutable_sources())[k] = vs.second;
    }
  }
  return s;
}

TEST(SameConfigTest, ResolvedSnapshotsCarryNoVersion) {
  // The version is set per host when one is sent; resolved, equal configs are equal bytes.
  std::vector<Override> all = {Make(Global(), "app", "k", "v", 1)};
  EXPECT_EQ(ResolveHostConfig(all, "h1", kProdWeb, kApp).version(), 0u);
  EXPECT_TRUE(SameConfig(ResolveHostConfig(all, "h1", kProdWeb, kApp),
                         ResolveHostConfig(all, "h2", kProdWeb, kApp)));
}

TEST(SameConfigTest, DetectsValueDifference) {
  auto a = Snap(1, {{"app", {{"k", {"v", "global"}}}}});
  auto b = Snap(1, {{"app", {{"k", {"w", "global"}}}}});
  EXPECT_FALSE(SameConfig(a, b));
  EXPECT_FALSE(SameConfig(b, a));
}

TEST(SameConfigTest, DetectsSourceDifference) {
  auto a = Snap(1, {{"app", {{"k", {"v", "global"}}}}});
  auto b = Snap(1, {{"app", {{"k", {"v", "host"}}}}});
  EXPECT_FALSE(SameConfig(a, b));
  EXPECT_FALSE(SameConfig(b, a));
}

TEST(SameConfigTest, DetectsKeyAndModuleDifferences) {
  auto base = Snap(1, {{"app", {{"k", {"v", "global"}}}}});
  auto extra_key = Snap(1, {{"app", {{"k", {"v", "global"}}, {"j", {"v", "global"}}}}});
  auto other_key = Snap(1, {{"app", {{"j", {"v", "global"}}}}});
  auto extra_mod = Snap(1, {{"app", {{"k", {"v", "global"}}}}, {"db", {{"k", {"v", "global"}}}}});
  auto other_mod = Snap(1, {{"db", {{"k", {"v", "global"}}}}});
  for (const auto* other : {&extra_key, &other_key, &extra_mod, &other_mod}) {
    EXPECT_FALSE(SameConfig(base, *other)) << other->DebugString();
    EXPECT_FALSE(SameConfig(*other, base)) << other->DebugString();
  }
  EXPECT_FALSE(SameConfig(base, Snap(1, {})));
  EXPECT_FALSE(SameConfig(Snap(1, {}), base));
}

TEST(SameConfigTest, DetectsSourcesOutOfStepWithValues) {
  // Same values, but one side is missing a source entry.
  auto a = Snap(1, {{"app", {{"k", {"v", "global"}}}}});
  ConfigSnapshot b = a;
  (*b.mutable_modules())["app"].mutable_sources()->clear();
  EXPECT_FALSE(SameConfig(a, b));
  EXPECT_FALSE(SameConfig(b, a));
}

TEST(SameConfigTest, ResolvedTwiceIsSame) {
  std::vector<Override> all = {Make(Global(), "app", "a", "1"),
                               Make(Selector("env=prod"), "app", "a", "2")};
  EXPECT_TRUE(SameConfig(ResolveHostConfig(all, "h1", kProdWeb, kApp),
                         ResolveHostConfig(all, "h1", kProdWeb, kApp)));
  // The same value from another scope is a different config (the source changed).
  std::vector<Override> other = {Make(Global(), "app", "a", "2")};
  EXPECT_FALSE(SameConfig(ResolveHostConfig(all, "h1", kProdWeb, kApp),
                          ResolveHostConfig(other, "h1", kProdWeb, kApp)));
}

// ---------------------------------------------------------------------------------------
// SourceName

TEST(SourceNameTest, Names) {
  EXPECT_EQ(SourceName(Global()), "global");
  EXPECT_EQ(SourceName(HostScope("h1")), "host");
  EXPECT_EQ(SourceName(Selector("env=prod")), "selector:env=prod");
  EXPECT_EQ(SourceName(Selector(" role=web , env = prod ")), "selector:env=prod,role=web");
  EXPECT_EQ(SourceName(Scope()), "unknown");
  // A selector that does not parse is shown as given.
  EXPECT_EQ(SourceName(Selector("bad sel")), "selector:bad sel");
}

// Deployments resolve with config's precedence, for every host they match (installed or
// not), and carry where they were declared; a value that does not parse is ignored.
TEST(ResolveDeployments, HighestScopeWinsForEveryMatchingHost) {
  auto deploy = [](const Scope& scope, const std::string& name, const std::string& source,
                   const std::string& version, int64_t at = 1000) {
    herd::v1::DeployRequest r;
    r.set_source(source);
    r.set_version(version);
    return Make(scope, kDeployModule, name, DeployValue(r), at);
  };
  std::vector<Override> all = {
      deploy(Global(), "mon", "pm2-server-monit@3.0.0", "3.0.0"),
      deploy(Selector("role=db"), "mon", "pm2-server-monit@3.1.0", "3.1.0"),
      deploy(HostScope("h3"), "mon", "/srv/mon.tgz", "9.0.0"),
      deploy(Selector("role=db"), "redis", "pm2-redis", ""),
      Make(Global(), kDeployModule, "junk", "{not json"),
  };
  const Labels web = {{"role", "web"}}, db = {{"role", "db"}};
  ConfigSnapshot h1 = ResolveHostConfig(all, "h1", web, {});
  ASSERT_EQ(h1.deployments().size(), 1u);
  EXPECT_EQ(h1.deployments().at("mon").version(), "3.0.0");
  EXPECT_EQ(h1.deployments().at("mon").scope(), "global");
  EXPECT_TRUE(h1.modules().empty()) << "a deployment is not config";
  ConfigSnapshot h2 = ResolveHostConfig(all, "h2", db, {});
  EXPECT_EQ(h2.deployments().at("mon").source(), "pm2-server-monit@3.1.0");
  EXPECT_EQ(h2.deployments().at("mon").scope(), "selector:role=db");
  EXPECT_EQ(h2.deployments().at("redis").version(), "");
  ConfigSnapshot h3 = ResolveHostConfig(all, "h3", db, {});
  EXPECT_EQ(h3.deployments().at("mon").source(), "/srv/mon.tgz");
  EXPECT_EQ(h3.deployments().at("mon").scope(), "host");
  EXPECT_FALSE(h3.deployments().contains("junk"));
}

// A rollout under way: the hosts it moved get its version, the others the declared one; the
// value round-trips, and pins without a rollout id or source are not followed.
TEST(ResolveDeployments, HostsARolloutMovedGetItsVersion) {
  herd::v1::DeployRequest base;
  base.set_source("m@1.0.0");
  base.set_version("1.0.0");
  DeployPins pins;
  pins.rollout_id = "ro-1";
  pins.to.set_source("m@2.0.0");
  pins.to.set_version("2.0.0");
  pins.hosts = {"h1"};
  std::vector<Override> all = {Make(Global(), kDeployModule, "m", DeployValue(base, &pins))};
  EXPECT_EQ(ResolveHostConfig(all, "h1", {}, {}).deployments().at("m").version(), "2.0.0");
  EXPECT_EQ(ResolveHostConfig(all, "h2", {}, {}).deployments().at("m").version(), "1.0.0");
  herd::v1::DesiredModule got;
  DeployPins back;
  ASSERT_TRUE(ParseDeployValue(all[0].value(), &got, nullptr, &back));
  EXPECT_EQ(got.version(), "1.0.0");
  EXPECT_EQ(back.rollout_id, "ro-1");
  EXPECT_EQ(back.to.source(), "m@2.0.0");
  EXPECT_EQ(back.hosts, std::set<std::string>{"h1"});
  const std::string h1 = "h1";
  EXPECT_TRUE(ParseDeployValue(R"({"source":"m","rollout":{"hosts":["h1"],"source":"x"}})",
                               &got, &h1));
  EXPECT_EQ(got.source(), "m") << "no rollout id: not followed";
  EXPECT_TRUE(ParseDeployValue(R"({"source":"m","rollout":"junk"})", &got, &h1));
}

TEST(NormalizeDeploy, NamesAndVersionsComeFromNpmSpecsAndBadSourcesAreRefused) {
  auto norm = [](const std::string& source, const std::string& name = "",
                 const std::string& version = "") {
    herd::v1::DeployRequest r;
    r.set_source(source);
    r.set_name(name);
    r.set_version(version);
    return NormalizeDeploy(r);
  };
  auto a = norm("pm2-server-monit@3.0.0");
  ASSERT_TRUE(a.ok()) << a.status();
  EXPECT_EQ(a->name(), "pm2-server-monit");
  EXPECT_EQ(a->version(), "3.0.0");
  auto range = norm("pm2-logrotate@^2");
  ASSERT_TRUE(range.ok());
  EXPECT_EQ(range->version(), "") << "a range is no version to reach";
  auto scoped = norm("@acme/probe@1.2.3");
  ASSERT_TRUE(scoped.ok());
  EXPECT_EQ(scoped->name(), "probe");
  EXPECT_THAT(std::string(norm("/srv/m.tgz").status().message()),
              ::testing::HasSubstr("--name"));
  EXPECT_TRUE(norm("/srv/m.tgz", "m", "1.0.0").ok());
  EXPECT_FALSE(norm("/srv/../etc/m.tgz", "m").ok());
  EXPECT_FALSE(norm("/srv/..", "m").ok());
  EXPECT_FALSE(norm("/srv/m\x9f.tgz", "m").ok()) << "not UTF-8";
  EXPECT_FALSE(norm("relative/m.tgz", "m").ok());
  EXPECT_FALSE(norm("").ok());
  EXPECT_FALSE(norm("x@1.0.0", "bad name").ok());
  EXPECT_FALSE(norm("x", "x", "latest").ok());
  EXPECT_FALSE(norm(std::string(5000, 'a')).ok());
  // An uploaded artifact: its digest, with the name and version the control plane read.
  const std::string digest(64, 'a');
  EXPECT_TRUE(norm("sha256:" + digest, "m", "1.0.0").ok());
  EXPECT_THAT(std::string(norm("sha256:" + digest).status().message()),
              ::testing::HasSubstr("name and version"));
  EXPECT_FALSE(norm("sha256:" + digest.substr(1), "m", "1.0.0").ok());
  EXPECT_FALSE(norm("sha256:" + std::string(64, 'A'), "m", "1.0.0").ok());
}

}  // namespace
}  // namespace herd::controlplane
