#include "cli/json_output.h"

#include <yaml-cpp/yaml.h>

#include <cctype>
#include <regex>

#include "absl/strings/ascii.h"
#include "absl/strings/escaping.h"
#include "absl/strings/match.h"
#include "absl/strings/strip.h"
#include "common/json_parse.h"

namespace herd::cli {
namespace {

using google::protobuf::FieldDescriptor;
using google::protobuf::Message;
using google::protobuf::Reflection;
using json = nlohmann::json;

// "UnitState" -> "UNIT_STATE_".
std::string EnumPrefix(const std::string& type_name) {
  std::string out;
  for (size_t i = 0; i < type_name.size(); ++i) {
    const char c = type_name[i];
    if (i > 0 && std::isupper(static_cast<unsigned char>(c))) out += '_';
    out += static_cast<char>(std::toupper(static_cast<unsigned char>(c)));
  }
  return out + "_";
}

json Scalar(const Message& m, const FieldDescriptor* f, int i) {
  const Reflection* r = m.GetReflection();
  const bool rep = i >= 0;
  switch (f->cpp_type()) {
    case FieldDescriptor::CPPTYPE_INT32: return rep ? r->GetRepeatedInt32(m, f, i) : r->GetInt32(m, f);
    case FieldDescriptor::CPPTYPE_INT64: return rep ? r->GetRepeatedInt64(m, f, i) : r->GetInt64(m, f);
    case FieldDescriptor::CPPTYPE_UINT32: return rep ? r->GetRepeatedUInt32(m, f, i) : r->GetUInt32(m, f);
    case FieldDescriptor::CPPTYPE_UINT64: return rep ? r->GetRepeatedUInt64(m, f, i) : r->GetUInt64(m, f);
    case FieldDescriptor::CPPTYPE_DOUBLE: return rep ? r->GetRepeatedDouble(m, f, i) : r->GetDouble(m, f);
    case FieldDescriptor::CPPTYPE_FLOAT: return rep ? r->GetRepeatedFloat(m, f, i) : r->GetFloat(m, f);
    case FieldDescriptor::CPPTYPE_BOOL: return rep ? r->GetRepeatedBool(m, f, i) : r->GetBool(m, f);
    case FieldDescriptor::CPPTYPE_ENUM:
      return EnumWord(*(rep ? r->GetRepeatedEnum(m, f, i) : r->GetEnum(m, f)));
    case FieldDescriptor::CPPTYPE_STRING: {
      std::string s = rep ? r->GetRepeatedString(m, f, i) : r->GetString(m, f);
      if (f->type() == FieldDescriptor::TYPE_BYTES) return absl::Base64Escape(s);
      return s;
    }
    case FieldDescriptor::CPPTYPE_MESSAGE:
      return FriendlyJson(rep ? r->GetRepeatedMessage(m, f, i) : r->GetMessage(m, f));
  }
  return nullptr;
}

// A map field's entries as an object (keys as text).
json MapValue(const Message& m, const FieldDescriptor* f) {
  json out = json::object();
  const Reflection* r = m.GetReflection();
  for (int i = 0; i < r->FieldSize(m, f); ++i) {
    const Message& entry = r->GetRepeatedMessage(m, f, i);
    const FieldDescriptor* kf = entry.GetDescriptor()->map_key();
    const FieldDescriptor* vf = entry.GetDescriptor()->map_value();
    json key = Scalar(entry, kf, -1);
    out[key.is_string() ? key.get<std::string>() : key.dump()] = Scalar(entry, vf, -1);
  }
  return out;
}

}  // namespace

std::string EnumWord(const google::protobuf::EnumValueDescriptor& v) {
  absl::string_view name = v.name();
  const std::string prefix = EnumPrefix(v.type()->name());
  absl::ConsumePrefix(&name, prefix);
  std::string out = absl::AsciiStrToLower(name);
  std::replace(out.begin(), out.end(), '_', ' ');
  return out;
}

json FriendlyJson(const Message& m) {
  json out = json::object();
  const auto* d = m.GetDescriptor();
  const Reflection* r = m.GetReflection();
  for (int k = 0; k < d->field_count(); ++k) {
    const FieldDescriptor* f = d->field(k);
    if (f->is_map()) {
      out[f->name()] = MapValue(m, f);
      continue;
    }
    if (f->is_repeated()) {
      json arr = json::array();
      for (int i = 0; i < r->FieldSize(m, f); ++i) arr.push_back(Scalar(m, f, i));
      out[f->name()] = std::move(arr);
      continue;
    }
    // A member of a oneof, an optional or a message: only when set.
    const bool presence = f->containing_oneof() != nullptr ||
                          f->cpp_type() == FieldDescriptor::CPPTYPE_MESSAGE ||
                          f->has_presence();
    if (presence && !r->HasField(m, f)) continue;
    json v = Scalar(m, f, -1);
    if (f->cpp_type() == FieldDescriptor::CPPTYPE_STRING && absl::EndsWith(f->name(), "_json")) {
      const std::string text = v.get<std::string>();
      const std::string bare = f->name().substr(0, f->name().size() - 5);
      if (text.empty()) {
        out[bare] = nullptr;
        continue;
      }
      auto parsed = herd::ParseJson(text);
      if (parsed.ok()) {
        out[bare] = *std::move(parsed);
        continue;
      }
    }
    out[f->name()] = std::move(v);
  }
  return out;
}

namespace {

// Whether YAML would read `s`, unquoted, as anything but this string.
bool NeedsQuotes(const std::string& s) {
  static const std::regex special(
      R"(^(|~|null|Null|NULL|true|True|TRUE|false|False|FALSE|yes|Yes|YES|no|No|NO|on|On|ON|off|Off|OFF|y|Y|n|N)$|^[-+]?(\.?[0-9]|\.inf|\.Inf|\.INF|\.nan|\.NaN|\.NAN))");
  return std::regex_search(s, special);
}

void Emit(YAML::Emitter& e, const json& v) {
  switch (v.type()) {
    case json::value_t::object:
      e << YAML::BeginMap;
      for (auto it = v.begin(); it != v.end(); ++it) {
        e << YAML::Key;
        if (NeedsQuotes(it.key())) e << YAML::DoubleQuoted;
        e << it.key() << YAML::Value;
        Emit(e, it.value());
      }
      e << YAML::EndMap;
      break;
    case json::value_t::array:
      e << YAML::BeginSeq;
      for (const auto& x : v) Emit(e, x);
      e << YAML::EndSeq;
      break;
    case json::value_t::string: {
      const std::string& s = v.get_ref<const std::string&>();
      if (NeedsQuotes(s)) e << YAML::DoubleQuoted;
      e << s;
      break;
    }
    case json::value_t::null:
      e << YAML::Null;
      break;
    default:  // numbers and booleans, as JSON writes them
      e << v.dump();
      break;
  }
}

}  // namespace

std::string ToYaml(const json& v) {
  YAML::Emitter e;
  e.SetIndent(2);
  Emit(e, v);
  return std::string(e.c_str()) + "\n";
}

}  // namespace herd::cli
