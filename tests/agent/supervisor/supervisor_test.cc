// The Supervisor with real processes (/bin/sleep), a real loop and state file: what it
// writes to the state file when many units change at once.
#include "agent/supervisor/supervisor.h"

#include <stdlib.h>
#include <sys/stat.h>

#include <filesystem>
#include <thread>

#include "absl/strings/str_cat.h"
#include "absl/synchronization/notification.h"
#include "agent/logs/log_writer.h"
#include "agent/loop/event_loop.h"
#include "agent/procfs/proc_sampler.h"
#include "agent/supervisor/spawner.h"
#include "agent/supervisor/state_file.h"
#include "common/clock.h"
#include "gtest/gtest.h"

namespace herd::agent {
namespace {

class SupervisorTest : public ::testing::Test {
 protected:
  void SetUp() override {
    char tmpl[] = "/tmp/herd-supervisor-test-XXXXXX";
    ASSERT_NE(mkdtemp(tmpl), nullptr);
    dir_ = tmpl;
    ASSERT_EQ(mkdir((dir_ + "/logs").c_str(), 0750), 0);
    auto loop = EventLoop::Create(SystemClock::Get());
    ASSERT_TRUE(loop.ok()) << loop.status();
    loop_ = std::move(*loop);
    state_ = std::make_unique<StateFile>(dir_ + "/state.json");
    SupervisorOptions o;
    o.logs_dir = dir_ + "/logs";
    o.base_env = {"PATH=/usr/bin:/bin"};
    supervisor_ = std::make_unique<Supervisor>(*loop_, spawner_, sampler_, logs_, state_.get(), o);
    thread_ = std::thread([this] { loop_->Run(); });
  }
  void TearDown() override {
    if (supervisor_) {
      absl::Notification stopped;
      loop_->Post([&] { supervisor_->StopAll([&] { stopped.Notify(); }); });
      EXPECT_TRUE(stopped.WaitForNotificationWithTimeout(absl::Seconds(30)));
    }
    if (loop_) loop_->Stop();
    if (thread_.joinable()) thread_.join();
    supervisor_.reset();
    state_.reset();
    std::filesystem::remove_all(dir_);
  }

  // Runs `f` on the loop and waits for the UnitsDone it is given.
  absl::StatusOr<std::vector<herd::v1::UnitStatus>> OnLoop(
      std::function<void(Supervisor::UnitsDone)> f) {
    absl::Notification done;
    absl::StatusOr<std::vector<herd::v1::UnitStatus>> result;
    loop_->Post([&] {
      f([&](absl::StatusOr<std::vector<herd::v1::UnitStatus>> r) {
        result = std::move(r);
        done.Notify();
      });
    });
    if (!done.WaitForNotificationWithTimeout(absl::Seconds(60))) {
      return absl::DeadlineExceededError("the supervisor did not answer in 60 s");
    }
    return result;
  }

