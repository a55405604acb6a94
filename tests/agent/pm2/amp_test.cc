// AMP framing (agent/pm2/amp.h), checked against bytes as pm2-axon's amp and amp-message
// write them.
#include "agent/pm2/amp.h"

#include <string>
#include <vector>

#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace herd::agent::pm2 {
namespace {

using ::testing::ElementsAre;
using ::testing::HasSubstr;

TEST(Amp, EncodesAsAmpDoes) {
  // amp.encode([Buffer('s:hi'), Buffer('j:1')]): 0x12, then 4-byte big-endian lengths.
  const std::string bytes = EncodeAmp({"s:hi", "j:1"});
  EXPECT_EQ(bytes, std::string("\x12\x00\x00\x00\x04s:hi\x00\x00\x00\x03j:1", 1 + 8 + 4 + 3));
  EXPECT_EQ(EncodeAmp({}), std::string("\x10", 1));
}

TEST(Amp, DecodesMessagesSplitAnywhereAndBackToBack) {
  const std::string a = EncodeAmp({PackJson({{"type", "call"}}), "s:1:0"});
  const std::string b = EncodeAmp({std::string(70000, 'x')});
  const std::string stream = a + b + a;
  for (size_t step : {1u, 3u, 4096u}) {
    AmpDecoder d(1 << 20);
    std::vector<std::vector<std::string>> got;
    for (size_t i = 0; i < stream.size(); i += step) {
      ASSERT_TRUE(d.Feed(absl::string_view(stream).substr(i, step), &got).ok());
    }
    ASSERT_EQ(got.size(), 3u) << "step " << step;
    EXPECT_THAT(got[0], ElementsAre(R"(j:{"type":"call"})", "s:1:0"));
    EXPECT_EQ(got[1][0].size(), 70000u);
    EXPECT_EQ(got[2], got[0]);
    EXPECT_EQ(d.buffered(), 0u);
  }
}

TEST(Amp, AMessageOverTheBoundIsRefusedBeforeItArrives) {
  AmpDecoder d(1000);
  std::vector<std::vector<std::string>> got;
  // Only the header of a 1 GiB argument: refused at once, nothing buffered for it.
  std::string header("\x11\x40\x00\x00\x00", 5);
  absl::Status s = d.Feed(header, &got);
  EXPECT_EQ(s.code(), absl::StatusCode::kResourceExhausted);
  EXPECT_THAT(std::string(s.message()), HasSubstr("more than 1000 bytes"));
  // The stream is unusable after.
  EXPECT_FALSE(d.Feed(EncodeAmp({"s:x"}), &got).ok());
  EXPECT_TRUE(got.empty());
}

TEST(Amp, ManySmallArgumentsPastTheBoundAreRefusedToo) {
  AmpDecoder d(64);
  std::vector<std::vector<std::string>> got;
  std::vector<std::string> args(15, std::string(10, 'a'));  // 1 + 15 * 14 bytes
  EXPECT_EQ(d.Feed(EncodeAmp(args), &got).code(), absl::StatusCode::kResourceExhausted);
}

TEST(Amp, AnotherProtocolIsRefused) {
  AmpDecoder d(1000);
  std::vector<std::vector<std::string>> got;
  absl::Status s = d.Feed("GET / HTTP/1.1\r\n", &got);
  EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(std::string(s.message()), HasSubstr("version"));
}

TEST(Amp, ArgumentsUnpackAsAmpMessageTagsThem) {
  EXPECT_EQ(*UnpackJson("s:hello"), nlohmann::json("hello"));
  EXPECT_EQ(*UnpackJson(R"(j:{"a":[1,2]})"), nlohmann::json({{"a", {1, 2}}}));
  EXPECT_FALSE(UnpackJson("j:{nope").ok());
  EXPECT_FALSE(UnpackJson("\x01\x02raw").ok());
  EXPECT_EQ(PackString("x"), "s:x");
  EXPECT_EQ(PackJson(nullptr), "j:null");
  // Invalid UTF-8 from a unit's name is replaced, not thrown.
  EXPECT_EQ(PackJson(std::string("a\xff")), "j:\"a\xef\xbf\xbd\"");
}

TEST(Amp, JsonNestedPastTheBoundIsRefusedNotParsed) {
  // Copying or printing a parsed value recurses: 100,000 levels would end agentd's stack.
  const std::string deep = "j:" + std::string(100000, '[') + std::string(100000, ']');
  auto j = UnpackJson(deep);
  ASSERT_FALSE(j.ok());
  EXPECT_THAT(std::string(j.status().message()), HasSubstr("nested deeper than 64"));
  // Brackets inside strings do not count, and 64 levels are fine.
  EXPECT_TRUE(UnpackJson("j:[\"" + std::string(1000, '[') + "\"]").ok());
  EXPECT_TRUE(UnpackJson("j:" + std::string(64, '[') + std::string(64, ']')).ok());
}

}  // namespace
}  // namespace herd::agent::pm2
