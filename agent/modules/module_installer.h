// ModuleInstaller: turns what `agentctl install` was given (an npm package name, a .tgz or
// .tar file, a module directory) into a checked module directory ready to run.
//
//   - npm name: `npm pack` into a staging directory, then as an archive;
//   - archive: copied into the staging directory (the file given could change between the
//     size check and tar), its totals scanned before a byte is extracted (ScanArchive), tar
//     into staging/x, what tar left checked (no links out, no special files), package.json
//     loaded and the app spec checked, comments blanked out of the installed package.json,
//     `npm install --omit=dev` when it has Node dependencies;
//   - directory: development mode, used in place (npm install there when node_modules/ is
//     missing).
//
// Every install runs in one staging directory, $HERD_HOME/modules/.staging-XXXXXX, owned by
// one guard (StagingDir): whatever fails, the guard removes it, so a failed install leaves
// nothing in modules/. Place() moves a prepared module to modules/<name> once the old version
// is stopped. Commands (npm, tar) go through the CommandRunner seam.
//
// Threading: Prepare runs on an install worker thread (it waits on npm and tar) and touches
// nothing but the filesystem and its arguments; Place and RemoveLeftovers run on the loop
// thread.
#pragma once

#include <functional>
#include <memory>
#include <optional>
#include <string>

#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "common/archive_scan.h"
#include "agent/modules/command_runner.h"
#include "agent/modules/manifest.h"
#include "common/logging.h"

namespace herd::agent {

// A staging directory, removed with everything in it when the guard goes or Remove is
// called (whichever comes first).
class StagingDir {
 public:
  // mkdtemp under `modules_dir`.
  static absl::StatusOr<std::unique_ptr<StagingDir>> Create(const std::string& modules_dir);
  ~StagingDir() { Remove(); }
  StagingDir(const StagingDir&) = delete;
  StagingDir& operator=(const StagingDir&) = delete;

  const std::string& path() const { return path_; }
  void Remove();

 private:
  explicit StagingDir(std::string path) : path_(std::move(path)) {}
  std::string path_;
};

// A module checked and ready to run: in its staging directory (or in place, dev mode).
struct PreparedModule {
  std::string name;
  std::string dir;     // where it is now
  std::string source;  // what install was given (the resolved path for files)
  bool dev_mode = false;
  Manifest manifest;
  // Null in development mode. Shared so that the prepared module can travel in copyable
  // callbacks; the directory goes with the last copy, or at Remove.
  std::shared_ptr<StagingDir> staging;
};

// Told each step of an install as it begins ("npm pack NAME", "extracting (tar)"...), on
// whichever thread runs it; may be empty.
using InstallSteps = std::function<void(const std::string& step)>;

struct InstallerOptions {
  std::string home;         // $HERD_HOME
  std::string search_path;  // PATH, for interpreters and npm
  absl::Duration install_timeout = absl::Minutes(5);
  ArchiveLimits archive_limits;
};

class ModuleInstaller {
 public:
  ModuleInstaller(InstallerOptions options, CommandRunner& commands);

  // Worker thread. `base_dir` resolves a relative `source` (the caller's working directory).
  absl::StatusOr<PreparedModule> Prepare(const std::string& source, const std::string& base_dir,
                                         const InstallSteps& steps = {}) const;
  // Loop thread, with the old version stopped: moves a staged module to modules/<name>
  // (replacing what is there) and returns its directory; a dev-mode module stays where it is.
  absl::StatusOr<std::string> Place(const PreparedModule& prepared) const;
  // Loop thread, at start: removes the staging directories of installs a crash interrupted.
  void RemoveLeftovers() const;
  std::string modules_dir() const { return options_.home + "/modules"; }

 private:
  absl::StatusOr<PreparedModule> PrepareDirectory(const std::string& path,
                                                  const InstallSteps& steps) const;
  // The archive to unpack: the file given, copied into staging, or what `npm pack` made.
  absl::StatusOr<std::string> FetchArchive(const std::string& source, const std::string& path,
                                           const StagingDir& staging,
                                           const InstallSteps& steps) const;
  absl::StatusOr<std::string> NpmPack(const std::string& source, const StagingDir& staging) const;
  // Scans and extracts the archive; returns the module's root inside staging/x.
  absl::StatusOr<std::string> Unpack(const std::string& source, const std::string& archive,
                                     const StagingDir& staging, const InstallSteps& steps) const;
  absl::StatusOr<Manifest> CheckUnpacked(const std::string& root) const;
  absl::Status NpmInstall(const std::string& dir, const Manifest& m,
                          const InstallSteps& steps) const;
  std::string Npm() const;

 public:
  // The package name of an npm spec ("pm2-logrotate@3.0.0" -> "pm2-logrotate", "@s/m@1" ->
  // "@s/m"), or nothing when `source` is not one (a path, an archive).
  static std::optional<std::string> NpmPackageOf(const std::string& source);

  const InstallerOptions options_;
  CommandRunner& commands_;
  std::shared_ptr<spdlog::logger> log_;
};

}  // namespace herd::agent
