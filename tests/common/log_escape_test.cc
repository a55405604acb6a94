#include "common/log_escape.h"

#include <string>

#include "common/utf8.h"
#include "gtest/gtest.h"

namespace herd {
namespace {

TEST(EscapeForLog, KeepsPrintableTextAndUtf8) {
  EXPECT_EQ(EscapeForLog("hello world"), "hello world");
  EXPECT_EQ(EscapeForLog("caf\xc3\xa9 \xe2\x9c\x93"), "caf\xc3\xa9 \xe2\x9c\x93");
}

// Issue 20: raw 0xFF, NUL and quotes from a module's channel reached agentd.log.
TEST(EscapeForLog, EscapesQuotesControlBytesAndInvalidUtf8) {
  EXPECT_EQ(EscapeForLog(std::string("a\"b\\c\n\r\t\0\x7f\xff", 11)),
            "a\\\"b\\\\c\\n\\r\\t\\x00\\x7f\\xff");
  // A lone lead byte, an overlong '/', a surrogate.
  EXPECT_EQ(EscapeForLog("\xc3" "x \xc0\xaf \xed\xa0\x80"),
            "\\xc3x \\xc0\\xaf \\xed\\xa0\\x80");
}

TEST(EscapeForLog, IsBoundedAndSaysHowMuchWasLeftOut) {
  EXPECT_EQ(EscapeForLog(std::string(100, 'x'), 10), "xxxxxxxxxx...(+90 bytes)");
}

TEST(EscapeForLog, ResultIsAlwaysValidUtf8WithoutQuotesOrNewlines) {
  std::string all;
  for (int c = 0; c < 256; ++c) all.push_back(static_cast<char>(c));
  std::string out = EscapeForLog(all + all, 4096);
  EXPECT_TRUE(IsValidUtf8(out));
  EXPECT_EQ(out.find('\n'), std::string::npos);
  for (size_t i = 0; i < out.size(); ++i) {
    if (out[i] == '"') {
      ASSERT_GT(i, 0u);
      EXPECT_EQ(out[i - 1], '\\');
    }
  }
}

TEST(Utf8, FindsTheFirstInvalidByte) {
  EXPECT_EQ(FirstInvalidUtf8("plain"), std::string::npos);
  EXPECT_EQ(FirstInvalidUtf8("\xf0\x9f\x98\x80 ok"), std::string::npos);
  EXPECT_EQ(FirstInvalidUtf8("ab\xff"), 2u);
  EXPECT_EQ(FirstInvalidUtf8("ab\xe2\x9c"), 2u);          // truncated
  EXPECT_EQ(FirstInvalidUtf8("\xf4\x90\x80\x80"), 0u);    // above U+10FFFF
  EXPECT_EQ(FirstInvalidUtf8("\xe0\x80\x80"), 0u);        // overlong
}

TEST(Utf8, ReplacesInvalidBytesWithTheReplacementCharacter) {
  EXPECT_EQ(ToValidUtf8("ok \xff\xfe \xc3\xa9"), "ok \xef\xbf\xbd\xef\xbf\xbd \xc3\xa9");
  EXPECT_EQ(ToValidUtf8("plain"), "plain");
  EXPECT_TRUE(IsValidUtf8(ToValidUtf8("\xe2\x9c")));
}

TEST(Utf8, TruncatesBetweenCharacters) {
  EXPECT_EQ(TruncateUtf8("\xc3\xa9\xc3\xa9", 3), "\xc3\xa9");
  EXPECT_EQ(TruncateUtf8("abc", 3), "abc");
  EXPECT_EQ(TruncateUtf8("abcd", 2), "ab");
}

}  // namespace
}  // namespace herd
