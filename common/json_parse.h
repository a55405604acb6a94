// JSON text from outside (package.json, ecosystem files, module_conf.json, module channel
// lines) parsed without exceptions and within bounds.
//
// nlohmann::json::parse throws more than parse_error: a number too large for a double is an
// out_of_range (406), which a `catch (const json::parse_error&)` lets through and which ended
// agentd (issue 20). ParseJson never throws for any input; its error says where (line and
// column, and the path of the value being read, e.g. apps[0].kill_timeout) and what, so a
// caller only prefixes the file name.
//
// Nesting is bounded: nlohmann parses iteratively, but copying, comparing and dump()ing a
// value recurse, so a line of 500,000 '[' would overflow the stack later, far from here.
#pragma once

#include <cstddef>
#include <string>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "nlohmann/json.hpp"

namespace herd {

// Deeper than any real manifest, ecosystem file or channel message (they nest 3 to 6 levels).
inline constexpr int kMaxJsonDepth = 64;

// Parses one JSON document (nothing but whitespace after it). The error is
// INVALID_ARGUMENT: "line L, column C[, at PATH]: WHAT", e.g.
//   line 3, column 25, at apps[0].kill_timeout: number overflow parsing '1e99999' (a number
//   must fit in a double, at most about 1.8e308)
absl::StatusOr<nlohmann::json> ParseJson(absl::string_view text, int max_depth = kMaxJsonDepth);

// "line L, column C" of byte offset `byte` (0-based) of `text`.
std::string LineColumn(absl::string_view text, size_t byte);

// A JSON value for an error message: compact, never throws (invalid UTF-8 is replaced) and at
// most `max_bytes` long (then cut and followed by "...").
std::string JsonForMessage(const nlohmann::json& v, size_t max_bytes = 200);

}  // namespace herd
