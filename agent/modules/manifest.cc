#include "agent/modules/manifest.h"

#include <fstream>
#include <sstream>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "agent/supervisor/app_spec.h"
#include "common/json_parse.h"
#include "common/log_escape.h"

namespace herd::agent {
namespace {

using json = nlohmann::json;

absl::Status Bad(const std::string& path, const std::string& what) {
  return absl::InvalidArgumentError(absl::StrCat(path, ": ", what));
}

bool IsNodeScript(absl::string_view script) {
  return absl::EndsWith(script, ".js") || absl::EndsWith(script, ".cjs") ||
         absl::EndsWith(script, ".mjs");
}

}  // namespace

std::string StripJsonComments(absl::string_view text) {
  std::string out(text);
  bool in_string = false;
  for (size_t i = 0; i < out.size(); ++i) {
    char c = out[i];
    if (in_string) {
      if (c == '\\') {
        ++i;  // skip the escaped character
      } else if (c == '"') {
        in_string = false;
      }
      continue;
    }
    if (c == '"') {
      in_string = true;
    } else if (c == '/' && i + 1 < out.size() && out[i + 1] == '/') {
      while (i < out.size() && out[i] != '\n') out[i++] = ' ';
    } else if (c == '/' && i + 1 < out.size() && out[i + 1] == '*') {
      size_t end = out.find("*/", i + 2);
      size_t stop = end == std::string::npos ? out.size() : end + 2;
      for (; i < stop; ++i) {
        if (out[i] != '\n') out[i] = ' ';
      }
      --i;
    }
  }
  return out;
}

absl::Status ValidateModuleName(absl::string_view name) {
  if (absl::StrContains(name, "/") || absl::StrContains(name, "\\") ||
      absl::StrContains(name, "..")) {
    return absl::InvalidArgumentError(absl::StrCat(
        "module name \"", EscapeForLog(name, 80), "\" must not contain '/', '\\' or '..'"));
  }
  if (auto s = ValidateUnitName(name); !s.ok()) {
    return absl::InvalidArgumentError(absl::StrCat("module name ", s.message()));
  }
  return absl::OkStatus();
}

namespace {

// How PM2 finds what to run: `apps` (an array's first element, or one object), else `bin`
// (a string, or one command of an object), else `main`.
absl::StatusOr<json> AppOf(const json& doc, const std::string& path) {
  if (doc.contains("apps")) {
    const json& apps = doc["apps"];
    json app = apps.is_array() && !apps.empty() ? apps[0] : apps;
    if (!app.is_object()) {
      return Bad(path, "\"apps\" must be a non-empty array of objects, e.g. "
                       "[{\"script\": \"index.js\"}]");
    }
    if (!app.contains("script") || !app["script"].is_string()) {
      return Bad(path, "apps[0].script is missing: name the entry point, e.g. \"index.js\"");
    }
    return app;
  }
  json script;
  if (doc.contains("bin")) {
    const json& bin = doc["bin"];
    // Object.keys order is lost in parsing (keys come sorted): the command named like the
    // package (npm's usual main command), else the first by name.
    const std::string name = doc.contains("name") && doc["name"].is_string()
                                 ? doc["name"].get<std::string>() : "";
    const std::string bare = name.substr(name.find('/') == std::string::npos ? 0 : name.find('/') + 1);
    script = !bin.is_object() ? bin
             : bin.contains(bare) ? bin[bare]
             : !bin.empty()       ? bin.begin().value()
                                  : json();
  } else if (doc.contains("main")) {
    script = doc["main"];
  } else {
    return Bad(path, "nothing to run: add \"apps\": [{\"script\": \"index.js\"}] (or "
                     "\"main\": \"index.js\")");
  }
  if (!script.is_string() || script.get<std::string>().empty()) {
    return Bad(path, absl::StrCat("\"", doc.contains("bin") ? "bin" : "main",
                                  "\" must name the entry point (a file, e.g. \"index.js\"), not ",
                                  JsonForMessage(script)));
  }
  return json{{"script", script}};
}

}  // namespace

absl::StatusOr<Manifest> ParseManifest(absl::string_view text, const std::string& path) {
  std::string clean = StripJsonComments(text);
  // ParseJson never throws: a number too large for a double (1e99999) is an error naming
  // its line and key, like any other invalid JSON.
  auto parsed = ParseJson(clean);
  if (!parsed.ok()) return Bad(path, absl::StrCat("invalid JSON: ", parsed.status().message()));
  json doc = *std::move(parsed);
  if (!doc.is_object()) return Bad(path, "expected a JSON object (a package.json)");

  Manifest m;
  if (!doc.contains("name") || !doc["name"].is_string() ||
      doc["name"].get<std::string>().empty()) {
    return Bad(path, "\"name\" is missing: a module needs a name (a string, e.g. \"my-module\")");
  }
  m.package = doc["name"].get<std::string>();
  m.name = m.package;
  if (absl::StartsWith(m.name, "@")) {
    size_t slash = m.name.find('/');
    if (slash == std::string::npos || slash + 1 == m.name.size()) {
      return Bad(path, absl::StrCat("\"name\": \"", m.package,
                                    "\" is not a valid scoped name (@scope/name)"));
    }
    m.name = m.name.substr(slash + 1);
  }
  if (auto s = ValidateModuleName(m.name); !s.ok()) {
    return Bad(path, absl::StrCat("\"name\": ", s.message()));
  }
  for (auto [key, out] : {std::pair<const char*, std::string*>{"version", &m.version},
                          {"description", &m.description}}) {
    if (!doc.contains(key)) continue;
    if (!doc[key].is_string()) {
      return Bad(path, absl::StrCat("\"", key, "\" must be a string, not ",
                                      JsonForMessage(doc[key])));
    }
    *out = doc[key].get<std::string>();
  }
  if (doc.contains("config")) {
    const json& c = doc["config"];
    if (!c.is_object()) {
      return Bad(path, "\"config\" must be an object of defaults (key: value)");
    }
    m.config = c;
  }
  auto app = AppOf(doc, path);
  if (!app.ok()) return app.status();
  m.app = *std::move(app);
  // exec_interpreter is PM2's alias (interpreter wins, as in ParseEcosystem); one that is not
  // a string is left for ModuleAppSpec to refuse (json::value would throw here).
  std::string interp;
  for (const char* key : {"exec_interpreter", "interpreter"}) {
    if (m.app.contains(key) && m.app[key].is_string()) interp = m.app[key].get<std::string>();
  }
  m.is_node = absl::EndsWith(interp, "node") || absl::EndsWith(interp, "nodejs") ||
              (interp.empty() && IsNodeScript(m.app["script"].get<std::string>()));
  m.has_dependencies = doc.contains("dependencies") && doc["dependencies"].is_object() &&
                       !doc["dependencies"].empty();
  return m;
}

absl::StatusOr<Manifest> LoadManifest(const std::string& dir) {
  std::string path = dir + "/package.json";
  std::ifstream f(path, std::ios::binary);
  if (!f) {
    return absl::NotFoundError(absl::StrCat(
        path, ": not found: a module directory needs a package.json with name, config and "
              "apps"));
  }
  std::stringstream ss;
  ss << f.rdbuf();
  if (ss.str().size() > (1 << 20)) return Bad(path, "larger than 1 MiB");
  return ParseManifest(ss.str(), path);
}

absl::StatusOr<herd::v1::AppSpec> ModuleAppSpec(const Manifest& m, const std::string& dir,
                                                const std::string& search_path) {
  json app = m.app;
  app["name"] = m.name;  // the module's name wins over apps[0].name
  AppSpecContext ctx{dir, search_path};
  auto specs = ParseEcosystem(app.dump(), ctx);
  if (!specs.ok()) {
    return absl::InvalidArgumentError(
        absl::StrCat(dir, "/package.json: apps[0]: ", specs.status().message()));
  }
  herd::v1::AppSpec spec = (*specs)[0];
  if (!m.app.contains("cwd")) spec.set_cwd(dir);
  spec.set_channel(m.is_node ? herd::v1::CHANNEL_KIND_NODE : herd::v1::CHANNEL_KIND_NATIVE);
  return spec;
}

}  // namespace herd::agent
