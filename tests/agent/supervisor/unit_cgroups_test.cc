#include "agent/supervisor/unit_cgroups.h"

#include <fcntl.h>
#include <signal.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <functional>
#include <string>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"
#include "absl/time/clock.h"
#include "agent/supervisor/spawner.h"
#include "agent/supervisor/unit_limits.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace herd::agent {
namespace {

namespace fs = std::filesystem;
using ::testing::HasSubstr;

class FakeProc {
 public:
  FakeProc() {
    char tmpl[] = "/tmp/herd-fakeproc-XXXXXX";
    dir_ = mkdtemp(tmpl);
    fs::create_directories(dir_ + "/self");
  }
  ~FakeProc() { fs::remove_all(dir_); }
  void Write(const std::string& rel, const std::string& text) {
    std::ofstream(dir_ + "/self/" + rel) << text;
  }
  const std::string& dir() const { return dir_; }

 private:
  std::string dir_;
};

// Debian's hybrid layout (v1 controllers, v2 at /sys/fs/cgroup/unified), as on CI machines.
TEST(UnitCgroupsFind, HybridMountAndTheProcessCgroup) {
  FakeProc proc;
  proc.Write("mountinfo",
             "25 30 0:22 / /sys/fs/cgroup rw,relatime shared:9 - tmpfs tmpfs rw,mode=755\n"
             "26 25 0:23 / /sys/fs/cgroup/memory rw,relatime shared:10 - cgroup cgroup rw,memory\n"
             "27 25 0:24 / /sys/fs/cgroup/unified rw,relatime shared:11 - cgroup2 cgroup2 rw\n");
  proc.Write("cgroup", "4:memory:/x\n0::/system.slice/agentd.service\n");
  UnitCgroups::Where w = UnitCgroups::Find(proc.dir());
  EXPECT_EQ(w.mount, "/sys/fs/cgroup/unified");
  EXPECT_EQ(w.own, "/system.slice/agentd.service");
}

TEST(UnitCgroupsFind, NoCgroup2OrNoV2PathIsNothing) {
  FakeProc proc;
  proc.Write("mountinfo", "26 25 0:23 / /sys/fs/cgroup/memory rw - cgroup cgroup rw,memory\n");
  proc.Write("cgroup", "0::/\n");
  EXPECT_EQ(UnitCgroups::Find(proc.dir()).mount, "");
  proc.Write("mountinfo", "27 25 0:24 / /sys/fs/cgroup rw - cgroup2 cgroup2 rw\n");
  proc.Write("cgroup", "4:memory:/x\n");
  EXPECT_EQ(UnitCgroups::Find(proc.dir()).mount, "");
}

// A fake cgroup tree: directories with the control files a test writes.
class FakeTree {
 public:
  FakeTree() {
    char tmpl[] = "/tmp/herd-faketree-XXXXXX";
    dir_ = mkdtemp(tmpl);
  }
  ~FakeTree() { fs::remove_all(dir_); }
  std::string Path(const std::string& rel) const { return dir_ + rel; }
  void Write(const std::string& rel, const std::string& text) {
    fs::create_directories(fs::path(Path(rel)).parent_path());
    std::ofstream(Path(rel)) << text;
  }
  std::string Read(const std::string& rel) const {
    std::ifstream f(Path(rel));
    return std::string(std::istreambuf_iterator<char>(f), {});
  }

