#include "common/atomic_file.h"

#include <stdlib.h>
#include <sys/stat.h>

#include <algorithm>
#include <filesystem>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/fakes/temp_dir.h"

namespace herd {
namespace {

using ::testing::ElementsAre;
using ::testing::HasSubstr;

class AtomicFileTest : public ::testing::Test {
 protected:

  // Names of the entries in the temp dir, sorted.
  std::vector<std::string> Entries() const {
    std::vector<std::string> names;
    for (const auto& e : std::filesystem::directory_iterator(dir_)) {
      names.push_back(e.path().filename().string());
    }
    std::sort(names.begin(), names.end());
    return names;
  }

  static unsigned Mode(const std::string& path) {
    struct stat st{};
    EXPECT_EQ(stat(path.c_str(), &st), 0) << path;
    return st.st_mode & 0777;
  }

  ::herd::testing::ScopedTempDir tmp_{"herd-atomic"};
  const std::string dir_ = tmp_.path();
};

TEST_F(AtomicFileTest, WriteThenReadReturnsTheContent) {
  const std::string path = dir_ + "/state.json";
  ASSERT_TRUE(WriteFileAtomically(path, "{\"units\": []}\n").ok());
  absl::StatusOr<std::string> content = ReadFileToString(path);
  ASSERT_TRUE(content.ok()) << content.status();
  EXPECT_EQ(*content, "{\"units\": []}\n");
}

TEST_F(AtomicFileTest, RoundTripsBinaryAndLargeContent) {
  const std::string path = dir_ + "/blob";
  std::string blob(200'000, '\0');
  for (size_t i = 0; i < blob.size(); ++i) blob[i] = static_cast<char>(i * 7);
  ASSERT_TRUE(WriteFileAtomically(path, blob).ok());
  EXPECT_EQ(ReadFileToString(path).value(), blob);
}

TEST_F(AtomicFileTest, EmptyContentMakesAnEmptyFile) {
  const std::string path = dir_ + "/empty";
  ASSERT_TRUE(WriteFileAtomically(path, "").ok());
  EXPECT_EQ(ReadFileToString(path).value(), "");
}

TEST_F(AtomicFileTest, OverwriteReplacesTheWholeContent) {
  const std::string path = dir_ + "/state.json";
  ASSERT_TRUE(WriteFileAtomically(path, "a much longer first version").ok());
  ASSERT_TRUE(WriteFileAtomically(path, "short").ok());
  EXPECT_EQ(ReadFileToString(path).value(), "short");
}

TEST_F(AtomicFileTest, NewFileGetsTheRequestedMode) {
  const std::string path = dir_ + "/secret";
  ASSERT_TRUE(WriteFileAtomically(path, "x", 0600).ok());
  EXPECT_EQ(Mode(path), 0600u);
}

TEST_F(AtomicFileTest, DefaultModeIsWorldReadable) {
  const mode_t old = umask(022);
  const std::string path = dir_ + "/public";
  absl::Status s = WriteFileAtomically(path, "x");
  umask(old);
  ASSERT_TRUE(s.ok()) << s;
  EXPECT_EQ(Mode(path), 0644u);
}

TEST_F(AtomicFileTest, LeavesNoTemporaryFileBehind) {
  ASSERT_TRUE(WriteFileAtomically(dir_ + "/state.json", "one").ok());
  ASSERT_TRUE(WriteFileAtomically(dir_ + "/state.json", "two").ok());
  EXPECT_THAT(Entries(), ElementsAre("state.json"));
}

TEST_F(AtomicFileTest, MissingDirectoryIsNotFoundNamingThePath) {
  const std::string path = dir_ + "/no-such-dir/state.json";
  absl::Status s = WriteFileAtomically(path, "x");
  ASSERT_FALSE(s.ok());
  EXPECT_EQ(s.code(), absl::StatusCode::kNotFound);
  EXPECT_THAT(s.message(), HasSubstr(path));
  EXPECT_THAT(s.message(), HasSubstr("No such file or directory"));
}

TEST_F(AtomicFileTest, FailedRenameKeepsTheTargetAndRemovesTheTemporaryFile) {
  // A non-empty directory cannot be renamed over, so the write fails after the temp file
  // was written.
  const std::string path = dir_ + "/occupied";
  ASSERT_TRUE(std::filesystem::create_directory(path));
  ASSERT_TRUE(WriteFileAtomically(path + "/inside", "keep").ok());
  absl::Status s = WriteFileAtomically(path, "x");
  ASSERT_FALSE(s.ok());
  EXPECT_THAT(s.message(), HasSubstr(path));
  EXPECT_THAT(Entries(), ElementsAre("occupied"));
  EXPECT_EQ(ReadFileToString(path + "/inside").value(), "keep");
}

TEST_F(AtomicFileTest, ReadingAMissingFileIsNotFoundNamingThePath) {
  const std::string path = dir_ + "/absent";
  absl::StatusOr<std::string> content = ReadFileToString(path);
  ASSERT_FALSE(content.ok());
  EXPECT_EQ(content.status().code(), absl::StatusCode::kNotFound);
  EXPECT_THAT(content.status().message(), HasSubstr(path));
}

TEST_F(AtomicFileTest, ReadingADirectoryIsAnError) {
  absl::StatusOr<std::string> content = ReadFileToString(dir_);
  ASSERT_FALSE(content.ok());
  EXPECT_THAT(content.status().message(), HasSubstr(dir_));
}

}  // namespace
}  // namespace herd
