// EtcdStore: store.h over etcd v3 (see etcd_store.h for the guarantees and etcd_layout.h for
// the keys). Reads are linearizable (etcd's default): a replica sees every write acknowledged
// by any other.
#include "controlplane/store/etcd_store.h"

#include <algorithm>
#include <map>
#include <mutex>
#include <optional>
#include <string>
#include <tuple>
#include <utility>
#include <vector>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "common/logging.h"
#include "common/status_macros.h"
#include "controlplane/store/etcd_audit.h"
#include "controlplane/store/etcd_layout.h"
#include "controlplane/store/etcd_ops.h"
#include "herd/v1/store.pb.h"

namespace herd::controlplane {
namespace {

const char* RoleText(Role role) { return role == Role::kOperator ? "operator" : "viewer"; }

absl::Status CheckModuleKey(const std::string& module, const std::string& key) {
  if (module.empty()) return absl::InvalidArgumentError("the override's module must not be empty");
  if (key.empty()) return absl::InvalidArgumentError("the override's key must not be empty");
  return absl::OkStatus();
}

// (kind, value) of a scope, the listing order of overrides (store.h).
std::pair<int, std::string> ScopeOrder(const herd::v1::Scope& s) {
  switch (s.what_case()) {
    case herd::v1::Scope::kSelector:
      return {1, s.selector()};
    case herd::v1::Scope::kHostId:
      return {2, s.host_id()};
    default:
      return {0, ""};
  }
}

absl::Status Undecodable(const std::string& key, const char* what) {
  return absl::DataLossError(absl::StrCat("etcd key ", key, " is not ", what,
                                          "; restore it from a backup or delete it "
                                          "(etcdctl del)"));
}

absl::StatusOr<uint64_t> DecodeRevision(const std::string& key,
                                        const std::vector<etcd::KeyValue>& kvs) {
  if (kvs.empty()) return uint64_t{0};
  uint64_t revision = 0;
  if (!absl::SimpleAtoi(kvs.front().value, &revision)) {
    return Undecodable(key, "a config revision (decimal text)");
  }
  return revision;
}

absl::StatusOr<ApiToken> DecodeToken(const etcd::KeyValue& kv) {
  herd::v1::StoredToken s;
  if (!s.ParseFromString(kv.value) || s.name().empty()) return Undecodable(kv.key, "a token");
  ApiToken t;
  t.name = s.name();
  t.role = s.role() == "operator" ? Role::kOperator : Role::kViewer;
  t.secret_sha256 = s.secret_sha256();
  t.created_at_unix_ms = s.created_at_unix_ms();
  return t;
}

std::string EncodeToken(const ApiToken& t) {
  herd::v1::StoredToken s;
  s.set_name(t.name);
  s.set_role(RoleText(t.role));
  s.set_secret_sha256(t.secret_sha256);
  s.set_created_at_unix_ms(t.created_at_unix_ms);
  return s.SerializeAsString();
}

// What a config change Txn needs: the revision key's state and the override key's.
struct ConfigRead {
  uint64_t revision = 0;
  int64_t revision_mod = 0;
  std::optional<herd::v1::Override> current;
};

class EtcdStore final : public Store {
 public:
  EtcdStore(etcd::Client& client, std::string prefix, EtcdStoreOptions options)
      : c_(client), k_(std::move(prefix)), o_(std::move(options)), audit_(c_, k_, o_) {}

  // --- hosts

  absl::Status PutHost(const HostRecord& host) override { return PutHosts({host}); }
  absl::Status PutHosts(const std::vector<HostRecord>& hosts) override;
  absl::Status PutHostStatus(const std::vector<HostStatus>& status) override;
  absl::StatusOr<HostRecord> GetHost(const std::string& host_id) override;
  absl::StatusOr<std::vector<HostRecord>> ListHosts() override;
  absl::Status DeleteHost(const std::string& host_id) override;

  // --- overrides

