// The contract every Store backend must meet (see store.h). Backends are instantiated at
// the bottom; a new backend adds one INSTANTIATE_TEST_SUITE_P line.
#include "tests/controlplane/store_contract_test.h"

#include <gmock/gmock.h>
#include <google/protobuf/util/message_differencer.h>
#include <gtest/gtest.h>

#include <algorithm>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/str_cat.h"
#include "controlplane/store/store.h"
#include "tests/controlplane/etcd_store_backends.h"

namespace herd::controlplane::testing {
namespace {

using ::testing::ElementsAre;
using ::testing::HasSubstr;

bool ProtoEq(const google::protobuf::Message& a, const google::protobuf::Message& b) {
  return google::protobuf::util::MessageDifferencer::Equals(a, b);
}

herd::v1::Scope Global() {
  herd::v1::Scope s;
  s.set_global(true);
  return s;
}
herd::v1::Scope Selector(const std::string& sel) {
  herd::v1::Scope s;
  s.set_selector(sel);
  return s;
}
herd::v1::Scope Host(const std::string& id) {
  herd::v1::Scope s;
  s.set_host_id(id);
  return s;
}

herd::v1::Override Ov(const herd::v1::Scope& scope, const std::string& module,
                      const std::string& key, const std::string& value,
                      int64_t at = 1000, const std::string& by = "alice") {
  herd::v1::Override o;
  *o.mutable_scope() = scope;
  o.set_module(module);
  o.set_key(key);
  o.set_value(value);
  o.set_updated_at_unix_ms(at);
  o.set_updated_by(by);
  return o;
}

// "<scope> <module>.<key>=<value>" for readable ordering assertions.
std::vector<std::string> Describe(const std::vector<herd::v1::Override>& overrides) {
  std::vector<std::string> out;
  for (const auto& o : overrides) {
    out.push_back(absl::StrCat(ScopeText(o.scope()), " ", o.module(), ".", o.key(), "=",
                               o.value()));
  }
  return out;
}

herd::v1::ModuleInventory Module(const std::string& name, const std::string& version) {
  herd::v1::ModuleInventory m;
  m.set_name(name);
  m.set_version(version);
  m.set_source(absl::StrCat("npm:", name, "@", version));
  m.set_defaults_json(R"({"interval": 5, "greeting": "hé\u0000llo"})");
  return m;
}

HostRecord MakeHost(const std::string& id) {
  HostRecord h;
  h.host_id = id;
  h.hostname = absl::StrCat(id, ".example.net");
  h.labels = {{"env", "prod"}, {"region", "eu-west"}, {"empty", ""}};
  h.credential_sha256 = std::string(64, 'a');
  h.agent_version = "0.1.0";
  h.boot_id = "3f1c-boot";
  h.registered_at_unix_ms = 1'700'000'000'000;
  h.last_seen_unix_ms = 1'700'000'123'456;
  h.acked_config_version = 42;
  h.modules = {Module("weather", "1.2.0"), Module("alpha", "0.0.1")};
  return h;
}

herd::v1::Rollout MakeRollout(const std::string& id, int64_t created_at) {
  herd::v1::Rollout r;
  r.set_id(id);
  r.set_module("weather");
  r.set_batch_size(2);
  r.set_max_unavailable(1);
  r.set_wait_healthy_ms(5000);
  r.set_failure_threshold(3);
  r.set_batches(4);
  r.set_current_batch(1);
  r.set_created_at_unix_ms(created_at);
  r.set_created_by("ci");
  return r;
}

ApiToken MakeToken(const std::string& name, Role role) {
  ApiToken t;
  t.name = name;
  t.role = role;
  t.secret_sha256 = absl::StrCat("sha-of-", name);
  t.created_at_unix_ms = 1234;
  return t;
}

herd::v1::AuditEntry Audit(int64_t at, const std::string& action) {
  herd::v1::AuditEntry e;
  e.set_at_unix_ms(at);
  e.set_actor("alice");
  e.set_action(action);
  e.set_detail_json(R"({"module":"weather"})");
  return e;
}

std::vector<std::string> AuditActions(const std::vector<herd::v1::AuditEntry>& entries) {
  std::vector<std::string> out;
  for (const auto& e : entries) out.push_back(e.action());
  return out;
}

// --------------------------------------------------------------------------------- hosts

TEST_P(StoreContractTest, HostRoundTripsEveryField) {
  HostRecord h = MakeHost("h1");
  HERD_ASSERT_OK(store().PutHost(h));
  HostRecord got = Must(store().GetHost("h1"));
  EXPECT_TRUE(got == h);
  EXPECT_EQ(got.labels, h.labels);
  ASSERT_EQ(got.modules.size(), 2u);
  EXPECT_EQ(got.modules[0].name(), "weather");  // reported order kept
  EXPECT_EQ(got.modules[1].name(), "alpha");
  EXPECT_EQ(got.modules[0].defaults_json(), h.modules[0].defaults_json());
  EXPECT_EQ(got.acked_config_version, 42u);
}

TEST_P(StoreContractTest, HostWithoutLabelsOrModules) {
  HostRecord h;
  h.host_id = "bare";
  HERD_ASSERT_OK(store().PutHost(h));
  HostRecord got = Must(store().GetHost("bare"));
  EXPECT_TRUE(got == h);
  EXPECT_TRUE(got.labels.empty());
  EXPECT_TRUE(got.modules.empty());
}

TEST_P(StoreContractTest, MissingHostIsNotFound) {
  EXPECT_EQ(store().GetHost("nope").status().code(), absl::StatusCode::kNotFound);
  EXPECT_EQ(store().DeleteHost("nope").code(), absl::StatusCode::kNotFound);
}

TEST_P(StoreContractTest, PutHostReplacesWholeRecord) {
  HERD_ASSERT_OK(store().PutHost(MakeHost("h1")));
  HostRecord h2 = MakeHost("h1");
  h2.hostname = "renamed";
  h2.labels = {{"env", "staging"}};  // "region" and "empty" must go
  h2.modules = {Module("beta", "2.0.0")};
  h2.acked_config_version = 43;
  HERD_ASSERT_OK(store().PutHost(h2));
  HostRecord got = Must(store().GetHost("h1"));
  EXPECT_TRUE(got == h2);
  EXPECT_EQ(got.labels.size(), 1u);
  ASSERT_EQ(got.modules.size(), 1u);
  EXPECT_EQ(got.modules[0].name(), "beta");
  EXPECT_EQ(Must(store().ListHosts()).size(), 1u);
}

TEST_P(StoreContractTest, ListHostsSortedById) {
  for (const char* id : {"m", "a", "z", "b0", "b"}) HERD_ASSERT_OK(store().PutHost(MakeHost(id)));
  std::vector<std::string> ids;
  for (const auto& h : Must(store().ListHosts())) ids.push_back(h.host_id);
  EXPECT_THAT(ids, ElementsAre("a", "b", "b0", "m", "z"));
  // Each listed record is complete.
  for (const auto& h : Must(store().ListHosts())) EXPECT_TRUE(h == MakeHost(h.host_id));
}

TEST_P(StoreContractTest, DeleteHostRemovesItAndItsChildren) {
  HERD_ASSERT_OK(store().PutHost(MakeHost("h1")));
  HERD_ASSERT_OK(store().PutHost(MakeHost("h2")));
  HERD_ASSERT_OK(store().DeleteHost("h1"));
  EXPECT_EQ(store().GetHost("h1").status().code(), absl::StatusCode::kNotFound);
  EXPECT_EQ(store().DeleteHost("h1").code(), absl::StatusCode::kNotFound);
  ASSERT_EQ(Must(store().ListHosts()).size(), 1u);
  // Registering again starts clean: no labels or modules left over.
  HostRecord bare;
  bare.host_id = "h1";
  HERD_ASSERT_OK(store().PutHost(bare));
  HostRecord got = Must(store().GetHost("h1"));
  EXPECT_TRUE(got.labels.empty());
  EXPECT_TRUE(got.modules.empty());
  EXPECT_TRUE(Must(store().GetHost("h2")) == MakeHost("h2"));
}

TEST_P(StoreContractTest, HostWithEmptyIdRefused) {
  HostRecord h = MakeHost("");
  EXPECT_EQ(store().PutHost(h).code(), absl::StatusCode::kInvalidArgument);
  EXPECT_TRUE(Must(store().ListHosts()).empty());
}

TEST_P(StoreContractTest, PutHostsWritesEveryRecord) {
  HERD_ASSERT_OK(store().PutHost(MakeHost("h1")));
  HostRecord h1 = MakeHost("h1");
  h1.acked_config_version = 7;
  h1.labels = {{"env", "staging"}};
  HERD_ASSERT_OK(store().PutHosts({h1, MakeHost("h2"), MakeHost("h3")}));
  EXPECT_TRUE(Must(store().GetHost("h1")) == h1);
  EXPECT_TRUE(Must(store().GetHost("h2")) == MakeHost("h2"));
  EXPECT_EQ(Must(store().ListHosts()).size(), 3u);
  HERD_EXPECT_OK(store().PutHosts({}));
}

TEST_P(StoreContractTest, PutHostsWritesNothingWhenOneRecordIsBad) {
  HERD_ASSERT_OK(store().PutHost(MakeHost("h1")));
  HostRecord changed = MakeHost("h1");
  changed.hostname = "renamed";
  EXPECT_EQ(store().PutHosts({changed, MakeHost("h2"), MakeHost("")}).code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_TRUE(Must(store().GetHost("h1")) == MakeHost("h1"));
  EXPECT_EQ(store().GetHost("h2").status().code(), absl::StatusCode::kNotFound);
}

TEST_P(StoreContractTest, PutHostStatusUpdatesOnlyTheStatusOfStoredHosts) {
  HERD_ASSERT_OK(store().PutHost(MakeHost("h1")));
  HostStatus st;
  st.host_id = "h1";
  st.last_seen_unix_ms = 123456;
  st.acked_config_version = 99;
  HostStatus ghost;
  ghost.host_id = "ghost";
  HERD_ASSERT_OK(store().PutHostStatus({st, ghost}));
  HostRecord want = MakeHost("h1");
  want.last_seen_unix_ms = 123456;
  want.acked_config_version = 99;
  EXPECT_TRUE(Must(store().GetHost("h1")) == want);  // labels and modules kept
  EXPECT_EQ(store().GetHost("ghost").status().code(), absl::StatusCode::kNotFound);
  HostStatus empty;
  EXPECT_EQ(store().PutHostStatus({empty}).code(), absl::StatusCode::kInvalidArgument);
}

// ----------------------------------------------------------------------------- overrides

TEST_P(StoreContractTest, RevisionStartsAtZero) {
  EXPECT_EQ(Must(store().ConfigRevision()), 0u);
  EXPECT_TRUE(Must(store().ListOverrides()).empty());
}

TEST_P(StoreContractTest, RevisionCountsOnlyRealChanges) {
  ConfigWrite w = Must(store().SetOverride(Ov(Global(), "weather", "interval", "5")));
  EXPECT_TRUE(w.changed);
  EXPECT_EQ(w.revision, 1u);

  w = Must(store().SetOverride(Ov(Global(), "weather", "interval", "5", 2000, "bob")));
  EXPECT_FALSE(w.changed) << "same value is not a change";
  EXPECT_EQ(w.revision, 1u);

  w = Must(store().SetOverride(Ov(Global(), "weather", "interval", "10")));
  EXPECT_TRUE(w.changed);
  EXPECT_EQ(w.revision, 2u);

  w = Must(store().UnsetOverride(Global(), "weather", "interval"));
  EXPECT_TRUE(w.changed);
  EXPECT_EQ(w.revision, 3u);

  w = Must(store().UnsetOverride(Global(), "weather", "interval"));
  EXPECT_FALSE(w.changed) << "unset of a missing override";
  EXPECT_EQ(w.revision, 3u);

  w = Must(store().UnsetOverride(Host("h9"), "never", "set"));
  EXPECT_FALSE(w.changed);
  EXPECT_EQ(w.revision, 3u);

  EXPECT_EQ(Must(store().ConfigRevision()), 3u);
  EXPECT_TRUE(Must(store().ListOverrides()).empty());
}

TEST_P(StoreContractTest, SetSameValueKeepsTheOverride) {
  Must(store().SetOverride(Ov(Global(), "weather", "interval", "5", 1000, "alice")));
  Must(store().SetOverride(Ov(Global(), "weather", "interval", "5", 2000, "bob")));
  auto all = Must(store().ListOverrides());
  ASSERT_EQ(all.size(), 1u);
  EXPECT_EQ(all[0].value(), "5");
}

TEST_P(StoreContractTest, EmptyValueIsAValue) {
  ConfigWrite w = Must(store().SetOverride(Ov(Global(), "weather", "greeting", "")));
  EXPECT_TRUE(w.changed);
  auto all = Must(store().ListOverrides());
  ASSERT_EQ(all.size(), 1u);
  EXPECT_EQ(all[0].value(), "");
  w = Must(store().SetOverride(Ov(Global(), "weather", "greeting", "")));
  EXPECT_FALSE(w.changed);
}

TEST_P(StoreContractTest, OverrideFieldsRoundTrip) {
  herd::v1::Override o = Ov(Selector("env=prod,region in (eu, us)"), "weather", "units",
                            R"({"a": [1, 2]})", 1'700'000'000'001, "ci-token");
  Must(store().SetOverride(o));
  auto all = Must(store().ListOverrides());
  ASSERT_EQ(all.size(), 1u);
  EXPECT_TRUE(ProtoEq(all[0], o)) << all[0].DebugString();

  // A real change stores the new who/when.
  Must(store().SetOverride(Ov(Selector("env=prod,region in (eu, us)"), "weather", "units",
                              "metric", 5, "bob")));
  all = Must(store().ListOverrides());
  ASSERT_EQ(all.size(), 1u);
  EXPECT_EQ(all[0].value(), "metric");
  EXPECT_EQ(all[0].updated_at_unix_ms(), 5);
  EXPECT_EQ(all[0].updated_by(), "bob");
}

TEST_P(StoreContractTest, ScopesAreDistinct) {
  Must(store().SetOverride(Ov(Global(), "weather", "interval", "5")));
  Must(store().SetOverride(Ov(Host("h1"), "weather", "interval", "1")));
  Must(store().SetOverride(Ov(Selector("env=prod"), "weather", "interval", "3")));
  // A selector whose text looks like a host id is still a selector.
  Must(store().SetOverride(Ov(Selector("h1"), "weather", "interval", "2")));
  EXPECT_EQ(Must(store().ConfigRevision()), 4u);
  EXPECT_THAT(Describe(Must(store().ListOverrides())),
              ElementsAre("global weather.interval=5", "selector:env=prod weather.interval=3",
                          "selector:h1 weather.interval=2", "host:h1 weather.interval=1"));

  ConfigWrite w = Must(store().UnsetOverride(Host("h1"), "weather", "interval"));
  EXPECT_TRUE(w.changed);
  EXPECT_THAT(Describe(Must(store().ListOverrides())),
              ElementsAre("global weather.interval=5", "selector:env=prod weather.interval=3",
                          "selector:h1 weather.interval=2"));
}

TEST_P(StoreContractTest, ListOverridesOrder) {
  // Inserted out of order on purpose.
  Must(store().SetOverride(Ov(Host("h2"), "weather", "b", "1")));
  Must(store().SetOverride(Ov(Host("h1"), "weather", "z", "1")));
  Must(store().SetOverride(Ov(Selector("role=web"), "weather", "a", "1")));
  Must(store().SetOverride(Ov(Global(), "weather", "z", "1")));
  Must(store().SetOverride(Ov(Global(), "weather", "a", "1")));
  Must(store().SetOverride(Ov(Selector("env=prod"), "weather", "z", "1")));
  Must(store().SetOverride(Ov(Host("h1"), "weather", "a", "1")));
  Must(store().SetOverride(Ov(Host("h0"), "alpha", "k", "1")));
  Must(store().SetOverride(Ov(Global(), "zeta", "k", "1")));
  EXPECT_THAT(Describe(Must(store().ListOverrides())),
              ElementsAre("host:h0 alpha.k=1",            //
                          "global weather.a=1",           //
                          "global weather.z=1",           //
                          "selector:env=prod weather.z=1",  //
                          "selector:role=web weather.a=1",  //
                          "host:h1 weather.a=1",          //
                          "host:h1 weather.z=1",          //
                          "host:h2 weather.b=1",          //
                          "global zeta.k=1"));
}

TEST_P(StoreContractTest, ListOverridesFiltersByModule) {
  Must(store().SetOverride(Ov(Global(), "weather", "a", "1")));
  Must(store().SetOverride(Ov(Host("h1"), "weather", "b", "2")));
  Must(store().SetOverride(Ov(Global(), "alpha", "a", "3")));
  Must(store().SetOverride(Ov(Global(), "weather2", "a", "4")));  // not a prefix match
  EXPECT_THAT(Describe(Must(store().ListOverrides("weather"))),
              ElementsAre("global weather.a=1", "host:h1 weather.b=2"));
  EXPECT_THAT(Describe(Must(store().ListOverrides("alpha"))), ElementsAre("global alpha.a=3"));
  EXPECT_TRUE(Must(store().ListOverrides("nothing")).empty());
  EXPECT_EQ(Must(store().ListOverrides()).size(), 4u);
  EXPECT_EQ(Must(store().ListOverrides("")).size(), 4u);
}

TEST_P(StoreContractTest, InvalidScopeRefused) {
  herd::v1::Scope none;
  for (const herd::v1::Scope& bad : {none, Selector(""), Host("")}) {
    SCOPED_TRACE(bad.DebugString());
    EXPECT_EQ(store().SetOverride(Ov(bad, "weather", "k", "v")).status().code(),
              absl::StatusCode::kInvalidArgument);
    EXPECT_EQ(store().UnsetOverride(bad, "weather", "k").status().code(),
              absl::StatusCode::kInvalidArgument);
  }
  EXPECT_EQ(Must(store().ConfigRevision()), 0u);
  EXPECT_TRUE(Must(store().ListOverrides()).empty());
}

TEST_P(StoreContractTest, EmptyModuleOrKeyRefused) {
  EXPECT_EQ(store().SetOverride(Ov(Global(), "", "k", "v")).status().code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(store().SetOverride(Ov(Global(), "weather", "", "v")).status().code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(store().UnsetOverride(Global(), "", "k").status().code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(store().UnsetOverride(Global(), "weather", "").status().code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(Must(store().ConfigRevision()), 0u);
  EXPECT_TRUE(Must(store().ListOverrides()).empty());
}

TEST_P(StoreContractTest, RevisionNeverGoesBackAcrossReopen) {
  Must(store().SetOverride(Ov(Global(), "weather", "a", "1")));
  Must(store().SetOverride(Ov(Global(), "weather", "b", "1")));
  Must(store().UnsetOverride(Global(), "weather", "a"));
  Must(store().UnsetOverride(Global(), "weather", "b"));
  EXPECT_EQ(Must(store().ConfigRevision()), 4u);
  Reopen();
  EXPECT_EQ(Must(store().ConfigRevision()), 4u) << "deletes must not lower the revision";
  ConfigWrite w = Must(store().SetOverride(Ov(Global(), "weather", "a", "1")));
  EXPECT_EQ(w.revision, 5u);
  Reopen();
  EXPECT_EQ(Must(store().ConfigRevision()), 5u);
}

// ------------------------------------------------------------------------------ rollouts

TEST_P(StoreContractTest, RolloutRoundTrip) {
  herd::v1::Rollout r = MakeRollout("r1", 100);
  r.mutable_target()->set_selector("env=prod");
  r.set_state(herd::v1::ROLLOUT_STATE_FAILED);
  herd::v1::RolloutHost* rh = r.add_hosts();
  rh->set_host_id("h1");
  rh->set_hostname("h1.example.net");
  rh->set_batch(2);
  rh->set_error("unhealthy after 5s");
  r.set_reason("because");
  HERD_ASSERT_OK(store().PutRollout(r));
  herd::v1::Rollout got = Must(store().GetRollout("r1"));
  EXPECT_TRUE(ProtoEq(got, r)) << got.DebugString();
  EXPECT_EQ(store().GetRollout("r2").status().code(), absl::StatusCode::kNotFound);
}

TEST_P(StoreContractTest, PutRolloutReplaces) {
  HERD_ASSERT_OK(store().PutRollout(MakeRollout("r1", 100)));
  herd::v1::Rollout r = MakeRollout("r1", 100);
  r.set_current_batch(4);
  r.set_finished_at_unix_ms(900);
  HERD_ASSERT_OK(store().PutRollout(r));
  EXPECT_TRUE(ProtoEq(Must(store().GetRollout("r1")), r));
  EXPECT_EQ(Must(store().ListRollouts(10)).size(), 1u);
}

TEST_P(StoreContractTest, ListRolloutsMostRecentFirstWithLimit) {
  HERD_ASSERT_OK(store().PutRollout(MakeRollout("old", 100)));
  HERD_ASSERT_OK(store().PutRollout(MakeRollout("newest", 300)));
  HERD_ASSERT_OK(store().PutRollout(MakeRollout("mid", 200)));
  // Updating an old rollout does not make it recent.
  herd::v1::Rollout old = MakeRollout("old", 100);
  old.set_current_batch(3);
  HERD_ASSERT_OK(store().PutRollout(old));

  auto ids = [](const std::vector<herd::v1::Rollout>& rs) {
    std::vector<std::string> out;
    for (const auto& r : rs) out.push_back(r.id());
    return out;
  };
  EXPECT_THAT(ids(Must(store().ListRollouts(10))), ElementsAre("newest", "mid", "old"));
  EXPECT_THAT(ids(Must(store().ListRollouts(2))), ElementsAre("newest", "mid"));
  EXPECT_TRUE(Must(store().ListRollouts(0)).empty());
  EXPECT_EQ(Must(store().ListRollouts(10)).back().current_batch(), 3u);
}

// -------------------------------------------------------------------------------- tokens

TEST_P(StoreContractTest, TokenAddAndFindBySecretHash) {
  HERD_ASSERT_OK(store().AddToken(MakeToken("ci", Role::kOperator)));
  HERD_ASSERT_OK(store().AddToken(MakeToken("viewer", Role::kViewer)));
  ApiToken t = Must(store().FindTokenBySecretHash("sha-of-ci"));
  EXPECT_EQ(t.name, "ci");
  EXPECT_EQ(t.role, Role::kOperator);
  EXPECT_EQ(t.secret_sha256, "sha-of-ci");
  EXPECT_EQ(t.created_at_unix_ms, 1234);
  EXPECT_EQ(Must(store().FindTokenBySecretHash("sha-of-viewer")).role, Role::kViewer);
  EXPECT_EQ(store().FindTokenBySecretHash("sha-of-nobody").status().code(),
            absl::StatusCode::kNotFound);
  EXPECT_EQ(store().FindTokenBySecretHash("").status().code(), absl::StatusCode::kNotFound);
}

TEST_P(StoreContractTest, DuplicateTokenNameAlreadyExists) {
  HERD_ASSERT_OK(store().AddToken(MakeToken("ci", Role::kViewer)));
  ApiToken again = MakeToken("ci", Role::kOperator);
  again.secret_sha256 = "another-secret";
  absl::Status st = store().AddToken(again);
  EXPECT_EQ(st.code(), absl::StatusCode::kAlreadyExists) << st;
  EXPECT_THAT(std::string(st.message()), HasSubstr("ci"));
  // The first one is untouched.
  EXPECT_EQ(Must(store().FindTokenBySecretHash("sha-of-ci")).role, Role::kViewer);
  EXPECT_EQ(store().FindTokenBySecretHash("another-secret").status().code(),
            absl::StatusCode::kNotFound);
}

TEST_P(StoreContractTest, ListTokensSortedByName) {
  for (const char* n : {"zed", "alice", "ci", "bob"}) {
    HERD_ASSERT_OK(store().AddToken(MakeToken(n, Role::kViewer)));
  }
  std::vector<std::string> names;
  for (const auto& t : Must(store().ListTokens())) names.push_back(t.name);
  EXPECT_THAT(names, ElementsAre("alice", "bob", "ci", "zed"));
}

TEST_P(StoreContractTest, DeleteToken) {
  HERD_ASSERT_OK(store().AddToken(MakeToken("ci", Role::kOperator)));
  HERD_ASSERT_OK(store().DeleteToken("ci"));
  EXPECT_EQ(store().FindTokenBySecretHash("sha-of-ci").status().code(),
            absl::StatusCode::kNotFound);
  EXPECT_TRUE(Must(store().ListTokens()).empty());
  EXPECT_EQ(store().DeleteToken("ci").code(), absl::StatusCode::kNotFound);
  // The name is free again.
  HERD_EXPECT_OK(store().AddToken(MakeToken("ci", Role::kViewer)));
}

// --------------------------------------------------------------------------------- audit

TEST_P(StoreContractTest, AuditMostRecentFirstWithLimit) {
  HERD_ASSERT_OK(store().AppendAudit(Audit(100, "a")));
  HERD_ASSERT_OK(store().AppendAudit(Audit(300, "c")));
  HERD_ASSERT_OK(store().AppendAudit(Audit(200, "b")));  // clock stepped back
  HERD_ASSERT_OK(store().AppendAudit(Audit(300, "d")));  // same ms: insertion order
  EXPECT_THAT(AuditActions(Must(store().ListAudit(100))), ElementsAre("d", "c", "b", "a"));
  EXPECT_THAT(AuditActions(Must(store().ListAudit(2))), ElementsAre("d", "c"));
  EXPECT_TRUE(Must(store().ListAudit(0)).empty());
  herd::v1::AuditEntry first = Must(store().ListAudit(100)).back();
  EXPECT_TRUE(ProtoEq(first, Audit(100, "a")));
}

// Several entries appended in one call keep their order, after what was there, and more
// than one etcd Txn holds (the etcd store cuts them into Txns of at most 32).
TEST_P(StoreContractTest, AuditAppendsSeveralInOrder) {
  HERD_ASSERT_OK(store().AppendAudit(Audit(100, "first")));
  std::vector<herd::v1::AuditEntry> many;
  for (int i = 0; i < 70; ++i) many.push_back(Audit(200, absl::StrCat("e", i)));
  HERD_ASSERT_OK(store().AppendAudits(many));
  HERD_ASSERT_OK(store().AppendAudits({}));
  std::vector<std::string> listed = AuditActions(Must(store().ListAudit(100)));
  ASSERT_EQ(listed.size(), 71u);
  EXPECT_EQ(listed.front(), "e69");  // newest first
  EXPECT_EQ(listed[69], "e0");
  EXPECT_EQ(listed.back(), "first");
}

// ------------------------------------------------------------------------------ settings

TEST_P(StoreContractTest, Settings) {
  EXPECT_EQ(Must(store().GetSetting("join_token_sha256")), std::nullopt);
  HERD_ASSERT_OK(store().PutSetting("join_token_sha256", "abc"));
  EXPECT_EQ(Must(store().GetSetting("join_token_sha256")), "abc");
  HERD_ASSERT_OK(store().PutSetting("join_token_sha256", "def"));
  EXPECT_EQ(Must(store().GetSetting("join_token_sha256")), "def");
  HERD_ASSERT_OK(store().PutSetting("empty", ""));
  EXPECT_EQ(Must(store().GetSetting("empty")), std::optional<std::string>(""));
  EXPECT_EQ(Must(store().GetSetting("other")), std::nullopt);
}

// ---------------------------------------------------------------------------- durability

TEST_P(StoreContractTest, EverythingSurvivesReopen) {
  HERD_ASSERT_OK(store().PutHost(MakeHost("h1")));
  HERD_ASSERT_OK(store().PutHost(MakeHost("h2")));
  Must(store().SetOverride(Ov(Global(), "weather", "interval", "5")));
  Must(store().SetOverride(Ov(Host("h1"), "weather", "interval", "1", 77, "bob")));
  HERD_ASSERT_OK(store().PutRollout(MakeRollout("r1", 100)));
  HERD_ASSERT_OK(store().AddToken(MakeToken("ci", Role::kOperator)));
  HERD_ASSERT_OK(store().AppendAudit(Audit(100, "config.set")));
  HERD_ASSERT_OK(store().PutSetting("k", "v"));
  auto overrides_before = Must(store().ListOverrides());

  Reopen();
  Reopen();  // twice: a reopened store reopens too

  auto hosts = Must(store().ListHosts());
  ASSERT_EQ(hosts.size(), 2u);
  EXPECT_TRUE(hosts[0] == MakeHost("h1"));
  EXPECT_TRUE(hosts[1] == MakeHost("h2"));
  EXPECT_EQ(Must(store().ConfigRevision()), 2u);
  auto overrides = Must(store().ListOverrides());
  ASSERT_EQ(overrides.size(), overrides_before.size());
  for (size_t i = 0; i < overrides.size(); ++i) {
    EXPECT_TRUE(ProtoEq(overrides[i], overrides_before[i]));
  }
  EXPECT_TRUE(ProtoEq(Must(store().GetRollout("r1")), MakeRollout("r1", 100)));
  EXPECT_EQ(Must(store().FindTokenBySecretHash("sha-of-ci")).name, "ci");
  EXPECT_THAT(AuditActions(Must(store().ListAudit(10))), ElementsAre("config.set"));
  EXPECT_EQ(Must(store().GetSetting("k")), "v");
}

// --------------------------------------------------------------------------- concurrency

TEST_P(StoreContractTest, ConcurrentWritersEachChangeCountsOnce) {
  constexpr int kThreads = 4;
  constexpr int kPerThread = 50;
  std::mutex mu;
  std::vector<uint64_t> revisions;
  std::vector<std::string> errors;
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&, t] {
      for (int i = 0; i < kPerThread; ++i) {
        herd::v1::Scope scope = t % 2 == 0 ? Global() : Host(absl::StrCat("h", t));
        auto w = store().SetOverride(
            Ov(scope, "weather", absl::StrCat("t", t, "-k", i), absl::StrCat(i)));
        // Readers interleave with the writers.
        auto listed = store().ListOverrides("weather");
        std::lock_guard lock(mu);
        if (!w.ok()) {
          errors.push_back(w.status().ToString());
        } else {
          revisions.push_back(w->revision);
        }
        if (!listed.ok()) errors.push_back(listed.status().ToString());
      }
    });
  }
  for (auto& th : threads) th.join();
  ASSERT_TRUE(errors.empty()) << errors.front();
  constexpr uint64_t kTotal = kThreads * kPerThread;
  EXPECT_EQ(Must(store().ConfigRevision()), kTotal);
  EXPECT_EQ(Must(store().ListOverrides()).size(), kTotal);
  // Every write got its own revision: 1..200, no duplicates, no gaps.
  std::sort(revisions.begin(), revisions.end());
  ASSERT_EQ(revisions.size(), kTotal);
  for (uint64_t i = 0; i < kTotal; ++i) EXPECT_EQ(revisions[i], i + 1);
}

TEST_P(StoreContractTest, ConcurrentMixedOperations) {
  std::vector<std::thread> threads;
  std::mutex mu;
  std::vector<std::string> errors;
  auto record = [&](const absl::Status& st) {
    if (st.ok()) return;
    std::lock_guard lock(mu);
    errors.push_back(st.ToString());
  };
  for (int t = 0; t < 4; ++t) {
    threads.emplace_back([&, t] {
      for (int i = 0; i < 25; ++i) {
        std::string id = absl::StrCat("t", t, "-", i);
        record(store().PutHost(MakeHost(id)));
        record(store().GetHost(id).status());
        record(store().AppendAudit(Audit(i, id)));
        record(store().PutRollout(MakeRollout(id, i)));
        record(store().ListHosts().status());
        record(store().PutSetting(id, id));
      }
    });
  }
  for (auto& th : threads) th.join();
  ASSERT_TRUE(errors.empty()) << errors.front();
  EXPECT_EQ(Must(store().ListHosts()).size(), 100u);
  EXPECT_EQ(Must(store().ListAudit(1000)).size(), 100u);
  EXPECT_EQ(Must(store().ListRollouts(1000)).size(), 100u);
  for (const auto& h : Must(store().ListHosts())) EXPECT_TRUE(h == MakeHost(h.host_id));
}

// ------------------------------------------------------------------------------ backends

INSTANTIATE_TEST_SUITE_P(
    Sqlite, StoreContractTest,
    ::testing::Values(StoreBackend{
        "sqlite",
        [](const std::string& dir) { return OpenSqliteStore(dir + "/controlplane.db"); }}),
    StoreBackendName);

// The etcd store on the in-memory fake (fast, every test) and on a real etcd from Debian on
// loopback (one per test binary).
INSTANTIATE_TEST_SUITE_P(EtcdFake, StoreContractTest, ::testing::Values(FakeEtcdBackend()),
                         StoreBackendName);
INSTANTIATE_TEST_SUITE_P(Etcd, StoreContractTest, ::testing::Values(RealEtcdBackend()),
                         StoreBackendName);

}  // namespace
}  // namespace herd::controlplane::testing
