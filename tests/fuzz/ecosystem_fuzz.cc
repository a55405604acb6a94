// An ecosystem document or app object (agentctl start FILE, StartRequest.ecosystem_json):
// ParseEcosystem. Accepted specs must be valid, within the documented bounds and travel as
// protobuf.
#include <cstddef>
#include <cstdint>
#include <string>

#include "agent/supervisor/app_spec.h"
#include "tests/fuzz/fuzz_util.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string text(reinterpret_cast<const char*>(data), size);
  herd::agent::AppSpecContext ctx{"/tmp", "/usr/bin:/bin"};
  auto specs = herd::agent::ParseEcosystem(text, ctx);
  if (!specs.ok()) return 0;
  for (const auto& s : *specs) {
    HERD_FUZZ_CHECK(herd::agent::ValidateUnitName(s.name()).ok());
    HERD_FUZZ_CHECK(s.kill_timeout_ms() <= herd::agent::kMaxKillTimeoutMs);
    HERD_FUZZ_CHECK(s.min_uptime_ms() <= herd::agent::kMaxDelayMs);
    HERD_FUZZ_CHECK(s.restart_delay_ms() <= herd::agent::kMaxDelayMs);
    HERD_FUZZ_CHECK(s.exp_backoff_restart_delay_ms() <= herd::agent::kMaxDelayMs);
    HERD_FUZZ_CHECK(herd::fuzz::RoundTrips(s));
    (void)herd::agent::ExecArgv(s);
  }
  return 0;
}
