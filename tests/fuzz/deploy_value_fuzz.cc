// Deployment declarations: a stored value (ParseDeployValue: etcd's overrides can hold
// anything any process with etcd access wrote) and a Deploy request (NormalizeDeploy:
// source and name, split at the first NUL). The first byte picks which. Nothing may throw
// or crash; an accepted request stores a value that parses back to its source and version.
// A third mode reads an uploaded archive's package.json (ReadArtifactManifest).
#include <cstddef>
#include <cstdint>
#include <string>

#include "controlplane/core/deployments.h"
#include "tests/fuzz/fuzz_util.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace herd::controlplane;
  if (size == 0) return 0;
  const std::string rest(reinterpret_cast<const char*>(data + 1), size - 1);
  if (data[0] % 3 == 2) {
    // An uploaded archive's package.json (ReadArtifactManifest): what it accepts is a name
    // and an exact version Deploy would accept.
    std::string name, version;
    if (!ReadArtifactManifest(rest, &name, &version).ok()) return 0;
    HERD_FUZZ_CHECK(IsModuleName(name) && IsExactVersion(version));
    return 0;
  }
  if (data[0] % 3 == 0) {
    herd::v1::DesiredModule d;
    DeployPins pins;
    if (ParseDeployValue(rest, &d, nullptr, &pins)) {
      herd::v1::DeployRequest r;
      r.set_source(d.source());
      r.set_version(d.version());
      herd::v1::DesiredModule again;
      DeployPins pins_again;
      HERD_FUZZ_CHECK(ParseDeployValue(DeployValue(r, &pins), &again, nullptr, &pins_again));
      HERD_FUZZ_CHECK(again.source() == d.source() && again.version() == d.version());
      // A rollout's pins round-trip too (values are UTF-8 once stored: replaced otherwise).
      HERD_FUZZ_CHECK(pins_again.hosts.size() <= pins.hosts.size());
      // A pinned host resolves to the rollout's version.
      if (!pins.rollout_id.empty() && !pins.to.source().empty() && !pins.hosts.empty()) {
        const std::string host = *pins.hosts.begin();
        herd::v1::DesiredModule moved;
        HERD_FUZZ_CHECK(ParseDeployValue(rest, &moved, &host));
        HERD_FUZZ_CHECK(moved.source() == pins.to.source());
      }
    }
    return 0;
  }
  const size_t nul = rest.find('\0');
  herd::v1::DeployRequest req;
  req.set_source(rest.substr(0, nul));
  if (nul != std::string::npos) req.set_name(rest.substr(nul + 1));
  auto n = NormalizeDeploy(req);
  if (!n.ok()) return 0;
  HERD_FUZZ_CHECK(!n->name().empty() && n->name().size() <= 64);
  HERD_FUZZ_CHECK(!n->source().empty() && n->source().size() <= 4096);
  herd::v1::DesiredModule stored;
  HERD_FUZZ_CHECK(ParseDeployValue(DeployValue(*n), &stored));
  HERD_FUZZ_CHECK(stored.source() == n->source() && stored.version() == n->version());
  return 0;
}
