// A module's channel (bytes a module process writes on its socket): LineFramer and
// ModuleChannelState::HandleLine, then the ModuleInfo agentd reports, which must travel as
// protobuf. Small limits so that clipping and bounds are reached.
#include <cstddef>
#include <cstdint>
#include <string>

#include "agent/modules/channel.h"
#include "tests/fuzz/fuzz_util.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  herd::agent::ChannelLimits limits;
  limits.max_line_bytes = 4096;
  limits.max_messages_per_second = 64;
  limits.max_probes = 8;
  limits.max_actions = 8;
  limits.kept_issues = 4;
  limits.kept_events = 4;
  limits.probe_history = 4;
  limits.max_text_bytes = 16;
  herd::agent::ModuleChannelState state(limits);
  state.on_reply = [](const std::string&, const nlohmann::json& v) { (void)v.dump(); };
  state.on_scoped = [](const std::string&, const std::string&, const std::string&,
                       const nlohmann::json& v) { (void)v.dump(); };
  herd::agent::LineFramer framer(limits.max_line_bytes);
  absl::Time now = absl::FromUnixSeconds(1'700'000'000);
  const std::string bytes(reinterpret_cast<const char*>(data), size);
  framer.Feed(bytes, [&](absl::string_view line) {
    state.HandleLine(line, now);
    now += absl::Milliseconds(7);
  });
  state.count_oversized(framer.oversized());
  herd::v1::ModuleInfo info;
  state.Fill(&info);
  HERD_FUZZ_CHECK(herd::fuzz::RoundTrips(info));
  for (const auto& p : state.MainProbes()) HERD_FUZZ_CHECK(herd::fuzz::RoundTrips(p));
  state.ResetForNewProcess();
  return 0;
}
