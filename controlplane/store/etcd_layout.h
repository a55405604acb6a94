// Where the etcd store (etcd_store.h) keeps each record, and how records are encoded: shared
// with what watches the store (replicas' config push watches <p>/config/, the fleet-wide host
// list watches <p>/hosts/), so that nobody else spells a key or parses a value by hand.
//
// Key layout under the prefix <p> (default /herd; controlplane/cluster/cluster.h has the
// keys the replicas add). <seg> is a name escaped by EscapeSegment: '%', '/' and bytes
// outside '!'..'~' become %XX, so no name can reach into another's keys.
//
//   <p>/config/revision               the config revision, decimal text ("0" when absent).
//                                     EVERY config change is one etcd Txn that puts this key
//                                     (old value + 1, guarded on its mod_revision) and puts
//                                     or deletes one override key: a watch on <p>/config/
//                                     gets both in one WatchBatch, at one etcd revision.
//   <p>/config/overrides/<module>/global/<key>
//   <p>/config/overrides/<module>/selector/<selector>/<key>
//   <p>/config/overrides/<module>/host/<host>/<key>
//                                     one override: herd.v1.Override (fleet.proto), whole.
//   <p>/hosts/<host>                  the host's record as PutHosts wrote it:
//                                     herd.v1.StoredHost (store.proto) — identity, labels,
//                                     modules, and its status at that time.
//   <p>/hosts/<host>/status           its status as PutHostStatus wrote it since:
//                                     herd.v1.StoredHostStatus (last seen, acked version).
//                                     The host's current status is the one of these two keys
//                                     with the higher mod_revision (MergeHostStatus). A host
//                                     deleted loses both keys in one Txn.
//   <p>/rollouts/<id>                 herd.v1.Rollout, whole. Listing order: created_at,
//                                     then the key's create_revision (insertion order).
//   <p>/tokens/name/<name>            herd.v1.StoredToken
//   <p>/tokens/secret/<sha256>        the same StoredToken: the index FindTokenBySecretHash
//                                     reads (one Get, no scan); both keys change in one Txn.
//   <p>/audit/meta                    herd.v1.StoredAuditMeta (next sequence number, count)
//   <p>/audit/entries/<at>.<seq>      herd.v1.AuditEntry. <at> is at_unix_ms + 2^63 and <seq>
//                                     the entry's sequence number, both as 20 decimal digits,
//                                     so key order is (time, insertion): the listing order.
//   <p>/settings/<key>                the setting's value, as is.
//
// Values are protobuf (store.proto says why not JSON); numbers a person reads with etcdctl
// (the config revision) are text.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include "absl/strings/string_view.h"

#include "absl/status/statusor.h"
#include "controlplane/store/store.h"

namespace herd::controlplane {

// '%', '/' and bytes outside '!'..'~' as %XX (upper-case hex); everything else as is.
std::string EscapeSegment(absl::string_view name);
// The inverse; InvalidArgument for a bad escape.
absl::StatusOr<std::string> UnescapeSegment(absl::string_view segment);

// The store's keys under one prefix.
class EtcdKeys {
 public:
  // `prefix` such as "/herd" (a trailing '/' is dropped; "" means keys start at "/").
  explicit EtcdKeys(std::string prefix);
  const std::string& prefix() const { return p_; }

  std::string ConfigDir() const { return p_ + "/config/"; }
  std::string ConfigRevision() const { return p_ + "/config/revision"; }
  std::string OverridesDir() const { return p_ + "/config/overrides/"; }
  std::string OverridesOfModule(absl::string_view module) const;
  // InvalidArgument for a scope with nothing set or an empty selector/host.
  absl::StatusOr<std::string> Override(const herd::v1::Scope& scope, absl::string_view module,
                                       absl::string_view key) const;

  std::string HostsDir() const { return p_ + "/hosts/"; }
  std::string Host(absl::string_view host_id) const;
  std::string HostStatus(absl::string_view host_id) const { return Host(host_id) + "/status"; }

  std::string RolloutsDir() const { return p_ + "/rollouts/"; }
  std::string Rollout(absl::string_view id) const;

  std::string TokensDir() const { return p_ + "/tokens/"; }
  std::string TokensByNameDir() const { return p_ + "/tokens/name/"; }
  std::string TokenByName(absl::string_view name) const;
  std::string TokenBySecret(absl::string_view secret_sha256) const;

  std::string AuditDir() const { return p_ + "/audit/"; }
  std::string AuditMeta() const { return p_ + "/audit/meta"; }
  std::string AuditEntriesDir() const { return p_ + "/audit/entries/"; }
  std::string AuditEntry(int64_t at_unix_ms, uint64_t seq) const;

  std::string SettingsDir() const { return p_ + "/settings/"; }
  std::string Setting(absl::string_view key) const;

  // Every key the store owns lives under one of these (for migrate's emptiness check).
  std::string StoreDirs(int i) const;
  static constexpr int kStoreDirs = 6;

 private:
  std::string p_;
};

// A key under <p>/hosts/: the host and whether it is the status key; nullopt for anything
// else.
struct HostKey {
  std::string host_id;
  bool status = false;
};
std::optional<HostKey> ParseHostKey(const EtcdKeys& keys, absl::string_view key);

std::string EncodeHostRecord(const HostRecord& host);
std::string EncodeHostStatus(const HostStatus& status);
// DataLoss naming `key` when the value is not a record.
absl::StatusOr<HostRecord> DecodeHostRecord(absl::string_view key, absl::string_view value);
absl::StatusOr<HostStatus> DecodeHostStatus(absl::string_view key, absl::string_view host_id,
                                            absl::string_view value);
// The record with the status that is newer by etcd mod_revision.
void MergeHostStatus(HostRecord& record, int64_t record_mod_revision,
                     const std::optional<HostStatus>& status, int64_t status_mod_revision);

}  // namespace herd::controlplane