 private:
  std::string dir_;
};

// memory and pids are enabled for unit directories where agentd's cgroup offers them: in
// its subtree_control, then in base's.
TEST(UnitCgroupsControllers, EnabledForUnitsWhereAgentdsCgroupOffersThem) {
  FakeTree t;
  t.Write("/svc/cgroup.controllers", "cpu io memory pids\n");
  t.Write("/svc/cgroup.subtree_control", "");
  t.Write("/svc/herd-x/cgroup.subtree_control", "");
  UnitCgroups cg(t.Path("/svc/herd-x"));
  EXPECT_EQ(cg.EnableControllers(t.Path("/svc")), "");
  EXPECT_EQ(t.Read("/svc/cgroup.subtree_control"), "+memory +pids");
  EXPECT_EQ(t.Read("/svc/herd-x/cgroup.subtree_control"), "+memory +pids");
  EXPECT_THAT(cg.controllers(), ::testing::ElementsAre("memory", "pids"));
}

TEST(UnitCgroupsControllers, NoneOfferedSaysWhy) {
  FakeTree t;
  t.Write("/cgroup.controllers", "hugetlb\n");  // a hybrid mount's unified root
  UnitCgroups cg(t.Path("/herd-x"));
  EXPECT_THAT(cg.EnableControllers(t.Path("")), HasSubstr("offers neither memory nor pids"));
  EXPECT_THAT(cg.controllers(), ::testing::IsEmpty());
  // Offered but not writable (a cgroup agentd may not change): the reason names the file.
  t.Write("/cgroup.controllers", "pids\n");
  EXPECT_THAT(cg.EnableControllers(t.Path("")), HasSubstr("cannot enable +pids in " + t.Path("")));
}

// An agentd that moved itself to <base>/agentd (to free its cgroup for controllers) and is
// started again from there finds the same tree, not one inside its leaf.
TEST(UnitCgroupsOpen, TheLeafAnEarlierAgentdMovedToIsSeenThrough) {
  FakeTree t;
  fs::create_directories(t.Path("/svc/herd-tag/agentd"));
  auto cg = UnitCgroups::Open("tag", {t.Path(""), "/svc/herd-tag/agentd"});
  ASSERT_TRUE(cg.ok()) << cg.status();
  EXPECT_EQ((*cg)->base(), t.Path("/svc/herd-tag"));
}

// The v1 memory and pids hierarchies, from mountinfo and the process's v1 paths; a
// controller v2 already gives is not looked for on v1.
TEST(UnitLimitsOpen, FindsTheV1HierarchiesFromMountinfo) {
  FakeTree t;
  fs::create_directories(t.Path("/memory/sandbox"));
  fs::create_directories(t.Path("/pids"));
  fs::create_directories(t.Path("/memory/sandbox/herd-tag/unit-old@3"));  // left empty
  FakeProc proc;
  proc.Write("mountinfo", absl::StrCat(
      "34 30 0:31 / ", t.Path("/memory"), " rw,relatime - cgroup cgroup rw,memory\n",
      "38 30 0:35 / ", t.Path("/pids"), " rw,relatime - cgroup cgroup rw,pids\n",
      "40 30 0:37 / /sys/fs/cgroup/unified rw,relatime - cgroup2 cgroup2 rw\n"));
  proc.Write("cgroup", "8:pids:/\n4:memory:/sandbox\n0::/\n");
  {
    auto limits = UnitLimits::Open("tag", {}, proc.dir());
    EXPECT_EQ(limits->Describe(),
              absl::StrCat("memory (cgroup v1: ", t.Path("/memory/sandbox/herd-tag"),
                           "), pids (cgroup v1: ", t.Path("/pids/herd-tag"), ")"));
    EXPECT_FALSE(fs::exists(t.Path("/memory/sandbox/herd-tag/unit-old@3")));
  }  // gone with it: the bases it made, once empty
  EXPECT_FALSE(fs::exists(t.Path("/pids/herd-tag")));
  auto limits = UnitLimits::Open("tag", {"memory"}, proc.dir());
  EXPECT_EQ(limits->Describe(),
            absl::StrCat("memory (cgroup v2), pids (cgroup v1: ", t.Path("/pids/herd-tag"), ")"));
  // No hierarchy at all: a limit is not enforced, and says why.
  UnitLimits none({}, {});
  herd::v1::AppSpec spec;
  spec.set_memory_max_bytes(64 << 20);
  UnitLimits::Applied a = none.Apply("u", spec, "");
  EXPECT_FALSE(a.complete);
  EXPECT_THAT(a.how, HasSubstr("memory_max not enforced: agentd has no memory controller"));
  EXPECT_TRUE(a.join_fds.empty());
}

// On the machine's real controllers (v1 on CI's hybrid mount): a child joins its limits
// cgroup before exec, so pids_max holds for all it forks, and memory_max ends it through
// the kernel's OOM killer, counted.
class UnitLimitsRealTest : public ::testing::Test {
 protected:
  void SetUp() override {
    limits_ = UnitLimits::Open(absl::StrCat("limits-test-", getpid()), {});
    if (!absl::StrContains(limits_->Describe(), "memory (cgroup v1") ||
        !absl::StrContains(limits_->Describe(), "pids (cgroup v1")) {
      GTEST_SKIP() << "no writable cgroup v1 memory and pids hierarchies: "
                   << limits_->Describe();
    }
  }
  void TearDown() override {
    for (const auto& dir : dirs_) {
      std::ifstream procs(dir + "/cgroup.procs");
      for (int pid; procs >> pid;) kill(pid, SIGKILL);
      for (int i = 0; i < 200 && rmdir(dir.c_str()) != 0 && errno == EBUSY; ++i) usleep(10000);
    }
  }
  absl::StatusOr<SpawnedProcess> Start(const herd::v1::AppSpec& spec,
                                       std::vector<std::string> argv,
                                       UnitLimits::Applied* applied) {
    *applied = limits_->Apply("t", spec, "");
    dirs_.insert(dirs_.end(), applied->dirs.begin(), applied->dirs.end());
    SpawnRequest req;
    req.argv = std::move(argv);
    req.env = {"PATH=/usr/bin:/bin"};
    req.join_fds = applied->join_fds;
    auto p = spawner_.Spawn(req);
    for (int fd : applied->join_fds) close(fd);
    return p;
  }
  std::unique_ptr<UnitLimits> limits_;
  std::vector<std::string> dirs_;
  PosixSpawner spawner_;
};

TEST_F(UnitLimitsRealTest, PidsMaxHoldsForEverythingTheChildForks) {
  herd::v1::AppSpec spec;
  spec.set_pids_max(5);
  UnitLimits::Applied a;
  auto p = Start(spec, {"sh", "-c", "for i in 1 2 3 4 5 6 7 8 9 10; do sleep 30 & done; wait"},
                 &a);
  ASSERT_TRUE(p.ok()) << p.status();
  EXPECT_TRUE(a.complete) << a.how;
  EXPECT_THAT(a.how, HasSubstr("pids 5 (cgroup v1)"));
  ASSERT_EQ(a.dirs.size(), 1u);
  usleep(500000);
  std::ifstream procs(a.dirs[0] + "/cgroup.procs");
  int n = 0;
  for (int pid; procs >> pid;) ++n;
  EXPECT_GE(n, 2) << "the shell and at least one sleep are in the cgroup";
  EXPECT_LE(n, 5);
  std::ifstream events(a.dirs[0] + "/pids.events");
  std::string word;
  uint64_t refused = 0;
  events >> word >> refused;  // "max N": forks refused at the limit
  EXPECT_GT(refused, 0u);
  kill(p->pid, SIGKILL);
  waitpid(p->pid, nullptr, 0);
  close(p->pidfd);
}

TEST_F(UnitLimitsRealTest, MemoryMaxEndsTheProcessThroughTheOomKiller) {
  herd::v1::AppSpec spec;
  spec.set_memory_max_bytes(32 << 20);
  UnitLimits::Applied a;
  auto p = Start(spec, {"python3", "-c", "b = bytearray(256 << 20)"}, &a);
  ASSERT_TRUE(p.ok()) << p.status();
  int status = 0;
  ASSERT_EQ(waitpid(p->pid, &status, 0), p->pid);
  close(p->pidfd);
  ASSERT_TRUE(WIFSIGNALED(status)) << "exited " << WEXITSTATUS(status);
  EXPECT_EQ(WTERMSIG(status), SIGKILL);
  EXPECT_EQ(UnitLimits::OomKills(a.oom_file), 1u) << a.oom_file;
}

// Against the machine's real cgroup v2 (root on CI; elsewhere the reason is printed).
class UnitCgroupsTest : public ::testing::Test {
 protected:
  void SetUp() override {
    auto cg = UnitCgroups::Open(absl::StrCat("unit-test-", getpid()));
    if (!cg.ok()) GTEST_SKIP() << "no writable cgroup v2: " << cg.status();
    cg_ = *std::move(cg);
  }
  void TearDown() override {
    if (!cg_) return;
    for (const auto& d : cg_->Existing()) {
      cg_->Signal(d, SIGKILL);
      for (int i = 0; i < 100 && !cg_->Remove(d); ++i) usleep(10000);
    }
    rmdir(cg_->base().c_str());
  }

