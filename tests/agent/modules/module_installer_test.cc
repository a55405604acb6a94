#include "agent/modules/module_installer.h"

#include <stdlib.h>
#include <sys/stat.h>
#include <zlib.h>

#include <cstring>
#include <filesystem>
#include <fstream>
#include <sstream>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/fakes/fake_command_runner.h"

namespace herd::agent {
namespace {

namespace fs = std::filesystem;
using ::herd::testing::FakeCommandRunner;
using ::testing::ElementsAre;
using ::testing::HasSubstr;
using ::testing::IsEmpty;
using ::testing::MatchesRegex;
using ::testing::StartsWith;

constexpr char kManifest[] =
    R"({"name": "cache", "version": "1.0.0", "apps": [{"script": "index.js"}],
        "dependencies": {"left-pad": "1.0.0"}})";
constexpr char kManifestNoDeps[] =
    R"({"name": "cache", "version": "1.0.0", "apps": [{"script": "index.js"}]})";

void WriteFile(const std::string& path, const std::string& content, mode_t mode = 0644) {
  fs::create_directories(fs::path(path).parent_path());
  std::ofstream(path, std::ios::binary) << content;
  chmod(path.c_str(), mode);
}

// A ustar header for `name` (a directory when it ends with '/').
std::string TarHeader(const std::string& name, size_t size) {
  std::string h(512, '\0');
  const bool dir = name.back() == '/';
  std::memcpy(&h[0], name.data(), name.size());
  std::snprintf(&h[100], 8, "%07o", dir ? 0755 : 0644);
  std::snprintf(&h[108], 8, "%07o", 0);
  std::snprintf(&h[116], 8, "%07o", 0);
  std::snprintf(&h[124], 12, "%011zo", dir ? size_t{0} : size);
  std::snprintf(&h[136], 12, "%011o", 0);
  h[156] = dir ? '5' : '0';
  std::memcpy(&h[257], "ustar", 6);
  std::memcpy(&h[263], "00", 2);
  std::memset(&h[148], ' ', 8);
  unsigned sum = 0;
  for (unsigned char c : h) sum += c;
  std::snprintf(&h[148], 8, "%06o", sum);
  return h;
}

// A gzip-compressed tar archive of `members` (name → content; "dir/" for a directory), made
// here rather than with tar: unit tests run no process.
void WriteTgz(const std::string& path,
              const std::vector<std::pair<std::string, std::string>>& members) {
  std::string tar;
  for (const auto& [name, content] : members) {
    tar += TarHeader(name, content.size());
    if (name.back() == '/') continue;
    tar += content;
    tar.append((512 - content.size() % 512) % 512, '\0');
  }
  tar.append(1024, '\0');
  gzFile gz = gzopen(path.c_str(), "wb");
  ASSERT_NE(gz, nullptr);
  ASSERT_EQ(gzwrite(gz, tar.data(), static_cast<unsigned>(tar.size())), static_cast<int>(tar.size()));
  gzclose(gz);
}

std::string ArgAfter(const CommandRequest& r, const std::string& flag) {
  for (size_t i = 0; i + 1 < r.argv.size(); ++i) {
    if (r.argv[i] == flag) return r.argv[i + 1];
  }
  return "";
}

class ModuleInstallerTest : public ::testing::Test {
 protected:
  void SetUp() override {
    std::string tmpl = ::testing::TempDir() + "/herd-installer-XXXXXX";
    ASSERT_NE(mkdtemp(tmpl.data()), nullptr);
    root_ = fs::path(tmpl).lexically_normal().string();
    home_ = root_ + "/home";
    work_ = root_ + "/work";
    fs::create_directories(home_ + "/modules");
    fs::create_directories(work_);
    // What the installer looks for on PATH; never run.
    WriteFile(root_ + "/bin/npm", "", 0755);
    WriteFile(root_ + "/bin/node", "", 0755);
    options_.home = home_;
    options_.search_path = root_ + "/bin";
    options_.install_timeout = absl::Minutes(1);
    // What the real commands would do.
    commands_.On({"npm", "pack"}, [this](const CommandRequest& r) {
      WriteTgz(ArgAfter(r, "--pack-destination") + "/cache-1.0.0.tgz", Members());
      return FakeCommandRunner::Exit(0, "cache-1.0.0.tgz\n");
    });
    commands_.On({"tar"}, [this](const CommandRequest& r) {
      const std::string x = ArgAfter(r, "-C");
      WriteFile(x + "/package/package.json", manifest_);
      WriteFile(x + "/package/index.js", "require('left-pad');\n");
      return FakeCommandRunner::Exit(0);
    });
    commands_.On({"npm", "install"}, [](const CommandRequest& r) {
      fs::create_directories(r.cwd + "/node_modules/left-pad");
      return FakeCommandRunner::Exit(0, "added 1 package\n");
    });
  }
  void TearDown() override { fs::remove_all(root_); }

