#include "common/json_parse.h"

#include <string>

#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace herd {
namespace {

using json = nlohmann::json;
using ::testing::HasSubstr;

std::string Error(absl::string_view text) {
  absl::StatusOr<json> r = json();
  EXPECT_NO_THROW(r = ParseJson(text)) << text;
  EXPECT_FALSE(r.ok()) << text;
  return r.ok() ? "" : std::string(r.status().message());
}

TEST(ParseJson, ParsesADocument) {
  auto r = ParseJson(R"({"a": [1, 2.5, "x", true, null]})");
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(*r, json::parse(R"({"a": [1, 2.5, "x", true, null]})"));
}

// nlohmann::json::parse throws out_of_range (not parse_error) for these.
TEST(ParseJson, NumberTooLargeForADoubleIsAnErrorWithPathAndPosition) {
  std::string e = Error("{\"apps\": [{\"name\": \"a\"},\n {\"kill_timeout\": 1e99999}]}");
  EXPECT_THAT(e, HasSubstr("line 2, column"));
  EXPECT_THAT(e, HasSubstr("at apps[1].kill_timeout"));
  EXPECT_THAT(e, HasSubstr("number overflow parsing '1e99999'"));
  EXPECT_THAT(Error("-1e400"), HasSubstr("number overflow"));
}

TEST(ParseJson, SyntaxErrorSaysWhatWithoutNlohmannsPrefix) {
  std::string e = Error("{\"a\": [1,]}");
  EXPECT_THAT(e, HasSubstr("line 1, column 10, at a[1]: syntax error"));
  EXPECT_THAT(e, ::testing::Not(HasSubstr("json.exception")));
}

TEST(ParseJson, InvalidUtf8InAStringIsAnError) {
  EXPECT_THAT(Error("{\"k\": \"a\xff\"}"), HasSubstr("at k: syntax error"));
}

TEST(ParseJson, TrailingTextIsAnError) { EXPECT_THAT(Error("{} x"), HasSubstr("line 1")); }

TEST(ParseJson, NestingIsBoundedAndBracketsInStringsDoNotCount) {
  EXPECT_TRUE(ParseJson(std::string(kMaxJsonDepth, '[') + std::string(kMaxJsonDepth, ']')).ok());
  EXPECT_THAT(Error(std::string(kMaxJsonDepth + 1, '[') + std::string(kMaxJsonDepth + 1, ']')),
              HasSubstr(absl::StrCat("line 1, column ", kMaxJsonDepth + 1, ": nested deeper")));
  EXPECT_TRUE(ParseJson("[\"" + std::string(1000, '[') + "\"]").ok());
  EXPECT_TRUE(ParseJson("[\"\\\"" + std::string(1000, '{') + "\"]").ok());
}

TEST(JsonForMessage, IsShortAndNeverThrows) {
  EXPECT_EQ(JsonForMessage(json("abc")), "\"abc\"");
  std::string s = JsonForMessage(json(std::string(1000, 'x')), 20);
  EXPECT_EQ(s, "\"xxxxxxxxxxxxxxxxxxx...");
  EXPECT_NO_THROW(JsonForMessage(json(std::string("bad \xff utf8"))));
}

}  // namespace
}  // namespace herd
