// What the etcd store does beyond the Store contract (etcd_store.h): Txns cut under etcd's
// limits, host status kept apart from the record, the config revision shared by several
// store instances, the token index, audit retention, and etcd's errors passed on unchanged.
// On the in-memory FakeEtcd, except where a real etcd is the point (tests named Real...).
#include "controlplane/store/etcd_store.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <atomic>
#include <functional>
#include <map>
#include <optional>
#include <utility>
#include <mutex>
#include <string>
#include <set>
#include <thread>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "controlplane/store/etcd_layout.h"
#include "controlplane/store/etcd_ops.h"
#include "tests/controlplane/etcd_store_backends.h"
#include "tests/controlplane/store_contract_test.h"
#include "tests/fakes/fake_etcd.h"
#include "tests/support/etcd_harness.h"

namespace herd::controlplane::testing {
namespace {

using ::testing::HasSubstr;
using herd::testing::FakeEtcd;

constexpr char kPrefix[] = "/herd";

HostRecord Host(const std::string& id, size_t pad = 0) {
  HostRecord h;
  h.host_id = id;
  h.hostname = id + ".example.net";
  h.labels = {{"env", "prod"}};
  h.acked_config_version = 1;
  herd::v1::ModuleInventory m;
  m.set_name("weather");
  m.set_defaults_json(std::string(pad, 'x'));
  h.modules = {m};
  return h;
}

herd::v1::Override Global(const std::string& key, const std::string& value) {
  herd::v1::Override o;
  o.mutable_scope()->set_global(true);
  o.set_module("weather");
  o.set_key(key);
  o.set_value(value);
  return o;
}

herd::v1::AuditEntry Audit(int64_t at, const std::string& action) {
  herd::v1::AuditEntry e;
  e.set_at_unix_ms(at);
  e.set_actor("alice");
  e.set_action(action);
  return e;
}

std::vector<std::string> Actions(const std::vector<herd::v1::AuditEntry>& entries) {
  std::vector<std::string> out;
  for (const auto& e : entries) out.push_back(e.action());
  return out;
}

// Four writers, two on each store, each making `per_writer` config changes at once: the
// revisions the calls returned, sorted (0 for a call that failed).
std::vector<uint64_t> ConcurrentChanges(Store& a, Store& b, int per_writer) {
  std::mutex mu;
  std::vector<uint64_t> revisions;
  std::vector<std::thread> threads;
  for (int t = 0; t < 4; ++t) {
    Store* store = t % 2 == 0 ? &a : &b;
    threads.emplace_back([&, store, t] {
      for (int i = 0; i < per_writer; ++i) {
        auto w = store->SetOverride(Global(absl::StrCat("t", t, "-", i), "v"));
        std::lock_guard lock(mu);
        revisions.push_back(w.ok() ? w->revision : 0);
      }
    });
  }
  for (auto& th : threads) th.join();
  std::sort(revisions.begin(), revisions.end());
  return revisions;
}

class EtcdStoreTest : public ::testing::Test {
 protected:
  std::unique_ptr<Store> Open(EtcdStoreOptions options = {}) {
    return Must(OpenEtcdStore(etcd_, kPrefix, std::move(options)), "opening the store");
  }
  size_t KeysUnder(const std::string& dir) const { return etcd_.Dump(dir).size(); }

