#include "tests/controlplane/etcd_store_backends.h"

#include <memory>
#include <mutex>

#include "tests/support/etcd_harness.h"

namespace herd::controlplane::testing {
namespace {

// The binary's etcd and its client; destroyed (client first, then etcd, which the harness
// stops) when the binary exits.
struct RealEtcd {
  std::unique_ptr<herd::testing::EtcdHarness> harness;
  std::unique_ptr<etcd::Client> client;
  absl::Status status;
};

RealEtcd& Instance() {
  static RealEtcd real;
  return real;
}

}  // namespace

absl::StatusOr<etcd::Client*> SharedRealEtcd() {
  static std::once_flag once;
  std::call_once(once, [] {
    RealEtcd& r = Instance();
    r.harness = std::make_unique<herd::testing::EtcdHarness>();
    if (!r.harness->Start()) {
      r.status = absl::UnavailableError("etcd did not start: " + r.harness->error());
      return;
    }
    etcd::Options options;
    options.endpoints = r.harness->EndpointList();
    absl::StatusOr<std::unique_ptr<etcd::Client>> client = etcd::Client::Connect(options);
    if (!client.ok()) {
      r.status = client.status();
      return;
    }
    r.client = std::move(*client);
  });
  RealEtcd& r = Instance();
  if (!r.status.ok()) return r.status;
  return r.client.get();
}

}  // namespace herd::controlplane::testing
