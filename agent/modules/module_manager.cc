#include "agent/modules/module_manager.h"

#include <errno.h>
#include <signal.h>

#include <algorithm>
#include <filesystem>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "agent/modules/inotify_dir_watcher.h"
#include "agent/modules/module_environment.h"
#include "common/log_escape.h"
#include "common/atomic_file.h"

namespace herd::agent {
namespace {

namespace fs = std::filesystem;
using json = nlohmann::json;

InstallerOptions InstallerOptionsOf(const ModuleManagerOptions& o) {
  return InstallerOptions{o.home, o.search_path, o.install_timeout, o.archive_limits};
}

}  // namespace

ModuleManager::ModuleManager(EventLoop& loop, Supervisor& supervisor,
                             ModuleManagerOptions options, ModuleManagerSeams seams)
    : loop_(loop),
      supervisor_(supervisor),
      options_(std::move(options)),
      log_(herd::Logger("modules")),
      spawner_(seams.commands ? nullptr : std::make_unique<PosixSpawner>()),
      own_commands_(seams.commands
                        ? nullptr
                        : std::make_unique<SpawnerCommandRunner>(*spawner_, loop.clock())),
      own_dir_watcher_(seams.dir_watcher ? nullptr : std::make_unique<InotifyDirWatcher>(loop)),
      installer_(InstallerOptionsOf(options_),
                 seams.commands ? *seams.commands : *own_commands_),
      config_(options_.home, *this),
      dev_watch_(seams.dir_watcher ? *seams.dir_watcher : *own_dir_watcher_, loop,
                 options_.watch_debounce,
                 [this](const std::string& name) { ReloadDevModule(name); }) {}

ModuleManager::~ModuleManager() {
  for (auto& t : workers_) {
    if (t.joinable()) t.join();
  }
}

std::unique_ptr<ModuleManager::Module> ModuleManager::NewModule(const std::string& name) const {
  auto m = std::make_unique<Module>();
  m->name = name;
  m->channel =
      std::make_unique<ChannelEndpoint>(loop_, name, options_.limits, options_.action_timeout);
  // Looked up when a message comes: the listener may be set after the module is loaded.
  m->channel->set_on_message([this, name](const std::string& type, const nlohmann::json& data) {
    if (on_channel_message_) on_channel_message_(name, type, data);
  });
  return m;
}

absl::Status ModuleManager::Load() {
  std::error_code ec;
  fs::create_directories(installer_.modules_dir(), ec);
  fs::create_directories(options_.home + "/lib", ec);
  if (auto s = WriteNodePreload(options_.home); !s.ok()) {
    log_->warn("event=preload_write_failed error=\"{}\"", s.message());
  }
  // Leftovers of an install interrupted by a crash.
  installer_.RemoveLeftovers();
  if (auto s = config_.Load(); !s.ok()) return s;
  if (auto s = LoadRecords(); !s.ok()) return s;
  log_->info("event=modules_loaded count={}", modules_.size());
  return absl::OkStatus();
}

absl::Status ModuleManager::LoadRecords() {
  const std::string path = options_.home + "/modules.json";
  auto text = ReadFileToString(path);
  if (!text.ok()) return absl::IsNotFound(text.status()) ? absl::OkStatus() : text.status();
  json doc = json::parse(*text, nullptr, false);
  if (doc.is_discarded() || !doc.is_object() || !doc.contains("modules") ||
      !doc["modules"].is_array()) {
    return absl::DataLossError(absl::StrCat(
        path, ": not a valid module list; restore it from a backup or remove it (installed "
              "modules are then forgotten, their files stay in modules/)"));
  }
  auto text_field = [](const json& r, const char* key) {
    auto it = r.find(key);
    return it != r.end() && it->is_string() ? it->get<std::string>() : std::string();
  };
  for (const auto& r : doc["modules"]) {
    if (!r.is_object() || !r.contains("name") || !r["name"].is_string()) continue;
    const std::string name = r["name"].get<std::string>();
    if (!ValidateModuleName(name).ok()) continue;
    auto m = NewModule(name);
    m->source = text_field(r, "source");
    m->dir = text_field(r, "dir");
    auto dev = r.find("dev_mode");
    m->dev_mode = dev != r.end() && dev->is_boolean() && dev->get<bool>();
    auto managed = r.find("managed");
    m->managed = managed != r.end() && managed->is_boolean() && managed->get<bool>();
    // One broken module does not keep agentd (and every other unit) down: it is kept,
    // errored with the reason when its unit would start, until its package.json is mended
    // (development mode reloads it on change) or it is installed again.
    auto manifest = LoadManifest(m->dir);
    if (manifest.ok()) {
      m->manifest = std::move(*manifest);
    } else {
      m->load_error = absl::StrCat(manifest.status().message(), " (mend it, then `agentctl restart ",
                                   m->name, "`; or install the module again)");
      log_->error("event=manifest_invalid module={} error=\"{}\"", m->name, m->load_error);
      m->manifest.name = m->name;
    }
    if (m->dev_mode) dev_watch_.Start(m->name, m->dir);
    modules_[name] = std::move(m);
  }
  return absl::OkStatus();
}

absl::Status ModuleManager::SaveRecords() {
  json list = json::array();
  for (const auto& [name, m] : modules_) {
    list.push_back({{"name", name},
                    {"source", m->source},
                    {"dir", m->dir},
                    {"dev_mode", m->dev_mode},
                    {"managed", m->managed},
                    {"version", m->manifest.version}});
  }
  json doc = {{"modules", list}};
  return WriteFileAtomically(options_.home + "/modules.json", doc.dump(2) + "\n", 0600);
}

void ModuleManager::RecordsChanged() {
  if (auto s = SaveRecords(); !s.ok()) {
    log_->error("event=records_save_failed error=\"{}\"", s.message());
  }
  if (on_inventory_change_) on_inventory_change_();
}

void ModuleManager::RunOnWorker(std::function<void()> work) {
  // Finished workers are joined lazily; installs are rare.
  workers_.emplace_back(std::move(work));
}

// ---------------------------------------------------------------------------------------
// Install

void ModuleManager::Install(const std::string& source, const std::string& base_dir,
                            Done<herd::v1::ModuleInfo> done, InstallSteps steps) {
  RunOnWorker([this, source, base_dir, done = std::move(done), steps = std::move(steps)]() mutable {
    auto prepared = installer_.Prepare(source, base_dir, steps);
    loop_.Post([this, prepared = std::move(prepared), done = std::move(done),
                steps = std::move(steps)]() mutable {
      FinishInstall(std::move(prepared), std::move(done), std::move(steps));
    });
  });
}

void ModuleManager::FinishInstall(absl::StatusOr<PreparedModule> prepared,
                                  Done<herd::v1::ModuleInfo> done, InstallSteps steps) {
  // Whatever is refused here, the prepared module's staging directory goes with it.
  if (!prepared.ok()) {
    log_->warn("event=install_failed error=\"{}\"", prepared.status().message());
    return done(prepared.status());
  }
  const std::string name = prepared->name;
  if (!modules_.count(name) && supervisor_.Describe(name).ok()) {
    return done(absl::AlreadyExistsError(absl::StrCat(
        "a unit named \"", name, "\" already runs and is not a module: `agentctl delete ",
        name, "` first, or rename the module")));
  }
  if (installing_.count(name)) {
    return done(absl::AbortedError(absl::StrCat(name, " is being installed already")));
  }
  installing_[name] = true;
  auto proceed = [this, prepared = std::move(*prepared), done,
                  steps](absl::Status stopped) mutable {
    PreparedModule p = std::move(prepared);  // the staging directory goes with `p` at the latest
    installing_.erase(p.name);
    if (!stopped.ok()) return done(stopped);
    Replace(std::move(p), std::move(done), steps);
  };
  // A module being replaced is stopped first, so its files can move.
  if (modules_.count(name) && supervisor_.Describe(name).ok()) {
    if (steps) steps("stopping the running " + name);
    supervisor_.Stop(name, [proceed](auto units) mutable {
      proceed(units.ok() ? absl::OkStatus() : units.status());
    });
  } else {
    proceed(absl::OkStatus());
  }
}

void ModuleManager::Replace(PreparedModule prepared, Done<herd::v1::ModuleInfo> done,
                            const InstallSteps& steps) {
  auto dir = installer_.Place(prepared);
  if (prepared.staging) prepared.staging->Remove();
  if (!dir.ok()) return done(dir.status());
  auto& slot = modules_[prepared.name];
  const bool fresh = slot == nullptr;
  if (fresh) slot = NewModule(prepared.name);
  Module& m = *slot;
  dev_watch_.Stop(m.name);
  m.source = prepared.source;
  m.dir = *dir;
  m.dev_mode = prepared.dev_mode;
  m.manifest = std::move(prepared.manifest);
  m.load_error.clear();
  RecordsChanged();
  if (m.dev_mode) dev_watch_.Start(m.name, m.dir);
  if (steps) steps(absl::StrCat("starting ", m.name, " ", m.manifest.version));
  StartInstalled(m, fresh, std::move(done));
}

void ModuleManager::StartInstalled(Module& m, bool fresh, Done<herd::v1::ModuleInfo> done) {
  auto spec = ModuleAppSpec(m.manifest, m.dir, options_.search_path);
  if (!spec.ok()) {
    // Checked in the staging directory already; if the move changed that, a fresh
    // install leaves nothing behind (no record, no files, no configuration shown).
    if (fresh) {
      const std::string name = m.name;
      dev_watch_.Stop(name);
      std::error_code ec;
      if (!m.dev_mode) fs::remove_all(m.dir, ec);
      modules_.erase(name);
      RecordsChanged();
    }
    return done(spec.status());
  }
  log_->info("event=installed module={} version={} source=\"{}\" dir={} dev_mode={}", m.name,
             m.manifest.version, m.source, m.dir, m.dev_mode);
  const std::string n = m.name;
  supervisor_.Start({*spec}, [this, n, done](auto units) {
    if (!units.ok()) return done(units.status());
    auto it = modules_.find(n);
    if (it == modules_.end()) return done(absl::NotFoundError(n + " was uninstalled"));
    done(Info(*it->second));
  });
}

void ModuleManager::Uninstall(const std::string& name, bool keep_config,
                              Done<herd::v1::UninstallModuleResponse> done) {
  if (!modules_.count(name)) {
    std::vector<std::string> names = ModuleNames();
    return done(absl::NotFoundError(absl::StrCat(
        "no module named \"", name, "\" (installed: ",
        names.empty() ? "none" : absl::StrJoin(names, ", "), ")")));
  }
  auto finish = [this, name, keep_config, done](absl::Status s) {
    if (!modules_.count(name)) return done(absl::NotFoundError(name + " is already gone"));
    if (!s.ok() && !absl::IsNotFound(s)) return done(s);
    herd::v1::UninstallModuleResponse resp;
    resp.set_name(name);
    RemoveModule(name, keep_config, &resp);
    done(resp);
  };
  if (supervisor_.Describe(name).ok()) {
    supervisor_.Delete(name, [finish](auto units) {
      finish(units.ok() ? absl::OkStatus() : units.status());
    });
  } else {
    finish(absl::OkStatus());
  }
}

void ModuleManager::RemoveModule(const std::string& name, bool keep_config,
                                 herd::v1::UninstallModuleResponse* resp) {
  auto it = modules_.find(name);
  Module& m = *it->second;
  dev_watch_.Stop(name);
  m.channel->Close("module uninstalled");
  if (!m.dev_mode && absl::StartsWith(m.dir, options_.home + "/modules/")) {
    std::error_code ec;
    fs::remove_all(m.dir, ec);
    if (ec) {
      log_->error("event=uninstall_remove_failed module={} error=\"{}\"", name, ec.message());
    }
    resp->set_removed_dir(m.dir);
  }
  if (!keep_config) {
    if (auto e = config_.Erase(name); !e.ok()) {
      log_->error("event=conf_erase_failed module={} error=\"{}\"", name, e.message());
    }
  }
  modules_.erase(it);
  if (auto e = SaveRecords(); !e.ok()) {
    log_->error("event=records_save_failed error=\"{}\"", e.message());
  }
  log_->info("event=uninstalled module={} keep_config={}", name, keep_config);
  if (on_inventory_change_) on_inventory_change_();
}

void ModuleManager::Update(const std::string& name, const std::string& version,
                           Done<herd::v1::ModuleInfo> done, InstallSteps steps) {
  auto it = modules_.find(name);
  if (it == modules_.end()) {
    return done(absl::NotFoundError(absl::StrCat("no module named \"", name, "\"")));
  }
  std::string source = it->second->source;
  // From npm: the latest now, or the version asked for (installed at NAME@1.0, updated means
  // moved on, as `pm2 module:update` does). From an archive or a directory: the same again.
  if (auto package = ModuleInstaller::NpmPackageOf(source); package && !it->second->dev_mode) {
    source = version.empty() ? *package : absl::StrCat(*package, "@", version);
    if (!ModuleInstaller::NpmPackageOf(source)) {
      return done(absl::InvalidArgumentError(absl::StrCat(
          "\"", EscapeForLog(version, 64), "\" is not an npm version or range (e.g. 2.7.0)")));
    }
  } else if (!version.empty()) {
    return done(absl::InvalidArgumentError(absl::StrCat(
        name, " was installed from ", source, ", not from npm: no version can be chosen; "
        "install the archive or directory of that version instead")));
  }
  Install(source, "/", std::move(done), std::move(steps));
}

// ---------------------------------------------------------------------------------------
// Configuration (ConfiguredModules)

std::vector<std::string> ModuleManager::ModuleNames() const {
  std::vector<std::string> names;
  for (const auto& [n, m] : modules_) names.push_back(n);
  return names;
}

const json* ModuleManager::Defaults(const std::string& module) const {
  auto it = modules_.find(module);
  return it == modules_.end() ? nullptr : &it->second->manifest.config;
}

void ModuleManager::RestartForConfig(const std::string& module,
                                     std::function<void(absl::Status)> done) {
  auto d = supervisor_.Describe(module);
  if (!d.ok() || d->status().state() == herd::v1::UNIT_STATE_STOPPED) {
    return done(absl::OkStatus());  // takes effect at its next start
  }
  log_->info("event=config_restart module={}", module);
  supervisor_.Restart(module, [done](auto units) {
    if (!units.ok()) return done(units.status());
    // The spawn is synchronous: a module that could not start with this configuration is
    // errored already.
    for (const auto& u : *units) {
      if (u.state() == herd::v1::UNIT_STATE_ERRORED) {
        return done(absl::FailedPreconditionError(absl::StrCat(
            u.name(), " could not start with this configuration: ", u.status_reason())));
      }
    }
    done(absl::OkStatus());
  });
}

// ---------------------------------------------------------------------------------------
// Channel (UnitHooks) and actions

absl::Status ModuleManager::BeforeSpawn(const herd::v1::AppSpec& spec,
                                        std::vector<std::string>* env, int* channel_fd) {
  auto it = modules_.find(spec.name());
  if (it == modules_.end()) {
    log_->warn("event=module_unknown unit={} action=no_channel", spec.name());
    return absl::OkStatus();
  }
  Module& m = *it->second;
  m.channel->Close("new process");
  if (!m.load_error.empty()) {
    // Mended since? (`agentctl restart` after fixing the file is how it comes back.)
    auto manifest = LoadManifest(m.dir);
    if (!manifest.ok()) return absl::FailedPreconditionError(m.load_error);
    log_->info("event=manifest_mended module={}", m.name);
    m.manifest = std::move(*manifest);
    m.load_error.clear();
  }
  auto config_env = ConfigEnvironmentOf(m);
  if (!config_env.ok()) return config_env.status();
  const int fd = m.channel->Open();
  if (fd < 0) return absl::OkStatus();  // runs without its channel, as before
  *channel_fd = fd;
  SetModuleEnvironment(spec, m.name, m.dir, *config_env, NodePreloadPath(options_.home), env);
  return absl::OkStatus();
}

absl::StatusOr<ConfigEnvironment> ModuleManager::ConfigEnvironmentOf(const Module& m) {
  // A hand edit of module_conf.json applies from the module's next start; one that cannot
  // be applied is said where the operator looks (the module's log), not skipped silently.
  auto note = [&](absl::string_view what) {
    log_->warn("event=module_conf_refused module={} reason=\"{}\"", m.name, EscapeForLog(what));
    supervisor_.NoteInLog(m.name, absl::StrCat("[herd] ", what));
  };
  if (auto s = config_.Refresh(); !s.ok()) note(s.message());
  auto env = config_.EnvironmentOf(m.name, m.manifest.config);
  if (!env.ok()) return env.status();
  for (const auto& reason : env->refused) {
    note(absl::StrCat(options_.home, "/module_conf.json: ", reason, "; the default applies"));
  }
  return env;
}

void ModuleManager::AfterSpawn(const std::string& unit, pid_t pid) {
  auto it = modules_.find(unit);
  if (it != modules_.end()) it->second->channel->Attach(pid);
}

void ModuleManager::AfterExit(const std::string& unit) {
  auto it = modules_.find(unit);
  if (it == modules_.end()) return;
  it->second->channel->Drain();  // what it sent just before exiting
  it->second->channel->Close("module exited");
}

std::vector<pid_t> ModuleManager::SampleRoots(const std::string& unit, bool* join) {
  auto it = modules_.find(unit);
  if (it == modules_.end()) return {};
  const ModuleChannelState& state = it->second->channel->state();
  *join = state.pid_join();
  std::vector<pid_t> alive;
  for (pid_t p : state.pid_override()) {
    if (kill(p, 0) == 0 || errno == EPERM) alive.push_back(p);
  }
  return alive;
}

void ModuleManager::TriggerAction(const herd::v1::TriggerActionRequest& req,
                                  Done<herd::v1::TriggerActionResponse> done) {
  auto it = modules_.find(req.module());
  if (it == modules_.end()) {
    return done(absl::NotFoundError(absl::StrCat("no module named \"", req.module(), "\"")));
  }
  if (req.action() == kClearIssuesAction) {
    // agentd's own action on every module (as PM2's km: ones): the operator saw the issues.
    herd::v1::TriggerActionResponse resp;
    const size_t n = it->second->channel->ClearIssues();
    resp.set_reply_json(nlohmann::json{{"cleared", n}}.dump());
    log_->info("event=issues_cleared module={} groups={}", req.module(), n);
    if (on_inventory_change_) on_inventory_change_();
    return done(resp);
  }
  it->second->channel->Trigger(req, std::move(done));
}

// ---------------------------------------------------------------------------------------
// Surfaces

herd::v1::ModuleInfo ModuleManager::Info(const Module& m) const {
  herd::v1::ModuleInfo info;
  info.set_name(m.name);
  info.set_version(m.manifest.version);
  info.set_description(m.manifest.description);
  info.set_dir(m.dir);
  info.set_source(m.source);
  info.set_dev_mode(m.dev_mode);
  m.channel->state().Fill(&info);
  herd::v1::ModuleConfig config = config_.ConfigOf(m.name, m.manifest.config);
  for (auto& e : *config.mutable_entries()) *info.add_config() = std::move(e);
  return info;
}

std::vector<herd::v1::ModuleInventory> ModuleManager::Inventory() const {
  std::vector<herd::v1::ModuleInventory> out;
  for (const auto& [name, m] : modules_) {
    herd::v1::ModuleInventory inv;
    inv.set_name(name);
    inv.set_version(m->manifest.version);
    inv.set_source(m->source);
    inv.set_defaults_json(m->manifest.config.is_object() ? m->manifest.config.dump() : "{}");
    inv.set_description(m->manifest.description);
    inv.set_managed(m->managed);
    auto d = supervisor_.Describe(name);
    if (d.ok()) {
      inv.set_state(d->status().state());
      const auto& spec = d->spec();
      const std::string& program = spec.interpreter().empty() || spec.interpreter() == "none"
                                       ? spec.script()
                                       : spec.interpreter();
      inv.set_interpreter(program.substr(program.rfind('/') + 1));
    }
    herd::v1::ModuleInfo info;
    m->channel->state().Fill(&info);
    if (info.has_widget()) *inv.mutable_widget() = info.widget();
    *inv.mutable_actions() = info.actions();
    constexpr int kRecentIssues = 5;
    for (int i = std::max(0, info.issues_size() - kRecentIssues); i < info.issues_size(); ++i) {
      *inv.add_recent_issues() = info.issues(i);
    }
    out.push_back(std::move(inv));
  }
  return out;
}

std::optional<ModuleManager::Installed> ModuleManager::InstalledModule(
    const std::string& name) const {
  auto it = modules_.find(name);
  if (it == modules_.end()) {
    if (!installing_.count(name)) return std::nullopt;
    Installed being_installed;
    being_installed.installing = true;
    return being_installed;
  }
  const Module& m = *it->second;
  return Installed{m.manifest.version, m.source, m.managed, installing_.count(name) > 0};
}

std::vector<std::string> ModuleManager::ManagedModules() const {
  std::vector<std::string> out;
  for (const auto& [name, m] : modules_) {
    if (m->managed) out.push_back(name);
  }
  return out;
}

void ModuleManager::SetManaged(const std::string& name, bool managed) {
  auto it = modules_.find(name);
  if (it == modules_.end() || it->second->managed == managed) return;
  it->second->managed = managed;
  RecordsChanged();
}

void ModuleManager::FillStatus(herd::v1::UnitStatus* status) const {
  auto it = modules_.find(status->name());
  if (it == modules_.end()) return;
  status->set_is_module(true);
  for (auto& p : it->second->channel->state().MainProbes()) *status->add_main_probes() = std::move(p);
}

void ModuleManager::FillDetail(herd::v1::UnitDetail* detail) const {
  auto it = modules_.find(detail->status().name());
  if (it == modules_.end()) return;
  FillStatus(detail->mutable_status());
  *detail->mutable_module_info() = Info(*it->second);
}

// ---------------------------------------------------------------------------------------
// Development mode

void ModuleManager::ReloadDevModule(const std::string& name) {
  auto it = modules_.find(name);
  if (it == modules_.end()) return;
  Module& m = *it->second;
  auto manifest = LoadManifest(m.dir);
  if (!manifest.ok()) {
    log_->error("event=dev_reload_refused module={} error=\"{}\"", name,
                manifest.status().message());
    return;
  }
  if (manifest->name != m.name) {
    log_->error("event=dev_reload_refused module={} error=\"package.json now names {}; "
                "uninstall and install again to rename\"",
                name, manifest->name);
    return;
  }
  m.manifest = std::move(*manifest);
  m.load_error.clear();
  auto spec = ModuleAppSpec(m.manifest, m.dir, options_.search_path);
  if (!spec.ok()) {
    log_->error("event=dev_reload_refused module={} error=\"{}\"", name, spec.status().message());
    return;
  }
  log_->info("event=dev_restart module={} reason=file_changed", name);
  supervisor_.Start({*spec}, [this, name](auto units) {
    if (!units.ok()) {
      log_->error("event=dev_restart_failed module={} error=\"{}\"", name,
                  units.status().message());
    }
  });
}

}  // namespace herd::agent