  std::vector<std::pair<std::string, std::string>> Members() const {
    return {{"package/", ""}, {"package/package.json", manifest_}, {"package/index.js", "x"}};
  }
  ModuleInstaller Installer() { return ModuleInstaller(options_, commands_); }
  std::vector<std::string> ModulesDir() const {
    std::vector<std::string> names;
    for (const auto& e : fs::directory_iterator(home_ + "/modules")) {
      names.push_back(e.path().filename().string());
    }
    std::sort(names.begin(), names.end());
    return names;
  }

  std::string root_, home_, work_;
  std::string manifest_ = kManifest;
  InstallerOptions options_;
  FakeCommandRunner commands_;
};

TEST_F(ModuleInstallerTest, AnNpmNameIsPackedExtractedAndItsDependenciesInstalled) {
  ModuleInstaller installer = Installer();
  auto p = installer.Prepare("cache", "/");
  ASSERT_TRUE(p.ok()) << p.status();
  EXPECT_EQ(p->name, "cache");
  EXPECT_EQ(p->source, "cache");
  EXPECT_FALSE(p->dev_mode);
  ASSERT_NE(p->staging, nullptr);
  const std::string staging = p->staging->path();
  EXPECT_THAT(staging, StartsWith(home_ + "/modules/.staging-"));
  EXPECT_EQ(p->dir, staging + "/x/package");
  const auto calls = commands_.calls();
  ASSERT_EQ(calls.size(), 3u);
  EXPECT_EQ(commands_.ran()[0],
            absl::StrCat("npm pack cache --pack-destination ", staging, " --silent"));
  // The compression ScanArchive found, not tar's guess.
  EXPECT_EQ(commands_.ran()[1],
            absl::StrCat("tar -xzf ", staging, "/cache-1.0.0.tgz -C ", staging,
                         "/x --no-same-owner --no-same-permissions"));
  EXPECT_EQ(commands_.ran()[2],
            "npm install --omit=dev --no-audit --no-fund --no-package-lock");
  EXPECT_EQ(calls[2].cwd, p->dir);
  EXPECT_EQ(calls[2].timeout, absl::Minutes(1));
  EXPECT_THAT(calls[2].extra_env, ::testing::Contains("npm_config_fund=false"));

  auto dir = installer.Place(*p);
  ASSERT_TRUE(dir.ok()) << dir.status();
  EXPECT_EQ(*dir, home_ + "/modules/cache");
  EXPECT_TRUE(fs::exists(*dir + "/node_modules/left-pad"));
  p->staging->Remove();
  EXPECT_THAT(ModulesDir(), ElementsAre("cache"));
}

// Each step is told as it begins, before its command runs (agentctl's progress lines).
TEST_F(ModuleInstallerTest, EachStepIsToldBeforeItsCommandRuns) {
  ModuleInstaller installer = Installer();
  std::vector<std::pair<std::string, size_t>> told;  // the step, commands run before it
  auto p = installer.Prepare("cache", "/", [&](const std::string& step) {
    told.emplace_back(step, commands_.calls().size());
  });
  ASSERT_TRUE(p.ok()) << p.status();
  ASSERT_EQ(told.size(), 4u) << told.size();
  EXPECT_EQ(told[0], std::make_pair(std::string("npm pack cache"), size_t{0}));
  EXPECT_EQ(told[1], std::make_pair(std::string("checking the archive"), size_t{1}));
  EXPECT_THAT(told[2].first, MatchesRegex("extracting \\(tar: [0-9]+ entries, [0-9]+ KiB\\)"));
  EXPECT_EQ(told[2].second, 1u);
  EXPECT_EQ(told[3], std::make_pair(std::string("npm install --omit=dev (cache's dependencies)"),
                                    size_t{2}));
  // A directory: its manifest read, then its dependencies.
  const std::string dir = work_ + "/dev";
  WriteFile(dir + "/package.json", kManifest);
  WriteFile(dir + "/index.js", "x");
  told.clear();
  ASSERT_TRUE(installer.Prepare(dir, "/", [&](const std::string& step) {
    told.emplace_back(step, 0);
  }).ok());
  ASSERT_EQ(told.size(), 2u);
  EXPECT_EQ(told[0].first, "reading " + dir + "/package.json");
  EXPECT_THAT(told[1].first, StartsWith("npm install"));
}