  FakeEtcd etcd_;
  EtcdKeys keys_{kPrefix};
};

// ---------------------------------------------------------------------------- hosts

// One value that does not decode (written by hand, or by a newer version) is left out of a
// listing, not a failure of it: it must not keep every replica from starting.
TEST_F(EtcdStoreTest, AnUndecodableRecordIsLeftOutOfListings) {
  auto store = Open();
  HostRecord good;
  good.host_id = "good";
  good.hostname = "good.example";
  HERD_ASSERT_OK(store->PutHost(good));
  herd::v1::Rollout r;
  r.set_id("r1");
  HERD_ASSERT_OK(store->PutRollout(r));
  ASSERT_TRUE(etcd_.Put(absl::StrCat(kPrefix, "/hosts/bad"), "\xff\xff not a record").ok());
  ASSERT_TRUE(etcd_.Put(absl::StrCat(kPrefix, "/rollouts/bad"), "\xff\xff").ok());
  auto hosts = Must(store->ListHosts(), "listing hosts");
  ASSERT_EQ(hosts.size(), 1u);
  EXPECT_EQ(hosts[0].host_id, "good");
  auto rollouts = Must(store->ListRollouts(10), "listing rollouts");
  ASSERT_EQ(rollouts.size(), 1u);
  EXPECT_EQ(rollouts[0].id(), "r1");
  EXPECT_EQ(store->GetHost("bad").status().code(), absl::StatusCode::kDataLoss);
}

TEST_F(EtcdStoreTest, PutHostsCutsThousandsOfHostsIntoTxnsUnderEtcdsOpLimit) {
  auto store = Open();
  std::vector<HostRecord> hosts;
  for (int i = 0; i < 1000; ++i) hosts.push_back(Host(absl::StrCat("h", i)));
  const uint64_t txns_before = etcd_.counters().txns;
  HERD_ASSERT_OK(store->PutHosts(hosts));  // the fake refuses a Txn of more than 128 ops
  EXPECT_EQ(etcd_.counters().txns - txns_before, 8u);  // ceil(1000 / 128)
  EXPECT_EQ(Must(store->ListHosts()).size(), 1000u);
}

TEST_F(EtcdStoreTest, PutHostsCutsByBytesUnderEtcdsRequestLimit) {
  EtcdStoreOptions o;
  o.max_txn_bytes = 64 * 1024;
  auto store = Open(o);
  std::vector<HostRecord> hosts;
  for (int i = 0; i < 20; ++i) hosts.push_back(Host(absl::StrCat("h", i), 10 * 1024));
  etcd_.max_request_bytes = 70 * 1024;
  const uint64_t txns_before = etcd_.counters().txns;
  HERD_ASSERT_OK(store->PutHosts(hosts));
  EXPECT_GE(etcd_.counters().txns - txns_before, 4u);
  EXPECT_EQ(Must(store->ListHosts()).size(), 20u);
}

TEST_F(EtcdStoreTest, OversizedHostRecordIsRefusedNamingTheHostAndNothingIsWritten) {
  EtcdStoreOptions o;
  o.max_txn_bytes = 4096;
  auto store = Open(o);
  absl::Status s = store->PutHosts({Host("small"), Host("big", 8192)});
  EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(std::string(s.message()), HasSubstr("host big"));
  EXPECT_EQ(KeysUnder(keys_.HostsDir()), 0u);
}

TEST_F(EtcdStoreTest, PutHostsFailingPartWayKeepsWholeTxnsAndARetryCompletesIt) {
  EtcdStoreOptions o;
  o.max_txn_ops = 10;
  auto store = Open(o);
  std::vector<HostRecord> hosts;
  for (int i = 0; i < 30; ++i) hosts.push_back(Host(absl::StrCat("h", i)));
  // The second Txn is too large for etcd: the first stays written, whole.
  hosts[15] = Host("h15", 4000);
  etcd_.max_request_bytes = 3000;
  EXPECT_FALSE(store->PutHosts(hosts).ok());
  EXPECT_EQ(Must(store->ListHosts()).size(), 10u);
  etcd_.max_request_bytes = 1536 * 1024;
  HERD_ASSERT_OK(store->PutHosts(hosts));
  EXPECT_EQ(Must(store->ListHosts()).size(), 30u);
}

TEST_F(EtcdStoreTest, PutHostStatusWritesOnlyTheSmallStatusKeyAndSkipsUnknownHosts) {
  auto store = Open();
  std::vector<HostRecord> hosts;
  std::vector<HostStatus> status;
  for (int i = 0; i < 300; ++i) {
    hosts.push_back(Host(absl::StrCat("h", i)));
    status.push_back({absl::StrCat("h", i), 5000 + i, 7});
  }
  status.push_back({"ghost-1", 1, 1});
  status.insert(status.begin() + 150, {"ghost-2", 1, 1});
  HERD_ASSERT_OK(store->PutHosts(hosts));
  const std::string record_before = etcd_.Dump(keys_.Host("h3")).at(keys_.Host("h3"));
  HERD_ASSERT_OK(store->PutHostStatus(status));
  // The record is untouched; the status is its own key.
  EXPECT_EQ(etcd_.Dump(keys_.Host("h3")).at(keys_.Host("h3")), record_before);
  EXPECT_EQ(KeysUnder(keys_.HostsDir()), 600u);
  HostRecord h3 = Must(store->GetHost("h3"));
  EXPECT_EQ(h3.last_seen_unix_ms, 5003);
  EXPECT_EQ(h3.acked_config_version, 7u);
  EXPECT_EQ(h3.labels.at("env"), "prod");
  EXPECT_EQ(store->GetHost("ghost-1").status().code(), absl::StatusCode::kNotFound);
  EXPECT_TRUE(etcd_.Dump(keys_.HostStatus("ghost-2")).empty());
  for (const auto& h : Must(store->ListHosts())) EXPECT_EQ(h.acked_config_version, 7u);
}

TEST_F(EtcdStoreTest, TheNewerOfRecordAndStatusHoldsTheHostsStatus) {
  auto store = Open();
  HERD_ASSERT_OK(store->PutHost(Host("h1")));
  HERD_ASSERT_OK(store->PutHostStatus({{"h1", 100, 5}}));
  EXPECT_EQ(Must(store->GetHost("h1")).acked_config_version, 5u);
  HostRecord again = Host("h1");
  again.acked_config_version = 2;  // a whole record written later wins
  HERD_ASSERT_OK(store->PutHost(again));
  EXPECT_EQ(Must(store->GetHost("h1")).acked_config_version, 2u);
  EXPECT_EQ(Must(store->ListHosts()).front().acked_config_version, 2u);
  HERD_ASSERT_OK(store->DeleteHost("h1"));
  EXPECT_EQ(KeysUnder(keys_.HostsDir()), 0u) << "the status key goes with the record";
}

TEST_F(EtcdStoreTest, HostIdsAreEscapedSoNoHostReachesIntoAnothersKeys) {
  auto store = Open();
  HERD_ASSERT_OK(store->PutHost(Host("a")));
  HERD_ASSERT_OK(store->PutHost(Host("a/status")));
  HERD_ASSERT_OK(store->PutHost(Host("a%2Fstatus")));
  HERD_ASSERT_OK(store->PutHostStatus({{"a", 1, 9}}));
  EXPECT_EQ(Must(store->GetHost("a/status")).acked_config_version, 1u);
  EXPECT_EQ(Must(store->GetHost("a")).acked_config_version, 9u);
  std::vector<std::string> ids;
  for (const auto& h : Must(store->ListHosts())) ids.push_back(h.host_id);
  EXPECT_THAT(ids, ::testing::ElementsAre("a", "a%2Fstatus", "a/status"));
  auto parsed = ParseHostKey(keys_, keys_.HostStatus("a/status"));
  ASSERT_TRUE(parsed.has_value());
  EXPECT_EQ(parsed->host_id, "a/status");
  EXPECT_TRUE(parsed->status);
}

// --------------------------------------------------------------------------- config

TEST_F(EtcdStoreTest, EveryConfigChangeIsOneTxnThatWritesTheRevisionKey) {
  auto store = Open();
  const FakeEtcd::Counters before = etcd_.counters();
  EXPECT_EQ(Must(store->SetOverride(Global("interval", "5"))).revision, 1u);
  const FakeEtcd::Counters after = etcd_.counters();
  EXPECT_EQ(after.writes - before.writes, 1u);
  EXPECT_EQ(after.keys_put - before.keys_put, 2u);
  EXPECT_EQ(etcd_.Dump(keys_.ConfigRevision()).at(keys_.ConfigRevision()), "1");
  Must(store->UnsetOverride(Global("interval", "").scope(), "weather", "interval"));
  EXPECT_EQ(etcd_.Dump(keys_.ConfigRevision()).at(keys_.ConfigRevision()), "2");
  EXPECT_EQ(KeysUnder(keys_.OverridesDir()), 0u);
}

TEST_F(EtcdStoreTest, TwoStoresOnOnePrefixShareOneRevisionThatGoesUpByOnePerChange) {
  auto a = Open();
  auto b = Open();  // another replica
  std::vector<uint64_t> revisions = ConcurrentChanges(*a, *b, 25);
  ASSERT_EQ(revisions.size(), 100u);
  for (uint64_t i = 0; i < 100; ++i) ASSERT_EQ(revisions[i], i + 1);
  EXPECT_EQ(Must(b->ConfigRevision()), 100u);
}

// Passes every call to a FakeEtcd, and runs `before_guarded_txn` once, just before the first
// Txn that has compares: another replica's write landing between a read and a guarded write
// (`after_guarded_txn`: between a guarded write and what follows it).
class InterleavingEtcd final : public etcd::Client {
 public:
  explicit InterleavingEtcd(FakeEtcd& fake) : fake_(fake) {}
  std::function<void()> before_guarded_txn;
  std::function<void()> after_guarded_txn;
  // Run once, just before the Nth Txn (1-based) of this client.
  std::map<int, std::function<void()>> before_nth_txn;

