// ArtifactStore on a real directory: what it keeps (a module archive, whole, under its
// digest, once), what it refuses and says why (too large, damaged, truncated, not a module,
// too many at once), and that a refusal or an abandoned upload leaves nothing behind.
#include "controlplane/core/artifact_store.h"

#include <stdlib.h>

#include <filesystem>
#include <fstream>
#include <iterator>

#include "absl/strings/str_cat.h"
#include "common/clock.h"
#include "common/sha256.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace herd::controlplane {
namespace {

namespace fs = std::filesystem;
using ::testing::HasSubstr;

class ArtifactStoreTest : public ::testing::Test {
 protected:
  void SetUp() override {
    std::string tmpl = ::testing::TempDir() + "/herd-artifacts-XXXXXX";
    ASSERT_NE(mkdtemp(tmpl.data()), nullptr);
    dir_ = tmpl;
    store_ = Open();
  }
  void TearDown() override {
    store_.reset();
    fs::remove_all(dir_);
  }
  std::unique_ptr<ArtifactStore> Open(uint64_t max_bytes = 1 << 20) {
    ArtifactStoreOptions o;
    o.dir = dir_ + "/artifacts";
    o.max_bytes = max_bytes;
    o.max_uploads = 2;
    auto s = ArtifactStore::Open(o, clock_);
    EXPECT_TRUE(s.ok()) << s.status();
    return s.ok() ? std::move(*s) : nullptr;
  }
  // A module archive made by tar from a package.json.
  std::string Module(const std::string& manifest, const std::string& name = "m.tgz") {
    const std::string src = dir_ + "/src-" + name;
    fs::create_directories(src + "/package");
    std::ofstream(src + "/package/package.json") << manifest;
    std::ofstream(src + "/package/index.js") << "console.log(1)\n";
    const std::string cmd =
        absl::StrCat("tar -czf '", dir_, "/", name, "' -C '", src, "' package");
    EXPECT_EQ(system(cmd.c_str()), 0);
    std::ifstream in(dir_ + "/" + name, std::ios::binary);
    return std::string(std::istreambuf_iterator<char>(in), {});
  }
  absl::StatusOr<herd::v1::Artifact> Put(const std::string& bytes, const std::string& sha = "",
                                         int64_t announced = -1) {
    herd::v1::ArtifactHeader h;
    h.set_filename("m.tgz");
    h.set_size(announced < 0 ? bytes.size() : static_cast<uint64_t>(announced));
    h.set_sha256(sha);
    auto up = store_->Begin(h);
    if (!up.ok()) return up.status();
    // In two pieces, as chunks arrive.
    if (auto s = (*up)->Write(absl::string_view(bytes).substr(0, bytes.size() / 2)); !s.ok()) {
      return s;
    }
    if (auto s = (*up)->Write(absl::string_view(bytes).substr(bytes.size() / 2)); !s.ok()) {
      return s;
    }
    return (*up)->Finish("ops");
  }
  size_t Files() {
    size_t n = 0;
    for ([[maybe_unused]] const auto& e : fs::directory_iterator(dir_ + "/artifacts")) ++n;
    return n;
  }

