#include "common/crash_handler.h"

#include <signal.h>
#include <stdlib.h>
#include <unistd.h>

#include <filesystem>
#include <stdexcept>
#include <string>
#include <thread>

#include "common/atomic_file.h"
#include "common/logging.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/fakes/temp_dir.h"

namespace herd {
namespace {

using ::testing::HasSubstr;

class CrashHandlerTest : public ::testing::Test {
 protected:
  void SetUp() override {
    // "fast": the child is forked from this process, so it writes where SetUp pointed it
    // ("threadsafe" would run SetUp again in a new process, with another directory).
    GTEST_FLAG_SET(death_test_style, "fast");
    log_ = dir_ + "/daemon.log";
  }

  // What a daemon does: a log file, nothing on stderr (it is /dev/null there).
  void StartDaemonLogging() {
    LogOptions o;
    o.file = log_;
    o.to_stderr = false;
    if (!InitLogging(o).ok()) _exit(3);
    InstallCrashHandlers("crash_test");
  }

  ::herd::testing::ScopedTempDir tmp_{"herd-crash"};
  const std::string dir_ = tmp_.path();
  std::string log_;
};

TEST_F(CrashHandlerTest, UncaughtExceptionInAThreadLeavesItsReasonInTheLogFile) {
  EXPECT_DEATH(
      {
        StartDaemonLogging();
        std::thread([] { throw std::out_of_range("[json.exception.out_of_range.406] number "
                                                 "overflow parsing '1e99999'"); })
            .join();
      },
      "");
  auto text = ReadFileToString(log_);
  ASSERT_TRUE(text.ok()) << text.status();
  EXPECT_THAT(*text, HasSubstr("event=uncaught_exception binary=crash_test"));
  EXPECT_THAT(*text, HasSubstr("std::out_of_range"));
  EXPECT_THAT(*text, HasSubstr("number overflow parsing '1e99999'"));
}

TEST_F(CrashHandlerTest, FatalSignalLeavesItsReasonInTheLogFile) {
  EXPECT_DEATH(
      {
        StartDaemonLogging();
        raise(SIGBUS);
      },
      "");
  auto text = ReadFileToString(log_);
  ASSERT_TRUE(text.ok()) << text.status();
  EXPECT_THAT(*text, HasSubstr("event=fatal_signal binary=crash_test signal=SIGBUS"));
}

TEST_F(CrashHandlerTest, TheProcessStillDiesOfTheSignal) {
  EXPECT_EXIT(
      {
        StartDaemonLogging();
        raise(SIGILL);
      },
      ::testing::KilledBySignal(SIGILL), "");
}

TEST_F(CrashHandlerTest, ALogFileThatIsALinkIsRefused) {
  const std::string victim = dir_ + "/victim";
  ASSERT_TRUE(WriteFileAtomically(victim, "untouched\n", 0600).ok());
  ASSERT_EQ(symlink(victim.c_str(), log_.c_str()), 0);
  LogOptions o;
  o.file = log_;
  o.to_stderr = false;
  absl::Status s = InitLogging(o);
  EXPECT_FALSE(s.ok());
  EXPECT_THAT(std::string(s.message()), HasSubstr("symbolic link"));
  EXPECT_EQ(*ReadFileToString(victim), "untouched\n");
  ASSERT_TRUE(InitLogging(LogOptions{}).ok());
}

}  // namespace
}  // namespace herd
