#include "agent/modules/module_config_service.h"

#include <regex>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "common/atomic_file.h"
#include "google/protobuf/util/json_util.h"

namespace herd::agent {
namespace {

using json = nlohmann::json;

json ValuesOf(const herd::v1::ConfigSnapshot& snap, const std::string& module) {
  json out = json::object();
  auto it = snap.modules().find(module);
  if (it == snap.modules().end()) return out;
  for (const auto& [k, v] : it->second.values()) out[k] = v;
  return out;
}

void Reject(herd::v1::ConfigAck* ack, const std::string& module, const std::string& key,
            absl::string_view reason) {
  auto* r = ack->add_rejections();
  r->set_module(module);
  if (!key.empty()) r->set_key(key);
  r->set_reason(std::string(reason));
}

}  // namespace

ModuleConfigService::ModuleConfigService(std::string home, ConfiguredModules& modules)
    : home_(std::move(home)),
      modules_(modules),
      log_(herd::Logger("modules")),
      conf_(home_ + "/module_conf.json") {}

json ModuleConfigService::Overrides(const std::string& module) const {
  if (!managed_) return conf_.Overrides(module);
  return ValuesOf(snapshot_, module);
}

herd::v1::ModuleConfig ModuleConfigService::ConfigOf(const std::string& module,
                                                     const json& defaults) const {
  herd::v1::ModuleConfig c;
  c.set_module(module);
  for (auto& e : ConfigEntries(defaults, Overrides(module), managed_ ? "controlplane" : "local")) {
    if (managed_ && e.has_override()) {
      // The control plane's scope for this key (global, selector:..., host).
      auto mod = snapshot_.modules().find(module);
      if (mod != snapshot_.modules().end() && e.source() != "default") {
        auto src = mod->second.sources().find(e.key());
        if (src != mod->second.sources().end()) e.set_source(src->second);
      }
    }
    *c.add_entries() = std::move(e);
  }
  return c;
}

absl::StatusOr<std::vector<herd::v1::ModuleConfig>> ModuleConfigService::Get(
    const std::string& module) const {
  std::vector<herd::v1::ModuleConfig> out;
  if (module.empty()) {
    for (const auto& name : modules_.ModuleNames()) {
      out.push_back(ConfigOf(name, *modules_.Defaults(name)));
    }
    return out;
  }
  const json* defaults = modules_.Defaults(module);
  if (defaults == nullptr) {
    return absl::NotFoundError(absl::StrCat("no module named \"", module,
                                            "\": `agentctl list` shows the installed ones"));
  }
  out.push_back(ConfigOf(module, *defaults));
  return out;
}

absl::StatusOr<ConfigEnvironment> ModuleConfigService::EnvironmentOf(
    const std::string& module, const json& defaults) const {
  return MakeConfigEnvironment(module, defaults, Overrides(module));
}

absl::Status ModuleConfigService::EnableManaged(const std::string& controlplane) {
  managed_ = true;
  controlplane_ = controlplane;
  auto text = ReadFileToString(SnapshotPath());
  if (!text.ok()) {
    if (absl::IsNotFound(text.status())) return absl::OkStatus();
    return text.status();
  }
  herd::v1::ConfigSnapshot snap;
  auto st = google::protobuf::util::JsonStringToMessage(*text, &snap);
  if (!st.ok()) {
    return absl::DataLossError(absl::StrCat(
        SnapshotPath(), ": not a config snapshot (", st.ToString(),
        "); remove it and the control plane sends the configuration again"));
  }
  snapshot_ = std::move(snap);
  log_->info("event=config_cache_loaded version={} modules={}", snapshot_.version(),
             snapshot_.modules_size());
  return absl::OkStatus();
}

void ModuleConfigService::CheckSnapshot(const herd::v1::ConfigSnapshot& snap,
                                        herd::v1::ConfigAck* ack) const {
  for (const auto& [name, mod] : snap.modules()) {
    const json* defaults = modules_.Defaults(name);
    if (defaults == nullptr) {
      Reject(ack, name, "", "no such module on this host");
      continue;
    }
    for (const auto& [key, value] : mod.values()) {
      json def = defaults->is_object() && defaults->contains(key) ? (*defaults)[key] : json();
      auto v = ConvertConfigValue(def, key, value);
      if (!v.ok()) Reject(ack, name, key, v.status().message());
    }
  }
  if (ack->rejections_size() > 0) return;
  // Values that convert may still be too large to hand to the module at all.
  for (const auto& [name, mod] : snap.modules()) {
    auto env = MakeConfigEnvironment(name, *modules_.Defaults(name), ValuesOf(snap, name));
    if (!env.ok()) Reject(ack, name, "", env.status().message());
  }
}

std::vector<std::string> ModuleConfigService::Changed(const herd::v1::ConfigSnapshot& snap) const {
  std::vector<std::string> changed;
  for (const auto& name : modules_.ModuleNames()) {
    // A module that could not start under the values in force is tried again with every
    // snapshot, so that it is nacked again (or comes back) rather than acked as if applied.
    if (Overrides(name) != ValuesOf(snap, name) || config_failed_.count(name)) {
      changed.push_back(name);
    }
  }
  return changed;
}

void ModuleConfigService::SaveSnapshot(const herd::v1::ConfigSnapshot& snap) const {
  std::string text;
  google::protobuf::util::JsonPrintOptions po;
  po.preserve_proto_field_names = true;
  (void)google::protobuf::util::MessageToJsonString(snap, &text, po);
  if (auto s = WriteFileAtomically(SnapshotPath(), text + "\n", 0600); !s.ok()) {
    // Applied anyway: the control plane is the source; only the offline cache is stale.
    log_->error("event=config_cache_not_saved error=\"{}\"", s.message());
  }
}

void ModuleConfigService::ApplySnapshot(const herd::v1::ConfigSnapshot& snap,
                                        std::function<void(herd::v1::ConfigAck)> done) {
  herd::v1::ConfigAck ack;
  ack.set_version(snap.version());
  CheckSnapshot(snap, &ack);
  if (ack.rejections_size() > 0) {
    log_->warn("event=config_rejected version={} rejections={} kept_version={}", snap.version(),
               ack.rejections_size(), snapshot_.version());
    ack.set_accepted(false);
    return done(ack);
  }
  const std::vector<std::string> changed = Changed(snap);
  SaveSnapshot(snap);
  snapshot_ = snap;
  ack.set_accepted(true);
  for (const auto& name : changed) ack.add_restarted(name);
  log_->info("event=config_applied version={} restarting=[{}]", snap.version(),
             absl::StrJoin(changed, ","));
  // Restart the changed modules one after the other, then ack. A module that cannot start
  // with the new values turns the ack into a rejection naming it (the values stay in force:
  // the next snapshot replaces them).
  auto failures = std::make_shared<Failures>();
  RestartEach({changed.rbegin(), changed.rend()}, failures, [this, ack, done, failures]() mutable {
    for (const auto& [module, reason] : *failures) {
      Reject(&ack, module, "", reason);
      ack.set_accepted(false);
    }
    if (!failures->empty()) {
      log_->warn("event=config_rejected version={} reason=module_did_not_start modules={}",
                 ack.version(), failures->size());
    }
    done(ack);
  });
}

void ModuleConfigService::RestartEach(std::vector<std::string> names,
                                      std::shared_ptr<Failures> failures,
                                      std::function<void()> done) {
  if (names.empty()) return done();
  std::string name = names.back();
  names.pop_back();
  if (modules_.Defaults(name) == nullptr) {
    return RestartEach(std::move(names), failures, std::move(done));
  }
  modules_.RestartForConfig(name, [this, name, names = std::move(names), failures,
                                   done = std::move(done)](absl::Status result) mutable {
    if (!result.ok()) {
      failures->emplace_back(name, std::string(result.message()));
      config_failed_.insert(name);
    } else {
      config_failed_.erase(name);
    }
    RestartEach(std::move(names), failures, std::move(done));
  });
}

void ModuleConfigService::Restart(const std::string& module, const json& defaults,
                                  Done<herd::v1::ModuleConfig> done) {
  herd::v1::ModuleConfig result = ConfigOf(module, defaults);
  modules_.RestartForConfig(module, [result, done](absl::Status s) {
    if (!s.ok()) return done(s);
    done(result);
  });
}

absl::Status ModuleConfigService::CheckSet(const herd::v1::SetConfigRequest& req,
                                           const json& defaults) const {
  static const std::regex key_re(R"(^[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}$)");
  if (!std::regex_match(req.key(), key_re)) {
    return absl::InvalidArgumentError(absl::StrCat(
        "\"", req.key(), "\" is not a valid key: use letters, digits, '_', '.', '-'"));
  }
  if (req.value().size() > 65536) return absl::InvalidArgumentError("value longer than 64 KiB");
  const bool declared = defaults.contains(req.key());
  if (!declared && !req.force()) {
    std::vector<std::string> keys;
    for (auto k = defaults.begin(); k != defaults.end(); ++k) keys.push_back(k.key());
    return absl::InvalidArgumentError(absl::StrCat(
        req.module(), " does not declare \"", req.key(), "\" (its keys: ",
        keys.empty() ? "none" : absl::StrJoin(keys, ", "), "); use --force to set it anyway"));
  }
  auto v = ConvertConfigValue(declared ? defaults[req.key()] : json(), req.key(), req.value());
  if (!v.ok()) return v.status();
  json overrides = Overrides(req.module());
  overrides[req.key()] = req.value();
  return MakeConfigEnvironment(req.module(), defaults, overrides).status();
}

void ModuleConfigService::Set(const herd::v1::SetConfigRequest& req,
                              Done<herd::v1::ModuleConfig> done) {
  if (managed_) {
    return done(absl::FailedPreconditionError(absl::StrCat(
        "this agent's configuration is owned by the control plane at ", controlplane_,
        ": set it there (agentctl --controlplane ", controlplane_, " --token-file F set ",
        req.module(), ":", req.key(), " VALUE --host THIS_HOST)")));
  }
  const json* defaults = modules_.Defaults(req.module());
  if (defaults == nullptr) {
    return done(absl::NotFoundError(absl::StrCat(
        "no module named \"", req.module(), "\": `agentctl list` shows the installed ones")));
  }
  if (auto s = CheckSet(req, *defaults); !s.ok()) return done(s);
  // An array or object is kept as JSON in module_conf.json; anything else as the text given.
  json def = defaults->contains(req.key()) ? (*defaults)[req.key()] : json();
  auto value = ConvertConfigValue(def, req.key(), req.value());
  if (!value.ok()) return done(value.status());
  if (auto s = conf_.Set(req.module(), req.key(),
                         value->is_structured() ? *value : json(req.value()));
      !s.ok()) {
    return done(s);
  }
  log_->info("event=config_set module={} key={}", req.module(), req.key());
  Restart(req.module(), *defaults, std::move(done));
}

void ModuleConfigService::Unset(const herd::v1::UnsetConfigRequest& req,
                                Done<herd::v1::ModuleConfig> done) {
  if (managed_) {
    return done(absl::FailedPreconditionError(absl::StrCat(
        "this agent's configuration is owned by the control plane at ", controlplane_,
        ": unset it there (agentctl --controlplane ", controlplane_, " unset ...)")));
  }
  const json* defaults = modules_.Defaults(req.module());
  if (defaults == nullptr) {
    return done(absl::NotFoundError(absl::StrCat("no module named \"", req.module(), "\"")));
  }
  auto removed = conf_.Unset(req.module(), req.key());
  if (!removed.ok()) return done(removed.status());
  if (!*removed) {
    return done(absl::NotFoundError(absl::StrCat(req.module(), " has no override for \"",
                                                 req.key(), "\"")));
  }
  log_->info("event=config_unset module={} key={}", req.module(), req.key());
  Restart(req.module(), *defaults, std::move(done));
}

}  // namespace herd::agent