TEST_F(ModuleInstallerTest, ATgzIsReadFromACopyInStagingAndReplacesTheInstalledVersion) {
  WriteTgz(work_ + "/cache.tgz", Members());
  WriteFile(home_ + "/modules/cache/old-file", "old");
  ModuleInstaller installer = Installer();
  {
    auto p = installer.Prepare("cache.tgz", work_);
    ASSERT_TRUE(p.ok()) << p.status();
    EXPECT_EQ(p->source, work_ + "/cache.tgz");
    EXPECT_EQ(commands_.calls()[0].argv[2], p->staging->path() + "/cache.tgz");
    auto dir = installer.Place(*p);
    ASSERT_TRUE(dir.ok()) << dir.status();
    EXPECT_FALSE(fs::exists(*dir + "/old-file"));
    EXPECT_TRUE(fs::exists(*dir + "/index.js"));
  }  // the last copy of the prepared module goes: so does its staging directory
  EXPECT_THAT(ModulesDir(), ElementsAre("cache"));  // no staging, no .old-
}

TEST_F(ModuleInstallerTest, ADirectoryIsUsedInPlaceInDevelopmentMode) {
  const std::string dir = work_ + "/cache";
  WriteFile(dir + "/package.json", kManifest);
  WriteFile(dir + "/index.js", "x");
  ModuleInstaller installer = Installer();
  auto p = installer.Prepare("cache/", work_);
  ASSERT_TRUE(p.ok()) << p.status();
  EXPECT_TRUE(p->dev_mode);
  EXPECT_EQ(p->dir, dir);
  EXPECT_EQ(p->staging, nullptr);
  EXPECT_THAT(commands_.ran(), ElementsAre(StartsWith("npm install")));
  EXPECT_EQ(commands_.calls()[0].cwd, dir);
  EXPECT_EQ(*installer.Place(*p), dir);
  EXPECT_THAT(ModulesDir(), IsEmpty());
  // With node_modules/ there, npm is left alone.
  auto again = installer.Prepare(dir, "/");
  ASSERT_TRUE(again.ok());
  EXPECT_EQ(commands_.calls().size(), 1u);
}

struct FailingStep {
  std::vector<std::string> command;
  absl::StatusCode code;
  std::string message;
};

void PrintTo(const FailingStep& step, std::ostream* os) { *os << absl::StrJoin(step.command, " "); }

class FailingCommandTest : public ModuleInstallerTest,
                           public ::testing::WithParamInterface<FailingStep> {};

TEST_P(FailingCommandTest, LeavesNothingInStagingOrModules) {
  commands_.OnExit(GetParam().command, 7, "line 1\nwhat went wrong\n");
  auto p = Installer().Prepare("cache", "/");
  ASSERT_FALSE(p.ok());
  EXPECT_EQ(p.status().code(), GetParam().code);
  EXPECT_THAT(std::string(p.status().message()), HasSubstr(GetParam().message));
  EXPECT_THAT(std::string(p.status().message()), HasSubstr("what went wrong"));
  EXPECT_THAT(ModulesDir(), IsEmpty());
}

INSTANTIATE_TEST_SUITE_P(
    EachCommand, FailingCommandTest,
    ::testing::Values(
        FailingStep{{"npm", "pack"}, absl::StatusCode::kNotFound, "npm pack cache failed (exit 7)"},
        FailingStep{{"tar"}, absl::StatusCode::kInvalidArgument, "cannot extract (tar exit 7)"},
        FailingStep{{"npm", "install"}, absl::StatusCode::kFailedPrecondition,
                    "npm install failed in "}));

TEST_F(ModuleInstallerTest, ACommandPastItsTimeoutFailsTheInstallAndLeavesNothing) {
  commands_.On({"npm", "install"}, [](const CommandRequest& r) -> absl::StatusOr<CommandResult> {
    return absl::DeadlineExceededError(absl::StrCat(absl::StrJoin(r.argv, " "),
                                                    " did not finish within 1m"));
  });
  auto p = Installer().Prepare("cache", "/");
  EXPECT_EQ(p.status().code(), absl::StatusCode::kDeadlineExceeded);
  EXPECT_THAT(std::string(p.status().message()), HasSubstr("did not finish within 1m"));
  EXPECT_THAT(ModulesDir(), IsEmpty());
}

