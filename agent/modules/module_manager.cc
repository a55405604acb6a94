#include "agent/modules/module_manager.h"

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/inotify.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <filesystem>
#include <random>
#include <regex>

#include "absl/strings/match.h"
#include "google/protobuf/util/json_util.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "agent/modules/archive_scan.h"
#include "agent/modules/command.h"
#include "agent/supervisor/app_spec.h"
#include "common/atomic_file.h"
#include "common/log_escape.h"
#include "common/units.h"

namespace herd::agent {
namespace {

namespace fs = std::filesystem;
using json = nlohmann::json;

// Loaded into every Node module with `node --require` (through NODE_OPTIONS). PM2's process
// container initialises its own @pm2/io before a module runs, and @pm2/io 2.x modules rely on
// that for their metrics timer; this does the same with the module's own copy (see
// ../shared/reference/pm2-ipc-protocol.md, "A trap"). Errors are swallowed: a module without
// @pm2/io must run exactly as it would without us.
constexpr char kNodePreload[] = R"JS(// Written by agentd: initialises a module's @pm2/io 2.x before the module loads.
'use strict';
try {
  const path = require('path');
  const dir = process.env.HERD_MODULE_DIR || process.cwd();
  const main = require.resolve('@pm2/io', { paths: [dir] });
  let pkgDir = path.dirname(main);
  let version = '';
  for (let i = 0; i < 5 && !version; i++) {
    try {
      const pkg = require(path.join(pkgDir, 'package.json'));
      if (pkg.name === '@pm2/io') version = pkg.version || '';
    } catch (e) {}
    pkgDir = path.dirname(pkgDir);
  }
  const major = parseInt(version.split('.')[0], 10);
  if (major > 0 && major < 4) {
    const io = require(main);
    if (io && typeof io.init === 'function') io.init();
  }
} catch (e) {}
)JS";

bool IsDir(const std::string& p) {
  struct stat st{};
  return stat(p.c_str(), &st) == 0 && S_ISDIR(st.st_mode);
}
bool IsFile(const std::string& p) {
  struct stat st{};
  return stat(p.c_str(), &st) == 0 && S_ISREG(st.st_mode);
}

bool LooksLikeArchive(absl::string_view s) {
  return absl::EndsWith(s, ".tgz") || absl::EndsWith(s, ".tar.gz") || absl::EndsWith(s, ".tar");
}

// npm's package name rules (lower case, URL-safe, optional @scope/, optional @version), and
// never starting with '-' so it cannot be read as an option.
bool ValidNpmSpec(const std::string& s) {
  static const std::regex re(
      R"(^(@[a-z0-9~][a-z0-9._~-]*/)?[a-z0-9~][a-z0-9._~-]*(@[A-Za-z0-9._^~<>=*|-]+)?$)");
  return s.size() <= 214 && std::regex_match(s, re);
}

// Whether `p` is `base` or below it (both canonical).
bool IsUnder(const fs::path& p, const fs::path& base) {
  auto [b, q] = std::mismatch(base.begin(), base.end(), p.begin(), p.end());
  return b == base.end();
}

// What an extracted module archive may leave in the module's directory (`root`, which is moved
// into place): files, directories, and relative symbolic links that resolve to something
// inside it (a hand-made tarball's `lib -> src`). GNU tar refuses members named outside the
// extraction and creates links that point outside last, but it creates them: a link to /etc,
// to ../.. or to another module would then have agentd, npm and the module read and write
// through it, outside the module; a dangling one would let them create files wherever it
// points. Absolute links would break when the directory moves, so none is taken. Device nodes
// and FIFOs have no place in a module. (Set-user-ID and set-group-ID bits are dropped by tar's
// --no-same-permissions.) `npm pack` puts none of these in an archive.
// Names in errors are relative to the extraction (`package/...`), as the archive lists them.
absl::Status CheckExtracted(const std::string& extract, const std::string& root,
                            const std::string& archive) {
  constexpr absl::string_view kHint =
      " (make the archive with `npm pack`, which leaves links and special files out)";
  std::error_code ec;
  const fs::path top = fs::canonical(extract, ec);
  if (ec) return absl::InternalError(absl::StrCat("cannot read ", extract, ": ", ec.message()));
  const fs::file_status root_status = fs::symlink_status(root, ec);
  if (ec) return absl::InternalError(absl::StrCat("cannot read ", root, ": ", ec.message()));
  auto what = [&](const fs::path& p) { return p.lexically_relative(top).string(); };
  if (!fs::is_directory(root_status)) {
    return absl::InvalidArgumentError(absl::StrCat(
        archive, ": ", what(root), " is a symbolic link, not the module's directory", kHint));
  }
  const fs::path base = fs::canonical(root, ec);
  if (ec) return absl::InternalError(absl::StrCat("cannot read ", root, ": ", ec.message()));
  fs::recursive_directory_iterator it(base, ec), end;
  for (; !ec && it != end; it.increment(ec)) {
    const fs::path& path = it->path();
    std::error_code kind_ec;
    const fs::file_status st = it->symlink_status(kind_ec);
    if (kind_ec) {
      return absl::InternalError(absl::StrCat("cannot read ", path.string(), ": ",
                                              kind_ec.message()));
    }
    if (fs::is_regular_file(st) || fs::is_directory(st)) continue;
    if (!fs::is_symlink(st)) {
      return absl::InvalidArgumentError(absl::StrCat(
          archive, ": ", what(path),
          " is neither a file, a directory nor a link (a device, a FIFO or a socket): a module "
          "archive holds files",
          kHint));
    }
    std::error_code link_ec;
    const fs::path target = fs::read_symlink(path, link_ec);
    std::string why;
    if (link_ec) {
      why = absl::StrCat("cannot be read (", link_ec.message(), ")");
    } else if (target.is_absolute()) {
      why = "an absolute path";
    } else {
      const fs::path resolved = fs::canonical(path, link_ec);
      if (link_ec) {
        why = absl::StrCat("which does not resolve to anything in the archive (",
                           link_ec.message(), ")");
      } else if (!IsUnder(resolved, base)) {
        why = "outside the module";
      }
    }
    if (!why.empty()) {
      return absl::InvalidArgumentError(absl::StrCat(
          archive, ": ", what(path), " is a symbolic link to \"", target.string(), "\", ", why,
          ": a module archive may only link within itself (put the file itself in the archive)"));
    }
  }
  if (ec) return absl::InternalError(absl::StrCat("cannot read ", root, ": ", ec.message()));
  return absl::OkStatus();
}

std::string MakeStaging(const std::string& home) {
  std::string tmpl = home + "/modules/.staging-XXXXXX";
  if (mkdtemp(tmpl.data()) == nullptr) return "";
  return tmpl;
}

std::string RandomHex(size_t n) {
  static thread_local std::mt19937_64 rng{std::random_device{}()};
  static const char* digits = "0123456789abcdef";
  std::string s;
  for (size_t i = 0; i < n; ++i) s.push_back(digits[rng() % 16]);
  return s;
}

bool IgnoredInWatch(absl::string_view name) {
  return name.empty() || name[0] == '.' || name == "node_modules" || name == "logs" ||
         absl::EndsWith(name, "~") || absl::EndsWith(name, ".swp") ||
         absl::EndsWith(name, ".log");
}

std::vector<std::string> NpmEnv(const std::string& home) {
  std::vector<std::string> env = {"npm_config_update_notifier=false", "npm_config_fund=false",
                                  "npm_config_audit=false"};
  const char* user_home = getenv("HOME");
  if (user_home == nullptr || *user_home == '\0') {
    env.push_back(absl::StrCat("npm_config_cache=", home, "/.npm-cache"));
  }
  return env;
}

// The kernel refuses an exec whose single environment string ("KEY=value" and its NUL) is
// longer than MAX_ARG_STRLEN (32 pages: 128 KiB): execve fails with E2BIG ("Argument list
// too long") and the module cannot start. A module's whole configuration travels in two
// such strings (PM2's process.env[<name>] and HERD_MODULE_CONFIG), so it is checked here,
// where a snapshot or a `set` can still be refused, rather than found at the next spawn.
constexpr size_t kMaxEnvString = 128 * 1024;

// What a module process gets of its configuration: its overrides (PM2's contract: strings)
// and the effective values typed like the defaults, as the JSON text of its two variables.
struct ConfigEnvironment {
  std::string overrides, effective;
};

// Both texts, or why they would not fit in an environment variable.
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

}  // namespace

