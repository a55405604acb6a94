// Bytes a module writes on PM2's rpc.sock (agent/pm2): the AMP decoder, fed in pieces whose
// sizes come from the input, and each message as a pm2-axon-rpc request. Nothing may throw,
// and a decoded message re-encodes to the bytes it came from.
#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

#include "agent/pm2/amp.h"
#include "tests/fuzz/fuzz_util.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size < 1) return 0;
  const size_t step = 1 + data[0] % 64;
  const std::string bytes(reinterpret_cast<const char*>(data) + 1, size - 1);
  herd::agent::pm2::AmpDecoder decoder(4096);
  std::vector<std::vector<std::string>> msgs;
  std::string consumed;
  bool failed = false;
  for (size_t i = 0; i < bytes.size() && !failed; i += step) {
    const std::string piece = bytes.substr(i, step);
    failed = !decoder.Feed(piece, &msgs).ok();
    consumed += piece;
  }
  std::string reencoded;
  for (const auto& m : msgs) {
    HERD_FUZZ_CHECK(m.size() <= herd::agent::pm2::kMaxAmpArgs);
    reencoded += herd::agent::pm2::EncodeAmp(m);
    std::string id;
    auto req = herd::agent::pm2::ParseRpcRequest(m, &id);
    if (req.ok()) {
      HERD_FUZZ_CHECK(req->type == "methods" || (req->type == "call" && req->args.is_array()));
      (void)herd::agent::pm2::PackJson(req->args);
    }
  }
  // Whole messages are what was consumed, less what waits for the rest of one (after an
  // error, a prefix of it).
  if (!failed) {
    HERD_FUZZ_CHECK(reencoded == consumed.substr(0, consumed.size() - decoder.buffered()));
  } else {
    HERD_FUZZ_CHECK(consumed.compare(0, reencoded.size(), reencoded) == 0);
  }
  return 0;
}
