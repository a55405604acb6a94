#include "common/archive_scan.h"

#include <stdlib.h>

#include <filesystem>
#include <fstream>
#include <iterator>
#include <string>

#include "absl/strings/str_cat.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace herd {
namespace {

using ::testing::HasSubstr;
namespace fs = std::filesystem;

class ArchiveScanTest : public ::testing::Test {
 protected:
  void SetUp() override {
    std::string tmpl = testing::TempDir() + "/herd-archive-XXXXXX";
    ASSERT_NE(mkdtemp(tmpl.data()), nullptr);
    dir_ = tmpl;
    fs::create_directories(dir_ + "/package");
  }
  void TearDown() override { fs::remove_all(dir_); }

  void Write(const std::string& rel, const std::string& content) {
    std::ofstream(dir_ + "/package/" + rel) << content;
  }
  // Runs tar in the test directory; the archive's members are package/...
  std::string Tar(const std::string& name, const std::string& flags = "-czf") {
    const std::string out = dir_ + "/" + name;
    const std::string cmd =
        absl::StrCat("cd '", dir_, "' && tar ", flags, " '", out, "' package 2>&1");
    EXPECT_EQ(system(cmd.c_str()), 0) << cmd;
    return out;
  }

  std::string dir_;
};

TEST_F(ArchiveScanTest, CountsWhatAnArchiveUnpacksTo) {
  Write("package.json", std::string(100, 'a'));
  Write("index.js", std::string(5000, 'b'));
  auto totals = ScanArchive(Tar("m.tgz"), ArchiveLimits{});
  ASSERT_TRUE(totals.ok()) << totals.status();
  EXPECT_EQ(totals->unpacked_bytes, 5100u);
  EXPECT_EQ(totals->files, 3u);  // package/, package.json, index.js
}

TEST_F(ArchiveScanTest, APlainTarIsReadAsIs) {
  Write("package.json", "{}");
  auto totals = ScanArchive(Tar("m.tar", "-cf"), ArchiveLimits{});
  ASSERT_TRUE(totals.ok()) << totals.status();
  EXPECT_EQ(totals->unpacked_bytes, 2u);
}

TEST_F(ArchiveScanTest, ABombIsRefusedWithTheNumbers) {
  Write("package.json", "{}");
  Write("zeros", std::string(3 << 20, '\0'));
  const std::string archive = Tar("bomb.tgz");
  ASSERT_LT(fs::file_size(archive), 64u * 1024);  // small on disk, 3 MiB unpacked
  ArchiveLimits limits;
  limits.max_unpacked_bytes = 1 << 20;
  auto totals = ScanArchive(archive, limits);
  ASSERT_FALSE(totals.ok());
  EXPECT_EQ(totals.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(std::string(totals.status().message()), HasSubstr("unpacks to more than 1.0M"));
  EXPECT_THAT(std::string(totals.status().message()), HasSubstr("--module-max-unpacked"));
}

TEST_F(ArchiveScanTest, TooManyFilesAreRefused) {
  for (int i = 0; i < 30; ++i) Write(absl::StrCat("f", i), "x");
  ArchiveLimits limits;
  limits.max_files = 10;
  auto totals = ScanArchive(Tar("many.tgz"), limits);
  ASSERT_FALSE(totals.ok());
  EXPECT_THAT(std::string(totals.status().message()), HasSubstr("more than 10 files"));
  EXPECT_THAT(std::string(totals.status().message()), HasSubstr("--module-max-files"));
}

TEST_F(ArchiveScanTest, SparseFilesAreRefusedInBothFormats) {
  Write("package.json", "{}");
  Write("hole", "");
  ASSERT_EQ(truncate((dir_ + "/package/hole").c_str(), 64 << 20), 0);
  for (const char* format : {"gnu", "pax"}) {
    auto totals =
        ScanArchive(Tar(absl::StrCat("sparse-", format, ".tgz"),
                        absl::StrCat("--sparse --format=", format, " -czf")),
                    ArchiveLimits{});
    ASSERT_FALSE(totals.ok()) << format;
    EXPECT_THAT(std::string(totals.status().message()), HasSubstr("sparse")) << format;
  }
}

TEST_F(ArchiveScanTest, PaxHeadersAreReadAndNotCountedAsMembers) {
  // A long name makes GNU tar write a pax header (its own member, with data) first.
  const std::string long_name(150, 'n');
  Write(long_name, std::string(777, 'c'));
  auto totals = ScanArchive(Tar("pax.tgz", "--format=pax -czf"), ArchiveLimits{});
  ASSERT_TRUE(totals.ok()) << totals.status();
  EXPECT_EQ(totals->unpacked_bytes, 777u);
  EXPECT_EQ(totals->files, 2u);  // package/ and the long-named file
}

TEST_F(ArchiveScanTest, TheManifestIsKeptWhenAsked) {
  Write("package.json", R"({"name":"m","version":"1.2.3"})");
  fs::create_directories(dir_ + "/package/lib");
  Write("lib/package.json", R"({"name":"deeper"})");
  ArchiveLimits limits;
  EXPECT_EQ(ScanArchive(Tar("m.tgz"), limits)->manifest, "");  // not asked
  limits.read_manifest = true;
  auto totals = ScanArchive(Tar("m2.tgz"), limits);
  ASSERT_TRUE(totals.ok()) << totals.status();
  EXPECT_EQ(totals->manifest, R"({"name":"m","version":"1.2.3"})");
  // Under a long top directory (a pax path record), and in a plain tar archive.
  fs::rename(dir_ + "/package", dir_ + "/" + std::string(120, 'd'));
  const std::string cmd = absl::StrCat("cd '", dir_, "' && tar --format=pax -cf long.tar ",
                                       std::string(120, 'd'), " 2>&1");
  ASSERT_EQ(system(cmd.c_str()), 0);
  totals = ScanArchive(dir_ + "/long.tar", limits);
  ASSERT_TRUE(totals.ok()) << totals.status();
  EXPECT_EQ(totals->manifest, R"({"name":"m","version":"1.2.3"})");
}

TEST_F(ArchiveScanTest, AManifestPastItsLimitIsRefused) {
  Write("package.json", std::string(kMaxManifestBytes + 1, ' '));
  ArchiveLimits limits;
  limits.read_manifest = true;
  auto totals = ScanArchive(Tar("big.tgz"), limits);
  ASSERT_FALSE(totals.ok());
  EXPECT_THAT(std::string(totals.status().message()), HasSubstr("more than a manifest may be"));
  limits.read_manifest = false;
  EXPECT_TRUE(ScanArchive(Tar("big2.tgz"), limits).ok());
}

TEST_F(ArchiveScanTest, WhatIsNotATarArchiveIsRefused) {
  const std::string path = dir_ + "/junk.tgz";
  std::ofstream(path) << std::string(2000, 'j');
  auto totals = ScanArchive(path, ArchiveLimits{});
  ASSERT_FALSE(totals.ok());
  EXPECT_EQ(totals.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(std::string(totals.status().message()), HasSubstr("npm pack"));
  EXPECT_EQ(ScanArchive(dir_ + "/missing.tgz", ArchiveLimits{}).status().code(),
            absl::StatusCode::kNotFound);
}

// What tar would read differently from the scan is refused: a damaged header (tar skips it
// and reads on), a global header that sets sizes, an archive compressed otherwise than gzip.
TEST_F(ArchiveScanTest, HeadersTarWouldReadDifferentlyAreRefused) {
  Write("package.json", "{}");
  const std::string plain = Tar("plain.tar", "-cf");
  auto totals = ScanArchive(plain, ArchiveLimits{});
  ASSERT_TRUE(totals.ok()) << totals.status();
  EXPECT_FALSE(totals->gzip);
  EXPECT_TRUE(ScanArchive(Tar("m.tgz"), ArchiveLimits{})->gzip);

  // One byte of the first header changed: its checksum no longer matches.
  std::string bytes;
  {
    std::ifstream in(plain, std::ios::binary);
    bytes.assign(std::istreambuf_iterator<char>(in), {});
  }
  std::string damaged = bytes;
  damaged[10] ^= 1;
  std::ofstream(dir_ + "/damaged.tar", std::ios::binary) << damaged;
  auto d = ScanArchive(dir_ + "/damaged.tar", ArchiveLimits{});
  ASSERT_FALSE(d.ok());
  EXPECT_THAT(std::string(d.status().message()), HasSubstr("checksum"));

  // A global pax header that sets a size for what follows.
  Write("after", "x");
  // (GNU tar then lists every member as 999999 bytes long.)
  auto g = ScanArchive(Tar("global.tar", "--format=pax --pax-option=size=999999 -cf"),
                       ArchiveLimits{});
  ASSERT_FALSE(g.ok());
  EXPECT_THAT(std::string(g.status().message()), HasSubstr("global header"));

  // bzip2's magic (tar would recognise it by itself; agentd installs gzip or plain only).
  std::ofstream(dir_ + "/m.tar.bz2", std::ios::binary) << "BZh91AY&SY" << std::string(600, 'z');
  auto bz = ScanArchive(dir_ + "/m.tar.bz2", ArchiveLimits{});
  ASSERT_FALSE(bz.ok());
  EXPECT_THAT(std::string(bz.status().message()), HasSubstr("only gzip"));
}

}  // namespace
}  // namespace herd