ModuleManager::ModuleManager(EventLoop& loop, Supervisor& supervisor,
                             ModuleManagerOptions options)
    : loop_(loop),
      supervisor_(supervisor),
      options_(std::move(options)),
      log_(herd::Logger("modules")),
      conf_(options_.home + "/module_conf.json") {}

ModuleManager::~ModuleManager() {
  for (auto& t : workers_) {
    if (t.joinable()) t.join();
  }
  for (auto& [name, m] : modules_) {
    StopWatching(*m);
    if (m->agent_fd >= 0) {
      loop_.UnwatchFd(m->watch);
      close(m->agent_fd);
    }
    if (m->child_fd >= 0) close(m->child_fd);
    for (auto& [action, p] : m->pending) {
      if (p.timer) loop_.CancelTimer(p.timer);
    }
  }
}

std::string ModuleManager::PreloadPath() const { return options_.home + "/lib/herd-node-preload.js"; }

absl::Status ModuleManager::Load() {
  std::error_code ec;
  fs::create_directories(options_.home + "/modules", ec);
  fs::create_directories(options_.home + "/lib", ec);
  if (auto s = WriteFileAtomically(PreloadPath(), kNodePreload, 0644); !s.ok()) {
    log_->warn("event=preload_write_failed error=\"{}\"", s.message());
  }
  // Leftovers of an install interrupted by a crash.
  for (const auto& entry : fs::directory_iterator(options_.home + "/modules", ec)) {
    if (absl::StartsWith(entry.path().filename().string(), ".staging-")) {
      fs::remove_all(entry.path(), ec);
    }
  }
  if (auto s = conf_.Load(); !s.ok()) return s;

  std::string path = options_.home + "/modules.json";
  auto text = ReadFileToString(path);
  if (!text.ok()) {
    if (absl::IsNotFound(text.status())) return absl::OkStatus();
    return text.status();
  }
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
    auto m = std::make_unique<Module>();
    m->name = r["name"].get<std::string>();
    if (!ValidateModuleName(m->name).ok()) continue;
    m->source = text_field(r, "source");
    m->dir = text_field(r, "dir");
    auto dev = r.find("dev_mode");
    m->dev_mode = dev != r.end() && dev->is_boolean() && dev->get<bool>();
    m->channel = ModuleChannelState(options_.limits);
    // One broken module does not keep agentd (and every other unit) down: it is kept,
    // errored with the reason when its unit would start, until its package.json is mended
    // (development mode reloads it on change) or it is installed again.
    auto manifest = LoadManifest(m->dir);
    if (manifest.ok()) {
      m->manifest = std::move(*manifest);
    } else {
      m->load_error = absl::StrCat(
          manifest.status().message(), " (mend it, then `agentctl restart ", m->name,
          "`; or install the module again)");
      log_->error("event=manifest_invalid module={} error=\"{}\"", m->name, m->load_error);
      m->manifest.name = m->name;
    }
    Module& ref = *m;
    modules_[m->name] = std::move(m);
    if (ref.dev_mode) StartWatching(ref);
  }
  log_->info("event=modules_loaded count={}", modules_.size());
  return absl::OkStatus();
}

absl::Status ModuleManager::SaveRecords() {
  json list = json::array();
  for (const auto& [name, m] : modules_) {
    list.push_back({{"name", name},
                    {"source", m->source},
                    {"dir", m->dir},
                    {"dev_mode", m->dev_mode},
                    {"version", m->manifest.version}});
  }
  json doc = {{"modules", list}};
  return WriteFileAtomically(options_.home + "/modules.json", doc.dump(2) + "\n", 0600);
}

void ModuleManager::RunOnWorker(std::function<void()> work) {
  // Finished workers are joined lazily; installs are rare.
  workers_.emplace_back(std::move(work));
}

// ---------------------------------------------------------------------------------------
// Install

