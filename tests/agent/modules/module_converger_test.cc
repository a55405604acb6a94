// ModuleConverger on a fake scheduler and fake modules: one operation at a time, what it
// reports, its backoff, what it removes and what it leaves alone.
#include "agent/modules/module_converger.h"

#include <filesystem>
#include <functional>
#include <map>
#include <string>
#include <vector>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "common/clock.h"
#include "common/atomic_file.h"
#include "common/sha256.h"
#include "tests/fakes/fake_scheduler.h"
#include "tests/fakes/temp_dir.h"

namespace herd::agent {
namespace {

using ::testing::ElementsAre;
using ::testing::HasSubstr;
using ::testing::IsEmpty;

// Installs and uninstalls wait until the test finishes them.
class FakeModules final : public ConvergerModules {
 public:
  std::map<std::string, ModuleManager::Installed> installed;
  std::vector<std::pair<std::string, std::function<void(absl::StatusOr<herd::v1::ModuleInfo>)>>>
      installs;
  std::vector<std::pair<std::string, std::function<void(absl::Status)>>> uninstalls;

  std::optional<ModuleManager::Installed> Installed(const std::string& name) const override {
    auto it = installed.find(name);
    if (it == installed.end()) return std::nullopt;
    return it->second;
  }
  std::vector<std::string> Managed() const override {
    std::vector<std::string> out;
    for (const auto& [n, m] : installed) {
      if (m.managed) out.push_back(n);
    }
    return out;
  }
  void SetManaged(const std::string& name, bool managed) override {
    installed[name].managed = managed;
  }
  void Install(const std::string& source,
               std::function<void(absl::StatusOr<herd::v1::ModuleInfo>)> done) override {
    installs.emplace_back(source, std::move(done));
  }
  void Uninstall(const std::string& name, std::function<void(absl::Status)> done) override {
    uninstalls.emplace_back(name, std::move(done));
  }

  // The oldest pending install ends: `name` at `version` installed, or `error`.
  void FinishInstall(const std::string& name, const std::string& version,
                     const std::string& error = "") {
    ASSERT_FALSE(installs.empty());
    auto [source, done] = std::move(installs.front());
    installs.erase(installs.begin());
    if (!error.empty()) return done(absl::NotFoundError(error));
    installed[name].version = version;
    installed[name].source = source;
    herd::v1::ModuleInfo info;
    info.set_name(name);
    info.set_version(version);
    done(info);
  }
  void FinishUninstall() {
    ASSERT_FALSE(uninstalls.empty());
    auto [name, done] = std::move(uninstalls.front());
    uninstalls.erase(uninstalls.begin());
    installed.erase(name);
    done(absl::OkStatus());
  }
};

class ModuleConvergerTest : public ::testing::Test {
 protected:
  ModuleConvergerTest() : scheduler_(clock_), converger_(scheduler_, modules_, Options()) {
    converger_.set_on_change([this] { ++changes_; });
  }
  static ModuleConverger::Options Options() {
    ModuleConverger::Options o;
    o.first_retry = absl::Seconds(30);
    o.max_retry = absl::Seconds(100);
    return o;
  }
  void Want(std::map<std::string, std::pair<std::string, std::string>> want) {
    google::protobuf::Map<std::string, herd::v1::DesiredModule> m;
    for (const auto& [name, sv] : want) {
      m[name].set_source(sv.first);
      m[name].set_version(sv.second);
    }
    converger_.SetDesired(m);
  }
  // name=state for every status, in order.
  std::vector<std::string> States() {
    std::vector<std::string> out;
    for (const auto& s : converger_.Status()) out.push_back(s.name() + "=" + s.state());
    return out;
  }
  herd::v1::DeploymentStatus StatusOf(const std::string& name) {
    for (const auto& s : converger_.Status()) {
      if (s.name() == name) return s;
    }
    return {};
  }

