#include "controlplane/core/deployments.h"

#include <regex>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "common/sha256.h"
#include "common/utf8.h"
#include "nlohmann/json.hpp"

namespace herd::controlplane {
namespace {

using json = nlohmann::json;

// An npm package spec: name[@version-or-range], optionally scoped.
bool NpmSpec(const std::string& s, std::string* name, std::string* version) {
  static const std::regex re(
      R"(^((@[a-z0-9~][a-z0-9._~-]*/)?[a-z0-9~][a-z0-9._~-]*)(@([A-Za-z0-9._^~<>=*|-]+))?$)");
  std::smatch m;
  if (s.size() > 214 || !std::regex_match(s, m, re)) return false;
  *name = m[1];
  *version = m[4];
  return true;
}

}  // namespace

bool IsModuleName(const std::string& s) {
  static const std::regex re(R"(^[A-Za-z0-9._-]{1,64}$)");
  return std::regex_match(s, re);
}

bool IsExactVersion(const std::string& v) {
  static const std::regex re(R"(^[0-9]+\.[0-9]+\.[0-9]+(-[0-9A-Za-z.-]+)?(\+[0-9A-Za-z.-]+)?$)");
  return v.size() <= 64 && std::regex_match(v, re);
}

absl::StatusOr<herd::v1::DeployRequest> NormalizeDeploy(herd::v1::DeployRequest req) {
  const std::string& source = req.source();
  if (source.empty() || source.size() > 4096) {
    return absl::InvalidArgumentError(
        "give what to deploy: an npm spec (pm2-server-monit@3.0.0), an uploaded artifact "
        "(sha256:HEX) or a .tgz or directory path on the hosts (at most 4096 bytes)");
  }
  std::string npm_name, npm_version;
  if (absl::StartsWith(source, "sha256:")) {
    if (ArtifactDigest(source).empty()) {
      return absl::InvalidArgumentError(absl::StrCat(
          "\"", source.substr(0, 100), "\" is not an artifact reference: sha256: and 64 "
          "lower-case hex digits, as UploadArtifact gives"));
    }
    if (req.name().empty() || req.version().empty()) {
      return absl::InvalidArgumentError(
          "deploying an artifact needs its name and version (the control plane fills them "
          "from the uploaded archive)");
    }
  } else if (source.front() == '/') {
    if (source.find('\0') != std::string::npos || source.find("/../") != std::string::npos ||
        (source.size() >= 3 && source.compare(source.size() - 3, 3, "/..") == 0) ||
        !IsValidUtf8(source)) {
      return absl::InvalidArgumentError(
          "a path source must be absolute, in UTF-8, without \"..\"");
    }
    if (req.name().empty()) {
      return absl::InvalidArgumentError(absl::StrCat(
          "deploying a path (", source, ") needs the module's name: --name NAME"));
    }
  } else if (NpmSpec(source, &npm_name, &npm_version)) {
    if (req.name().empty()) {
      if (npm_name.front() == '@') npm_name = npm_name.substr(npm_name.find('/') + 1);
      req.set_name(npm_name);
    }
    if (req.version().empty() && IsExactVersion(npm_version)) req.set_version(npm_version);
  } else {
    return absl::InvalidArgumentError(absl::StrCat(
        "\"", source.substr(0, 256), "\" is neither an npm spec (name[@version], lower case) "
        "nor an absolute path"));
  }
  if (!IsModuleName(req.name())) {
    return absl::InvalidArgumentError(absl::StrCat(
        "\"", req.name().substr(0, 100), "\" is not a module name (1-64 letters, digits, "
        "'.', '_', '-')"));
  }
  if (!req.version().empty() && !IsExactVersion(req.version())) {
    return absl::InvalidArgumentError(absl::StrCat(
        "version \"", req.version().substr(0, 100), "\" is not an exact version (e.g. 3.0.0)"));
  }
  return req;
}

absl::Status ReadArtifactManifest(const std::string& manifest, std::string* name,
                                  std::string* version) {
  if (manifest.empty()) {
    return absl::InvalidArgumentError(
        "the archive has no package.json one directory deep (package/package.json, as `npm "
        "pack` makes): it is not a module");
  }
  json j = json::parse(manifest, nullptr, false);
  if (!j.is_object()) return absl::InvalidArgumentError("its package.json is not a JSON object");
  if (!j.contains("name") || !j["name"].is_string()) {
    return absl::InvalidArgumentError("its package.json has no \"name\"");
  }
  std::string n = j["name"].get<std::string>();
  if (absl::StartsWith(n, "@") && n.find('/') != std::string::npos) n = n.substr(n.find('/') + 1);
  if (!IsModuleName(n)) {
    return absl::InvalidArgumentError(absl::StrCat(
        "its package.json's name \"", n.substr(0, 100),
        "\" is not a module name (1-64 letters, digits, '.', '_', '-')"));
  }
  if (!j.contains("version") || !j["version"].is_string() ||
      !IsExactVersion(j["version"].get<std::string>())) {
    return absl::InvalidArgumentError(
        "its package.json needs an exact \"version\" (e.g. 1.2.0): deployments and rollouts "
        "tell versions apart by it");
  }
  *name = std::move(n);
  *version = j["version"].get<std::string>();
  return absl::OkStatus();
}

std::string DeployValue(const herd::v1::DeployRequest& req, const DeployPins* pins) {
  json j{{"source", req.source()}, {"version", req.version()}};
  if (pins != nullptr && !pins->rollout_id.empty()) {
    j["rollout"] = json{{"id", pins->rollout_id},
                        {"source", pins->to.source()},
                        {"version", pins->to.version()},
                        {"hosts", pins->hosts}};
  }
  // Never throws: NormalizeDeploy lets only UTF-8 through, and anything else is replaced.
  return j.dump(-1, ' ', false, json::error_handler_t::replace);
}

bool ParseDeployValue(const std::string& value, herd::v1::DesiredModule* out,
                      const std::string* host_id, DeployPins* pins) {
  json j = json::parse(value, nullptr, false);
  if (!j.is_object() || !j.contains("source") || !j["source"].is_string()) return false;
  out->set_source(j["source"].get<std::string>());
  if (j.contains("version") && j["version"].is_string()) {
    out->set_version(j["version"].get<std::string>());
  }
  if (!j.contains("rollout") || !j["rollout"].is_object()) return true;
  const json& r = j["rollout"];
  auto str = [&r](const char* k) {
    return r.contains(k) && r[k].is_string() ? r[k].get<std::string>() : std::string();
  };
  DeployPins p;
  p.rollout_id = str("id");
  p.to.set_source(str("source"));
  p.to.set_version(str("version"));
  if (p.rollout_id.empty() || p.to.source().empty()) return true;  // no pins to follow
  if (r.contains("hosts") && r["hosts"].is_array()) {
    for (const auto& h : r["hosts"]) {
      if (h.is_string()) p.hosts.insert(h.get<std::string>());
    }
  }
  if (host_id != nullptr && p.hosts.count(*host_id)) {
    out->set_source(p.to.source());
    out->set_version(p.to.version());
  }
  if (pins != nullptr) *pins = std::move(p);
  return true;
}

std::vector<herd::v1::Deployment> Declarations(const std::vector<herd::v1::Override>& overrides,
                                               const std::string& name) {
  std::vector<herd::v1::Deployment> out;
  for (const auto& o : overrides) {
    if (o.module() != kDeployModule || (!name.empty() && o.key() != name)) continue;
    herd::v1::DesiredModule d;
    if (!ParseDeployValue(o.value(), &d)) continue;
    herd::v1::Deployment dep;
    *dep.mutable_scope() = o.scope();
    dep.set_name(o.key());
    dep.set_source(d.source());
    dep.set_version(d.version());
    dep.set_updated_at_unix_ms(o.updated_at_unix_ms());
    dep.set_updated_by(o.updated_by());
    out.push_back(std::move(dep));
  }
  return out;
}

}  // namespace herd::controlplane