  // Starts `sh -c script` in `dir` with PosixSpawner.
  absl::StatusOr<SpawnedProcess> Start(const std::string& dir, const std::string& script,
                                       const std::string& cwd = "") {
    int fd = open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    SpawnRequest req;
    req.argv = {"sh", "-c", script};
    req.env = {"PATH=/usr/bin:/bin"};
    req.cwd = cwd;
    req.cgroup_fd = fd;
    auto p = spawner_.Spawn(req);
    close(fd);
    return p;
  }

  static bool WaitUntil(const std::function<bool()>& f) {
    for (int i = 0; i < 500; ++i) {
      if (f()) return true;
      usleep(10000);
    }
    return false;
  }

  std::unique_ptr<UnitCgroups> cg_;
  PosixSpawner spawner_;
};

TEST_F(UnitCgroupsTest, AChildAndWhatItDaemonizesAreInItsCgroupAndKilledTogether) {
  auto dir = cg_->Create("web");
  ASSERT_TRUE(dir.ok()) << dir.status();
  auto again = cg_->Create("web");
  ASSERT_TRUE(again.ok());
  EXPECT_NE(*dir, *again);  // a fresh directory per start
  EXPECT_THAT(cg_->Existing(), ::testing::UnorderedElementsAre(*dir, *again));

  // The child starts a sleeper in a session of its own (setsid), then sleeps itself.
  auto p = Start(*dir, "setsid sleep 1000 & exec sleep 1000");
  ASSERT_TRUE(p.ok()) << p.status();
  ASSERT_TRUE(WaitUntil([&] { return cg_->Pids(*dir).size() == 2; }));
  EXPECT_THAT(cg_->Pids(*dir), ::testing::Contains(p->pid));
  EXPECT_FALSE(cg_->Remove(*dir));  // not while processes are in it

  EXPECT_EQ(cg_->Signal(*dir, SIGKILL), -1);  // cgroup.kill
  int status = 0;
  ASSERT_EQ(waitpid(p->pid, &status, 0), p->pid);
  ForgetChild(p->pid);
  EXPECT_TRUE(WIFSIGNALED(status));
  ASSERT_TRUE(WaitUntil([&] { return cg_->Pids(*dir).empty(); }));
  EXPECT_TRUE(WaitUntil([&] { return cg_->Remove(*dir); }));
  close(p->pidfd);
}

TEST_F(UnitCgroupsTest, OtherSignalsGoToEachProcess) {
  auto dir = cg_->Create("term");
  ASSERT_TRUE(dir.ok());
  auto p = Start(*dir, "exec sleep 1000");
  ASSERT_TRUE(p.ok()) << p.status();
  ASSERT_TRUE(WaitUntil([&] { return cg_->Pids(*dir).size() == 1; }));
  EXPECT_EQ(cg_->Signal(*dir, SIGTERM), 1);
  int status = 0;
  ASSERT_EQ(waitpid(p->pid, &status, 0), p->pid);
  ForgetChild(p->pid);
  EXPECT_EQ(WTERMSIG(status), SIGTERM);
  close(p->pidfd);
}

TEST_F(UnitCgroupsTest, SpawnIntoACgroupReportsExecAndDirectoryErrorsAsPosixSpawnDoes) {
  auto dir = cg_->Create("bad");
  ASSERT_TRUE(dir.ok());
  int fd = open(dir->c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  SpawnRequest req;
  req.argv = {"/nonexistent/program"};
  req.cgroup_fd = fd;
  auto p = spawner_.Spawn(req);
  ASSERT_FALSE(p.ok());
  EXPECT_THAT(std::string(p.status().message()), HasSubstr("cannot execute /nonexistent/program"));
  req.argv = {"sh", "-c", "true"};
  req.env = {"PATH=/usr/bin:/bin"};
  req.cwd = "/nonexistent-dir";
  p = spawner_.Spawn(req);
  ASSERT_FALSE(p.ok());
  EXPECT_THAT(std::string(p.status().message()),
              HasSubstr("cannot change to working directory /nonexistent-dir"));
  close(fd);
}

TEST_F(UnitCgroupsTest, TheChildGetsItsDescriptorsAndNothingElse) {
  auto dir = cg_->Create("fds");
  ASSERT_TRUE(dir.ok());
  int out[2];
  ASSERT_EQ(pipe2(out, O_CLOEXEC), 0);
  int stray = open("/dev/null", O_RDONLY);  // not close-on-exec: must not reach the child
  int fd = open(dir->c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  SpawnRequest req;
  req.argv = {"sh", "-c", "ls /proc/self/fd; cat /proc/self/cgroup"};
  req.env = {"PATH=/usr/bin:/bin"};
  req.stdout_fd = out[1];
  req.cgroup_fd = fd;
  auto p = spawner_.Spawn(req);
  close(fd);
  close(out[1]);
  close(stray);
  ASSERT_TRUE(p.ok()) << p.status();
  std::string text;
  char buf[4096];
  for (ssize_t n; (n = read(out[0], buf, sizeof buf)) > 0;) text.append(buf, n);
  close(out[0]);
  waitpid(p->pid, nullptr, 0);
  ForgetChild(p->pid);
  close(p->pidfd);
  // 0, 1, 2 and the directory ls itself opens; nothing of ours. Then its cgroup v2 line.
  std::vector<std::string> fds, v2;
  for (absl::string_view line : absl::StrSplit(text, '\n', absl::SkipEmpty())) {
    int n = 0;
    if (absl::SimpleAtoi(line, &n)) fds.emplace_back(line);
    if (absl::StartsWith(line, "0::")) v2.emplace_back(line);
  }
  EXPECT_THAT(fds, ::testing::ElementsAre("0", "1", "2", "3")) << text;
  ASSERT_EQ(v2.size(), 1u) << text;
  EXPECT_TRUE(absl::EndsWith(v2[0], dir->substr(dir->rfind('/')))) << v2[0] << " " << *dir;
}

}  // namespace
}  // namespace herd::agent