TEST_F(ModuleInstallerTest, ArchivesPastTheLimitsAreRefusedBeforeExtraction) {
  options_.archive_limits.max_files = 2;
  WriteTgz(work_ + "/cache.tgz", Members());  // 3 members
  auto p = Installer().Prepare(work_ + "/cache.tgz", "/");
  ASSERT_FALSE(p.ok());
  EXPECT_EQ(p.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(std::string(p.status().message()), HasSubstr("more than 2 files"));
  EXPECT_THAT(commands_.ran(), IsEmpty());  // tar never ran
  EXPECT_THAT(ModulesDir(), IsEmpty());

  options_.archive_limits = ArchiveLimits{};
  options_.archive_limits.max_unpacked_bytes = 100;
  manifest_ = std::string(200, ' ') + kManifest;
  WriteTgz(work_ + "/big.tgz", Members());
  p = Installer().Prepare(work_ + "/big.tgz", "/");
  EXPECT_THAT(std::string(p.status().message()), HasSubstr("unpacks to more than"));
  EXPECT_THAT(commands_.ran(), IsEmpty());
  EXPECT_THAT(ModulesDir(), IsEmpty());
}

TEST_F(ModuleInstallerTest, WhatTarLeavesIsCheckedBeforeTheModuleIsAccepted) {
  commands_.On({"tar"}, [this](const CommandRequest& r) {
    const std::string x = ArgAfter(r, "-C");
    WriteFile(x + "/package/package.json", manifest_);
    WriteFile(x + "/package/index.js", "x");
    fs::create_directory_symlink("/etc", x + "/package/conf");
    return FakeCommandRunner::Exit(0);
  });
  auto p = Installer().Prepare("cache", "/");
  ASSERT_FALSE(p.ok());
  EXPECT_THAT(std::string(p.status().message()),
              HasSubstr("package/conf is a symbolic link to \"/etc\", an absolute path"));
  EXPECT_THAT(ModulesDir(), IsEmpty());
}

TEST_F(ModuleInstallerTest, AModuleThatCannotStartIsRefusedBeforeNpmRuns) {
  commands_.On({"tar"}, [this](const CommandRequest& r) {
    WriteFile(ArgAfter(r, "-C") + "/package/package.json", manifest_);  // no index.js
    return FakeCommandRunner::Exit(0);
  });
  auto p = Installer().Prepare("cache", "/");
  ASSERT_FALSE(p.ok());
  EXPECT_THAT(std::string(p.status().message()), HasSubstr("index.js"));
  EXPECT_THAT(commands_.ran(), ElementsAre(StartsWith("npm pack"), StartsWith("tar")));
  EXPECT_THAT(ModulesDir(), IsEmpty());
}

TEST_F(ModuleInstallerTest, BadSourcesAreRefusedWithWhatToFix) {
  WriteFile(work_ + "/notes.txt", "hello");
  ModuleInstaller installer = Installer();
  EXPECT_THAT(std::string(installer.Prepare("", "/").status().message()),
              HasSubstr("nothing to install"));
  EXPECT_EQ(installer.Prepare("-rf", "/").status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(installer.Prepare("missing.tgz", work_).status().message(),
            work_ + "/missing.tgz: no such file or directory");
  EXPECT_THAT(std::string(installer.Prepare("notes.txt", work_).status().message()),
              HasSubstr("is a file but not a .tgz/.tar.gz/.tar archive"));
  EXPECT_THAT(commands_.ran(), IsEmpty());
  EXPECT_THAT(ModulesDir(), IsEmpty());

  options_.search_path = root_ + "/nowhere";
  auto no_npm = Installer().Prepare("cache", "/");
  EXPECT_EQ(no_npm.status().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_THAT(std::string(no_npm.status().message()), HasSubstr("npm is not installed"));
  EXPECT_THAT(ModulesDir(), IsEmpty());
}

TEST_F(ModuleInstallerTest, PackageJsonCommentsAreBlankedInTheInstalledCopy) {
  manifest_ = std::string("// PM2's docs show comments\n") + kManifestNoDeps;
  auto p = Installer().Prepare("cache", "/");
  ASSERT_TRUE(p.ok()) << p.status();
  std::ifstream in(p->dir + "/package.json");
  std::stringstream text;
  text << in.rdbuf();
  EXPECT_THAT(text.str(), ::testing::Not(HasSubstr("//")));
  EXPECT_THAT(commands_.ran(), ElementsAre(StartsWith("npm pack"), StartsWith("tar")));
}

TEST_F(ModuleInstallerTest, StagingLeftByACrashIsRemovedAtStart) {
  WriteFile(home_ + "/modules/.staging-abc123/x/package/package.json", "{}");
  WriteFile(home_ + "/modules/cache/package.json", "{}");
  Installer().RemoveLeftovers();
  EXPECT_THAT(ModulesDir(), ElementsAre("cache"));
}

}  // namespace
}  // namespace herd::agent
