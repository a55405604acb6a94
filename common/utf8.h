// UTF-8 checks for text that is about to become a protobuf `string` (which must be valid
// UTF-8: protobuf logs an ERROR and the peer fails to parse the message) or a JSON string
// (nlohmann's dump() throws on invalid UTF-8).
#pragma once

#include <cstddef>
#include <string>

#include "absl/strings/string_view.h"

namespace herd {

// Length of the well-formed UTF-8 sequence at the start of `s` (1 to 4), or 0 if `s` is empty
// or does not start with one (stray continuation byte, overlong form, surrogate, > U+10FFFF,
// truncated sequence).
size_t Utf8SequenceLength(absl::string_view s);

// Offset of the first byte that is not part of well-formed UTF-8, or npos if all of it is.
size_t FirstInvalidUtf8(absl::string_view s);

inline bool IsValidUtf8(absl::string_view s) {
  return FirstInvalidUtf8(s) == absl::string_view::npos;
}

// `s` with every byte that is not part of well-formed UTF-8 replaced by U+FFFD (what a
// terminal or browser shows for it), for text that must travel as a protobuf string.
std::string ToValidUtf8(absl::string_view s);

// `s` cut to at most `max_bytes`, never inside a UTF-8 sequence.
std::string TruncateUtf8(std::string s, size_t max_bytes);

}  // namespace herd
