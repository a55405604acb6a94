#include "agent/logs/log_writer.h"

#include <stdlib.h>
#include <sys/stat.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <sstream>

#include "gtest/gtest.h"
#include "tests/fakes/file_util.h"
#include "tests/fakes/temp_dir.h"

namespace herd::agent {
namespace {

class LogWriterTest : public ::testing::Test {
 protected:
  std::string Path(const std::string& name) const { return dir_ + "/" + name; }
  static std::string Read(const std::string& p) { return ::herd::testing::ReadFile(p); }
  ::herd::testing::ScopedTempDir tmp_{"herd-logwriter"};
  const std::string dir_ = tmp_.path();
};

TEST_F(LogWriterTest, WritesQueuedDataInOrder) {
  LogWriter w;
  auto id = w.Open({Path("a.log"), 0, 0});
  EXPECT_TRUE(w.Write(id, "one\n"));
  EXPECT_TRUE(w.Write(id, "two\n"));
  w.Flush();
  EXPECT_EQ(Read(Path("a.log")), "one\ntwo\n");
}

TEST_F(LogWriterTest, AppendsToAnExistingFile) {
  std::ofstream(Path("a.log")) << "before\n";
  LogWriter w;
  auto id = w.Open({Path("a.log"), 0, 0});
  w.Write(id, "after\n");
  w.Flush();
  EXPECT_EQ(Read(Path("a.log")), "before\nafter\n");
}

TEST_F(LogWriterTest, SamePathSharesOneSink) {
  LogWriter w;
  auto a = w.Open({Path("m.log"), 0, 0});
  auto b = w.Open({Path("m.log"), 0, 0});
  EXPECT_EQ(a, b);
  w.Write(a, "out\n");
  w.Write(b, "err\n");
  w.Close(a);  // still referenced by b
  w.Write(b, "more\n");
  w.Flush();
  EXPECT_EQ(Read(Path("m.log")), "out\nerr\nmore\n");
}

TEST_F(LogWriterTest, RotatesWhenMaxSizeWouldBePassed) {
  LogWriter w;
  auto id = w.Open({Path("r.log"), 10, 3});
  w.Write(id, "aaaaaaaa\n");  // 9 bytes
  w.Write(id, "bbbbbbbb\n");  // would make 18 > 10: rotate first
  w.Flush();
  EXPECT_EQ(Read(Path("r.log")), "bbbbbbbb\n");
  EXPECT_EQ(Read(Path("r.log.1")), "aaaaaaaa\n");
}

TEST_F(LogWriterTest, ReopenAllFollowsARenameByAnotherRotator) {
  // What PM2's reloadLogs is for: a rotator renamed the file; the next lines go to a new one.
  LogWriter w;
  auto id = w.Open({Path("a.log"), 0, 0});
  w.Write(id, "old\n");
  w.Flush();
  ASSERT_EQ(rename(Path("a.log").c_str(), Path("a.log.rotated").c_str()), 0);
  w.ReopenAll();
  w.Write(id, "new\n");
  w.Flush();
  EXPECT_EQ(Read(Path("a.log.rotated")), "old\n");
  EXPECT_EQ(Read(Path("a.log")), "new\n");
}

TEST_F(LogWriterTest, AnOutsideTruncationIsNotMistakenForAFullFile) {
  // pm2-logrotate copies a log and truncates it: the writer goes on at the new end, and the
  // size it counted before does not make it rotate a file that is nearly empty.
  LogWriter w;
  auto id = w.Open({Path("a.log"), 100, 2});
  w.Write(id, std::string(79, 'a') + "\n");
  w.Flush();
  ASSERT_EQ(truncate(Path("a.log").c_str(), 0), 0);
  w.Write(id, std::string(39, 'b') + "\n");
  w.Flush();
  EXPECT_EQ(Read(Path("a.log")), std::string(39, 'b') + "\n");
  EXPECT_FALSE(std::filesystem::exists(Path("a.log.1")));
}

TEST_F(LogWriterTest, KeepsOnlyRetainRotatedFiles) {
  LogWriter w;
  auto id = w.Open({Path("r.log"), 4, 2});
  for (char c : std::string("abcde")) w.Write(id, std::string(3, c) + "\n");
  w.Flush();
  EXPECT_EQ(Read(Path("r.log")), "eee\n");
  EXPECT_EQ(Read(Path("r.log.1")), "ddd\n");
  EXPECT_EQ(Read(Path("r.log.2")), "ccc\n");
  EXPECT_FALSE(std::filesystem::exists(Path("r.log.3")));
}

TEST_F(LogWriterTest, RetainZeroTruncatesInsteadOfKeeping) {
  LogWriter w;
  auto id = w.Open({Path("r.log"), 4, 0});
  w.Write(id, "aaa\n");
  w.Write(id, "bbb\n");
  w.Flush();
  EXPECT_EQ(Read(Path("r.log")), "bbb\n");
  EXPECT_FALSE(std::filesystem::exists(Path("r.log.1")));
}

TEST_F(LogWriterTest, DropsAndCountsBeyondTheQueueBound) {
  LogWriter w(/*max_queue_bytes=*/8);
  auto id = w.Open({Path("q.log"), 0, 0});
  // The writer thread may drain between calls, so fill faster than one call can be drained
  // by making a single write larger than the bound.
  EXPECT_FALSE(w.Write(id, std::string(9, 'x')));
  EXPECT_EQ(w.dropped_writes(), 1u);
  EXPECT_EQ(w.dropped_bytes(), 9u);
}

TEST_F(LogWriterTest, UnwritableDirectoryCountsDropsAndKeepsRunning) {
  LogWriter w;
  auto bad = w.Open({Path("missing-dir/x.log"), 0, 0});
  auto good = w.Open({Path("ok.log"), 0, 0});
  w.Write(bad, "lost\n");
  w.Write(good, "kept\n");
  w.Flush();
  EXPECT_EQ(w.dropped_writes(), 1u);
  EXPECT_EQ(Read(Path("ok.log")), "kept\n");
  // Once the directory exists the sink recovers.
  std::filesystem::create_directory(Path("missing-dir"));
  w.Write(bad, "back\n");
  w.Flush();
  EXPECT_EQ(Read(Path("missing-dir/x.log")), "back\n");
}

TEST_F(LogWriterTest, ReadLastLinesReturnsTheTail) {
  std::ofstream(Path("t.log")) << "1\n2\n3\n4\n5\n";
  auto lines = ReadLastLines(Path("t.log"), 2);
  ASSERT_TRUE(lines.ok());
  EXPECT_EQ(*lines, (std::vector<std::string>{"4", "5"}));
}

TEST_F(LogWriterTest, ReadLastLinesWithFewerLinesThanAsked) {
  std::ofstream(Path("t.log")) << "only\nlast-without-newline";
  auto lines = ReadLastLines(Path("t.log"), 10);
  ASSERT_TRUE(lines.ok());
  EXPECT_EQ(*lines, (std::vector<std::string>{"only", "last-without-newline"}));
}

// A unit writes bytes; what comes back travels in protobuf strings, which must be UTF-8.
TEST_F(LogWriterTest, ReadLastLinesReplacesWhatIsNotUtf8) {
  std::ofstream(Path("t.log")) << "ok \xc3\xa9\nbad \xff\xfe end\n";
  auto lines = ReadLastLines(Path("t.log"), 2);
  ASSERT_TRUE(lines.ok());
  ASSERT_EQ(lines->size(), 2u);
  EXPECT_EQ((*lines)[0], "ok \xc3\xa9");  // valid UTF-8 is kept as it is
  EXPECT_EQ((*lines)[1].find('\xff'), std::string::npos) << (*lines)[1];
  EXPECT_NE((*lines)[1].find("\xef\xbf\xbd"), std::string::npos) << (*lines)[1];  // U+FFFD
  EXPECT_NE((*lines)[1].find(" end"), std::string::npos);
}

TEST_F(LogWriterTest, ReadLastLinesAcrossChunkBoundaries) {
  std::ofstream out(Path("big.log"));
  for (int i = 0; i < 20000; ++i) out << "line " << i << "\n";
  out.close();
  auto lines = ReadLastLines(Path("big.log"), 3000);
  ASSERT_TRUE(lines.ok());
  ASSERT_EQ(lines->size(), 3000u);
  EXPECT_EQ(lines->front(), "line 17000");
  EXPECT_EQ(lines->back(), "line 19999");
}

TEST_F(LogWriterTest, ReadLastLinesOfMissingFileIsEmpty) {
  auto lines = ReadLastLines(Path("nope.log"), 5);
  ASSERT_TRUE(lines.ok());
  EXPECT_TRUE(lines->empty());
}

}  // namespace
}  // namespace herd::agent
