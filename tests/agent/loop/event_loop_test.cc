// EventLoop tests run the real loop on the test thread with short real timers; every test
// arms a watchdog so that a bug stops the loop with a failure instead of hanging.
#include "agent/loop/event_loop.h"

#include <fcntl.h>
#include <sys/epoll.h>
#include <unistd.h>

#include <atomic>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "common/clock.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace herd::agent {
namespace {

using ::testing::ElementsAre;

constexpr absl::Duration kWatchdog = absl::Seconds(5);

class EventLoopTest : public ::testing::Test {
 protected:
  void SetUp() override {
    absl::StatusOr<std::unique_ptr<EventLoop>> loop = EventLoop::Create(SystemClock::Get());
    ASSERT_TRUE(loop.ok()) << loop.status();
    loop_ = *std::move(loop);
  }

  // Runs the loop until a callback calls Stop(), or fails the test after kWatchdog.
  void RunWithWatchdog() {
    EventLoop::Handle watchdog = loop_->RunAfter(kWatchdog, [this] {
      ADD_FAILURE() << "the loop was not stopped within " << kWatchdog;
      loop_->Stop();
    });
    loop_->Run();
    loop_->CancelTimer(watchdog);
  }

  // A non-blocking pipe closed at the end of the test.
  void MakePipe(int fds[2]) {
    ASSERT_EQ(pipe2(fds, O_NONBLOCK | O_CLOEXEC), 0);
    fds_.push_back(fds[0]);
    fds_.push_back(fds[1]);
  }

  void TearDown() override {
    for (int fd : fds_) close(fd);
  }

