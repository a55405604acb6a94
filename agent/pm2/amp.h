// AMP, the framing of PM2's daemon sockets (rpc.sock, pub.sock), as the npm packages `amp`
// 0.3 and `amp-message` 0.1 that pm2-axon uses write it:
//   - a message is one byte (the protocol version, 1, in the high nibble; the number of
//     arguments, at most 15, in the low nibble), then each argument as its length (4 bytes,
//     big-endian) and its bytes;
//   - amp-message tags each argument: "s:" then a string, "j:" then JSON, anything else is a
//     blob (raw bytes).
// A stream of messages has no other delimiter. AmpDecoder takes a stream's bytes in any
// pieces and returns whole messages, with a bound on a message's size: the peer is a module,
// and nothing it sends may grow agentd's memory without limit.
#pragma once

#include <cstddef>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "nlohmann/json.hpp"

namespace herd::agent::pm2 {

inline constexpr size_t kMaxAmpArgs = 15;

// One message of at most kMaxAmpArgs arguments (more is a programming error: checked).
std::string EncodeAmp(const std::vector<std::string>& args);

class AmpDecoder {
 public:
  explicit AmpDecoder(size_t max_message_bytes) : max_message_bytes_(max_message_bytes) {}

  // Appends the messages `data` completes to *out (each a list of its arguments, still
  // tagged). A message over the bound, or of another protocol version, is an error that leaves
  // the decoder unusable (the connection is to be closed).
  absl::Status Feed(absl::string_view data, std::vector<std::vector<std::string>>* out);
  // Bytes held for a message not complete yet.
  size_t buffered() const { return buf_.size(); }

 private:
  const size_t max_message_bytes_;
  std::string buf_;
  bool failed_ = false;
};

// amp-message's tags.
std::string PackString(absl::string_view s);
std::string PackJson(const nlohmann::json& value);
// An argument as JSON: "j:" parsed, "s:" as a JSON string. A blob, or JSON that does not
// parse, is an error saying so (never an exception).
absl::StatusOr<nlohmann::json> UnpackJson(const std::string& arg);

// A request on rpc.sock, as pm2-axon's req socket and pm2-axon-rpc's client send it:
// [JSON {type: "call", method, args: [...]}, id] (or {type: "methods"}). The id is echoed as it
// came (a tagged string: "s:<pid>:<n>").
struct RpcRequest {
  std::string id;
  std::string type;    // "call" or "methods"
  std::string method;  // for a call
  nlohmann::json args = nlohmann::json::array();
};
// An error says what is wrong with the request (for the answer, when it has an id at all:
// `id` is set whenever the message had one).
absl::StatusOr<RpcRequest> ParseRpcRequest(const std::vector<std::string>& msg,
                                           std::string* id);

}  // namespace herd::agent::pm2
