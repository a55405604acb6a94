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