  std::string dir_;
  std::unique_ptr<EventLoop> loop_;
  PosixSpawner spawner_;
  ProcSampler sampler_{"/proc"};
  LogWriter logs_;
  std::unique_ptr<StateFile> state_;
  std::unique_ptr<Supervisor> supervisor_;
  std::thread thread_;
};

herd::v1::AppSpec Sleeper(int i) {
  herd::v1::AppSpec s;
  s.set_name(absl::StrCat("sleeper-", i));
  s.set_script("/bin/sleep");
  s.add_args("300");
  s.set_cwd("/");
  s.set_autorestart(true);
  s.set_kill_timeout_ms(5000);
  return s;
}

// Starting many units at once serializes the state once per turn of the loop, not once per
// unit (which made a batch of 1,000 quadratic: 13.6-16 s), and what is written lists them all.
TEST_F(SupervisorTest, StartingManyUnitsWritesTheStateOncePerLoopTurn) {
  constexpr int kUnits = 60;
  std::vector<herd::v1::AppSpec> specs;
  for (int i = 0; i < kUnits; ++i) specs.push_back(Sleeper(i));
  const uint64_t before = state_->saves();
  auto started = OnLoop([&](Supervisor::UnitsDone done) {
    supervisor_->Start(specs, std::move(done));
  });
  ASSERT_TRUE(started.ok()) << started.status();
  ASSERT_EQ(started->size(), static_cast<size_t>(kUnits));
  for (const auto& u : *started) EXPECT_NE(u.pid(), 0) << u.name();
  // Whatever the start queued has run once the loop has taken one more turn.
  absl::Notification turned;
  loop_->Post([&] { turned.Notify(); });
  turned.WaitForNotification();
  const uint64_t saves = state_->saves() - before;
  EXPECT_GE(saves, 1u);
  EXPECT_LE(saves, 3u) << "one state write per unit started";
  ASSERT_TRUE(state_->Flush().ok());
  auto stored = state_->Load();
  ASSERT_TRUE(stored.ok()) << stored.status();
  ASSERT_EQ(stored->size(), static_cast<size_t>(kUnits));
  for (const auto& p : *stored) {
    EXPECT_TRUE(p.desired_running) << p.spec.name();
    EXPECT_NE(p.pid, 0) << p.spec.name();
  }
}

// Stopping every unit for the agent's shutdown leaves them meant to run in the state file,
// written before it returns: they come back at the next start.
TEST_F(SupervisorTest, StopAllKeepsTheUnitsMeantToRun) {
  std::vector<herd::v1::AppSpec> specs = {Sleeper(1), Sleeper(2)};
  auto started = OnLoop([&](Supervisor::UnitsDone done) {
    supervisor_->Start(specs, std::move(done));
  });
  ASSERT_TRUE(started.ok()) << started.status();
  absl::Notification stopped;
  loop_->Post([&] { supervisor_->StopAll([&] { stopped.Notify(); }); });
  ASSERT_TRUE(stopped.WaitForNotificationWithTimeout(absl::Seconds(30)));
  ASSERT_TRUE(state_->Flush().ok());
  auto stored = state_->Load();
  ASSERT_TRUE(stored.ok()) << stored.status();
  ASSERT_EQ(stored->size(), 2u);
  for (const auto& p : *stored) EXPECT_TRUE(p.desired_running) << p.spec.name();
}

// `all` selects the apps, not the modules (PM2 leaves modules out of `all` too): stopping,
// restarting and deleting `all` leave a module running, under the same process.
TEST_F(SupervisorTest, AllLeavesModulesOut) {
  herd::v1::AppSpec module = Sleeper(2);
  module.set_channel(herd::v1::CHANNEL_KIND_NATIVE);
  std::vector<herd::v1::AppSpec> specs = {Sleeper(1), module};
  auto started = OnLoop([&](Supervisor::UnitsDone done) {
    supervisor_->Start(specs, std::move(done));
  });
  ASSERT_TRUE(started.ok()) << started.status();
  ASSERT_EQ(started->size(), 2u);
  auto pid_of = [&](const std::string& name) -> int {
    absl::Notification done;
    int pid = -1;
    loop_->Post([&] {
      auto d = supervisor_->Describe(name);
      pid = d.ok() ? static_cast<int>(d->status().pid()) : -1;
      done.Notify();
    });
    done.WaitForNotification();
    return pid;
  };
  const int module_pid = pid_of("sleeper-2");
  ASSERT_GT(module_pid, 0);
  auto names = [](const std::vector<herd::v1::UnitStatus>& units) {
    std::vector<std::string> out;
    for (const auto& u : units) out.push_back(u.name());
    return out;
  };

  auto restarted = OnLoop([&](Supervisor::UnitsDone done) {
    supervisor_->Restart("all", std::move(done));
  });
  ASSERT_TRUE(restarted.ok()) << restarted.status();
  EXPECT_EQ(names(*restarted), std::vector<std::string>{"sleeper-1"});
  auto stopped = OnLoop([&](Supervisor::UnitsDone done) {
    supervisor_->Stop("all", std::move(done));
  });
  ASSERT_TRUE(stopped.ok()) << stopped.status();
  EXPECT_EQ(names(*stopped), std::vector<std::string>{"sleeper-1"});
  EXPECT_EQ(pid_of("sleeper-1"), 0);
  auto deleted = OnLoop([&](Supervisor::UnitsDone done) {
    supervisor_->Delete("all", std::move(done));
  });
  ASSERT_TRUE(deleted.ok()) << deleted.status();
  EXPECT_EQ(names(*deleted), std::vector<std::string>{"sleeper-1"});
  EXPECT_EQ(pid_of("sleeper-1"), -1);  // gone
  EXPECT_EQ(pid_of("sleeper-2"), module_pid);

  // By name, a module is stopped like any unit.
  auto by_name = OnLoop([&](Supervisor::UnitsDone done) {
    supervisor_->Stop("sleeper-2", std::move(done));
  });
  ASSERT_TRUE(by_name.ok()) << by_name.status();
  EXPECT_EQ(pid_of("sleeper-2"), 0);
}

}  // namespace
}  // namespace herd::agent
