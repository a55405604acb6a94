#include "cli/generate.h"

#include <sys/stat.h>

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <set>

#include "absl/status/statusor.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_replace.h"
#include "cli/embedded_templates.h"

namespace herd::cli {
namespace {

namespace fs = std::filesystem;

// Same rule as the agent's module names: what can be a unit name and a directory.
bool ValidName(const std::string& name) {
  if (name.empty() || name.size() > 64 || name[0] == '.' || name[0] == '-') return false;
  if (name == "all" || absl::StrContains(name, "..")) return false;
  return std::all_of(name.begin(), name.end(), [](char c) {
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
           c == '.' || c == '_' || c == '-';
  });
}

}  // namespace

std::vector<std::string> GeneratorLanguages() {
  std::set<std::string> langs;
  for (const auto& f : embedded::kFiles) {
    std::string key = f.key;
    // A language is offered only when its entry point template is embedded.
    if (absl::EndsWith(key, "/package.json")) langs.insert(key.substr(0, key.find('/')));
  }
  return {langs.begin(), langs.end()};
}

absl::StatusOr<std::vector<std::string>> GenerateModule(const std::string& name,
                                                        const std::string& lang,
                                                        const std::string& dir) {
  if (!ValidName(name)) {
    return absl::InvalidArgumentError(absl::StrCat(
        "\"", name, "\" is not a valid module name: 1-64 of letters, digits, '.', '_', '-', "
                    "not starting with '.' or '-'"));
  }
  std::vector<std::string> langs = GeneratorLanguages();
  if (std::find(langs.begin(), langs.end(), lang) == langs.end()) {
    return absl::InvalidArgumentError(absl::StrCat("no generator for \"", lang,
                                                   "\": choose one of ",
                                                   absl::StrJoin(langs, ", ")));
  }
  std::error_code ec;
  if (fs::exists(dir, ec) && !fs::is_empty(dir, ec)) {
    return absl::AlreadyExistsError(
        absl::StrCat(dir, " already exists and is not empty: choose another directory"));
  }
  fs::create_directories(dir, ec);
  if (ec) return absl::PermissionDeniedError(absl::StrCat("cannot create ", dir, ": ", ec.message()));
  const std::string prefix = lang + "/";
  std::vector<std::string> written;
  for (const auto& f : embedded::kFiles) {
    std::string key = f.key;
    if (!absl::StartsWith(key, prefix)) continue;
    std::string rel = key.substr(prefix.size());
    fs::path path = fs::path(dir) / rel;
    fs::create_directories(path.parent_path(), ec);
    std::string body = absl::StrReplaceAll(f.content, {{"{{NAME}}", name}});
    std::ofstream out(path, std::ios::binary | std::ios::trunc);
    out << body;
    out.close();
    if (!out) return absl::InternalError(absl::StrCat("cannot write ", path.string()));
    if (absl::EndsWith(rel, ".sh") || absl::EndsWith(rel, ".py")) {
      fs::permissions(path, fs::perms::owner_exec | fs::perms::group_exec | fs::perms::others_exec,
                      fs::perm_options::add, ec);
    }
    written.push_back(rel);
  }
  std::sort(written.begin(), written.end());
  return written;
}

}  // namespace herd::cli
