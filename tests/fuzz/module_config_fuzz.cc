// $HERD_HOME/module_conf.json (operators edit it by hand): ModuleConfStore::Load, then what
// agentd computes from it for every module, against defaults of each type.
#include <unistd.h>

#include <cstddef>
#include <cstdint>
#include <fstream>
#include <string>

#include "agent/modules/module_config.h"
#include "common/atomic_file.h"
#include "tests/fuzz/fuzz_util.h"

namespace {

const std::string& ConfPath() {
  static const std::string path = [] {
    char tmpl[] = "/tmp/herd-fuzz-modconf-XXXXXX";
    const char* dir = mkdtemp(tmpl);
    HERD_FUZZ_CHECK(dir != nullptr);
    return std::string(dir) + "/module_conf.json";
  }();
  return path;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using json = nlohmann::json;
  {
    std::ofstream out(ConfPath(), std::ios::binary | std::ios::trunc);
    out.write(reinterpret_cast<const char*>(data), static_cast<std::streamsize>(size));
  }
  herd::agent::ModuleConfStore store(ConfPath());
  if (!store.Load().ok()) return 0;
  const json defaults = {{"interval", 1000}, {"ratio", 0.5}, {"debug", false}, {"name", "x"},
                         {"big", 18446744073709551615u}};
  // Module names from the file itself.
  auto text = herd::ReadFileToString(ConfPath());
  HERD_FUZZ_CHECK(text.ok());
  const json doc = json::parse(*text, nullptr, false);
  HERD_FUZZ_CHECK(doc.is_object());
  for (const auto& [module, unused] : doc.items()) {
    const json overrides = store.Overrides(module);
    const json effective = herd::agent::EffectiveConfig(defaults, overrides);
    (void)effective.dump();
    for (const auto& e : herd::agent::ConfigEntries(defaults, overrides, "local")) {
      HERD_FUZZ_CHECK(herd::fuzz::RoundTrips(e));
    }
  }
  return 0;
}
