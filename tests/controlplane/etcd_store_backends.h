// The etcd store as backends of the Store contract suite (store_contract_test.h): on the
// in-memory FakeEtcd, and on a real etcd (tests/support/etcd_harness.h) started once per test
// binary, when the first test needs it, and stopped when the binary ends. Each test's
// directory maps to its own key prefix, so tests never see each other's keys, and opening the
// same directory again reopens the same data (a new store object over the same keys).
#pragma once

#include <memory>
#include <string>

#include "absl/status/statusor.h"
#include "controlplane/etcd/etcd_client.h"
#include "controlplane/store/etcd_store.h"
#include "tests/controlplane/store_contract_test.h"
#include "tests/fakes/fake_etcd.h"

namespace herd::controlplane::testing {

// A prefix of its own for a test directory ("/tmp/herd-store-abc" → "/test/tmp/herd-store-abc").
inline std::string PrefixForDir(const std::string& dir) { return "/test" + dir; }

// One FakeEtcd for the whole binary (never destroyed: stores may outlive main's statics).
inline herd::testing::FakeEtcd& SharedFakeEtcd() {
  static auto* fake = new herd::testing::FakeEtcd;
  return *fake;
}

inline StoreBackend FakeEtcdBackend() {
  return StoreBackend{"etcd_fake", [](const std::string& dir) {
                        return OpenEtcdStore(SharedFakeEtcd(), PrefixForDir(dir));
                      }};
}

// The real etcd of this binary and a client of it; fails (with the harness's reason) when
// etcd cannot be started.
absl::StatusOr<etcd::Client*> SharedRealEtcd();

inline StoreBackend RealEtcdBackend() {
  return StoreBackend{"etcd", [](const std::string& dir)
                                  -> absl::StatusOr<std::unique_ptr<Store>> {
                        absl::StatusOr<etcd::Client*> client = SharedRealEtcd();
                        if (!client.ok()) return client.status();
                        return OpenEtcdStore(**client, PrefixForDir(dir));
                      }};
}

}  // namespace herd::controlplane::testing
