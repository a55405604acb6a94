#include "agent/modules/dev_mode_watcher.h"

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/fakes/fake_dir_watcher.h"
#include "tests/fakes/fake_scheduler.h"

namespace herd::agent {
namespace {

using ::herd::testing::FakeDirWatcher;
using ::herd::testing::FakeScheduler;
using ::testing::ElementsAre;
using ::testing::IsEmpty;

class DevModeWatcherTest : public ::testing::Test {
 protected:
  FakeClock clock_;
  FakeScheduler scheduler_{clock_};
  FakeDirWatcher dirs_;
  std::vector<std::string> restarts_;
  DevModeWatcher dev_{dirs_, scheduler_, absl::Milliseconds(500),
                      [this](const std::string& module) { restarts_.push_back(module); }};
};

TEST_F(DevModeWatcherTest, AChangeRestartsTheModuleOnceTheDebounceHasPassed) {
  dev_.Start("web", "/src/web");
  ASSERT_EQ(dirs_.Fire("/src/web"), 1u);
  scheduler_.Advance(absl::Milliseconds(499));
  EXPECT_THAT(restarts_, IsEmpty());
  scheduler_.Advance(absl::Milliseconds(1));
  EXPECT_THAT(restarts_, ElementsAre("web"));
}

TEST_F(DevModeWatcherTest, ABurstOfChangesGivesOneRestartAfterTheLast) {
  dev_.Start("web", "/src/web");
  for (int i = 0; i < 5; ++i) {
    dirs_.Fire("/src/web");
    scheduler_.Advance(absl::Milliseconds(300));  // each change inside the previous window
  }
  EXPECT_THAT(restarts_, IsEmpty());
  scheduler_.Advance(absl::Milliseconds(200));  // 500 ms after the last change
  EXPECT_THAT(restarts_, ElementsAre("web"));
  scheduler_.Advance(absl::Seconds(10));
  EXPECT_THAT(restarts_, ElementsAre("web"));
}

TEST_F(DevModeWatcherTest, ModulesAreDebouncedApart) {
  dev_.Start("web", "/src/web");
  dev_.Start("api", "/src/api");
  dirs_.Fire("/src/web");
  scheduler_.Advance(absl::Milliseconds(400));
  dirs_.Fire("/src/api");
  scheduler_.Advance(absl::Milliseconds(100));
  EXPECT_THAT(restarts_, ElementsAre("web"));
  scheduler_.Advance(absl::Milliseconds(400));
  EXPECT_THAT(restarts_, ElementsAre("web", "api"));
}

TEST_F(DevModeWatcherTest, StoppingDropsAPendingRestartAndTheWatch) {
  dev_.Start("web", "/src/web");
  dirs_.Fire("/src/web");
  dev_.Stop("web");
  EXPECT_FALSE(dev_.watching("web"));
  EXPECT_EQ(dirs_.watching(), 0u);
  scheduler_.Advance(absl::Seconds(5));
  EXPECT_THAT(restarts_, IsEmpty());
  EXPECT_EQ(dirs_.Fire("/src/web"), 0u);
}

TEST_F(DevModeWatcherTest, StartingAgainReplacesTheWatch) {
  dev_.Start("web", "/src/web");
  dev_.Start("web", "/src/web2");
  EXPECT_EQ(dirs_.watching(), 1u);
  EXPECT_EQ(dirs_.Fire("/src/web"), 0u);
  EXPECT_EQ(dirs_.Fire("/src/web2"), 1u);
  scheduler_.Advance(absl::Milliseconds(500));
  EXPECT_THAT(restarts_, ElementsAre("web"));
}

TEST_F(DevModeWatcherTest, ATreeThatCannotBeWatchedLeavesTheModuleUnwatched) {
  dirs_.FailNextWatch(absl::ResourceExhaustedError("inotify_init1: Too many open files"));
  dev_.Start("web", "/src/web");
  EXPECT_FALSE(dev_.watching("web"));
  EXPECT_EQ(dirs_.Fire("/src/web"), 0u);
}

}  // namespace
}  // namespace herd::agent