  absl::StatusOr<etcd::RangeResult> Range(const std::string& key,
                                          const etcd::RangeOptions& o) override {
    return fake_.Range(key, o);
  }
  absl::StatusOr<std::optional<etcd::KeyValue>> Get(const std::string& key) override {
    return fake_.Get(key);
  }
  absl::StatusOr<int64_t> Put(const std::string& k, const std::string& v, int64_t l) override {
    return fake_.Put(k, v, l);
  }
  absl::StatusOr<int64_t> Delete(const std::string& k, const std::string& end) override {
    return fake_.Delete(k, end);
  }
  absl::StatusOr<etcd::TxnResult> Txn(const std::vector<etcd::Compare>& compares,
                                      const std::vector<etcd::Op>& success,
                                      const std::vector<etcd::Op>& failure) override {
    if (auto it = before_nth_txn.find(++txns_); it != before_nth_txn.end()) {
      auto f = std::move(it->second);
      before_nth_txn.erase(it);
      f();
    }
    if (!compares.empty() && before_guarded_txn) std::exchange(before_guarded_txn, nullptr)();
    auto r = fake_.Txn(compares, success, failure);
    if (!compares.empty() && after_guarded_txn) std::exchange(after_guarded_txn, nullptr)();
    return r;
  }
  absl::Status Compact(int64_t revision) override { return fake_.Compact(revision); }
  absl::StatusOr<int64_t> LeaseGrant(absl::Duration ttl) override { return fake_.LeaseGrant(ttl); }
  absl::Status LeaseRevoke(int64_t lease) override { return fake_.LeaseRevoke(lease); }
  absl::StatusOr<std::unique_ptr<etcd::KeptLease>> KeepLease(
      absl::Duration ttl, std::function<void()> lost, std::function<void(int64_t)> renewed) override {
    return fake_.KeepLease(ttl, std::move(lost), std::move(renewed));
  }
  absl::StatusOr<std::unique_ptr<etcd::Watch>> WatchRange(
      const std::string& key, const std::string& end, int64_t from,
      std::function<void(const etcd::WatchBatch&)> cb) override {
    return fake_.WatchRange(key, end, from, std::move(cb));
  }
  std::string EndpointsText() const override { return "interleaving-fake"; }