absl::StatusOr<ModuleManager::Prepared> ModuleManager::PrepareInstall(
    const std::string& source, const std::string& base_dir) {
  if (source.empty()) {
    return absl::InvalidArgumentError(
        "nothing to install: give an npm package name, a .tgz file or a directory");
  }
  std::string path = source;
  if (path[0] != '/') path = (fs::path(base_dir) / source).lexically_normal().string();
  if (path.size() > 1 && path.back() == '/') path.pop_back();
  const std::string search = options_.search_path;
  const std::string npm = FindInPath("npm", search);
  auto npm_missing = [&](const std::string& why) {
    return absl::FailedPreconditionError(absl::StrCat(
        why, " but npm is not installed (or not on agentd's PATH): install it "
             "(apt-get install npm) and try again"));
  };
  auto npm_install = [&](const std::string& dir, const Manifest& m) -> absl::Status {
    if (!m.is_node || !m.has_dependencies) return absl::OkStatus();
    if (npm.empty()) return npm_missing(absl::StrCat(m.name, " has Node dependencies"));
    auto r = RunCommand({npm, "install", "--omit=dev", "--no-audit", "--no-fund",
                         "--no-package-lock"},
                        dir, options_.install_timeout, NpmEnv(options_.home));
    if (!r.ok()) return r.status();
    if (r->exit_code != 0) {
      return absl::FailedPreconditionError(
          absl::StrCat("npm install failed in ", dir, " (exit ", r->exit_code, "):\n",
                       LastLines(r->output, 15)));
    }
    return absl::OkStatus();
  };

  Prepared p;
  if (IsDir(path)) {
    auto m = LoadManifest(path);
    if (!m.ok()) return m.status();
    // Refused before anything is recorded: a module that cannot start is not installed.
    if (auto spec = ModuleAppSpec(*m, path, search); !spec.ok()) return spec.status();
    if (!IsDir(path + "/node_modules")) {
      auto text = ReadFileToString(path + "/package.json");
      if (m->is_node && m->has_dependencies && text.ok() && StripJsonComments(*text) != *text) {
        return absl::FailedPreconditionError(absl::StrCat(
            path, "/package.json has comments, which npm cannot read: remove them, run "
                  "`npm install` there yourself, or install the module as a .tgz (its "
                  "installed copy is cleaned)"));
      }
      if (auto s = npm_install(path, *m); !s.ok()) return s;
    }
    p.name = m->name;
    p.dir = path;
    p.source = path;
    p.dev_mode = true;
    p.manifest = std::move(*m);
    return p;
  }

  std::string staging = MakeStaging(options_.home);
  if (staging.empty()) {
    return absl::InternalError(absl::StrCat("cannot create a staging directory in ",
                                            options_.home, "/modules: ", strerror(errno)));
  }
  std::string archive;
  if (IsFile(path)) {
    if (!LooksLikeArchive(path)) {
      return absl::InvalidArgumentError(absl::StrCat(
          path, " is a file but not a .tgz/.tar.gz/.tar archive: give a module directory, "
                "an archive made with `npm pack`, or an npm package name"));
    }
    // Read from our own copy: the file given could change between the size check and tar.
    archive = staging + "/" + fs::path(path).filename().string();
    std::error_code ec;
    fs::copy_file(path, archive, ec);
    if (ec) {
      fs::remove_all(staging);
      return absl::FailedPreconditionError(
          absl::StrCat("cannot copy ", path, " to ", staging, ": ", ec.message()));
    }
    p.source = path;
  } else if (LooksLikeArchive(source) ||
             (absl::StrContains(source, "/") && !absl::StartsWith(source, "@"))) {
    fs::remove_all(staging);
    return absl::NotFoundError(absl::StrCat(path, ": no such file or directory"));
  } else {
    if (!ValidNpmSpec(source)) {
      fs::remove_all(staging);
      return absl::InvalidArgumentError(absl::StrCat(
          "\"", source, "\" is neither a directory, an archive, nor a valid npm package name "
          "(lower case letters, digits, '-', '.', '_', optional @scope/ and @version)"));
    }
    if (npm.empty()) {
      fs::remove_all(staging);
      return npm_missing(absl::StrCat("installing \"", source, "\" from npm needs npm,"));
    }
    auto r = RunCommand({npm, "pack", source, "--pack-destination", staging, "--silent"},
                        staging, options_.install_timeout, NpmEnv(options_.home));
    if (!r.ok() || r->exit_code != 0) {
      fs::remove_all(staging);
      if (!r.ok()) return r.status();
      return absl::NotFoundError(absl::StrCat("npm pack ", source, " failed (exit ",
                                              r->exit_code, "):\n", LastLines(r->output, 10)));
    }
    std::error_code ec;
    for (const auto& e : fs::directory_iterator(staging, ec)) {
      if (LooksLikeArchive(e.path().string())) archive = e.path().string();
    }
    if (archive.empty()) {
      fs::remove_all(staging);
      return absl::InternalError(absl::StrCat("npm pack ", source, " produced no archive"));
    }
    p.source = source;
  }

  // Counted before a byte is written: a small archive can unpack to gigabytes.
  auto totals = ScanArchive(archive, options_.archive_limits);
  if (!totals.ok()) {
    fs::remove_all(staging);
    log_->warn("event=archive_refused source=\"{}\" error=\"{}\"", EscapeForLog(source),
               totals.status().message());
    return totals.status();
  }
  std::string extract = staging + "/x";
  fs::create_directories(extract);
  // GNU tar refuses members with absolute names or "..", so an archive cannot write outside;
  // what it leaves is checked below (CheckExtracted).
  // The compression is the one ScanArchive read through (gzip, or none), not tar's guess.
  std::vector<std::string> tar = {"tar", totals->gzip ? "-xzf" : "-xf", archive, "-C", extract,
                                  "--no-same-owner", "--no-same-permissions"};
  auto r = RunCommand(tar,
                      staging, options_.install_timeout);
  if (!r.ok() || r->exit_code != 0) {
    fs::remove_all(staging);
    if (!r.ok()) return r.status();
    return absl::InvalidArgumentError(absl::StrCat(archive, ": cannot extract (tar exit ",
                                                   r->exit_code, "):\n",
                                                   LastLines(r->output, 5)));
  }
  std::string root;
  if (IsFile(extract + "/package/package.json")) {
    root = extract + "/package";
  } else if (IsFile(extract + "/package.json")) {
    root = extract;
  } else {
    std::error_code ec;
    for (const auto& e : fs::directory_iterator(extract, ec)) {
      if (e.is_directory() && IsFile(e.path().string() + "/package.json")) {
        root = e.path().string();
        break;
      }
    }
  }
  if (root.empty()) {
    fs::remove_all(staging);
    return absl::InvalidArgumentError(absl::StrCat(
        archive, ": no package.json in the archive (expected package/package.json, as "
                 "`npm pack` makes)"));
  }
  if (auto s = CheckExtracted(extract, root, archive); !s.ok()) {
    fs::remove_all(staging);
    return s;
  }
  auto m = LoadManifest(root);
  if (!m.ok()) {
    fs::remove_all(staging);
    return m.status();
  }
  // Refused before anything is recorded: a module that cannot start is not installed.
  if (auto spec = ModuleAppSpec(*m, root, search); !spec.ok()) {
    fs::remove_all(staging);
    return spec.status();
  }
  // PM2's docs put comments in package.json, but npm and the modules' own libraries (pmx
  // require()s it) read it as strict JSON: the installed copy gets them blanked out.
  if (auto text = ReadFileToString(root + "/package.json"); text.ok()) {
    std::string strict = StripJsonComments(*text);
    if (strict != *text) {
      if (auto s = WriteFileAtomically(root + "/package.json", strict, 0644); !s.ok()) {
        fs::remove_all(staging);
        return s;
      }
    }
  }
  if (auto s = npm_install(root, *m); !s.ok()) {
    fs::remove_all(staging);
    return s;
  }
  // Moved to its final place on the loop thread, once the old version is stopped.
  p.name = m->name;
  p.dir = root;
  p.manifest = std::move(*m);
  p.dev_mode = false;
  return p;
}