  absl::StatusOr<uint64_t> ConfigRevision() override {
    HERD_ASSIGN_OR_RETURN(etcd::RangeResult r, c_.Range(k_.ConfigRevision()));
    return DecodeRevision(k_.ConfigRevision(), r.kvs);
  }
  absl::StatusOr<ConfigWrite> SetOverride(const herd::v1::Override& override) override;
  absl::StatusOr<ConfigWrite> UnsetOverride(const herd::v1::Scope& scope,
                                            const std::string& module,
                                            const std::string& key) override;
  absl::StatusOr<std::vector<herd::v1::Override>> ListOverrides(
      const std::string& module) override;

  // --- rollouts

  absl::Status PutRollout(const herd::v1::Rollout& rollout) override {
    if (rollout.id().empty()) return absl::InvalidArgumentError("the rollout's id is empty");
    return c_.Put(k_.Rollout(rollout.id()), rollout.SerializeAsString()).status();
  }
  absl::StatusOr<herd::v1::Rollout> GetRollout(const std::string& id) override {
    const std::string key = k_.Rollout(id);
    HERD_ASSIGN_OR_RETURN(std::optional<etcd::KeyValue> kv, c_.Get(key));
    if (!kv) return absl::NotFoundError(absl::StrCat("no rollout ", id));
    herd::v1::Rollout r;
    if (!r.ParseFromString(kv->value)) return Undecodable(key, "a rollout");
    return r;
  }
  absl::StatusOr<std::vector<herd::v1::Rollout>> ListRollouts(size_t limit) override;

  // --- tokens

  absl::Status AddToken(const ApiToken& token) override;
  absl::StatusOr<ApiToken> FindTokenBySecretHash(const std::string& secret_sha256) override {
    // The hash is not echoed: it is a credential's fingerprint.
    if (secret_sha256.empty()) return absl::NotFoundError("no token has this secret");
    HERD_ASSIGN_OR_RETURN(std::optional<etcd::KeyValue> kv,
                          c_.Get(k_.TokenBySecret(secret_sha256)));
    if (!kv) return absl::NotFoundError("no token has this secret");
    return DecodeToken(*kv);
  }
  absl::StatusOr<std::vector<ApiToken>> ListTokens() override {
    HERD_ASSIGN_OR_RETURN(auto kvs, RangeAll(c_, k_.TokensByNameDir(), o_.range_page));
    std::vector<ApiToken> out;
    for (const auto& kv : kvs) {
      HERD_ASSIGN_OR_RETURN(ApiToken t, DecodeToken(kv));
      out.push_back(std::move(t));
    }
    std::sort(out.begin(), out.end(),
              [](const ApiToken& a, const ApiToken& b) { return a.name < b.name; });
    return out;
  }
  absl::Status DeleteToken(const std::string& name) override;

  // --- audit

  absl::Status AppendAudit(const herd::v1::AuditEntry& entry) override {
    return audit_.Append({&entry});
  }
  absl::Status AppendAudits(const std::vector<herd::v1::AuditEntry>& entries) override {
    std::vector<const herd::v1::AuditEntry*> all;
    all.reserve(entries.size());
    for (const auto& e : entries) all.push_back(&e);
    return audit_.Append(all);
  }
  absl::StatusOr<std::vector<herd::v1::AuditEntry>> ListAudit(size_t limit) override {
    return audit_.List(limit);
  }

  // --- settings

  absl::Status PutSetting(const std::string& key, const std::string& value) override {
    if (key.empty()) return absl::InvalidArgumentError("the setting's key is empty");
    return c_.Put(k_.Setting(key), value).status();
  }
  absl::StatusOr<std::optional<std::string>> GetSetting(const std::string& key) override {
    HERD_ASSIGN_OR_RETURN(std::optional<etcd::KeyValue> kv, c_.Get(k_.Setting(key)));
    if (!kv) return std::optional<std::string>();
    return std::optional<std::string>(std::move(kv->value));
  }

