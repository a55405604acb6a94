#include "common/sha256.h"

#include <stdlib.h>

#include <filesystem>
#include <fstream>

#include "gtest/gtest.h"

namespace herd {
namespace {

// FIPS 180-2's test vectors.
constexpr char kAbc[] = "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad";
constexpr char kEmpty[] = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";

TEST(Sha256Test, PiecesHashAsTheWhole) {
  Sha256 h;
  h.Update("a");
  h.Update("");
  h.Update("bc");
  EXPECT_EQ(h.HexDigest(), kAbc);
  EXPECT_EQ(h.HexDigest(), kEmpty);  // started again
  EXPECT_TRUE(IsSha256Hex(kAbc));
  EXPECT_FALSE(IsSha256Hex(std::string(kAbc).substr(1)));
  EXPECT_FALSE(IsSha256Hex(std::string(63, 'a') + "A"));
  EXPECT_FALSE(IsSha256Hex(std::string(63, 'a') + "g"));
}

TEST(Sha256Test, AFileIsHashedOrNamedWhenItCannotBe) {
  std::string tmpl = testing::TempDir() + "/herd-sha-XXXXXX";
  ASSERT_NE(mkdtemp(tmpl.data()), nullptr);
  const std::string path = tmpl + "/f";
  std::ofstream(path) << "abc";
  EXPECT_EQ(*FileSha256(path), kAbc);
  auto missing = FileSha256(tmpl + "/missing");
  EXPECT_EQ(missing.status().code(), absl::StatusCode::kNotFound);
  EXPECT_NE(std::string(missing.status().message()).find("missing"), std::string::npos);
  std::filesystem::remove_all(tmpl);
}

}  // namespace
}  // namespace herd
