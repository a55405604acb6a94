#include "agent/modules/module_config.h"

#include <errno.h>
#include <sys/stat.h>

#include <algorithm>
#include <set>

#include "absl/strings/ascii.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "common/atomic_file.h"
#include "common/json_parse.h"
#include "common/units.h"
#include "common/utf8.h"

namespace herd::agent {
namespace {

using json = nlohmann::json;


// What the text would be in a JSON config: the override kept as a string when it is one.
std::string OverrideText(const json& v) { return v.is_string() ? v.get<std::string>() : v.dump(); }

}  // namespace

json EffectiveConfig(const json& defaults, const json& overrides) {
  json out = defaults.is_object() ? defaults : json::object();
  if (!overrides.is_object()) return out;
  for (auto it = overrides.begin(); it != overrides.end(); ++it) {
    json def = out.contains(it.key()) ? out[it.key()] : json();
    auto v = ConvertConfigValue(def, it.key(), OverrideText(it.value()));
    if (v.ok()) out[it.key()] = *v;
  }
  return out;
}

absl::StatusOr<ConfigEnvironment> MakeConfigEnvironment(const std::string& module,
                                                        const json& defaults,
                                                        const json& overrides) {
  ConfigEnvironment env{overrides.dump(), EffectiveConfig(defaults, overrides).dump()};
  const std::pair<std::string, size_t> vars[] = {
      {module, module.size() + 2 + env.overrides.size()},
      {"HERD_MODULE_CONFIG", sizeof("HERD_MODULE_CONFIG=") + env.effective.size()}};
  for (const auto& [name, size] : vars) {
    if (size > kMaxEnvString) {
      return absl::InvalidArgumentError(absl::StrCat(
          "the configuration of ", module, " makes its environment variable ", name, " ",
          FormatBytes(size), ", over the kernel's limit of ", FormatBytes(kMaxEnvString),
          " for one variable, so the module could not start: shorten its values (`agentctl "
          "conf ", module, "` lists them)"));
    }
  }
  return env;
}

std::vector<herd::v1::ConfigEntry> ConfigEntries(const json& defaults, const json& overrides,
                                                 const std::string& source) {
  std::set<std::string> keys;
  if (defaults.is_object()) {
    for (auto it = defaults.begin(); it != defaults.end(); ++it) keys.insert(it.key());
  }
  if (overrides.is_object()) {
    for (auto it = overrides.begin(); it != overrides.end(); ++it) keys.insert(it.key());
  }
  json effective = EffectiveConfig(defaults, overrides);
  std::vector<herd::v1::ConfigEntry> out;
  for (const auto& k : keys) {
    herd::v1::ConfigEntry e;
    e.set_key(k);
    bool has_default = defaults.is_object() && defaults.contains(k);
    if (has_default) e.set_default_json(defaults[k].dump());
    bool has_override = overrides.is_object() && overrides.contains(k);
    if (has_override) {
      e.set_has_override(true);
      e.set_override_value(OverrideText(overrides[k]));
    }
    if (effective.contains(k)) e.set_effective_json(effective[k].dump());
    bool applied =
        has_override &&
        (!has_default || ConvertConfigValue(defaults[k], k, OverrideText(overrides[k])).ok());
    e.set_source(applied ? source : "default");
    out.push_back(std::move(e));
  }
  return out;
}

absl::Status ModuleConfStore::Load() {
  auto text = ReadFileToString(path_);
  if (!text.ok()) {
    if (absl::IsNotFound(text.status())) {
      doc_ = json::object();
      return absl::OkStatus();
    }
    return text.status();
  }
  auto parsed = ParseJson(*text);
  if (!parsed.ok()) {
    return absl::DataLossError(absl::StrCat(
        path_, ": invalid JSON: ", parsed.status().message(), "; fix or remove the file (its "
        "overrides are then lost)"));
  }
  json doc = *std::move(parsed);
  if (!doc.is_object()) {
    return absl::DataLossError(absl::StrCat(
        path_, ": not a JSON object of {\"module\": {\"key\": \"value\"}}; fix or remove the "
               "file (its overrides are then lost)"));
  }
  for (auto it = doc.begin(); it != doc.end(); ++it) {
    if (!it.value().is_object()) {
      return absl::DataLossError(absl::StrCat(path_, ": \"", it.key(),
                                              "\" must be an object of key: value"));
    }
  }
  doc_ = std::move(doc);
  return absl::OkStatus();
}

json ModuleConfStore::Overrides(const std::string& module) const {
  auto it = doc_.find(module);
  return it == doc_.end() ? json::object() : *it;
}

absl::Status ModuleConfStore::Save(const json& doc) {
  auto s = WriteFileAtomically(path_, doc.dump(2) + "\n", 0600);
  if (!s.ok()) {
    return absl::Status(s.code(), absl::StrCat("cannot save ", path_, ": ", s.message(),
                                               " (the change was not applied)"));
  }
  doc_ = doc;
  return absl::OkStatus();
}

absl::Status ModuleConfStore::Set(const std::string& module, const std::string& key,
                                  const std::string& value) {
  // The file is JSON, whose strings are UTF-8 (dump() would throw).
  for (const std::string* s : {&module, &key, &value}) {
    if (!IsValidUtf8(*s)) {
      return absl::InvalidArgumentError(absl::StrCat(
          "config ", s == &module ? "module name" : s == &key ? "key" : "value",
          " is not valid UTF-8; give text in UTF-8"));
    }
  }
  json doc = doc_;
  doc[module][key] = value;
  return Save(doc);
}

absl::StatusOr<bool> ModuleConfStore::Unset(const std::string& module, const std::string& key) {
  if (!doc_.contains(module) || !doc_[module].contains(key)) return false;
  json doc = doc_;
  doc[module].erase(key);
  if (doc[module].empty()) doc.erase(module);
  auto s = Save(doc);
  if (!s.ok()) return s;
  return true;
}

absl::Status ModuleConfStore::Erase(const std::string& module) {
  if (!doc_.contains(module)) return absl::OkStatus();
  json doc = doc_;
  doc.erase(module);
  return Save(doc);
}

}  // namespace herd::agent
