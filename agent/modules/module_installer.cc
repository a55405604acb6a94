#include "agent/modules/module_installer.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include <algorithm>
#include <filesystem>
#include <regex>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "agent/modules/random_hex.h"
#include "agent/supervisor/app_spec.h"
#include "common/atomic_file.h"
#include "common/log_escape.h"

namespace herd::agent {
namespace {

void Tell(const InstallSteps& steps, const std::string& step) {
  if (steps) steps(step);
}

namespace fs = std::filesystem;

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

// Why the link at `path` may not stay in the module rooted at `base`, "" when it may.
std::string LinkProblem(const fs::path& path, const fs::path& target, const fs::path& base) {
  if (target.is_absolute()) return "an absolute path";
  std::error_code ec;
  const fs::path resolved = fs::canonical(path, ec);
  if (ec) {
    return absl::StrCat("which does not resolve to anything in the archive (", ec.message(),
                        ")");
  }
  return IsUnder(resolved, base) ? "" : "outside the module";
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
    const std::string why = link_ec ? absl::StrCat("cannot be read (", link_ec.message(), ")")
                                    : LinkProblem(path, target, base);
    if (!why.empty()) {
      return absl::InvalidArgumentError(absl::StrCat(
          archive, ": ", what(path), " is a symbolic link to \"", target.string(), "\", ", why,
          ": a module archive may only link within itself (put the file itself in the archive)"));
    }
  }
  if (ec) return absl::InternalError(absl::StrCat("cannot read ", root, ": ", ec.message()));
  return absl::OkStatus();
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

absl::Status NpmMissing(const std::string& why) {
  return absl::FailedPreconditionError(absl::StrCat(
      why, " but npm is not installed (or not on agentd's PATH): install it "
           "(apt-get install npm) and try again"));
}

// The module's root in an extraction: package/ as `npm pack` makes it, the extraction itself,
// or the first directory holding a package.json; "" when there is none.
std::string FindRoot(const std::string& extract) {
  if (IsFile(extract + "/package/package.json")) return extract + "/package";
  if (IsFile(extract + "/package.json")) return extract;
  std::error_code ec;
  for (const auto& e : fs::directory_iterator(extract, ec)) {
    if (e.is_directory() && IsFile(e.path().string() + "/package.json")) {
      return e.path().string();
    }
  }
  return "";
}

}  // namespace

absl::StatusOr<std::unique_ptr<StagingDir>> StagingDir::Create(const std::string& modules_dir) {
  std::string tmpl = modules_dir + "/.staging-XXXXXX";
  if (mkdtemp(tmpl.data()) == nullptr) {
    return absl::InternalError(absl::StrCat("cannot create a staging directory in ",
                                            modules_dir, ": ", strerror(errno)));
  }
  return std::unique_ptr<StagingDir>(new StagingDir(std::move(tmpl)));
}

void StagingDir::Remove() {
  if (path_.empty()) return;
  std::error_code ec;
  fs::remove_all(path_, ec);
  path_.clear();
}

ModuleInstaller::ModuleInstaller(InstallerOptions options, CommandRunner& commands)
    : options_(std::move(options)), commands_(commands), log_(herd::Logger("modules")) {}

std::string ModuleInstaller::Npm() const { return FindInPath("npm", options_.search_path); }

void ModuleInstaller::RemoveLeftovers() const {
  std::error_code ec;
  for (const auto& entry : fs::directory_iterator(modules_dir(), ec)) {
    if (absl::StartsWith(entry.path().filename().string(), ".staging-")) {
      fs::remove_all(entry.path(), ec);
    }
  }
}

absl::StatusOr<PreparedModule> ModuleInstaller::Prepare(const std::string& source,
                                                        const std::string& base_dir,
                                                        const InstallSteps& steps) const {
  if (source.empty()) {
    return absl::InvalidArgumentError(
        "nothing to install: give an npm package name, a .tgz file or a directory");
  }
  std::string path = source;
  if (path[0] != '/') path = (fs::path(base_dir) / source).lexically_normal().string();
  if (path.size() > 1 && path.back() == '/') path.pop_back();
  if (IsDir(path)) return PrepareDirectory(path, steps);

  // From here on, every failure leaves the removal of the staging directory to its guard.
  auto staging = StagingDir::Create(modules_dir());
  if (!staging.ok()) return staging.status();
  auto archive = FetchArchive(source, path, **staging, steps);
  if (!archive.ok()) return archive.status();
  auto root = Unpack(source, *archive, **staging, steps);
  if (!root.ok()) return root.status();
  auto manifest = CheckUnpacked(*root);
  if (!manifest.ok()) return manifest.status();
  if (auto s = NpmInstall(*root, *manifest, steps); !s.ok()) return s;
  PreparedModule p;
  p.name = manifest->name;
  p.dir = *root;
  p.source = IsFile(path) ? path : source;
  p.manifest = std::move(*manifest);
  p.staging = std::move(*staging);
  return p;
}

absl::StatusOr<PreparedModule> ModuleInstaller::PrepareDirectory(
    const std::string& path, const InstallSteps& steps) const {
  Tell(steps, "reading " + path + "/package.json");
  auto m = LoadManifest(path);
  if (!m.ok()) return m.status();
  // Refused before anything is recorded: a module that cannot start is not installed.
  if (auto spec = ModuleAppSpec(*m, path, options_.search_path); !spec.ok()) {
    return spec.status();
  }
  if (!IsDir(path + "/node_modules")) {
    auto text = ReadFileToString(path + "/package.json");
    if (m->is_node && m->has_dependencies && text.ok() && StripJsonComments(*text) != *text) {
      return absl::FailedPreconditionError(absl::StrCat(
          path, "/package.json has comments, which npm cannot read: remove them, run "
                "`npm install` there yourself, or install the module as a .tgz (its "
                "installed copy is cleaned)"));
    }
    if (auto s = NpmInstall(path, *m, steps); !s.ok()) return s;
  }
  PreparedModule p;
  p.name = m->name;
  p.dir = path;
  p.source = path;
  p.dev_mode = true;
  p.manifest = std::move(*m);
  return p;
}

absl::StatusOr<std::string> ModuleInstaller::FetchArchive(const std::string& source,
                                                          const std::string& path,
                                                          const StagingDir& staging,
                                                          const InstallSteps& steps) const {
  if (IsFile(path)) {
    if (!LooksLikeArchive(path)) {
      return absl::InvalidArgumentError(absl::StrCat(
          path, " is a file but not a .tgz/.tar.gz/.tar archive: give a module directory, "
                "an archive made with `npm pack`, or an npm package name"));
    }
    Tell(steps, "copying " + path);
    // Read from our own copy: the file given could change between the size check and tar.
    std::string archive = staging.path() + "/" + fs::path(path).filename().string();
    std::error_code ec;
    fs::copy_file(path, archive, ec);
    if (ec) {
      return absl::FailedPreconditionError(
          absl::StrCat("cannot copy ", path, " to ", staging.path(), ": ", ec.message()));
    }
    return archive;
  }
  if (LooksLikeArchive(source) ||
      (absl::StrContains(source, "/") && !absl::StartsWith(source, "@"))) {
    return absl::NotFoundError(absl::StrCat(path, ": no such file or directory"));
  }
  if (!ValidNpmSpec(source)) {
    return absl::InvalidArgumentError(absl::StrCat(
        "\"", source, "\" is neither a directory, an archive, nor a valid npm package name "
        "(lower case letters, digits, '-', '.', '_', optional @scope/ and @version)"));
  }
  Tell(steps, "npm pack " + source);
  return NpmPack(source, staging);
}

std::optional<std::string> ModuleInstaller::NpmPackageOf(const std::string& source) {
  if (!ValidNpmSpec(source) || LooksLikeArchive(source)) return std::nullopt;
  const size_t at = source.find('@', 1);  // past a scope's leading '@'
  return at == std::string::npos ? source : source.substr(0, at);
}

absl::StatusOr<std::string> ModuleInstaller::NpmPack(const std::string& source,
                                                     const StagingDir& staging) const {
  const std::string npm = Npm();
  if (npm.empty()) return NpmMissing(absl::StrCat("installing \"", source, "\" from npm needs npm,"));
  auto r = commands_.Run({{npm, "pack", source, "--pack-destination", staging.path(), "--silent"},
                          staging.path(), options_.install_timeout, NpmEnv(options_.home)});
  if (!r.ok()) return r.status();
  if (r->exit_code != 0) {
    return absl::NotFoundError(absl::StrCat("npm pack ", source, " failed (exit ", r->exit_code,
                                            "):\n", LastLines(r->output, 10)));
  }
  std::string archive;
  std::error_code ec;
  for (const auto& e : fs::directory_iterator(staging.path(), ec)) {
    if (LooksLikeArchive(e.path().string())) archive = e.path().string();
  }
  if (archive.empty()) {
    return absl::InternalError(absl::StrCat("npm pack ", source, " produced no archive"));
  }
  return archive;
}

absl::StatusOr<std::string> ModuleInstaller::Unpack(const std::string& source,
                                                    const std::string& archive,
                                                    const StagingDir& staging,
                                                    const InstallSteps& steps) const {
  Tell(steps, "checking the archive");
  // Counted before a byte is written: a small archive can unpack to gigabytes.
  auto totals = ScanArchive(archive, options_.archive_limits);
  if (!totals.ok()) {
    log_->warn("event=archive_refused source=\"{}\" error=\"{}\"", EscapeForLog(source),
               totals.status().message());
    return totals.status();
  }
  const std::string extract = staging.path() + "/x";
  std::error_code ec;
  fs::create_directories(extract, ec);
  Tell(steps, absl::StrCat("extracting (tar: ", totals->files, " entries, ",
                           totals->unpacked_bytes / 1024, " KiB)"));
  // GNU tar refuses members with absolute names or "..", so an archive cannot write outside;
  // what it leaves is checked below (CheckExtracted).
  // The compression is the one ScanArchive read through (gzip, or none), not tar's guess.
  auto r = commands_.Run({{"tar", totals->gzip ? "-xzf" : "-xf", archive, "-C", extract,
                           "--no-same-owner", "--no-same-permissions"},
                          staging.path(), options_.install_timeout, {}});
  if (!r.ok()) return r.status();
  if (r->exit_code != 0) {
    return absl::InvalidArgumentError(absl::StrCat(archive, ": cannot extract (tar exit ",
                                                   r->exit_code, "):\n",
                                                   LastLines(r->output, 5)));
  }
  const std::string root = FindRoot(extract);
  if (root.empty()) {
    return absl::InvalidArgumentError(absl::StrCat(
        archive, ": no package.json in the archive (expected package/package.json, as "
                 "`npm pack` makes)"));
  }
  if (auto s = CheckExtracted(extract, root, archive); !s.ok()) return s;
  return root;
}

absl::StatusOr<Manifest> ModuleInstaller::CheckUnpacked(const std::string& root) const {
  auto m = LoadManifest(root);
  if (!m.ok()) return m.status();
  // Refused before anything is recorded: a module that cannot start is not installed.
  if (auto spec = ModuleAppSpec(*m, root, options_.search_path); !spec.ok()) {
    return spec.status();
  }
  // PM2's docs put comments in package.json, but npm and the modules' own libraries (pmx
  // require()s it) read it as strict JSON: the installed copy gets them blanked out.
  if (auto text = ReadFileToString(root + "/package.json"); text.ok()) {
    std::string strict = StripJsonComments(*text);
    if (strict != *text) {
      if (auto s = WriteFileAtomically(root + "/package.json", strict, 0644); !s.ok()) return s;
    }
  }
  return m;
}

absl::Status ModuleInstaller::NpmInstall(const std::string& dir, const Manifest& m,
                                         const InstallSteps& steps) const {
  if (!m.is_node || !m.has_dependencies) return absl::OkStatus();
  const std::string npm = Npm();
  if (npm.empty()) return NpmMissing(absl::StrCat(m.name, " has Node dependencies"));
  Tell(steps, "npm install --omit=dev (" + m.name + "'s dependencies)");
  auto r = commands_.Run(
      {{npm, "install", "--omit=dev", "--no-audit", "--no-fund", "--no-package-lock"}, dir,
       options_.install_timeout, NpmEnv(options_.home)});
  if (!r.ok()) return r.status();
  if (r->exit_code != 0) {
    return absl::FailedPreconditionError(absl::StrCat("npm install failed in ", dir, " (exit ",
                                                      r->exit_code, "):\n",
                                                      LastLines(r->output, 15)));
  }
  return absl::OkStatus();
}

absl::StatusOr<std::string> ModuleInstaller::Place(const PreparedModule& prepared) const {
  if (prepared.dev_mode) return prepared.dir;
  const std::string final_dir = modules_dir() + "/" + prepared.name;
  const std::string old = final_dir + ".old-" + RandomHex(6);
  std::error_code ec;
  if (fs::exists(final_dir)) fs::rename(final_dir, old, ec);
  if (ec) {
    return absl::InternalError(absl::StrCat("cannot replace ", final_dir, ": ", ec.message()));
  }
  fs::rename(prepared.dir, final_dir, ec);
  if (ec) {
    std::error_code back;
    if (fs::exists(old)) fs::rename(old, final_dir, back);
    return absl::InternalError(
        absl::StrCat("cannot move the module into ", final_dir, ": ", ec.message()));
  }
  fs::remove_all(old, ec);
  return final_dir;
}

}  // namespace herd::agent