 private:
  FakeEtcd& fake_;
  int txns_ = 0;
};

TEST_F(EtcdStoreTest, AChangeThatLosesTheRevisionGuardToAnotherReplicaIsRetriedOnTop) {
  InterleavingEtcd a_client(etcd_);
  auto a = Must(OpenEtcdStore(a_client, kPrefix));
  auto b = Open();  // another replica, on the same keys
  ConfigWrite b_write;
  a_client.before_guarded_txn = [&] { b_write = Must(b->SetOverride(Global("b", "1"))); };
  ConfigWrite a_write = Must(a->SetOverride(Global("a", "1")));
  EXPECT_EQ(b_write.revision, 1u);
  EXPECT_EQ(a_write.revision, 2u) << "A read revision 0, B wrote 1 meanwhile: A must be 2";
  EXPECT_EQ(Must(a->ConfigRevision()), 2u);
  EXPECT_EQ(Must(a->ListOverrides("")).size(), 2u);
}

// A Txn "lost in flight": the member went away after the request reached it, so etcd may
// have applied it. The change is read again rather than reported failed while in the store.
TEST_F(EtcdStoreTest, AChangeWhoseAnswerIsLostIsReportedAsItIsInTheStore) {
  auto store = Open();
  const absl::Status lost = absl::UnavailableError(
      "the store has no quorum: etcd answered \"request timed out\" (txn; etcd endpoints x)");
  for (const bool applied : {true, false}) {
    SCOPED_TRACE(applied ? "applied, answer lost" : "lost before etcd had it");
    const uint64_t rev = Must(store->ConfigRevision());
    const FakeEtcd::Counters before = etcd_.counters();
    etcd_.LoseNextWriteTxn(applied, lost);
    ConfigWrite w = Must(store->SetOverride(Global("k", applied ? "a" : "b")));
    EXPECT_EQ(w.revision, rev + 1);
    EXPECT_TRUE(w.changed);
    EXPECT_EQ(etcd_.counters().writes - before.writes, 1u) << "written once, never twice";
    ASSERT_EQ(Must(store->ListOverrides("")).size(), 1u);
    EXPECT_EQ(Must(store->ListOverrides(""))[0].value(), applied ? "a" : "b");
  }
  // An unset too.
  const uint64_t rev = Must(store->ConfigRevision());
  etcd_.LoseNextWriteTxn(true, lost);
  ConfigWrite w = Must(store->UnsetOverride(Global("k", "").scope(), "weather", "k"));
  EXPECT_EQ(w.revision, rev + 1);
  EXPECT_TRUE(Must(store->ListOverrides("")).empty());
}

TEST_F(EtcdStoreTest, ALostAnswerWithAnotherChangeSinceSaysTheOutcomeIsUnknown) {
  InterleavingEtcd a_client(etcd_);
  auto a = Must(OpenEtcdStore(a_client, kPrefix));
  auto b = Open();  // another replica
  etcd_.LoseNextWriteTxn(true, absl::UnavailableError("the store has no quorum: lost"));
  a_client.after_guarded_txn = [&] { Must(b->SetOverride(Global("b", "1"))); };
  absl::Status s = a->SetOverride(Global("a", "1")).status();
  EXPECT_EQ(s.code(), absl::StatusCode::kUnavailable) << s;
  EXPECT_THAT(std::string(s.message()), HasSubstr("whether the change was applied is unknown"));
  EXPECT_THAT(std::string(s.message()), HasSubstr("read the configuration again"));
  EXPECT_EQ(Must(a->ConfigRevision()), 2u) << "A's (lost) and B's";
  // A refusal is not a lost answer: passed on as it is, with nothing written.
  const uint64_t writes = etcd_.counters().writes;
  etcd_.LoseNextWriteTxn(false, absl::PermissionDeniedError("etcd refused txn: no role"));
  EXPECT_EQ(a->SetOverride(Global("a", "2")).status().code(), absl::StatusCode::kPermissionDenied);
  EXPECT_EQ(etcd_.counters().writes, writes);
}

TEST_F(EtcdStoreTest, ALostTryThatAppliesLateIsStillReportedAsTheChange) {
  // etcd may commit a proposal it timed out: after the re-read found nothing, the first try
  // lands (here: the same override, written meanwhile) before the retry reads. The retry then
  // finds the value in place, and that is this change, not "nothing changed".
  InterleavingEtcd a_client(etcd_);
  auto a = Must(OpenEtcdStore(a_client, kPrefix));
  auto late = Open();
  const herd::v1::Override change = Global("k", "v");
  etcd_.LoseNextWriteTxn(false, absl::UnavailableError("the store has no quorum: lost"));
  // Txns through A: 1 read, 2 the lost write, 3 the re-read, 4 the retry's read.
  a_client.before_nth_txn[4] = [&] { Must(late->SetOverride(change)); };
  ConfigWrite w = Must(a->SetOverride(change));
  EXPECT_EQ(w.revision, 1u);
  EXPECT_TRUE(w.changed) << "the change is in the store: reported as made";
}

TEST(EtcdOpsTest, AWriterThatKeepsLosingItsGuardIsAbortedNotLooping) {
  int tries = 0;
  absl::StatusOr<int> r = RetryOnConflict<int>(5, "changing the configuration", [&] {
    ++tries;
    return absl::StatusOr<std::optional<int>>(std::nullopt);
  });
  EXPECT_EQ(r.status().code(), absl::StatusCode::kAborted);
  EXPECT_THAT(std::string(r.status().message()), HasSubstr("changing the configuration"));
  EXPECT_EQ(tries, 5);
  tries = 0;
  r = RetryOnConflict<int>(5, "x", [&]() -> absl::StatusOr<std::optional<int>> {
    return ++tries < 3 ? std::optional<int>() : std::optional<int>(tries);
  });
  EXPECT_EQ(Must(r), 3);
}

TEST(EtcdOpsTest, CutIntoTxnsBoundsItemsAndBytes) {
  using Cuts = std::vector<std::pair<size_t, size_t>>;
  EXPECT_EQ(CutIntoTxns(std::vector<size_t>(5, 1), 2, 100), (Cuts{{0, 2}, {2, 4}, {4, 5}}));
  EXPECT_EQ(CutIntoTxns({40, 40, 40, 10}, 10, 100), (Cuts{{0, 2}, {2, 4}}));
  EXPECT_EQ(CutIntoTxns({500, 1}, 10, 100), (Cuts{{0, 1}, {1, 2}}));  // alone when too big
  EXPECT_TRUE(CutIntoTxns({}, 10, 100).empty());
}

// --------------------------------------------------------------------------- tokens

TEST_F(EtcdStoreTest, FindTokenBySecretHashIsOneGetWhateverTheNumberOfTokens) {
  auto store = Open();
  for (int i = 0; i < 200; ++i) {
    ApiToken t;
    t.name = absl::StrCat("t", i);
    t.secret_sha256 = absl::StrCat("sha", i);
    HERD_ASSERT_OK(store->AddToken(t));
  }
  const uint64_t calls = etcd_.counters().calls;
  EXPECT_EQ(Must(store->FindTokenBySecretHash("sha150")).name, "t150");
  EXPECT_EQ(etcd_.counters().calls - calls, 1u);
  HERD_ASSERT_OK(store->DeleteToken("t150"));
  EXPECT_EQ(store->FindTokenBySecretHash("sha150").status().code(), absl::StatusCode::kNotFound);
  EXPECT_TRUE(etcd_.Dump(keys_.TokenBySecret("sha150")).empty()) << "the index goes too";
}

// ---------------------------------------------------------------------------- audit

TEST_F(EtcdStoreTest, AuditKeepsAtMostMaxEntries) {
  EtcdStoreOptions o;
  o.audit_max_entries = 5;
  o.audit_max_age = absl::ZeroDuration();
  auto store = Open(o);
  for (int i = 0; i < 20; ++i) HERD_ASSERT_OK(store->AppendAudit(Audit(1000 + i, absl::StrCat(i))));
  EXPECT_THAT(Actions(Must(store->ListAudit(100))),
              ::testing::ElementsAre("19", "18", "17", "16", "15"));
  EXPECT_EQ(KeysUnder(keys_.AuditEntriesDir()), 5u);
}

TEST_F(EtcdStoreTest, AuditDropsEntriesOlderThanMaxAge) {
  int64_t now = 1'000'000;
  EtcdStoreOptions o;
  o.audit_max_entries = 0;
  o.audit_max_age = absl::Seconds(60);
  o.now_unix_ms = [&now] { return now; };
  auto store = Open(o);
  HERD_ASSERT_OK(store->AppendAudit(Audit(now - 120'000, "old")));
  HERD_ASSERT_OK(store->AppendAudit(Audit(now - 30'000, "recent")));
  HERD_ASSERT_OK(store->AppendAudit(Audit(now, "now")));
  EXPECT_THAT(Actions(Must(store->ListAudit(10))), ::testing::ElementsAre("now", "recent"));
  now += 45'000;  // "recent" is 75 s old now
  HERD_ASSERT_OK(store->AppendAudit(Audit(now, "later")));
  EXPECT_THAT(Actions(Must(store->ListAudit(10))), ::testing::ElementsAre("later", "now"));
}

TEST_F(EtcdStoreTest, AuditTrimsABacklogAFewEntriesPerAppend) {
  EtcdStoreOptions unlimited;
  unlimited.audit_max_entries = 0;
  unlimited.audit_max_age = absl::ZeroDuration();
  {
    auto store = Open(unlimited);
    for (int i = 0; i < 30; ++i) HERD_ASSERT_OK(store->AppendAudit(Audit(i, absl::StrCat(i))));
  }
  EtcdStoreOptions tight = unlimited;
  tight.audit_max_entries = 10;
  tight.audit_trim_per_append = 4;
  auto store = Open(tight);
  HERD_ASSERT_OK(store->AppendAudit(Audit(100, "a")));
  EXPECT_EQ(KeysUnder(keys_.AuditEntriesDir()), 27u);  // 31 - 4: bounded work
  for (int i = 0; i < 10; ++i) HERD_ASSERT_OK(store->AppendAudit(Audit(101 + i, "b")));
  EXPECT_EQ(KeysUnder(keys_.AuditEntriesDir()), 10u);
  EXPECT_EQ(Must(store->ListAudit(100)).size(), 10u);
}

// Appends made while one is written go together in the next Txn (group commit): 16 threads
// appending at once over an etcd 5 ms away keep every entry, each once, and need far fewer
// than the two round trips per entry an append alone takes.
TEST_F(EtcdStoreTest, ConcurrentAuditAppendsShareTxnsAndLoseNothing) {
  EtcdStoreOptions o;
  o.audit_max_entries = 0;
  o.audit_max_age = absl::ZeroDuration();
  auto store = Open(o);
  etcd_.SetTxnDelay(absl::Milliseconds(5));
  const uint64_t txns = etcd_.counters().txns;
  constexpr int kThreads = 16, kEach = 10;
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&, t] {
      for (int i = 0; i < kEach; ++i) {
        EXPECT_TRUE(store->AppendAudit(Audit(1000 + i, absl::StrCat(t, ".", i))).ok());
      }
    });
  }
  for (auto& th : threads) th.join();
  etcd_.SetTxnDelay(absl::ZeroDuration());
  const std::vector<std::string> actions = Actions(Must(store->ListAudit(1000)));
  EXPECT_EQ(actions.size(), static_cast<size_t>(kThreads * kEach));
  EXPECT_EQ(std::set<std::string>(actions.begin(), actions.end()).size(),
            static_cast<size_t>(kThreads * kEach));
  EXPECT_LT(etcd_.counters().txns - txns, static_cast<uint64_t>(kThreads * kEach))
      << "appends were not written together";
}

TEST_F(EtcdStoreTest, AuditListIsPagedAndKeepsTimeThenInsertionOrder) {
  EtcdStoreOptions o;
  o.range_page = 3;
  auto store = Open(o);
  for (int i = 0; i < 10; ++i) {
    HERD_ASSERT_OK(store->AppendAudit(Audit(i % 2 == 0 ? 5 : 7, absl::StrCat(i))));
  }
  HERD_ASSERT_OK(store->AppendAudit(Audit(-3, "negative")));
  EXPECT_THAT(Actions(Must(store->ListAudit(100))),
              ::testing::ElementsAre("9", "7", "5", "3", "1", "8", "6", "4", "2", "0", "negative"));
  EXPECT_EQ(Must(store->ListAudit(4)).size(), 4u);
}

// ---------------------------------------------------------------------------- errors

TEST_F(EtcdStoreTest, NoQuorumReachesTheCallerUnchanged) {
  auto store = Open();
  HERD_ASSERT_OK(store->PutHost(Host("h1")));
  etcd_.SetQuorum(false);
  std::vector<absl::Status> got = {
      store->PutHost(Host("h2")),
      store->PutHostStatus({{"h1", 1, 1}}),
      store->GetHost("h1").status(),
      store->ListHosts().status(),
      store->SetOverride(Global("k", "v")).status(),
      store->ConfigRevision().status(),
      store->AppendAudit(Audit(1, "x")),
      store->FindTokenBySecretHash("sha").status(),
      store->PutSetting("k", "v"),
  };
  for (const absl::Status& s : got) {
    EXPECT_EQ(s.code(), absl::StatusCode::kUnavailable) << s;
    EXPECT_THAT(std::string(s.message()), HasSubstr("the store has no quorum")) << s;
  }
  etcd_.SetQuorum(true);
  EXPECT_EQ(Must(store->SetOverride(Global("k", "v"))).revision, 1u);
}

TEST_F(EtcdStoreTest, AValueThatDoesNotDecodeIsDataLossNamingTheKey) {
  auto store = Open();
  ASSERT_TRUE(etcd_.Put(keys_.Host("h1"), "\xff\xff not a record").ok());
  absl::Status s = store->GetHost("h1").status();
  EXPECT_EQ(s.code(), absl::StatusCode::kDataLoss);
  EXPECT_THAT(std::string(s.message()), HasSubstr(keys_.Host("h1")));
  ASSERT_TRUE(etcd_.Put(keys_.ConfigRevision(), "seven").ok());
  EXPECT_EQ(store->ConfigRevision().status().code(), absl::StatusCode::kDataLoss);
}

TEST_F(EtcdStoreTest, OpenRefusesAPrefixThatIsNotADirectory) {
  EXPECT_EQ(OpenEtcdStore(etcd_, "").status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(OpenEtcdStore(etcd_, "herd").status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(OpenEtcdStore(etcd_, "/").status().code(), absl::StatusCode::kInvalidArgument);
  etcd_.SetQuorum(false);
  EXPECT_EQ(OpenEtcdStore(etcd_, "/herd").status().code(), absl::StatusCode::kUnavailable);
}

TEST(EtcdLayoutTest, EscapeRoundTripsAndKeepsSlashesOut) {
  const std::vector<std::string> names = {"plain", "a/b",  "100%", "sp ace",
                                          std::string("nul\0x", 5), "é"};
  for (const std::string& name : names) {
    const std::string esc = EscapeSegment(name);
    EXPECT_EQ(esc.find('/'), std::string::npos) << esc;
    EXPECT_EQ(Must(UnescapeSegment(esc)), name);
  }
  EXPECT_FALSE(UnescapeSegment("bad%2").ok());
  EXPECT_FALSE(UnescapeSegment("bad%zz").ok());
}

// ------------------------------------------------------------------------ real etcd

TEST(RealEtcdStoreTest, TwoClientsOnOnePrefixShareOneRevision) {
  herd::testing::EtcdHarness etcd;
  ASSERT_TRUE(etcd.Start()) << etcd.error();
  etcd::Options options;
  options.endpoints = etcd.EndpointList();
  auto ca = Must(etcd::Client::Connect(options));
  auto cb = Must(etcd::Client::Connect(options));
  auto a = Must(OpenEtcdStore(*ca, kPrefix));
  auto b = Must(OpenEtcdStore(*cb, kPrefix));
  std::vector<uint64_t> revisions = ConcurrentChanges(*a, *b, 20);
  ASSERT_EQ(revisions.size(), 80u);
  for (uint64_t i = 0; i < 80; ++i) ASSERT_EQ(revisions[i], i + 1);
  std::string out;
  ASSERT_EQ(etcd.Etcdctl({"get", "/herd/config/revision", "--print-value-only"}, &out), 0);
  EXPECT_EQ(out, "80\n");
}

TEST(RealEtcdStoreTest, ThousandsOfHostsAreWrittenInTxnsAndListedInPages) {
  EtcdStoreOptions o;
  o.range_page = 256;
  auto store = Must(OpenEtcdStore(*Must(SharedRealEtcd()), "/paged", o));
  std::vector<HostRecord> hosts;
  std::vector<HostStatus> status;
  for (int i = 0; i < 1500; ++i) {
    hosts.push_back(Host(absl::StrFormat("h%05d", i)));
    status.push_back({hosts.back().host_id, i, 9});
  }
  HERD_ASSERT_OK(store->PutHosts(hosts));  // etcd refuses a Txn of more than 128 ops
  HERD_ASSERT_OK(store->PutHostStatus(status));
  std::vector<HostRecord> listed = Must(store->ListHosts());
  ASSERT_EQ(listed.size(), 1500u);
  for (int i = 0; i < 1500; ++i) {
    ASSERT_EQ(listed[i].host_id, hosts[i].host_id);
    ASSERT_EQ(listed[i].acked_config_version, 9u);
  }
}

TEST(RealEtcdStoreTest, LosingQuorumIsUnavailableNamingIt) {
  herd::testing::EtcdHarness etcd(herd::testing::EtcdHarness::Cluster(3));
  ASSERT_TRUE(etcd.Start()) << etcd.error();
  etcd::Options options;
  options.endpoints = etcd.EndpointList();
  options.timeout = absl::Seconds(2);
  auto client = Must(etcd::Client::Connect(options));
  auto store = Must(OpenEtcdStore(*client, kPrefix));
  Must(store->SetOverride(Global("k", "1")));
  etcd.KillMember(1);
  etcd.KillMember(2);
  absl::Status s = store->SetOverride(Global("k", "2")).status();
  EXPECT_EQ(s.code(), absl::StatusCode::kUnavailable) << s;
  EXPECT_THAT(std::string(s.message()), HasSubstr("the store has no quorum"));
  // Generous: on a loaded machine (CI runs this beside the replicas' tests, each with an
  // etcd cluster of its own) a member has taken over 30 s to be healthy again.
  ASSERT_TRUE(etcd.RestartMember(1, absl::Seconds(90))) << etcd.error();
  ASSERT_TRUE(etcd.RestartMember(2, absl::Seconds(90))) << etcd.error();
  absl::StatusOr<ConfigWrite> w;
  for (int i = 0; i < 50 && !(w = store->SetOverride(Global("k", "2"))).ok(); ++i) {
    std::this_thread::sleep_for(std::chrono::milliseconds(200));
  }
  ASSERT_TRUE(w.ok()) << w.status();
  EXPECT_EQ(w->revision, 2u);
}

}  // namespace
}  // namespace herd::controlplane::testing