 private:
  absl::StatusOr<ConfigRead> ReadConfig(const std::string& override_key);
  // `lost`: an earlier try's answer was lost, and it may still apply (ResolveUnanswered).
  absl::StatusOr<std::optional<ConfigWrite>> TryConfigChange(const std::string& override_key,
                                                             const herd::v1::Override* set,
                                                             bool* lost);
  absl::StatusOr<std::optional<ConfigWrite>> ResolveUnanswered(const std::string& override_key,
                                                               const herd::v1::Override* set,
                                                               const ConfigRead& before,
                                                               const absl::Status& lost_answer,
                                                               bool* lost);
  absl::StatusOr<ConfigWrite> ChangeConfig(const std::string& override_key,
                                           const herd::v1::Override* set);
  absl::StatusOr<size_t> WriteStatusChunk(const std::vector<HostStatus>& status, size_t begin,
                                          size_t end, std::vector<std::string>& values);

  etcd::Client& c_;
  const EtcdKeys k_;
  const EtcdStoreOptions o_;
  EtcdAuditLog audit_;
  // Config changes in this process go one at a time (they would only collide on the
  // revision key's guard); other replicas' are retried on conflict.
  std::mutex config_mu_;
};

// ------------------------------------------------------------------------------- hosts

absl::Status EtcdStore::PutHosts(const std::vector<HostRecord>& hosts) {
  // Checked and encoded before anything is written, so a bad record writes nothing.
  std::vector<std::string> values;
  std::vector<size_t> bytes;
  values.reserve(hosts.size());
  for (const HostRecord& host : hosts) {
    if (host.host_id.empty()) return absl::InvalidArgumentError("the host's host_id is empty");
    values.push_back(EncodeHostRecord(host));
    bytes.push_back(values.back().size() + k_.Host(host.host_id).size());
    if (bytes.back() > o_.max_txn_bytes) {
      return absl::InvalidArgumentError(absl::StrCat(
          "host ", host.host_id, ": its record is ", bytes.back(),
          " bytes, more than one etcd request may carry (", o_.max_txn_bytes,
          "); it reports too many modules or too large module defaults"));
    }
  }
  size_t written = 0;
  for (auto [begin, end] : CutIntoTxns(bytes, o_.max_txn_ops, o_.max_txn_bytes)) {
    std::vector<etcd::Op> ops;
    for (size_t i = begin; i < end; ++i) {
      ops.push_back(etcd::Op::Put(k_.Host(hosts[i].host_id), std::move(values[i])));
    }
    absl::Status s = c_.Txn({}, ops).status();
    if (!s.ok() && written > 0) {
      herd::Logger("store")->warn("event=hosts_partly_written written={} of={} error=\"{}\"",
                                  written, hosts.size(), s.message());
    }
    if (!s.ok()) return s;
    written = end;
  }
  return absl::OkStatus();
}

absl::Status EtcdStore::PutHostStatus(const std::vector<HostStatus>& status) {
  for (const auto& st : status) {
    if (st.host_id.empty()) return absl::InvalidArgumentError("the host's host_id is empty");
  }
  std::vector<std::string> values;
  for (const auto& st : status) values.push_back(EncodeHostStatus(st));
  // A chunk's Txn has one compare and one put per host: both under max_txn_ops.
  const std::vector<size_t> bytes(status.size(), 128);
  for (auto [begin, end] : CutIntoTxns(bytes, o_.max_txn_ops, o_.max_txn_bytes)) {
    HERD_RETURN_IF_ERROR(WriteStatusChunk(status, begin, end, values).status());
  }
  return absl::OkStatus();
}

// One Txn: each status is written if its host's record exists (a compare per host). When a
// host is missing, the failure branch says which exist and the Txn is tried again without it.
absl::StatusOr<size_t> EtcdStore::WriteStatusChunk(const std::vector<HostStatus>& status,
                                                   size_t begin, size_t end,
                                                   std::vector<std::string>& values) {
  std::vector<size_t> todo;
  for (size_t i = begin; i < end; ++i) todo.push_back(i);
  return RetryOnConflict<size_t>(o_.max_conflict_retries, "saving hosts' status", [&]()
      -> absl::StatusOr<std::optional<size_t>> {
    if (todo.empty()) return std::optional<size_t>(0);
    std::vector<etcd::Compare> compares;
    std::vector<etcd::Op> puts, reads;
    for (size_t i : todo) {
      etcd::Compare exists;
      exists.key = k_.Host(status[i].host_id);
      exists.target = etcd::Compare::Target::kVersion;
      exists.result = etcd::Compare::Result::kGreater;
      exists.number = 0;
      compares.push_back(std::move(exists));
      puts.push_back(etcd::Op::Put(k_.HostStatus(status[i].host_id), values[i]));
      reads.push_back(GetOp(k_.Host(status[i].host_id), /*keys_only=*/true));
    }
    HERD_ASSIGN_OR_RETURN(etcd::TxnResult r, c_.Txn(compares, puts, reads));
    if (r.succeeded) return std::optional<size_t>(todo.size());
    // Keep the hosts that exist (store.h: a host that is not stored is skipped).
    std::vector<size_t> existing;
    for (size_t j = 0; j < todo.size() && j < r.ranges.size(); ++j) {
      if (!r.ranges[j].kvs.empty()) existing.push_back(todo[j]);
    }
    todo = std::move(existing);
    return std::optional<size_t>();
  });
}

absl::StatusOr<HostRecord> EtcdStore::GetHost(const std::string& host_id) {
  const std::string key = k_.Host(host_id);
  const std::string status_key = k_.HostStatus(host_id);
  // One Txn of two reads: the record and its status at one revision.
  HERD_ASSIGN_OR_RETURN(etcd::TxnResult r, c_.Txn({}, {GetOp(key), GetOp(status_key)}));
  if (r.ranges.size() != 2) return absl::InternalError("etcd answered a Txn of 2 reads badly");
  if (r.ranges[0].kvs.empty()) return absl::NotFoundError(absl::StrCat("no host ", host_id));
  const etcd::KeyValue& rec = r.ranges[0].kvs.front();
  HERD_ASSIGN_OR_RETURN(HostRecord h, DecodeHostRecord(key, rec.value));
  if (!r.ranges[1].kvs.empty()) {
    const etcd::KeyValue& st = r.ranges[1].kvs.front();
    HERD_ASSIGN_OR_RETURN(HostStatus s, DecodeHostStatus(status_key, host_id, st.value));
    MergeHostStatus(h, rec.mod_revision, s, st.mod_revision);
  }
  return h;
}

// A record left out of a listing because it does not decode: logged with its key (etcdctl
// can show or delete it). Listings are rare (start, a compacted watch), so no rate limit.
void SkipUndecodable(const std::string& key, const absl::Status& why) {
  herd::Logger("store")->error("event=record_skipped key={} error=\"{}\" hint=\"inspect it "
                               "with etcdctl get {} (or delete it)\"",
                               key, why.message(), key);
}

absl::StatusOr<std::vector<HostRecord>> EtcdStore::ListHosts() {
  HERD_ASSIGN_OR_RETURN(auto kvs, RangeAll(c_, k_.HostsDir(), o_.range_page));
  struct Parts {
    std::optional<HostRecord> record;
    int64_t record_rev = 0;
    std::optional<HostStatus> status;
    int64_t status_rev = 0;
  };
  std::map<std::string, Parts> by_id;  // sorted by host_id, as store.h promises
  for (const etcd::KeyValue& kv : kvs) {
    std::optional<HostKey> hk = ParseHostKey(k_, kv.key);
    if (!hk) continue;  // not ours
    Parts& p = by_id[hk->host_id];
    // A value that does not decode is left out, with its key in the log, instead of failing
    // the listing: one bad key must not keep every replica from starting. Its host's agent
    // is refused its credential and registers again with the join token, writing it anew.
    if (hk->status) {
      auto st = DecodeHostStatus(kv.key, hk->host_id, kv.value);
      if (!st.ok()) {
        SkipUndecodable(kv.key, st.status());
        continue;
      }
      p.status = std::move(*st);
      p.status_rev = kv.mod_revision;
    } else {
      auto h = DecodeHostRecord(kv.key, kv.value);
      if (!h.ok()) {
        SkipUndecodable(kv.key, h.status());
        continue;
      }
      p.record = std::move(*h);
      p.record_rev = kv.mod_revision;
    }
  }
  std::vector<HostRecord> out;
  out.reserve(by_id.size());
  for (auto& [id, p] : by_id) {
    if (!p.record) continue;  // a status left by a delete racing a status write
    MergeHostStatus(*p.record, p.record_rev, p.status, p.status_rev);
    out.push_back(std::move(*p.record));
  }
  return out;
}

absl::Status EtcdStore::DeleteHost(const std::string& host_id) {
  const std::string key = k_.Host(host_id);
  etcd::Compare exists;
  exists.key = key;
  exists.target = etcd::Compare::Target::kVersion;
  exists.result = etcd::Compare::Result::kGreater;
  HERD_ASSIGN_OR_RETURN(
      etcd::TxnResult r,
      c_.Txn({exists}, {etcd::Op::Delete(key), etcd::Op::Delete(k_.HostStatus(host_id))}));
  if (!r.succeeded) return absl::NotFoundError(absl::StrCat("no host ", host_id));
  return absl::OkStatus();
}

// ---------------------------------------------------------------------------- overrides

absl::StatusOr<ConfigRead> EtcdStore::ReadConfig(const std::string& override_key) {
  const std::string rev_key = k_.ConfigRevision();
  // One Txn of two reads: the revision and the override at one etcd revision.
  HERD_ASSIGN_OR_RETURN(etcd::TxnResult r, c_.Txn({}, {GetOp(rev_key), GetOp(override_key)}));
  if (r.ranges.size() != 2) return absl::InternalError("etcd answered a Txn of 2 reads badly");
  ConfigRead out;
  HERD_ASSIGN_OR_RETURN(out.revision, DecodeRevision(rev_key, r.ranges[0].kvs));
  if (!r.ranges[0].kvs.empty()) out.revision_mod = r.ranges[0].kvs.front().mod_revision;
  if (!r.ranges[1].kvs.empty()) {
    herd::v1::Override o;
    if (!o.ParseFromString(r.ranges[1].kvs.front().value)) {
      return Undecodable(override_key, "an override");
    }
    out.current = std::move(o);
  }
  return out;
}

// One try of a set (`set`) or an unset (nullptr): nullopt when another writer changed the
// revision between the read and the write.
absl::StatusOr<std::optional<ConfigWrite>> EtcdStore::TryConfigChange(
    const std::string& override_key, const herd::v1::Override* set, bool* lost) {
  HERD_ASSIGN_OR_RETURN(ConfigRead now, ReadConfig(override_key));
  const bool same = set != nullptr ? now.current && now.current->value() == set->value()
                                   : !now.current.has_value();
  // Same value (who/when of the original set are kept), or unset of nothing: no change,
  // unless a try whose answer was lost put it there.
  if (same) return std::optional<ConfigWrite>(ConfigWrite{now.revision, *lost});
  const uint64_t next = now.revision + 1;
  std::vector<etcd::Op> ops;
  ops.push_back(set != nullptr ? etcd::Op::Put(override_key, set->SerializeAsString())
                               : etcd::Op::Delete(override_key));
  ops.push_back(etcd::Op::Put(k_.ConfigRevision(), absl::StrCat(next)));
  auto r = c_.Txn({Unchanged(k_.ConfigRevision(), now.revision_mod)}, ops);
  if (!r.ok()) {
    if (!absl::IsUnavailable(r.status())) return r.status();  // refused: nothing was written
    return ResolveUnanswered(override_key, set, now, r.status(), lost);
  }
  if (!r->succeeded) return std::optional<ConfigWrite>();
  return std::optional<ConfigWrite>(ConfigWrite{next, true});
}

// A change's Txn got no answer (UNAVAILABLE): etcd may have applied it (a member lost after
// the request reached it) or not. The config read again tells, so that a change is not
// reported failed while in the store (docs/controlplane.md, "Replicas"): the revision key
// untouched since `before` → not applied, tried again (the guard makes a late apply of the
// first try and the retry exclusive); at the next revision with exactly this change (the
// override carries who and when) → applied. Anything else, or no answer to the read either,
// is the error, saying the outcome is unknown.
absl::StatusOr<std::optional<ConfigWrite>> EtcdStore::ResolveUnanswered(
    const std::string& override_key, const herd::v1::Override* set, const ConfigRead& before,
    const absl::Status& lost_answer, bool* lost) {
  auto unknown = [&](absl::string_view why) {
    return absl::UnavailableError(absl::StrCat(
        lost_answer.message(), "; whether the change was applied is unknown (", why,
        "): read the configuration again once the store answers"));
  };
  auto again = ReadConfig(override_key);
  if (!again.ok()) return unknown("the store did not answer the read that would tell");
  if (again->revision_mod == before.revision_mod) {
    // Not applied yet: tried again, remembering that this try may still apply (etcd can
    // commit a proposal it timed out).
    *lost = true;
    return std::optional<ConfigWrite>();
  }
  const uint64_t next = before.revision + 1;
  const bool applied =
      again->revision == next &&
      (set != nullptr ? again->current.has_value() &&
                            again->current->SerializeAsString() == set->SerializeAsString()
                      : !again->current.has_value());
  if (applied) return std::optional<ConfigWrite>(ConfigWrite{next, true});
  return unknown(absl::StrCat("the configuration is at revision ", again->revision,
                              " now, after another change"));
}

absl::StatusOr<ConfigWrite> EtcdStore::SetOverride(const herd::v1::Override& override) {
  HERD_RETURN_IF_ERROR(CheckModuleKey(override.module(), override.key()));
  HERD_ASSIGN_OR_RETURN(std::string key,
                        k_.Override(override.scope(), override.module(), override.key()));
  return ChangeConfig(key, &override);
}

absl::StatusOr<ConfigWrite> EtcdStore::ChangeConfig(const std::string& override_key,
                                                    const herd::v1::Override* set) {
  std::lock_guard lock(config_mu_);
  bool lost = false;
  auto r = RetryOnConflict<ConfigWrite>(o_.max_conflict_retries, "changing the configuration",
                                        [&] { return TryConfigChange(override_key, set, &lost); });
  // Out of tries after a lost answer: not "others kept changing it", but unknown.
  if (lost && absl::IsAborted(r.status())) {
    return absl::UnavailableError(absl::StrCat(
        r.status().message(), "; a try's answer was lost, so whether the change was applied is "
        "unknown: read the configuration again"));
  }
  return r;
}

absl::StatusOr<ConfigWrite> EtcdStore::UnsetOverride(const herd::v1::Scope& scope,
                                                     const std::string& module,
                                                     const std::string& key) {
  HERD_RETURN_IF_ERROR(CheckModuleKey(module, key));
  HERD_ASSIGN_OR_RETURN(std::string okey, k_.Override(scope, module, key));
  return ChangeConfig(okey, nullptr);
}

absl::StatusOr<std::vector<herd::v1::Override>> EtcdStore::ListOverrides(
    const std::string& module) {
  const std::string dir = module.empty() ? k_.OverridesDir() : k_.OverridesOfModule(module);
  HERD_ASSIGN_OR_RETURN(auto kvs, RangeAll(c_, dir, o_.range_page));
  std::vector<herd::v1::Override> out;
  out.reserve(kvs.size());
  for (const etcd::KeyValue& kv : kvs) {
    if (!out.emplace_back().ParseFromString(kv.value)) return Undecodable(kv.key, "an override");
  }
  // Escaped keys do not sort as the names do: the order of store.h, in memory.
  auto order = [](const herd::v1::Override& o) {
    auto [kind, value] = ScopeOrder(o.scope());
    return std::make_tuple(o.module(), kind, value, o.key());
  };
  std::sort(out.begin(), out.end(), [&](const auto& a, const auto& b) {
    return order(a) < order(b);
  });
  return out;
}

// ----------------------------------------------------------------------------- rollouts

absl::StatusOr<std::vector<herd::v1::Rollout>> EtcdStore::ListRollouts(size_t limit) {
  if (limit == 0) return std::vector<herd::v1::Rollout>();
  HERD_ASSIGN_OR_RETURN(auto kvs, RangeAll(c_, k_.RolloutsDir(), o_.range_page));
  std::vector<std::pair<int64_t, herd::v1::Rollout>> all;  // (create_revision, rollout)
  all.reserve(kvs.size());
  for (const etcd::KeyValue& kv : kvs) {
    herd::v1::Rollout r;
    if (!r.ParseFromString(kv.value)) {  // left out, as a host record is (ListHosts)
      SkipUndecodable(kv.key, Undecodable(kv.key, "a rollout"));
      continue;
    }
    all.emplace_back(kv.create_revision, std::move(r));
  }
  // Most recent first; ties in created_at: the one inserted last (its key created last).
  std::sort(all.begin(), all.end(), [](const auto& a, const auto& b) {
    return std::make_pair(a.second.created_at_unix_ms(), a.first) >
           std::make_pair(b.second.created_at_unix_ms(), b.first);
  });
  std::vector<herd::v1::Rollout> out;
  for (size_t i = 0; i < all.size() && i < limit; ++i) out.push_back(std::move(all[i].second));
  return out;
}

// ------------------------------------------------------------------------------- tokens

absl::Status EtcdStore::AddToken(const ApiToken& token) {
  if (token.name.empty()) return absl::InvalidArgumentError("the token's name is empty");
  if (token.secret_sha256.empty()) {
    return absl::InvalidArgumentError(
        absl::StrCat("token ", token.name, ": the secret's hash is empty"));
  }
  const std::string by_name = k_.TokenByName(token.name);
  const std::string value = EncodeToken(token);
  HERD_ASSIGN_OR_RETURN(
      etcd::TxnResult r,
      c_.Txn({etcd::Compare::Absent(by_name), etcd::Compare::Absent(k_.TokenBySecret(
                                                   token.secret_sha256))},
             {etcd::Op::Put(by_name, value),
              etcd::Op::Put(k_.TokenBySecret(token.secret_sha256), value)},
             {GetOp(by_name, /*keys_only=*/true)}));
  if (r.succeeded) return absl::OkStatus();
  if (!r.ranges.empty() && !r.ranges[0].kvs.empty()) {
    return absl::AlreadyExistsError(absl::StrCat("a token named ", token.name, " already exists"));
  }
  return absl::AlreadyExistsError(
      absl::StrCat("token ", token.name, ": another token already has this secret"));
}

absl::Status EtcdStore::DeleteToken(const std::string& name) {
  const std::string by_name = k_.TokenByName(name);
  return RetryOnConflict<bool>(o_.max_conflict_retries, "deleting a token", [&]()
      -> absl::StatusOr<std::optional<bool>> {
    HERD_ASSIGN_OR_RETURN(std::optional<etcd::KeyValue> kv, c_.Get(by_name));
    if (!kv) return absl::NotFoundError(absl::StrCat("no token named ", name));
    HERD_ASSIGN_OR_RETURN(ApiToken t, DecodeToken(*kv));
    HERD_ASSIGN_OR_RETURN(
        etcd::TxnResult r,
        c_.Txn({Unchanged(by_name, kv->mod_revision)},
               {etcd::Op::Delete(by_name), etcd::Op::Delete(k_.TokenBySecret(t.secret_sha256))}));
    if (!r.succeeded) return std::optional<bool>();
    return std::optional<bool>(true);
  }).status();
}

}  // namespace

absl::StatusOr<std::unique_ptr<Store>> OpenEtcdStore(etcd::Client& client,
                                                     const std::string& prefix,
                                                     EtcdStoreOptions options) {
  EtcdKeys keys(prefix);
  if (keys.prefix().empty() || keys.prefix().front() != '/') {
    return absl::InvalidArgumentError(absl::StrCat(
        "the etcd prefix \"", prefix, "\" must start with '/' and name a directory (e.g. /herd)"));
  }
  auto store = std::make_unique<EtcdStore>(client, keys.prefix(), std::move(options));
  // Reaches etcd once, so that a wrong address or refused credentials fail at start.
  HERD_RETURN_IF_ERROR(store->ConfigRevision().status());
  return std::unique_ptr<Store>(std::move(store));
}

}  // namespace herd::controlplane