  std::unique_ptr<EventLoop> loop_;
  std::vector<int> fds_;
};

TEST_F(EventLoopTest, PostFromAnotherThreadRunsOnTheLoopThread) {
  std::thread::id ran_on;
  bool in_loop_thread = false;
  std::thread poster;
  loop_->RunAfter(absl::ZeroDuration(), [&] {
    poster = std::thread([&] {
      loop_->Post([&] {
        ran_on = std::this_thread::get_id();
        in_loop_thread = loop_->InLoopThread();
        loop_->Stop();
      });
    });
  });
  RunWithWatchdog();
  poster.join();
  EXPECT_EQ(ran_on, std::this_thread::get_id());
  EXPECT_TRUE(in_loop_thread);
}

TEST_F(EventLoopTest, PostedTasksRunInOrder) {
  std::vector<int> order;
  for (int i = 0; i < 5; ++i) loop_->Post([&order, i] { order.push_back(i); });
  loop_->Post([&] { loop_->Stop(); });
  RunWithWatchdog();
  EXPECT_THAT(order, ElementsAre(0, 1, 2, 3, 4));
}

TEST_F(EventLoopTest, InLoopThreadIsFalseOutsideRun) {
  EXPECT_FALSE(loop_->InLoopThread());
  bool inside = false;
  loop_->Post([&] {
    inside = loop_->InLoopThread();
    loop_->Stop();
  });
  RunWithWatchdog();
  EXPECT_TRUE(inside);
  EXPECT_FALSE(loop_->InLoopThread());
}

TEST_F(EventLoopTest, TimersFireInDeadlineOrderNotInsertionOrder) {
  std::vector<int> order;
  loop_->RunAfter(absl::Milliseconds(30), [&] {
    order.push_back(30);
    loop_->Stop();
  });
  loop_->RunAfter(absl::Milliseconds(10), [&] { order.push_back(10); });
  loop_->RunAfter(absl::Milliseconds(20), [&] { order.push_back(20); });
  loop_->RunAfter(absl::Milliseconds(1), [&] { order.push_back(1); });
  RunWithWatchdog();
  EXPECT_THAT(order, ElementsAre(1, 10, 20, 30));
}

TEST_F(EventLoopTest, TimersWithTheSameDelayFireInInsertionOrder) {
  std::vector<int> order;
  for (int i = 0; i < 4; ++i) {
    loop_->RunAfter(absl::Milliseconds(5), [&order, i] { order.push_back(i); });
  }
  loop_->RunAfter(absl::Milliseconds(15), [&] { loop_->Stop(); });
  RunWithWatchdog();
  EXPECT_THAT(order, ElementsAre(0, 1, 2, 3));
}

TEST_F(EventLoopTest, TimerDoesNotFireBeforeItsDelay) {
  const absl::Time start = SystemClock::Get().Monotonic();
  absl::Time fired;
  loop_->RunAfter(absl::Milliseconds(20), [&] {
    fired = SystemClock::Get().Monotonic();
    loop_->Stop();
  });
  RunWithWatchdog();
  EXPECT_GE(fired - start, absl::Milliseconds(20));
}

TEST_F(EventLoopTest, NegativeDelayRunsAtOnce) {
  bool ran = false;
  loop_->RunAfter(absl::Seconds(-3), [&] {
    ran = true;
    loop_->Stop();
  });
  RunWithWatchdog();
  EXPECT_TRUE(ran);
}

TEST_F(EventLoopTest, CancelledTimerNeverFires) {
  bool cancelled_ran = false;
  EventLoop::Handle h = loop_->RunAfter(absl::Milliseconds(5), [&] { cancelled_ran = true; });
  loop_->RunAfter(absl::Milliseconds(20), [&] { loop_->Stop(); });
  loop_->CancelTimer(h);
  RunWithWatchdog();
  EXPECT_FALSE(cancelled_ran);
}

TEST_F(EventLoopTest, TimerCancelledByAnEarlierTimerOfTheSameBatchNeverFires) {
  bool second_ran = false;
  EventLoop::Handle second = 0;
  // Both are due by the time the loop first wakes; the first cancels the second.
  loop_->RunAfter(absl::ZeroDuration(), [&] { loop_->CancelTimer(second); });
  second = loop_->RunAfter(absl::ZeroDuration(), [&] { second_ran = true; });
  loop_->RunAfter(absl::Milliseconds(20), [&] { loop_->Stop(); });
  RunWithWatchdog();
  EXPECT_FALSE(second_ran);
}

TEST_F(EventLoopTest, CancellingAnUnknownHandleIsHarmless) {
  loop_->CancelTimer(12345);
  loop_->UnwatchFd(12345);
  loop_->Post([&] { loop_->Stop(); });
  RunWithWatchdog();
}

TEST_F(EventLoopTest, TimerCanScheduleAnotherTimer) {
  int fired = 0;
  loop_->RunAfter(absl::Milliseconds(1), [&] {
    ++fired;
    loop_->RunAfter(absl::Milliseconds(1), [&] {
      ++fired;
      loop_->Stop();
    });
  });
  RunWithWatchdog();
  EXPECT_EQ(fired, 2);
}

TEST_F(EventLoopTest, WatchFdReportsAReadablePipe) {
  int p[2];
  MakePipe(p);
  std::string got;
  uint32_t got_events = 0;
  absl::StatusOr<EventLoop::Handle> h = loop_->WatchFd(p[0], EPOLLIN, [&](uint32_t events) {
    got_events = events;
    char buf[16];
    ssize_t n = read(p[0], buf, sizeof buf);
    if (n > 0) got.append(buf, static_cast<size_t>(n));
    loop_->Stop();
  });
  ASSERT_TRUE(h.ok()) << h.status();
  EXPECT_NE(*h, 0u);
  ASSERT_EQ(write(p[1], "hi", 2), 2);
  RunWithWatchdog();
  EXPECT_EQ(got, "hi");
  EXPECT_TRUE(got_events & EPOLLIN);
}

TEST_F(EventLoopTest, WatchFdReportsHangupWhenTheWriterCloses) {
  int p[2];
  MakePipe(p);
  uint32_t got_events = 0;
  ASSERT_TRUE(loop_->WatchFd(p[0], EPOLLIN, [&](uint32_t events) {
    got_events = events;
    loop_->Stop();
  }).ok());
  close(p[1]);
  fds_.pop_back();
  RunWithWatchdog();
  EXPECT_TRUE(got_events & EPOLLHUP);
}

TEST_F(EventLoopTest, WatchFdOfAnInvalidFdIsAnError) {
  absl::StatusOr<EventLoop::Handle> h = loop_->WatchFd(-1, EPOLLIN, [](uint32_t) {});
  EXPECT_FALSE(h.ok());
}

TEST_F(EventLoopTest, UnwatchFdInsideItsOwnCallbackStopsFurtherCalls) {
  int p[2];
  MakePipe(p);
  int calls = 0;
  EventLoop::Handle h = 0;
  // Level-triggered and never drained: without the Unwatch this would be called every turn.
  h = loop_->WatchFd(p[0], EPOLLIN, [&](uint32_t) {
        ++calls;
        loop_->UnwatchFd(h);
      }).value();
  ASSERT_EQ(write(p[1], "x", 1), 1);
  loop_->RunAfter(absl::Milliseconds(20), [&] { loop_->Stop(); });
  RunWithWatchdog();
  EXPECT_EQ(calls, 1);
}

TEST_F(EventLoopTest, UnwatchFdOfAnotherFdInTheSameBatchSkipsItsEvent) {
  int a[2], b[2];
  MakePipe(a);
  MakePipe(b);
  int calls = 0;
  EventLoop::Handle ha = 0, hb = 0;
  // Whichever callback runs first removes the other: only one is ever called.
  ha = loop_->WatchFd(a[0], EPOLLIN, [&](uint32_t) {
         ++calls;
         loop_->UnwatchFd(ha);
         loop_->UnwatchFd(hb);
       }).value();
  hb = loop_->WatchFd(b[0], EPOLLIN, [&](uint32_t) {
         ++calls;
         loop_->UnwatchFd(ha);
         loop_->UnwatchFd(hb);
       }).value();
  ASSERT_EQ(write(a[1], "x", 1), 1);
  ASSERT_EQ(write(b[1], "x", 1), 1);
  loop_->RunAfter(absl::Milliseconds(20), [&] { loop_->Stop(); });
  RunWithWatchdog();
  EXPECT_EQ(calls, 1);
}

TEST_F(EventLoopTest, FdCanBeWatchedAgainAfterUnwatch) {
  int p[2];
  MakePipe(p);
  EventLoop::Handle first = loop_->WatchFd(p[0], EPOLLIN, [](uint32_t) {}).value();
  loop_->UnwatchFd(first);
  bool second_called = false;
  absl::StatusOr<EventLoop::Handle> second = loop_->WatchFd(p[0], EPOLLIN, [&](uint32_t) {
    second_called = true;
    loop_->Stop();
  });
  ASSERT_TRUE(second.ok()) << second.status();
  EXPECT_NE(*second, first);
  ASSERT_EQ(write(p[1], "x", 1), 1);
  RunWithWatchdog();
  EXPECT_TRUE(second_called);
}

TEST_F(EventLoopTest, StopFromAnotherThreadEndsRun) {
  std::thread stopper;
  loop_->RunAfter(absl::ZeroDuration(), [&] { stopper = std::thread([&] { loop_->Stop(); }); });
  RunWithWatchdog();
  stopper.join();
}

TEST_F(EventLoopTest, StopEndsRunButStillRunsTasksPostedBeforeIt) {
  bool later_timer_ran = false;
  bool posted_ran = false;
  loop_->RunAfter(absl::Milliseconds(1), [&] {
    loop_->Post([&] { posted_ran = true; });
    loop_->Stop();
  });
  loop_->RunAfter(absl::Milliseconds(50), [&] { later_timer_ran = true; });
  RunWithWatchdog();
  EXPECT_TRUE(posted_ran);
  EXPECT_FALSE(later_timer_ran);
}

TEST_F(EventLoopTest, StopBeforeRunReturnsAtOnceAfterRunningPostedTasks) {
  bool posted_ran = false;
  loop_->Post([&] { posted_ran = true; });
  loop_->Stop();
  loop_->Run();
  EXPECT_TRUE(posted_ran);
}

TEST_F(EventLoopTest, ExposesItsClock) {
  FakeClock clock;
  absl::StatusOr<std::unique_ptr<EventLoop>> loop = EventLoop::Create(clock);
  ASSERT_TRUE(loop.ok());
  EXPECT_EQ(&(*loop)->clock(), &clock);
}

}  // namespace
}  // namespace herd::agent
