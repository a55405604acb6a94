#include "common/config_value.h"

#include <cmath>
#include <optional>

#include "absl/strings/ascii.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "common/json_parse.h"
#include "common/log_escape.h"
#include "common/utf8.h"

namespace herd {
namespace {

using json = nlohmann::json;

std::optional<bool> ParseBool(absl::string_view t) {
  std::string s = absl::AsciiStrToLower(absl::StripAsciiWhitespace(t));
  if (s == "true" || s == "yes" || s == "on" || s == "1") return true;
  if (s == "false" || s == "no" || s == "off" || s == "0") return false;
  return std::nullopt;
}

}  // namespace

absl::StatusOr<json> ConvertConfigValue(const json& def, absl::string_view key,
                                        absl::string_view text) {
  absl::string_view trimmed = absl::StripAsciiWhitespace(text);
  auto bad = [&](absl::string_view want) {
    return absl::InvalidArgumentError(absl::StrCat(
        key, ": \"", EscapeForLog(text, 120), "\" is not ", want, " (the default is ", JsonForMessage(def),
        "); give a value of that type"));
  };
  // A value becomes a JSON string (whose dump() throws on invalid UTF-8) and a protobuf
  // string (which must be UTF-8): refuse it here, where the key can be named.
  if (size_t at = FirstInvalidUtf8(text); at != absl::string_view::npos) {
    return absl::InvalidArgumentError(absl::StrCat(
        key, ": the value is not valid UTF-8 (byte ", at, " of ", text.size(),
        "); give text in UTF-8"));
  }
  if (def.is_boolean()) {
    auto b = ParseBool(trimmed);
    if (!b) return bad("a boolean: use true or false");
    return json(*b);
  }
  if (def.is_number_integer() || def.is_number_unsigned()) {
    int64_t v = 0;
    if (!absl::SimpleAtoi(trimmed, &v)) return bad("an integer");
    return json(v);
  }
  if (def.is_number_float()) {
    double v = 0;
    if (!absl::SimpleAtod(trimmed, &v) || !std::isfinite(v)) return bad("a number");
    return json(v);
  }
  if (def.is_string()) return json(std::string(text));
  if (def.is_array() || def.is_object()) {
    const char* want = def.is_array() ? "a JSON array" : "a JSON object";
    auto v = ParseJson(trimmed);
    if (!v.ok()) {
      return absl::InvalidArgumentError(absl::StrCat(
          key, ": \"", EscapeForLog(text, 120), "\" is not ", want, " (", v.status().message(),
          "; the default is ", JsonForMessage(def), "); give a JSON literal, e.g. ",
          def.is_array() ? "'[\"a\", \"b\"]'" : "'{\"name\": \"value\"}'"));
    }
    if (v->is_array() != def.is_array() || v->is_object() != def.is_object()) {
      return bad(def.is_array() ? "a JSON array: write it as [ ... ]"
                                : "a JSON object: write it as { ... }");
    }
    return *std::move(v);
  }
  // No default (or a null one): PM2's autocast, plus a JSON array or object as itself.
  if (!trimmed.empty() && (trimmed.front() == '[' || trimmed.front() == '{')) {
    auto v = ParseJson(trimmed);
    if (v.ok() && v->is_structured()) return *std::move(v);
  }
  if (trimmed == "true") return json(true);
  if (trimmed == "false") return json(false);
  int64_t i = 0;
  if (absl::SimpleAtoi(trimmed, &i)) return json(i);
  double d = 0;
  if (!trimmed.empty() && absl::SimpleAtod(trimmed, &d) && std::isfinite(d)) return json(d);
  return json(std::string(text));
}

}  // namespace herd