  FakeClock clock_;
  testing::FakeScheduler scheduler_;
  FakeModules modules_;
  ModuleConverger converger_;
  int changes_ = 0;
};

TEST_F(ModuleConvergerTest, InstallsWhatIsMissingOneAtATimeAndMarksItManaged) {
  Want({{"a", {"a@1.0.0", "1.0.0"}}, {"b", {"/srv/b.tgz", ""}}});
  ASSERT_EQ(modules_.installs.size(), 1u) << "one install at a time";
  EXPECT_EQ(modules_.installs[0].first, "a@1.0.0");
  EXPECT_THAT(States(), ElementsAre("a=installing", "b=pending"));
  modules_.FinishInstall("a", "1.0.0");
  EXPECT_TRUE(modules_.installed["a"].managed);
  ASSERT_EQ(modules_.installs.size(), 1u);
  EXPECT_EQ(modules_.installs[0].first, "/srv/b.tgz");
  modules_.FinishInstall("b", "0.3.1");  // any version was wanted
  EXPECT_THAT(States(), ElementsAre("a=converged", "b=converged"));
  EXPECT_GT(changes_, 0) << "the uplink is told";
  // The same wanted set again: nothing moves.
  Want({{"a", {"a@1.0.0", "1.0.0"}}, {"b", {"/srv/b.tgz", ""}}});
  EXPECT_THAT(modules_.installs, IsEmpty());
}

TEST_F(ModuleConvergerTest, AFailureIsReportedAndTriedAgainAfterABackoffThatDoubles) {
  Want({{"a", {"/srv/a.tgz", "1.0.0"}}});
  modules_.FinishInstall("a", "", "/srv/a.tgz: no such file or directory");
  herd::v1::DeploymentStatus s = StatusOf("a");
  EXPECT_EQ(s.state(), "failed");
  EXPECT_THAT(s.error(), HasSubstr("no such file"));
  EXPECT_EQ(s.attempts(), 1u);
  scheduler_.Advance(absl::Seconds(29));
  EXPECT_THAT(modules_.installs, IsEmpty());
  scheduler_.Advance(absl::Seconds(1));
  ASSERT_EQ(modules_.installs.size(), 1u) << "tried again after 30 s";
  modules_.FinishInstall("a", "", "still missing");
  EXPECT_EQ(StatusOf("a").attempts(), 2u);
  scheduler_.Advance(absl::Seconds(59));
  EXPECT_THAT(modules_.installs, IsEmpty());
  scheduler_.Advance(absl::Seconds(1));
  ASSERT_EQ(modules_.installs.size(), 1u) << "then after 60 s";
  // A version other than the wanted one is a failure too, with both named.
  modules_.FinishInstall("a", "0.9.0");
  EXPECT_THAT(StatusOf("a").error(), HasSubstr("gave version 0.9.0, not the wanted 1.0.0"));
  // A new declaration is tried at once, whatever the backoff.
  Want({{"a", {"/srv/a-0.9.tgz", "0.9.0"}}});
  EXPECT_THAT(States(), ElementsAre("a=converged")) << "0.9.0 is installed already";
  EXPECT_THAT(modules_.installs, IsEmpty());
}

TEST_F(ModuleConvergerTest, ManagedModulesNoLongerWantedGoAndHandInstalledOnesStay) {
  modules_.installed["old"] = {.version = "1.0.0", .source = "old", .managed = true};
  modules_.installed["hand"] = {.version = "2.0.0", .source = "/src/hand", .managed = false};
  modules_.installed["taken"] = {.version = "3.0.0", .source = "/src/taken", .managed = false};
  Want({{"taken", {"taken@3.0.0", "3.0.0"}}});
  // Already at the wanted version: taken over, not reinstalled.
  EXPECT_TRUE(modules_.installed["taken"].managed);
  ASSERT_EQ(modules_.uninstalls.size(), 1u);
  EXPECT_EQ(modules_.uninstalls[0].first, "old");
  EXPECT_THAT(States(), ElementsAre("taken=converged", "old=removing"));
  modules_.FinishUninstall();
  EXPECT_THAT(States(), ElementsAre("taken=converged"));
  EXPECT_TRUE(modules_.installed.count("hand")) << "installed by hand: left alone";
  EXPECT_THAT(modules_.installs, IsEmpty());
}

TEST_F(ModuleConvergerTest, AnInstallOvertakenByANewDeclarationIsNoFailure) {
  Want({{"a", {"a@1.0.0", "1.0.0"}}});
  Want({{"a", {"a@2.0.0", "2.0.0"}}});
  ASSERT_EQ(modules_.installs.size(), 1u) << "the first install still runs";
  modules_.FinishInstall("a", "1.0.0");
  EXPECT_NE(StatusOf("a").state(), "failed");
  ASSERT_EQ(modules_.installs.size(), 1u) << "the wanted version at once, no backoff";
  EXPECT_EQ(modules_.installs[0].first, "a@2.0.0");
  modules_.FinishInstall("a", "2.0.0");
  EXPECT_THAT(States(), ElementsAre("a=converged"));
  // Replaced by another module: it is installed first, then the old one removed.
  Want({{"b", {"b@1.0.0", "1.0.0"}}});
  EXPECT_THAT(modules_.uninstalls, IsEmpty());
  modules_.FinishInstall("b", "1.0.0");
  ASSERT_EQ(modules_.uninstalls.size(), 1u);
  EXPECT_EQ(modules_.uninstalls[0].first, "a");
  // Undeclared while its install runs: marked managed, then removed.
  Want({{"b", {"b@1.0.0", "1.0.0"}}, {"c", {"c@1.0.0", "1.0.0"}}});
  modules_.FinishUninstall();  // a
  ASSERT_EQ(modules_.installs.size(), 1u);
  Want({{"b", {"b@1.0.0", "1.0.0"}}});
  modules_.FinishInstall("c", "1.0.0");
  EXPECT_TRUE(modules_.installed["c"].managed);
  ASSERT_EQ(modules_.uninstalls.size(), 1u);
  EXPECT_EQ(modules_.uninstalls[0].first, "c");
}

// What the control plane wants is bounded: past kMaxDesired, the first by name are kept.
TEST_F(ModuleConvergerTest, TheWantedSetIsBounded) {
  std::map<std::string, std::pair<std::string, std::string>> many;
  for (size_t i = 0; i < ModuleConverger::kMaxDesired + 10; ++i) {
    char name[16];
    snprintf(name, sizeof name, "m%04zu", i);
    many[name] = {std::string(name) + "@1.0.0", "1.0.0"};
  }
  Want(many);
  auto st = converger_.Status();
  ASSERT_EQ(st.size(), ModuleConverger::kMaxDesired);
  EXPECT_EQ(st.front().name(), "m0000");
  EXPECT_EQ(st.back().name(), "m0255");
}

// Fetches wait until the test finishes them (with the bytes the control plane would send).
class FakeFetcher final : public ArtifactFetcher {
 public:
  struct Call {
    std::string sha256, dest;
    std::function<void(absl::Status)> done;
  };
  std::vector<Call> calls;
  void Fetch(const std::string& sha256, const std::string& dest,
             std::function<void(absl::Status)> done) override {
    calls.push_back({sha256, dest, std::move(done)});
  }
  void Finish(const std::string& bytes) {
    ASSERT_FALSE(calls.empty());
    Call c = std::move(calls.front());
    calls.erase(calls.begin());
    ASSERT_TRUE(WriteFileAtomically(c.dest, bytes).ok());
    c.done(absl::OkStatus());
  }
  void Fail(absl::Status s) {
    ASSERT_FALSE(calls.empty());
    Call c = std::move(calls.front());
    calls.erase(calls.begin());
    c.done(s);
  }
};

std::string Digest(const std::string& bytes) {
  Sha256 h;
  h.Update(bytes);
  return h.HexDigest();
}

class ConvergerArtifactsTest : public ModuleConvergerTest {
 protected:
  ConvergerArtifactsTest()
      : dir_("herd-converger"), artifacts_(scheduler_, modules_, WithDir(dir_.path())) {
    artifacts_.set_fetcher(&fetcher_);
  }
  static ModuleConverger::Options WithDir(const std::string& dir) {
    ModuleConverger::Options o = Options();
    o.artifacts_dir = dir + "/artifacts";
    o.busy_retry_max = absl::Seconds(5);
    return o;
  }
  void WantArtifact(const std::string& bytes, const std::string& version) {
    google::protobuf::Map<std::string, herd::v1::DesiredModule> m;
    m["a"].set_source("sha256:" + Digest(bytes));
    m["a"].set_version(version);
    artifacts_.SetDesired(m);
  }
  std::string StateOfA() {
    for (const auto& s : artifacts_.Status()) {
      if (s.name() == "a") return s.state();
    }
    return "";
  }
  std::string PathOf(const std::string& bytes) {
    return dir_.path() + "/artifacts/" + Digest(bytes) + ".tgz";
  }

