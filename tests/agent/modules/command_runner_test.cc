#include "agent/modules/command_runner.h"

#include <errno.h>
#include <signal.h>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/fakes/fake_spawner.h"

namespace herd::agent {
namespace {

using ::herd::testing::FakeChildWaitOps;
using ::herd::testing::FakeSpawner;
using ::testing::ElementsAre;
using ::testing::HasSubstr;

class CommandRunnerTest : public ::testing::Test {
 protected:
  CommandRequest Request(std::vector<std::string> argv) {
    CommandRequest r;
    r.argv = std::move(argv);
    r.cwd = "/srv/m";
    r.timeout = absl::Seconds(5);
    return r;
  }

  FakeClock clock_;
  FakeSpawner spawner_;
  FakeChildWaitOps ops_{spawner_, clock_};
  SpawnerCommandRunner runner_{spawner_, clock_, ops_};
};

TEST_F(CommandRunnerTest, CapturesTheOutputAndTheExitCode) {
  spawner_.Next({"added 3 packages\nnpm warn deprecated\n", false, 3});
  CommandRequest req = Request({"npm", "install"});
  req.extra_env = {"npm_config_fund=false"};
  auto r = runner_.Run(req);
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(r->exit_code, 3);
  EXPECT_EQ(r->output, "added 3 packages\nnpm warn deprecated\n");
  ASSERT_EQ(spawner_.requests().size(), 1u);
  const SpawnRequest& spawned = spawner_.requests()[0];
  EXPECT_THAT(spawned.argv, ElementsAre("npm", "install"));
  EXPECT_EQ(spawned.cwd, "/srv/m");
  // agentd's environment, then the extra variables; stdout and stderr the same pipe.
  ASSERT_FALSE(spawned.env.empty());
  EXPECT_EQ(spawned.env.back(), "npm_config_fund=false");
  EXPECT_GE(spawned.stdout_fd, 0);
  EXPECT_EQ(spawned.stdout_fd, spawned.stderr_fd);
  EXPECT_THAT(ops_.events(), ElementsAre("reap 4000"));
}

TEST_F(CommandRunnerTest, ACommandPastItsTimeoutIsKilledWithItsGroup) {
  spawner_.Next({"fetching...\n", true, 0});
  auto r = runner_.Run(Request({"npm", "pack", "slow-module"}));
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.status().code(), absl::StatusCode::kDeadlineExceeded);
  EXPECT_THAT(std::string(r.status().message()),
              HasSubstr("npm pack slow-module did not finish within 5s; output:\nfetching..."));
  // Killed first, then reaped (so the reap cannot block).
  EXPECT_THAT(ops_.events(), ElementsAre("kill 4000", "reap 4000"));
  EXPECT_GE(clock_.Monotonic() - absl::Time(), absl::Seconds(5));
}

// poll failing (not EINTR) once left waitpid blocking on a child nobody would kill.
TEST_F(CommandRunnerTest, AWaitThatFailsKillsTheChildBeforeReapingIt) {
  spawner_.Next({"", true, 0});
  ops_.FailPollsWith(ENOMEM);
  auto r = runner_.Run(Request({"npm", "install"}));
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.status().code(), absl::StatusCode::kInternal);
  EXPECT_THAT(std::string(r.status().message()), HasSubstr("cannot wait for npm install (poll: "));
  EXPECT_THAT(std::string(r.status().message()), HasSubstr("so it was killed"));
  EXPECT_THAT(ops_.events(), ElementsAre("kill 4000", "reap 4000"));
}

TEST_F(CommandRunnerTest, AnInterruptedPollIsRetried) {
  spawner_.Next({"ok\n", false, 0});
  ops_.FailPollsWith(EINTR, 2);
  auto r = runner_.Run(Request({"tar", "-xf", "m.tar"}));
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(r->exit_code, 0);
  EXPECT_EQ(r->output, "ok\n");
  EXPECT_THAT(ops_.events(), ElementsAre("reap 4000"));
}

TEST_F(CommandRunnerTest, AProgramThatCannotStartSaysCannotRun) {
  spawner_.FailNext(absl::FailedPreconditionError("cannot execute npm: No such file or directory"));
  auto r = runner_.Run(Request({"npm", "pack", "x"}));
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.status().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_EQ(r.status().message(), "cannot run npm: No such file or directory");
  EXPECT_TRUE(ops_.events().empty());
}

TEST_F(CommandRunnerTest, AnEmptyCommandIsRefused) {
  auto r = runner_.Run(Request({}));
  EXPECT_EQ(r.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_TRUE(spawner_.requests().empty());
}

TEST(LastLines, KeepsTheTail) {
  EXPECT_EQ(LastLines("a\nb\nc\n", 2), "b\nc\n");
  EXPECT_EQ(LastLines("a\nb\nc", 5), "a\nb\nc");
  EXPECT_EQ(LastLines("", 3), "");
}

}  // namespace
}  // namespace herd::agent
