#include "agent/pm2/amp.h"

#include <cassert>
#include <cstdint>

#include "absl/strings/str_cat.h"
#include "common/json_parse.h"

namespace herd::agent::pm2 {
namespace {

constexpr uint8_t kVersion = 1;

void PutU32(std::string& out, uint32_t v) {
  out.push_back(static_cast<char>(v >> 24));
  out.push_back(static_cast<char>(v >> 16));
  out.push_back(static_cast<char>(v >> 8));
  out.push_back(static_cast<char>(v));
}

uint32_t GetU32(const char* p) {
  auto b = [p](int i) { return static_cast<uint32_t>(static_cast<uint8_t>(p[i])); };
  return b(0) << 24 | b(1) << 16 | b(2) << 8 | b(3);
}

}  // namespace

std::string EncodeAmp(const std::vector<std::string>& args) {
  assert(args.size() <= kMaxAmpArgs);
  size_t len = 1;
  for (const auto& a : args) len += 4 + a.size();
  std::string out;
  out.reserve(len);
  out.push_back(static_cast<char>(kVersion << 4 | args.size()));
  for (const auto& a : args) {
    PutU32(out, static_cast<uint32_t>(a.size()));
    out.append(a);
  }
  return out;
}

absl::Status AmpDecoder::Feed(absl::string_view data,
                              std::vector<std::vector<std::string>>* out) {
  if (failed_) return absl::FailedPreconditionError("the stream failed before");
  buf_.append(data.data(), data.size());
  size_t start = 0;
  while (start < buf_.size()) {
    const uint8_t meta = static_cast<uint8_t>(buf_[start]);
    if (meta >> 4 != kVersion) {
      failed_ = true;
      return absl::InvalidArgumentError(absl::StrCat(
          "not an AMP message: version ", meta >> 4, " (PM2's sockets speak version 1)"));
    }
    const size_t argc = meta & 0xf;
    // Walk the lengths: the message is whole once every argument is.
    size_t off = start + 1;
    bool whole = true;
    for (size_t i = 0; i < argc; ++i) {
      if (buf_.size() - off < 4) {
        whole = false;
        break;
      }
      const uint64_t len = GetU32(buf_.data() + off);
      if (off + 4 + len - start > max_message_bytes_) {
        failed_ = true;
        return absl::ResourceExhaustedError(absl::StrCat(
            "an AMP message of more than ", max_message_bytes_, " bytes"));
      }
      if (buf_.size() - off - 4 < len) {
        whole = false;
        break;
      }
      off += 4 + len;
    }
    if (!whole) {
      if (buf_.size() - start > max_message_bytes_) {
        failed_ = true;
        return absl::ResourceExhaustedError(absl::StrCat(
            "an AMP message of more than ", max_message_bytes_, " bytes"));
      }
      break;
    }
    std::vector<std::string>& msg = out->emplace_back();
    msg.reserve(argc);
    size_t p = start + 1;
    for (size_t i = 0; i < argc; ++i) {
      const uint32_t len = GetU32(buf_.data() + p);
      msg.emplace_back(buf_, p + 4, len);
      p += 4 + len;
    }
    start = off;
  }
  buf_.erase(0, start);
  return absl::OkStatus();
}

std::string PackString(absl::string_view s) { return absl::StrCat("s:", s); }

std::string PackJson(const nlohmann::json& value) {
  // Invalid UTF-8 in a unit's name or log path is replaced, not thrown.
  return absl::StrCat("j:", value.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace));
}

absl::StatusOr<nlohmann::json> UnpackJson(const std::string& arg) {
  if (arg.size() >= 2 && arg[0] == 's' && arg[1] == ':') return nlohmann::json(arg.substr(2));
  if (arg.size() >= 2 && arg[0] == 'j' && arg[1] == ':') {
    // Never throws (a number past a double's range would with nlohmann's own parse), and
    // refuses nesting past kMaxJsonDepth: copying or printing a value recurses.
    auto j = ParseJson(absl::string_view(arg).substr(2));
    if (!j.ok()) {
      return absl::InvalidArgumentError(
          absl::StrCat("an argument's JSON does not parse: ", j.status().message()));
    }
    return j;
  }
  return absl::InvalidArgumentError("an argument is a blob where JSON was expected");
}

absl::StatusOr<RpcRequest> ParseRpcRequest(const std::vector<std::string>& msg,
                                           std::string* id) {
  id->clear();
  if (msg.size() < 2) return absl::InvalidArgumentError("a request without an id");
  *id = msg.back();
  auto req = UnpackJson(msg.front());
  if (!req.ok() || !req->is_object()) {
    return absl::InvalidArgumentError(
        "a request to PM2's daemon is a JSON object {type, method, args}");
  }
  RpcRequest out;
  out.id = *id;
  auto type = req->find("type");
  if (type != req->end() && type->is_string()) out.type = type->get<std::string>();
  if (out.type == "methods") return out;
  auto method = req->find("method");
  if (method == req->end() || !method->is_string()) {
    return absl::InvalidArgumentError(".method required");
  }
  auto args = req->find("args");
  if (args == req->end() || !args->is_array()) return absl::InvalidArgumentError(".args required");
  out.type = "call";
  out.method = method->get<std::string>();
  out.args = std::move(*args);
  return out;
}

}  // namespace herd::agent::pm2