void ModuleManager::Install(const std::string& source, const std::string& base_dir,
                            Done<herd::v1::ModuleInfo> done) {
  RunOnWorker([this, source, base_dir, done = std::move(done)]() mutable {
    auto prepared = PrepareInstall(source, base_dir);
    loop_.Post([this, prepared = std::move(prepared), done = std::move(done)]() mutable {
      FinishInstall(std::move(prepared), std::move(done));
    });
  });
}

void ModuleManager::FinishInstall(absl::StatusOr<Prepared> prepared,
                                  Done<herd::v1::ModuleInfo> done) {
  if (!prepared.ok()) {
    log_->warn("event=install_failed error=\"{}\"", prepared.status().message());
    return done(prepared.status());
  }
  auto cleanup_staging = [this, p = *prepared] {
    if (p.dev_mode) return;
    std::error_code ec;
    fs::path staging = fs::path(p.dir).parent_path();
    if (staging.filename() == "x") staging = staging.parent_path();
    if (absl::StartsWith(staging.filename().string(), ".staging-")) fs::remove_all(staging, ec);
  };
  const std::string name = prepared->name;
  if (!modules_.count(name) && supervisor_.Describe(name).ok()) {
    cleanup_staging();
    return done(absl::AlreadyExistsError(absl::StrCat(
        "a unit named \"", name, "\" already runs and is not a module: `agentctl delete ",
        name, "` first, or rename the module")));
  }
  if (installing_.count(name)) {
    cleanup_staging();
    return done(absl::AbortedError(absl::StrCat(name, " is being installed already")));
  }
  installing_[name] = true;

  auto proceed = [this, prepared = std::move(*prepared), done,
                  cleanup_staging](absl::Status stopped) mutable {
    installing_.erase(prepared.name);
    if (!stopped.ok()) {
      cleanup_staging();
      return done(stopped);
    }
    std::string dir = prepared.dir;
    if (!prepared.dev_mode) {
      std::string final_dir = options_.home + "/modules/" + prepared.name;
      std::error_code ec;
      std::string old = final_dir + ".old-" + RandomHex(6);
      if (fs::exists(final_dir)) fs::rename(final_dir, old, ec);
      if (ec) {
        cleanup_staging();
        return done(absl::InternalError(absl::StrCat("cannot replace ", final_dir, ": ",
                                                     ec.message())));
      }
      fs::rename(prepared.dir, final_dir, ec);
      if (ec) {
        if (fs::exists(old)) fs::rename(old, final_dir);
        cleanup_staging();
        return done(absl::InternalError(
            absl::StrCat("cannot move the module into ", final_dir, ": ", ec.message())));
      }
      fs::remove_all(old, ec);
      cleanup_staging();
      dir = final_dir;
    }
    auto& slot = modules_[prepared.name];
    bool fresh = slot == nullptr;
    if (fresh) {
      slot = std::make_unique<Module>();
      slot->channel = ModuleChannelState(options_.limits);
    }
    Module& m = *slot;
    StopWatching(m);
    m.name = prepared.name;
    m.source = prepared.source;
    m.dir = dir;
    m.dev_mode = prepared.dev_mode;
    m.manifest = std::move(prepared.manifest);
    m.load_error.clear();
    if (auto s = SaveRecords(); !s.ok()) {
      log_->error("event=records_save_failed error=\"{}\"", s.message());
    }
    if (on_inventory_change_) on_inventory_change_();
    if (m.dev_mode) StartWatching(m);
    auto spec = ModuleAppSpec(m.manifest, m.dir, options_.search_path);
    if (!spec.ok()) {
      // Checked in the staging directory already; if the move changed that, a fresh
      // install leaves nothing behind (no record, no files, no configuration shown).
      if (fresh) {
        StopWatching(m);
        if (!m.dev_mode) fs::remove_all(m.dir);
        modules_.erase(prepared.name);
        if (auto s = SaveRecords(); !s.ok()) {
          log_->error("event=records_save_failed error=\"{}\"", s.message());
        }
        if (on_inventory_change_) on_inventory_change_();
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
  };
  // A module being replaced is stopped first, so its files can move.
  if (modules_.count(name) && supervisor_.Describe(name).ok()) {
    supervisor_.Stop(name, [proceed](auto units) mutable {
      proceed(units.ok() ? absl::OkStatus() : units.status());
    });
  } else {
    proceed(absl::OkStatus());
  }
}

void ModuleManager::Uninstall(const std::string& name, bool keep_config,
                              Done<herd::v1::UninstallModuleResponse> done) {
  auto it = modules_.find(name);
  if (it == modules_.end()) {
    std::vector<std::string> names;
    for (const auto& [n, m] : modules_) names.push_back(n);
    return done(absl::NotFoundError(absl::StrCat(
        "no module named \"", name, "\" (installed: ",
        names.empty() ? "none" : absl::StrJoin(names, ", "), ")")));
  }
  auto finish = [this, name, keep_config, done](absl::Status s) {
    auto it = modules_.find(name);
    if (it == modules_.end()) return done(absl::NotFoundError(name + " is already gone"));
    Module& m = *it->second;
    if (!s.ok() && !absl::IsNotFound(s)) return done(s);
    herd::v1::UninstallModuleResponse resp;
    resp.set_name(name);
    StopWatching(m);
    CloseChannel(m, "module uninstalled");
    if (!m.dev_mode && absl::StartsWith(m.dir, options_.home + "/modules/")) {
      std::error_code ec;
      fs::remove_all(m.dir, ec);
      if (ec) {
        log_->error("event=uninstall_remove_failed module={} error=\"{}\"", name, ec.message());
      }
      resp.set_removed_dir(m.dir);
    }
    if (!keep_config) {
      if (auto e = conf_.Erase(name); !e.ok()) {
        log_->error("event=conf_erase_failed module={} error=\"{}\"", name, e.message());
      }
    }
    modules_.erase(it);
    if (auto e = SaveRecords(); !e.ok()) {
      log_->error("event=records_save_failed error=\"{}\"", e.message());
    }
    log_->info("event=uninstalled module={} keep_config={}", name, keep_config);
    if (on_inventory_change_) on_inventory_change_();
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

void ModuleManager::Update(const std::string& name, Done<herd::v1::ModuleInfo> done) {
  auto it = modules_.find(name);
  if (it == modules_.end()) {
    return done(absl::NotFoundError(absl::StrCat("no module named \"", name, "\"")));
  }
  std::string source = it->second->source;
  // An npm source installs whatever is latest now (a pinned @version stays pinned).
  Install(source, "/", std::move(done));
}

// ---------------------------------------------------------------------------------------
// Configuration

herd::v1::ModuleConfig ModuleManager::ConfigOf(const Module& m) const {
  herd::v1::ModuleConfig c;
  c.set_module(m.name);
  for (auto& e : ConfigEntries(m.manifest.config, Overrides(m.name),
                               managed_ ? "controlplane" : "local")) {
    if (managed_ && e.has_override()) {
      // The control plane's scope for this key (global, selector:..., host).
      auto mod = snapshot_.modules().find(m.name);
      if (mod != snapshot_.modules().end() && e.source() != "default") {
        auto src = mod->second.sources().find(e.key());
        if (src != mod->second.sources().end()) e.set_source(src->second);
      }
    }
    *c.add_entries() = std::move(e);
  }
  return c;
}

json ModuleManager::Overrides(const std::string& module) const {
  if (!managed_) return conf_.Overrides(module);
  json out = json::object();
  auto it = snapshot_.modules().find(module);
  if (it == snapshot_.modules().end()) return out;
  for (const auto& [k, v] : it->second.values()) out[k] = v;
  return out;
}

std::string ModuleManager::SnapshotPath() const {
  return absl::StrCat(options_.home, "/controlplane-config.json");
}

absl::Status ModuleManager::EnableManagedConfig(const std::string& controlplane) {
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

void ModuleManager::ApplySnapshot(const herd::v1::ConfigSnapshot& snap,
                                  std::function<void(herd::v1::ConfigAck)> done) {
  herd::v1::ConfigAck ack;
  ack.set_version(snap.version());
  for (const auto& [name, mod] : snap.modules()) {
    auto it = modules_.find(name);
    if (it == modules_.end()) {
      auto* r = ack.add_rejections();
      r->set_module(name);
      r->set_reason("no such module on this host");
      continue;
    }
    const json& defaults = it->second->manifest.config;
    for (const auto& [key, value] : mod.values()) {
      json def = defaults.is_object() && defaults.contains(key) ? defaults[key] : json();
      auto v = ConvertConfigValue(def, key, value);
      if (!v.ok()) {
        auto* r = ack.add_rejections();
        r->set_module(name);
        r->set_key(key);
        r->set_reason(std::string(v.status().message()));
      }
    }
  }
  // Values that convert may still be too large to hand to the module at all.
  if (ack.rejections_size() == 0) {
    for (const auto& [name, mod] : snap.modules()) {
      const Module& m = *modules_.at(name);
      json overrides = json::object();
      for (const auto& [k, v] : mod.values()) overrides[k] = v;
      if (auto env = MakeConfigEnvironment(name, m.manifest.config, overrides); !env.ok()) {
        auto* r = ack.add_rejections();
        r->set_module(name);
        r->set_reason(std::string(env.status().message()));
      }
    }
  }
  if (ack.rejections_size() > 0) {
    log_->warn("event=config_rejected version={} rejections={} kept_version={}", snap.version(),
               ack.rejections_size(), snapshot_.version());
    ack.set_accepted(false);
    return done(ack);
  }
  // Which modules' values change.
  std::vector<std::string> changed;
  for (const auto& [name, m] : modules_) {
    json before = Overrides(name);
    json after = json::object();
    auto it = snap.modules().find(name);
    if (it != snap.modules().end()) {
      for (const auto& [k, v] : it->second.values()) after[k] = v;
    }
    // A module that could not start under the values in force is tried again with every
    // snapshot, so that it is nacked again (or comes back) rather than acked as if applied.
    if (before != after || config_failed_.count(name)) changed.push_back(name);
  }
  std::string text;
  google::protobuf::util::JsonPrintOptions po;
  po.preserve_proto_field_names = true;
  (void)google::protobuf::util::MessageToJsonString(snap, &text, po);
  if (auto s = WriteFileAtomically(SnapshotPath(), text + "\n", 0600); !s.ok()) {
    // Applied anyway: the control plane is the source; only the offline cache is stale.
    log_->error("event=config_cache_not_saved error=\"{}\"", s.message());
  }
  snapshot_ = snap;
  ack.set_accepted(true);
  for (const auto& name : changed) ack.add_restarted(name);
  log_->info("event=config_applied version={} restarting=[{}]", snap.version(),
             absl::StrJoin(changed, ","));
  // Restart the changed modules one after the other, then ack. A module that cannot start
  // with the new values turns the ack into a rejection naming it (the values stay in force:
  // the next snapshot replaces them).
  auto failures = std::make_shared<std::vector<std::pair<std::string, std::string>>>();
  RestartEach({changed.rbegin(), changed.rend()}, failures, [this, ack, done, failures]() mutable {
    for (const auto& [module, reason] : *failures) {
      auto* r = ack.add_rejections();
      r->set_module(module);
      r->set_reason(reason);
      ack.set_accepted(false);
    }
    if (!failures->empty()) {
      log_->warn("event=config_rejected version={} reason=module_did_not_start modules={}",
                 ack.version(), failures->size());
    }
    done(ack);
  });
}

void ModuleManager::RestartEach(
    std::vector<std::string> names,
    std::shared_ptr<std::vector<std::pair<std::string, std::string>>> failures,
    std::function<void()> done) {
  if (names.empty()) return done();
  std::string name = names.back();
  names.pop_back();
  auto it = modules_.find(name);
  if (it == modules_.end()) return RestartEach(std::move(names), failures, std::move(done));
  RestartForConfig(*it->second, [this, name, names = std::move(names), failures,
                                 done = std::move(done)](auto result) mutable {
    if (!result.ok()) {
      failures->emplace_back(name, std::string(result.status().message()));
      config_failed_.insert(name);
    } else {
      config_failed_.erase(name);
    }
    RestartEach(std::move(names), failures, std::move(done));
  });
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
    m->channel.Fill(&info);
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

absl::StatusOr<std::vector<herd::v1::ModuleConfig>> ModuleManager::GetConfig(
    const std::string& module) const {
  std::vector<herd::v1::ModuleConfig> out;
  if (module.empty()) {
    for (const auto& [name, m] : modules_) out.push_back(ConfigOf(*m));
    return out;
  }
  auto it = modules_.find(module);
  if (it == modules_.end()) {
    return absl::NotFoundError(absl::StrCat("no module named \"", module,
                                            "\": `agentctl list` shows the installed ones"));
  }
  out.push_back(ConfigOf(*it->second));
  return out;
}

void ModuleManager::RestartForConfig(Module& m, Done<herd::v1::ModuleConfig> done) {
  herd::v1::ModuleConfig result = ConfigOf(m);
  auto d = supervisor_.Describe(m.name);
  if (!d.ok() || d->status().state() == herd::v1::UNIT_STATE_STOPPED) {
    return done(result);  // takes effect at its next start
  }
  log_->info("event=config_restart module={}", m.name);
  supervisor_.Restart(m.name, [result, done](auto units) {
    if (!units.ok()) return done(units.status());
    // The spawn is synchronous: a module that could not start with this configuration is
    // errored already.
    for (const auto& u : *units) {
      if (u.state() == herd::v1::UNIT_STATE_ERRORED) {
        return done(absl::FailedPreconditionError(absl::StrCat(
            u.name(), " could not start with this configuration: ", u.status_reason())));
      }
    }
    done(result);
  });
}

void ModuleManager::SetConfig(const herd::v1::SetConfigRequest& req,
                              Done<herd::v1::ModuleConfig> done) {
  if (managed_) {
    return done(absl::FailedPreconditionError(absl::StrCat(
        "this agent's configuration is owned by the control plane at ", controlplane_,
        ": set it there (agentctl --controlplane ", controlplane_, " --token-file F set ",
        req.module(), ":", req.key(), " VALUE --host THIS_HOST)")));
  }
  auto it = modules_.find(req.module());
  if (it == modules_.end()) {
    return done(absl::NotFoundError(absl::StrCat(
        "no module named \"", req.module(), "\": `agentctl list` shows the installed ones")));
  }
  Module& m = *it->second;
  static const std::regex key_re(R"(^[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}$)");
  if (!std::regex_match(req.key(), key_re)) {
    return done(absl::InvalidArgumentError(absl::StrCat(
        "\"", req.key(), "\" is not a valid key: use letters, digits, '_', '.', '-'")));
  }
  if (req.value().size() > 65536) {
    return done(absl::InvalidArgumentError("value longer than 64 KiB"));
  }
  const json& defaults = m.manifest.config;
  bool declared = defaults.contains(req.key());
  if (!declared && !req.force()) {
    std::vector<std::string> keys;
    for (auto k = defaults.begin(); k != defaults.end(); ++k) keys.push_back(k.key());
    return done(absl::InvalidArgumentError(absl::StrCat(
        req.module(), " does not declare \"", req.key(), "\" (its keys: ",
        keys.empty() ? "none" : absl::StrJoin(keys, ", "),
        "); use --force to set it anyway")));
  }
  auto v = ConvertConfigValue(declared ? defaults[req.key()] : json(), req.key(), req.value());
  if (!v.ok()) return done(v.status());
  json overrides = Overrides(m.name);
  overrides[req.key()] = req.value();
  if (auto env = MakeConfigEnvironment(m.name, m.manifest.config, overrides); !env.ok()) {
    return done(env.status());
  }
  if (auto s = conf_.Set(m.name, req.key(), req.value()); !s.ok()) return done(s);
  log_->info("event=config_set module={} key={}", m.name, req.key());
  RestartForConfig(m, std::move(done));
}

void ModuleManager::UnsetConfig(const herd::v1::UnsetConfigRequest& req,
                                Done<herd::v1::ModuleConfig> done) {
  if (managed_) {
    return done(absl::FailedPreconditionError(absl::StrCat(
        "this agent's configuration is owned by the control plane at ", controlplane_,
        ": unset it there (agentctl --controlplane ", controlplane_, " unset ...)")));
  }
  auto it = modules_.find(req.module());
  if (it == modules_.end()) {
    return done(absl::NotFoundError(absl::StrCat("no module named \"", req.module(), "\"")));
  }
  auto removed = conf_.Unset(req.module(), req.key());
  if (!removed.ok()) return done(removed.status());
  if (!*removed) {
    return done(absl::NotFoundError(absl::StrCat(req.module(), " has no override for \"",
                                                 req.key(), "\"")));
  }
  log_->info("event=config_unset module={} key={}", req.module(), req.key());
  RestartForConfig(*it->second, std::move(done));
}

// ---------------------------------------------------------------------------------------
// Channel

absl::Status ModuleManager::BeforeSpawn(const herd::v1::AppSpec& spec,
                                        std::vector<std::string>* env, int* channel_fd) {
  auto it = modules_.find(spec.name());
  if (it == modules_.end()) {
    log_->warn("event=module_unknown unit={} action=no_channel", spec.name());
    return absl::OkStatus();
  }
  Module& m = *it->second;
  CloseChannel(m, "new process");
  if (!m.load_error.empty()) {
    // Mended since? (`agentctl restart` after fixing the file is how it comes back.)
    auto manifest = LoadManifest(m.dir);
    if (!manifest.ok()) return absl::FailedPreconditionError(m.load_error);
    log_->info("event=manifest_mended module={}", m.name);
    m.manifest = std::move(*manifest);
    m.load_error.clear();
  }
  auto config_env = MakeConfigEnvironment(m.name, m.manifest.config, Overrides(m.name));
  if (!config_env.ok()) return config_env.status();
  int sv[2];
  if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) != 0) {
    log_->error("event=socketpair_failed module={} error=\"{}\"", m.name, strerror(errno));
    return absl::OkStatus();  // runs without its channel, as before
  }
  fcntl(sv[0], F_SETFL, fcntl(sv[0], F_GETFL) | O_NONBLOCK);
  m.agent_fd = sv[0];
  m.child_fd = sv[1];
  *channel_fd = sv[1];

  auto set = [env](const std::string& key, const std::string& value) {
    std::string prefix = key + "=";
    for (auto& e : *env) {
      if (absl::StartsWith(e, prefix)) {
        e = prefix + value;
        return;
      }
    }
    env->push_back(prefix + value);
  };
  const bool node = spec.channel() == herd::v1::CHANNEL_KIND_NODE;
  set(node ? "NODE_CHANNEL_FD" : "HERD_CHANNEL_FD", "3");
  if (node) {
    set("NODE_CHANNEL_SERIALIZATION_MODE", "json");
    std::string node_options = absl::StrCat("--require ", PreloadPath());
    for (const auto& e : *env) {
      if (absl::StartsWith(e, "NODE_OPTIONS=")) {
        node_options = absl::StrCat(e.substr(13), " ", node_options);
      }
    }
    set("NODE_OPTIONS", node_options);
  }
  set(m.name, config_env->overrides);  // PM2: process.env[<module name>], strings
  set("HERD_MODULE_NAME", m.name);
  set("HERD_MODULE_DIR", m.dir);
  set("HERD_MODULE_CONFIG", config_env->effective);
  return absl::OkStatus();
}

void ModuleManager::AfterSpawn(const std::string& unit, pid_t pid) {
  auto it = modules_.find(unit);
  if (it == modules_.end()) return;
  Module& m = *it->second;
  if (m.child_fd >= 0) {
    close(m.child_fd);
    m.child_fd = -1;
  }
  if (m.agent_fd < 0) return;
  if (pid == 0) {
    CloseChannel(m, "spawn failed");
    return;
  }
  m.channel.ResetForNewProcess();
  m.framer = std::make_unique<LineFramer>(options_.limits.max_line_bytes);
  const std::string name = m.name;
  m.channel.on_reply = [this, name](const std::string& action, const json& ret) {
    auto it = modules_.find(name);
    if (it == modules_.end()) return;
    herd::v1::TriggerActionResponse resp;
    resp.set_reply_json(ret.dump());
    FinishPending(*it->second, action, resp);
  };
  m.channel.on_scoped = [this, name](const std::string& action, const std::string& uuid,
                                     const std::string& kind, const json& data) {
    auto it = modules_.find(name);
    if (it == modules_.end()) return;
    Module& mod = *it->second;
    auto p = mod.pending.find(action);
    if (p == mod.pending.end() || (!uuid.empty() && p->second.uuid != uuid)) return;
    std::string text = data.is_string() ? data.get<std::string>() : data.dump();
    if (kind == "stream") {
      if (p->second.stream.size() < 10000) p->second.stream.push_back(text);
    } else if (kind == "error") {
      p->second.stream.push_back("error: " + text);
    } else {
      herd::v1::TriggerActionResponse resp;
      resp.set_reply_json(data.dump());
      FinishPending(mod, action, resp);
    }
  };
  auto watch = loop_.WatchFd(m.agent_fd, EPOLLIN | EPOLLRDHUP,
                             [this, name](uint32_t) { OnReadable(name); });
  if (!watch.ok()) {
    log_->error("event=channel_watch_failed module={} error=\"{}\"", name,
                watch.status().message());
    CloseChannel(m, "watch failed");
    return;
  }
  m.watch = *watch;
  m.channel.set_connected(true);
}

void ModuleManager::OnReadable(const std::string& name) {
  auto it = modules_.find(name);
  if (it == modules_.end() || it->second->agent_fd < 0) return;
  Module& m = *it->second;
  char buf[65536];
  size_t budget = 1 << 20;  // per wakeup, so one module cannot starve the loop
  const absl::Time now = loop_.clock().Now();
  while (budget > 0) {
    ssize_t n = read(m.agent_fd, buf, sizeof buf);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) return;
    if (n <= 0) {
      CloseChannel(m, n == 0 ? "closed by the module" : strerror(errno));
      return;
    }
    budget -= std::min(budget, static_cast<size_t>(n));
    uint64_t oversized_before = m.framer->oversized();
    m.framer->Feed(absl::string_view(buf, static_cast<size_t>(n)), [&](absl::string_view line) {
      if (line.empty()) return;
      if (log_->should_log(spdlog::level::trace)) {
        log_->trace("event=channel_line module={} line=\"{}\"", m.name, EscapeForLog(line, 300));
      }
      auto r = m.channel.HandleLine(line, now);
      if (r == ModuleChannelState::Result::kOk) return;
      const auto& st = m.channel.stats();
      uint64_t bad = st.invalid_json() + st.unknown_types() + st.flood_dropped();
      // The first few and then every 1000th, so a broken module cannot flood our log.
      if (bad <= 5 || bad % 1000 == 0) {
        const char* what = r == ModuleChannelState::Result::kInvalidJson   ? "invalid_json"
                           : r == ModuleChannelState::Result::kFlood       ? "flood"
                           : r == ModuleChannelState::Result::kUnknownType ? "unknown_type"
                                                                           : "invalid_message";
        log_->warn("event=channel_bad_message module={} kind={} total_bad={} line=\"{}\"",
                   m.name, what, bad, EscapeForLog(line, 120));
      }
    });
    if (uint64_t over = m.framer->oversized() - oversized_before; over > 0) {
      m.channel.count_oversized(over);
      log_->warn("event=channel_line_too_long module={} limit_bytes={} total={}", m.name,
                 options_.limits.max_line_bytes, m.channel.stats().oversized_lines());
    }
  }
}

void ModuleManager::CloseChannel(Module& m, const std::string& why) {
  if (m.child_fd >= 0) {
    close(m.child_fd);
    m.child_fd = -1;
  }
  if (m.agent_fd < 0) return;
  if (m.watch) loop_.UnwatchFd(m.watch);
  m.watch = 0;
  close(m.agent_fd);
  m.agent_fd = -1;
  m.channel.set_connected(false);
  log_->info("event=channel_closed module={} reason=\"{}\"", m.name, why);
  std::vector<std::string> actions;
  for (const auto& [a, p] : m.pending) actions.push_back(a);
  for (const auto& a : actions) {
    FinishPending(m, a, absl::UnavailableError(absl::StrCat(
                            m.name, "'s channel closed before it replied (", why, ")")));
  }
}

void ModuleManager::AfterExit(const std::string& unit) {
  auto it = modules_.find(unit);
  if (it == modules_.end()) return;
  OnReadable(unit);  // what it sent just before exiting
  CloseChannel(*it->second, "module exited");
}

std::vector<pid_t> ModuleManager::SampleRoots(const std::string& unit, bool* join) {
  auto it = modules_.find(unit);
  if (it == modules_.end()) return {};
  *join = it->second->channel.pid_join();
  std::vector<pid_t> alive;
  for (pid_t p : it->second->channel.pid_override()) {
    if (kill(p, 0) == 0 || errno == EPERM) alive.push_back(p);
  }
  return alive;
}

bool ModuleManager::SendLine(Module& m, const std::string& line) {
  if (m.agent_fd < 0) return false;
  std::string data = line + "\n";
  size_t off = 0;
  while (off < data.size()) {
    ssize_t n = send(m.agent_fd, data.data() + off, data.size() - off, MSG_NOSIGNAL);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) return false;  // full (the module does not read) or gone
    off += static_cast<size_t>(n);
  }
  return true;
}

// ---------------------------------------------------------------------------------------
// Actions

void ModuleManager::TriggerAction(const herd::v1::TriggerActionRequest& req,
                                  Done<herd::v1::TriggerActionResponse> done) {
  auto it = modules_.find(req.module());
  if (it == modules_.end()) {
    return done(absl::NotFoundError(absl::StrCat("no module named \"", req.module(), "\"")));
  }
  Module& m = *it->second;
  if (m.agent_fd < 0 || !m.channel.stats().connected()) {
    return done(absl::UnavailableError(absl::StrCat(
        m.name, " is not connected (not running, or it closed its channel)")));
  }
  if (!m.channel.has_action(req.action())) {
    std::vector<std::string> names;
    herd::v1::ModuleInfo info;
    m.channel.Fill(&info);
    for (const auto& a : info.actions()) names.push_back(a.name());
    return done(absl::NotFoundError(absl::StrCat(
        m.name, " has no action \"", req.action(), "\" (its actions: ",
        names.empty() ? "none" : absl::StrJoin(names, ", "), ")")));
  }
  if (m.pending.count(req.action())) {
    return done(absl::FailedPreconditionError(absl::StrCat(
        req.action(), " is already running on ", m.name,
        ": PM2 matches replies by action name, so one trigger at a time; try again when it "
        "replies")));
  }
  json opts = json::object();
  for (const auto& [k, v] : req.params()) opts[k] = v;
  json msg = {{"msg", req.action()}, {"action_name", req.action()}, {"opts", opts}};
  Pending p;
  p.id = next_action_id_++;
  p.started = loop_.clock().Monotonic();
  herd::v1::ModuleInfo info;
  m.channel.Fill(&info);
  for (const auto& a : info.actions()) {
    if (a.name() == req.action() && a.type() == "scoped") {
      p.uuid = RandomHex(32);
      msg["uuid"] = p.uuid;
    }
  }
  if (!SendLine(m, msg.dump())) {
    return done(absl::UnavailableError(
        absl::StrCat("cannot write to ", m.name, "'s channel (it is not reading)")));
  }
  absl::Duration timeout = req.timeout_ms() > 0 ? absl::Milliseconds(req.timeout_ms())
                                                : options_.action_timeout;
  const std::string name = m.name, action = req.action();
  const uint64_t id = p.id;
  p.timer = loop_.RunAfter(timeout, [this, name, action, id, timeout] {
    auto it = modules_.find(name);
    if (it == modules_.end()) return;
    auto p = it->second->pending.find(action);
    if (p == it->second->pending.end() || p->second.id != id) return;
    p->second.timer = 0;
    FinishPending(*it->second, action,
                  absl::DeadlineExceededError(absl::StrCat(
                      name, " did not reply to ", action, " within ",
                      absl::FormatDuration(timeout))));
  });
  p.done = std::move(done);
  m.pending[action] = std::move(p);
  log_->info("event=action_triggered module={} action={}", name, action);
}

void ModuleManager::FinishPending(Module& m, const std::string& action,
                                  absl::StatusOr<herd::v1::TriggerActionResponse> result) {
  auto it = m.pending.find(action);
  if (it == m.pending.end()) return;  // a late or unsolicited reply
  Pending p = std::move(it->second);
  m.pending.erase(it);
  if (p.timer) loop_.CancelTimer(p.timer);
  if (result.ok()) {
    for (auto& line : p.stream) result->add_stream(std::move(line));
    result->set_elapsed_ms(static_cast<uint64_t>(
        absl::ToInt64Milliseconds(loop_.clock().Monotonic() - p.started)));
  }
  p.done(std::move(result));
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
  m.channel.Fill(&info);
  herd::v1::ModuleConfig config = ConfigOf(m);
  for (auto& e : *config.mutable_entries()) *info.add_config() = std::move(e);
  return info;
}

void ModuleManager::FillStatus(herd::v1::UnitStatus* status) const {
  auto it = modules_.find(status->name());
  if (it == modules_.end()) return;
  status->set_is_module(true);
  for (auto& p : it->second->channel.MainProbes()) *status->add_main_probes() = std::move(p);
}

void ModuleManager::FillDetail(herd::v1::UnitDetail* detail) const {
  auto it = modules_.find(detail->status().name());
  if (it == modules_.end()) return;
  FillStatus(detail->mutable_status());
  *detail->mutable_module_info() = Info(*it->second);
}

// ---------------------------------------------------------------------------------------
// Development mode

void ModuleManager::StartWatching(Module& m) {
  StopWatching(m);
  m.inotify_fd = inotify_init1(IN_NONBLOCK | IN_CLOEXEC);
  if (m.inotify_fd < 0) {
    log_->error("event=inotify_failed module={} error=\"{}\"", m.name, strerror(errno));
    return;
  }
  AddWatchTree(m, m.dir);
  const std::string name = m.name;
  auto w = loop_.WatchFd(m.inotify_fd, EPOLLIN, [this, name](uint32_t) { OnInotify(name); });
  if (w.ok()) m.inotify_watch = *w;
  log_->info("event=watching module={} dir={} dirs={}", m.name, m.dir, m.watched_dirs.size());
}

void ModuleManager::StopWatching(Module& m) {
  if (m.debounce_timer) loop_.CancelTimer(m.debounce_timer);
  m.debounce_timer = 0;
  if (m.inotify_watch) loop_.UnwatchFd(m.inotify_watch);
  m.inotify_watch = 0;
  if (m.inotify_fd >= 0) close(m.inotify_fd);
  m.inotify_fd = -1;
  m.watched_dirs.clear();
}

void ModuleManager::AddWatchTree(Module& m, const std::string& dir) {
  if (m.watched_dirs.size() >= 4096) return;
  int wd = inotify_add_watch(m.inotify_fd, dir.c_str(),
                             IN_CLOSE_WRITE | IN_CREATE | IN_DELETE | IN_MOVED_FROM |
                                 IN_MOVED_TO | IN_ONLYDIR);
  if (wd < 0) return;
  m.watched_dirs[wd] = dir;
  std::error_code ec;
  for (const auto& e : fs::directory_iterator(dir, ec)) {
    if (e.is_directory(ec) && !e.is_symlink(ec) &&
        !IgnoredInWatch(e.path().filename().string())) {
      AddWatchTree(m, e.path().string());
    }
  }
}

void ModuleManager::OnInotify(const std::string& name) {
  auto it = modules_.find(name);
  if (it == modules_.end()) return;
  Module& m = *it->second;
  alignas(inotify_event) char buf[16384];
  bool relevant = false;
  while (true) {
    ssize_t n = read(m.inotify_fd, buf, sizeof buf);
    if (n <= 0) break;
    for (char* p = buf; p < buf + n;) {
      auto* ev = reinterpret_cast<inotify_event*>(p);
      p += sizeof(inotify_event) + ev->len;
      std::string file = ev->len > 0 ? std::string(ev->name) : "";
      if (IgnoredInWatch(file)) continue;
      relevant = true;
      if ((ev->mask & IN_ISDIR) && (ev->mask & (IN_CREATE | IN_MOVED_TO))) {
        auto dir = m.watched_dirs.find(ev->wd);
        if (dir != m.watched_dirs.end()) AddWatchTree(m, dir->second + "/" + file);
      }
    }
  }
  if (!relevant) return;
  if (m.debounce_timer) loop_.CancelTimer(m.debounce_timer);
  m.debounce_timer = loop_.RunAfter(options_.watch_debounce, [this, name] {
    auto it = modules_.find(name);
    if (it == modules_.end()) return;
    Module& m = *it->second;
    m.debounce_timer = 0;
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
      log_->error("event=dev_reload_refused module={} error=\"{}\"", name,
                  spec.status().message());
      return;
    }
    log_->info("event=dev_restart module={} reason=file_changed", name);
    supervisor_.Start({*spec}, [this, name](auto units) {
      if (!units.ok()) {
        log_->error("event=dev_restart_failed module={} error=\"{}\"", name,
                    units.status().message());
      }
    });
  });
}

}  // namespace herd::agent
