// Where the control plane's store is (controlplane --store / --data) and opening it: the
// SQLite file in the data directory by default, or etcd (issue 22: replicas over one etcd)
// with `--store etcd://HOST:PORT[,HOST:PORT...]`.
#pragma once

#include <memory>
#include <string>

#include "absl/status/statusor.h"
#include "controlplane/etcd/etcd_client.h"
#include "controlplane/store/etcd_store.h"
#include "controlplane/store/store.h"

namespace herd::controlplane {

struct StoreLocation {
  // --data: the SQLite store is <data_dir>/herd.db when `url` is empty.
  std::string data_dir;
  // --store: "" (SQLite) or etcd://HOST:PORT[,...] (etcds:// = TLS).
  std::string url;
  // --etcd-prefix; --etcd-ca/--etcd-cert/--etcd-key; --etcd-user and --etcd-password-file.
  std::string etcd_prefix = "/herd";
  std::string etcd_ca, etcd_cert, etcd_key;
  std::string etcd_user, etcd_password_file;
  // Retention and limits of the etcd store (--audit-max-entries, --audit-max-age).
  EtcdStoreOptions etcd;

  bool on_etcd() const { return !url.empty(); }
};

// An open store and what must outlive it: the etcd client (null on SQLite), declared first
// so it is destroyed last.
struct OpenedStore {
  std::unique_ptr<etcd::Client> etcd_client;
  std::unique_ptr<Store> store;
  // For logs: "sqlite /data/herd.db" or "etcd 127.0.0.1:2379 prefix /herd".
  std::string description;
};

// The etcd client options of a location (endpoints from the URL, TLS files, user and the
// password read from its file); INVALID_ARGUMENT naming the flag otherwise.
absl::StatusOr<etcd::Options> EtcdClientOptions(const StoreLocation& location);

// Opens the store (creating the data directory if needed; etcd: connects and reads
// once, so a wrong address or credentials fail here).
absl::StatusOr<OpenedStore> OpenStoreAt(const StoreLocation& location);

}  // namespace herd::controlplane