  testing::ScopedTempDir dir_;
  FakeFetcher fetcher_;
  ModuleConverger artifacts_;
};

TEST_F(ConvergerArtifactsTest, AnArtifactIsFetchedThenInstalledFromItsCheckedFile) {
  WantArtifact("v1 bytes", "1.0.0");
  ASSERT_EQ(fetcher_.calls.size(), 1u);
  EXPECT_EQ(fetcher_.calls[0].sha256, Digest("v1 bytes"));
  EXPECT_EQ(StateOfA(), "fetching");
  EXPECT_THAT(modules_.installs, IsEmpty()) << "nothing is installed before the fetch ends";
  fetcher_.Finish("v1 bytes");
  ASSERT_EQ(modules_.installs.size(), 1u);
  EXPECT_EQ(modules_.installs[0].first, PathOf("v1 bytes"));
  modules_.FinishInstall("a", "1.0.0");
  EXPECT_EQ(StateOfA(), "converged");
  EXPECT_THAT(artifacts_.KeptArtifacts("a"), ElementsAre(Digest("v1 bytes")));
}

// The previous version's artifact stays: going back to it needs no fetch. Two are kept per
// module; the third one's install removes the oldest file.
TEST_F(ConvergerArtifactsTest, ThePreviousVersionIsKeptForGoingBack) {
  WantArtifact("v1", "1.0.0");
  fetcher_.Finish("v1");
  modules_.FinishInstall("a", "1.0.0");
  WantArtifact("v2", "2.0.0");
  fetcher_.Finish("v2");
  modules_.FinishInstall("a", "2.0.0");
  EXPECT_THAT(artifacts_.KeptArtifacts("a"), ElementsAre(Digest("v2"), Digest("v1")));
  WantArtifact("v1", "1.0.0");  // back
  EXPECT_THAT(fetcher_.calls, IsEmpty()) << "the kept file is installed";
  ASSERT_EQ(modules_.installs.size(), 1u);
  EXPECT_EQ(modules_.installs[0].first, PathOf("v1"));
  modules_.FinishInstall("a", "1.0.0");
  WantArtifact("v3", "3.0.0");
  fetcher_.Finish("v3");
  modules_.FinishInstall("a", "3.0.0");
  EXPECT_THAT(artifacts_.KeptArtifacts("a"), ElementsAre(Digest("v3"), Digest("v1")));
  EXPECT_FALSE(std::filesystem::exists(PathOf("v2")));
  EXPECT_TRUE(std::filesystem::exists(PathOf("v1")));
  // A new agentd finds the same lists.
  ModuleConverger again(scheduler_, modules_, WithDir(dir_.path()));
  EXPECT_THAT(again.KeptArtifacts("a"), ElementsAre(Digest("v3"), Digest("v1")));
}

TEST_F(ConvergerArtifactsTest, ADamagedKeptFileIsFetchedAgain) {
  WantArtifact("v1", "1.0.0");
  fetcher_.Finish("v1");
  modules_.FinishInstall("a", "1.0.0");
  WantArtifact("v2", "2.0.0");
  fetcher_.Finish("v2");
  modules_.FinishInstall("a", "2.0.0");
  ASSERT_TRUE(WriteFileAtomically(PathOf("v1"), "tampered").ok());
  WantArtifact("v1", "1.0.0");
  ASSERT_EQ(fetcher_.calls.size(), 1u) << "the file no longer hashes to its name";
  EXPECT_THAT(modules_.installs, IsEmpty());
}

// A control plane busy serving a fleet-wide deploy is asked again within seconds, not after
// the failure backoff; any other failure takes the backoff.
TEST_F(ConvergerArtifactsTest, ABusyControlPlaneIsAskedAgainSoon) {
  WantArtifact("v1", "1.0.0");
  fetcher_.Fail(absl::ResourceExhaustedError("64 artifact fetches are in progress"));
  EXPECT_EQ(StateOfA(), "failed");
  scheduler_.Advance(absl::Seconds(6));
  ASSERT_EQ(fetcher_.calls.size(), 1u) << "asked again within busy_retry_max + 1 s";
  fetcher_.Fail(absl::PermissionDeniedError("not deployed to this host"));
  scheduler_.Advance(absl::Seconds(6));
  EXPECT_THAT(fetcher_.calls, IsEmpty());
  scheduler_.Advance(absl::Seconds(60));
  EXPECT_EQ(fetcher_.calls.size(), 1u) << "after the backoff";
}

TEST_F(ModuleConvergerTest, AnArtifactWithoutAFetcherFails) {
  google::protobuf::Map<std::string, herd::v1::DesiredModule> m;
  m["a"].set_source("sha256:" + Digest("x"));
  converger_.SetDesired(m);
  EXPECT_EQ(StatusOf("a").state(), "failed");
  EXPECT_THAT(StatusOf("a").error(), HasSubstr("fetches no artifacts"));
  EXPECT_THAT(modules_.installs, IsEmpty());
}

}  // namespace
}  // namespace herd::agent
