#include "agent/supervisor/state_file.h"

#include <stdlib.h>
#include <sys/stat.h>

#include <filesystem>
#include <fstream>

#include "absl/time/clock.h"
#include "gtest/gtest.h"

namespace herd::agent {
namespace {

herd::v1::AppSpec FullSpec() {
  herd::v1::AppSpec s;
  s.set_name("api");
  s.set_script("/srv/api/server.js");
  s.add_args("--port");
  s.add_args("8080");
  s.set_interpreter("/usr/bin/node");
  s.add_interpreter_args("--max-old-space-size=512");
  s.set_cwd("/srv/api");
  (*s.mutable_env())["NODE_ENV"] = "production";
  s.set_autorestart(false);
  s.set_max_restarts(7);
  s.set_min_uptime_ms(2500);
  s.set_restart_delay_ms(100);
  s.set_exp_backoff_restart_delay_ms(200);
  s.set_kill_timeout_ms(3000);
  s.add_stop_exit_codes(0);
  s.add_stop_exit_codes(3);
  s.set_max_memory_restart_bytes(200 << 20);
  s.set_cron_restart("0 3 * * *");
  s.set_merge_logs(true);
  s.set_log_date_format("YYYY-MM-DD");
  s.set_out_file("/var/log/api.out");
  s.set_error_file("/var/log/api.err");
  s.add_pid_files("/run/api.pid");
  s.set_pid_files_join(true);
  s.set_log_max_size_bytes(1 << 20);
  s.set_log_retain(9);
  return s;
}

TEST(StateFile, SerializeParseRoundTripsEveryField) {
  PersistedUnit u{FullSpec(), true, 4242, 987654};
  auto parsed = ParseState(SerializeState({u}), "state.json");
  ASSERT_TRUE(parsed.ok()) << parsed.status();
  ASSERT_EQ(parsed->size(), 1u);
  const PersistedUnit& p = (*parsed)[0];
  // Every AppSpec field set above must survive (a new proto field not added to the state
  // file mapping makes this fail).
  EXPECT_EQ(p.spec.SerializeAsString(), u.spec.SerializeAsString()) << p.spec.DebugString();
  EXPECT_TRUE(p.desired_running);
  EXPECT_EQ(p.pid, 4242);
  EXPECT_EQ(p.start_ticks, 987654u);
}

TEST(StateFile, CorruptDocumentIsAnErrorNamingTheFile) {
  auto parsed = ParseState("{not json", "/x/state.json");
  ASSERT_FALSE(parsed.ok());
  EXPECT_EQ(parsed.status().code(), absl::StatusCode::kDataLoss);
  EXPECT_NE(parsed.status().message().find("/x/state.json"), std::string::npos);
}

TEST(StateFile, WrongFieldTypeNamesTheUnit) {
  auto parsed = ParseState(R"({"version":1,"units":[{"spec":{"name":"a","script":"/bin/true","args":7}}]})",
                           "state.json");
  ASSERT_FALSE(parsed.ok());
  EXPECT_NE(parsed.status().message().find("units[0]"), std::string::npos);
}

class StateFileDiskTest : public ::testing::Test {
 protected:
  void SetUp() override {
    char tmpl[] = "/tmp/herd-state-XXXXXX";
    dir_ = mkdtemp(tmpl);
  }
  void TearDown() override { std::filesystem::remove_all(dir_); }
  std::string dir_;
};

TEST_F(StateFileDiskTest, MissingFileLoadsAsNoUnits) {
  StateFile f(dir_ + "/state.json");
  auto units = f.Load();
  ASSERT_TRUE(units.ok());
  EXPECT_TRUE(units->empty());
}

TEST_F(StateFileDiskTest, SaveThenLoadGivesTheLatestSnapshot) {
  StateFile f(dir_ + "/state.json");
  PersistedUnit a{FullSpec(), true, 0, 0};
  f.Save(SerializeState({a}));
  a.desired_running = false;
  f.Save(SerializeState({a}));
  ASSERT_TRUE(f.Flush().ok());
  auto units = f.Load();
  ASSERT_TRUE(units.ok()) << units.status();
  ASSERT_EQ(units->size(), 1u);
  EXPECT_FALSE((*units)[0].desired_running);
  struct stat st{};
  ASSERT_EQ(stat((dir_ + "/state.json").c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 0777, 0600u);
}

TEST_F(StateFileDiskTest, FailedWriteIsReportedAndKeepsThePreviousFile) {
  StateFile good(dir_ + "/state.json");
  good.Save(SerializeState({PersistedUnit{FullSpec(), true, 0, 0}}));
  ASSERT_TRUE(good.Flush().ok());
  StateFile bad(dir_ + "/no-such-dir/state.json");
  bad.Save("{}");
  EXPECT_FALSE(bad.Flush().ok());
  EXPECT_TRUE(good.Load().ok());
}

// A full disk that frees up again: the snapshot that could not be written is written without
// waiting for another change to the units.
TEST_F(StateFileDiskTest, FailedWriteIsTriedAgainUntilItSucceeds) {
  const std::string sub = dir_ + "/not-yet";
  StateFile f(sub + "/state.json");
  f.Save(SerializeState({PersistedUnit{FullSpec(), true, 0, 0}}));
  EXPECT_FALSE(f.Flush().ok());
  std::filesystem::create_directory(sub);  // the space comes back
  bool written = false;
  for (int i = 0; i < 200 && !written; ++i) {  // tries again after 1 s, then 2 s...
    auto units = f.Load();
    written = units.ok() && units->size() == 1;
    if (!written) absl::SleepFor(absl::Milliseconds(50));
  }
  EXPECT_TRUE(written) << "the failed snapshot was not written again";
}

}  // namespace
}  // namespace herd::agent