  SystemClock clock_;
  std::string dir_;
  std::unique_ptr<ArtifactStore> store_;
};

TEST_F(ArtifactStoreTest, AModuleArchiveIsKeptOnceUnderItsDigest) {
  const std::string bytes = Module(R"({"name":"@acme/probe","version":"1.2.0"})");
  Sha256 h;
  h.Update(bytes);
  const std::string digest = h.HexDigest();
  auto a = Put(bytes, digest);
  ASSERT_TRUE(a.ok()) << a.status();
  EXPECT_EQ(a->sha256(), digest);
  EXPECT_EQ(a->source(), "sha256:" + digest);
  EXPECT_EQ(a->name(), "probe") << "as agentd names a scoped package";
  EXPECT_EQ(a->version(), "1.2.0");
  EXPECT_EQ(a->size(), bytes.size());
  EXPECT_EQ(a->uploaded_by(), "ops");
  EXPECT_TRUE(a->created());
  EXPECT_EQ(*FileSha256(store_->PathOf(digest)), digest);
  // Again: the same artifact, nothing new.
  auto again = Put(bytes);
  ASSERT_TRUE(again.ok());
  EXPECT_FALSE(again->created());
  EXPECT_EQ(Files(), 2u) << "the archive and its description";
  ASSERT_EQ(store_->List("").size(), 1u);
  EXPECT_EQ(store_->List("probe").size(), 1u);
  EXPECT_TRUE(store_->List("other").empty());
  // Another control plane on the same directory (a replica, a restart) serves it.
  auto other = Open();
  ASSERT_TRUE(other->Get(digest).ok());
  EXPECT_EQ(other->Get(std::string(64, 'b')).status().code(), absl::StatusCode::kNotFound);
  EXPECT_THAT(std::string(other->Get(std::string(64, 'b')).status().message()),
              HasSubstr("--artifacts-dir"));
  EXPECT_EQ(store_->counts().uploaded, 1u);
}

TEST_F(ArtifactStoreTest, WhatIsNotAWholeModuleArchiveIsRefusedAndLeavesNothing) {
  const std::string good = Module(R"({"name":"m","version":"1.0.0"})");
  // Past the cap, announced.
  store_ = Open(/*max_bytes=*/100);
  auto big = Put(good);
  EXPECT_EQ(big.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(std::string(big.status().message()), HasSubstr("--artifact-max-bytes"));
  store_ = Open();
  // More than announced, fewer than announced.
  EXPECT_THAT(std::string(Put(good, "", 10).status().message()), HasSubstr("more bytes"));
  EXPECT_THAT(std::string(Put(good, "", static_cast<int64_t>(good.size()) + 5).status().message()),
              HasSubstr("ended after"));
  // Damaged on the way: the digest announced differs.
  EXPECT_THAT(std::string(Put(good, std::string(64, 'c')).status().message()),
              HasSubstr("damaged"));
  // Not a module: no tar, no package.json, no exact version.
  EXPECT_THAT(std::string(Put(std::string(5000, 'x')).status().message()),
              HasSubstr("not a module archive"));
  EXPECT_THAT(std::string(Put(Module(R"({"name":"m"})", "nov.tgz")).status().message()),
              HasSubstr("exact \"version\""));
  EXPECT_THAT(std::string(Put(Module("[]", "arr.tgz")).status().message()),
              HasSubstr("not a JSON object"));
  EXPECT_THAT(std::string(Put(Module(R"({"name":"a b","version":"1.0.0"})", "sp.tgz"))
                              .status().message()),
              HasSubstr("not a module name"));
  EXPECT_EQ(Files(), 0u) << "nothing kept, no upload left";
  EXPECT_GE(store_->counts().uploads_refused, 7u);
}

TEST_F(ArtifactStoreTest, UploadsAtOnceAreBoundedAndAnAbandonedOneLeavesNothing) {
  herd::v1::ArtifactHeader h;
  h.set_size(10);
  auto a = store_->Begin(h);
  auto b = store_->Begin(h);
  ASSERT_TRUE(a.ok() && b.ok());
  ASSERT_TRUE((*a)->Write("12345").ok());
  auto c = store_->Begin(h);
  EXPECT_EQ(c.status().code(), absl::StatusCode::kResourceExhausted);
  EXPECT_EQ(Files(), 2u);
  a->reset();  // the client went away
  EXPECT_EQ(Files(), 1u);
  EXPECT_TRUE(store_->Begin(h).ok()) << "its slot is free again";
  h.set_size(0);
  EXPECT_EQ(store_->Begin(h).status().code(), absl::StatusCode::kInvalidArgument);
  // A restart removes what a crash left (an upload's file with no process behind it).
  b->reset();
  c = absl::StatusOr<std::unique_ptr<ArtifactStore::Upload>>();
  std::ofstream(dir_ + "/artifacts/.upload-999-1") << "half";
  store_ = Open();
  EXPECT_EQ(Files(), 0u);
}

TEST_F(ArtifactStoreTest, FetchSlotsAreBoundedAndServedBytesCounted) {
  EXPECT_TRUE(store_->AcquireFetch(2));
  EXPECT_TRUE(store_->AcquireFetch(2));
  EXPECT_FALSE(store_->AcquireFetch(2));
  store_->ReleaseFetch(1000);
  EXPECT_TRUE(store_->AcquireFetch(2));
  const auto c = store_->counts();
  EXPECT_EQ(c.fetches, 3u);
  EXPECT_EQ(c.fetches_refused, 1u);
  EXPECT_EQ(c.fetching, 2u);
  EXPECT_EQ(c.bytes_served, 1000u);
}

}  // namespace
}  // namespace herd::controlplane
