#include "common/log_escape.h"

#include "absl/strings/str_cat.h"
#include "common/utf8.h"

namespace herd {

std::string EscapeForLog(absl::string_view bytes, size_t max_bytes) {
  static constexpr char kHex[] = "0123456789abcdef";
  const absl::string_view in = bytes.substr(0, max_bytes);
  std::string out;
  out.reserve(in.size() + 8);
  size_t i = 0;
  while (i < in.size()) {
    const unsigned char c = static_cast<unsigned char>(in[i]);
    if (c >= 0x80) {
      const size_t n = Utf8SequenceLength(in.substr(i));
      if (n > 0) {
        out.append(in.data() + i, n);
        i += n;
        continue;
      }
    }
    switch (c) {
      case '"': out += "\\\""; break;
      case '\\': out += "\\\\"; break;
      case '\n': out += "\\n"; break;
      case '\r': out += "\\r"; break;
      case '\t': out += "\\t"; break;
      default:
        if (c < 0x20 || c >= 0x7F) {
          out += "\\x";
          out += kHex[c >> 4];
          out += kHex[c & 0xF];
        } else {
          out += static_cast<char>(c);
        }
    }
    ++i;
  }
  if (bytes.size() > in.size()) absl::StrAppend(&out, "...(+", bytes.size() - in.size(), " bytes)");
  return out;
}

}  // namespace herd
