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

// What a module receives in process.env[<name>] (PM2's contract): the overrides as given,
// except that one whose value is an array or object is passed as that JSON value, and one
// that does not convert is left out (its reason added to `refused`).
json Pm2Overrides(const json& defaults, const json& overrides, std::vector<std::string>* refused) {
  json out = json::object();
  if (!overrides.is_object()) return out;
  for (auto it = overrides.begin(); it != overrides.end(); ++it) {
    json def = defaults.is_object() && defaults.contains(it.key()) ? defaults[it.key()] : json();
    auto v = ConvertConfigValue(def, it.key(), OverrideText(it.value()));
    if (!v.ok()) {
      refused->emplace_back(v.status().message());
      continue;
    }
    out[it.key()] = v->is_structured() ? *v : it.value();
  }
  return out;
}

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
  ConfigEnvironment env;
  env.overrides = Pm2Overrides(defaults, overrides, &env.refused).dump();
  env.effective = EffectiveConfig(defaults, overrides).dump();
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

ModuleConfStore::Stamp ModuleConfStore::StatFile() const {
  struct stat st;
  if (stat(path_.c_str(), &st) != 0) return {};
  return {true, st.st_ino, st.st_size,
          int64_t{st.st_mtim.tv_sec} * 1000000000 + st.st_mtim.tv_nsec};
}

absl::Status ModuleConfStore::Load() {
  stamp_ = StatFile();
  return Read();
}

absl::Status ModuleConfStore::Refresh() {
  Stamp now = StatFile();
  if (now == stamp_) return refresh_error_.empty() ? absl::OkStatus()
                                                   : absl::DataLossError(refresh_error_);
  stamp_ = now;
  refresh_error_.clear();
  if (auto s = Read(); !s.ok()) {
    refresh_error_ = absl::StrCat(s.message(), "; until then the values read before stay in force");
    return absl::DataLossError(refresh_error_);
  }
  return absl::OkStatus();
}

absl::Status ModuleConfStore::Read() {
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
  stamp_ = StatFile();
  return absl::OkStatus();
}

absl::Status ModuleConfStore::Set(const std::string& module, const std::string& key,
                                  const json& value) {
  // The file is JSON, whose strings are UTF-8 (dump() would throw).
  const std::string text = value.is_string() ? value.get<std::string>() : "";
  for (const std::string* s : {&module, &key, &text}) {
    if (!IsValidUtf8(*s)) {
      return absl::InvalidArgumentError(absl::StrCat(
          "config ", s == &module ? "module name" : s == &key ? "key" : "value",
          " is not valid UTF-8; give text in UTF-8"));
    }
  }
  // A hand edit made since is kept (or, unreadable, stops the change).
  if (auto s = Refresh(); !s.ok()) return s;
  json doc = doc_;
  doc[module][key] = value;
  return Save(doc);
}

absl::StatusOr<bool> ModuleConfStore::Unset(const std::string& module, const std::string& key) {
  if (auto s = Refresh(); !s.ok()) return s;
  if (!doc_.contains(module) || !doc_[module].contains(key)) return false;
  json doc = doc_;
  doc[module].erase(key);
  if (doc[module].empty()) doc.erase(module);
  auto s = Save(doc);
  if (!s.ok()) return s;
  return true;
}

absl::Status ModuleConfStore::Erase(const std::string& module) {
  if (auto s = Refresh(); !s.ok()) return s;
  if (!doc_.contains(module)) return absl::OkStatus();
  json doc = doc_;
  doc.erase(module);
  return Save(doc);
}

}  // namespace herd::agent
