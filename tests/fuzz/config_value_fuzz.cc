// A config value as an operator or the control plane sends it (agentctl conf set, the Fleet
// API): ConvertConfigValue against a default of each type (arrays and objects included).
// The first byte picks the default, the rest is the text. What is accepted must be of the
// default's kind and JSON that can be written out.
#include <cstddef>
#include <cstdint>
#include <string>

#include "common/config_value.h"
#include "tests/fuzz/fuzz_util.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using json = nlohmann::json;
  if (size == 0) return 0;
  static const json kDefaults[] = {json(), json(true), json(1000), json(-5), json(0.5),
                                   json("text"), json(18446744073709551615u),
                                   json::array({"exit"}), json::object()};
  const json& def = kDefaults[data[0] % (sizeof kDefaults / sizeof kDefaults[0])];
  const std::string text(reinterpret_cast<const char*>(data + 1), size - 1);
  auto v = herd::ConvertConfigValue(def, "key", text);
  if (!v.ok()) return 0;
  HERD_FUZZ_CHECK(!v->is_null());
  // An array or object default takes only its own kind; a scalar default only a scalar; no
  // default takes a scalar, or an array or object written as JSON.
  if (def.is_array()) HERD_FUZZ_CHECK(v->is_array());
  if (def.is_object()) HERD_FUZZ_CHECK(v->is_object());
  if (def.is_primitive() && !def.is_null()) HERD_FUZZ_CHECK(v->is_primitive());
  if (def.is_boolean()) HERD_FUZZ_CHECK(v->is_boolean());
  if (def.is_number_float()) HERD_FUZZ_CHECK(v->is_number());
  (void)v->dump();  // throws on invalid UTF-8
  return 0;
}
