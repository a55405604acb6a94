// A module's package.json (agentctl install DIR, a tarball, a development-mode folder):
// ParseManifest, then the unit spec it gives. Nothing may throw or crash; what is accepted
// must travel as protobuf.
#include <cstddef>
#include <cstdint>
#include <string>

#include "agent/modules/manifest.h"
#include "tests/fuzz/fuzz_util.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string text(reinterpret_cast<const char*>(data), size);
  auto m = herd::agent::ParseManifest(text, "/fuzz/package.json");
  if (!m.ok()) return 0;
  HERD_FUZZ_CHECK(!m->name.empty());
  HERD_FUZZ_CHECK(herd::agent::ValidateModuleName(m->name).ok());
  auto spec = herd::agent::ModuleAppSpec(*m, "/tmp", "/usr/bin:/bin");
  if (spec.ok()) HERD_FUZZ_CHECK(herd::fuzz::RoundTrips(*spec));
  return 0;
}
