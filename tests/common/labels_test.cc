// Label selectors and host labels: parsing, matching, canonical text, every error.
#include "common/labels.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <map>
#include <string>

namespace herd {
namespace {

using ::testing::HasSubstr;
using Labels = std::map<std::string, std::string>;

LabelSelector MustParse(absl::string_view text) {
  auto sel = LabelSelector::Parse(text);
  EXPECT_TRUE(sel.ok()) << text << ": " << sel.status();
  return sel.ok() ? *sel : LabelSelector();
}

// ---------------------------------------------------------------------------------------
// LabelSelector: matching

TEST(LabelSelectorTest, EqualityTermMatchesOnlyThatValue) {
  LabelSelector sel = MustParse("env=prod");
  ASSERT_EQ(sel.size(), 1u);
  EXPECT_EQ(sel.terms()[0].key, "env");
  EXPECT_EQ(sel.terms()[0].value, "prod");
  EXPECT_FALSE(sel.terms()[0].negated);
  EXPECT_TRUE(sel.Matches({{"env", "prod"}}));
  EXPECT_TRUE(sel.Matches({{"env", "prod"}, {"role", "web"}}));
  EXPECT_FALSE(sel.Matches({{"env", "dev"}}));
  EXPECT_FALSE(sel.Matches({{"env", "production"}}));
  EXPECT_FALSE(sel.Matches({{"ENV", "prod"}}));  // keys are case-sensitive
  EXPECT_FALSE(sel.Matches({}));                  // a missing label never equals
}

TEST(LabelSelectorTest, NotEqualTermAndMissingLabel) {
  LabelSelector sel = MustParse("role!=canary");
  ASSERT_EQ(sel.size(), 1u);
  EXPECT_TRUE(sel.terms()[0].negated);
  EXPECT_EQ(sel.terms()[0].key, "role");
  EXPECT_EQ(sel.terms()[0].value, "canary");
  EXPECT_FALSE(sel.Matches({{"role", "canary"}}));
  EXPECT_TRUE(sel.Matches({{"role", "web"}}));
  EXPECT_TRUE(sel.Matches({}));  // missing label satisfies !=
  EXPECT_TRUE(sel.Matches({{"env", "prod"}}));
}

TEST(LabelSelectorTest, AllTermsMustHold) {
  LabelSelector sel = MustParse("env=prod,role!=canary,zone=eu");
  EXPECT_EQ(sel.size(), 3u);
  EXPECT_TRUE(sel.Matches({{"env", "prod"}, {"zone", "eu"}}));
  EXPECT_TRUE(sel.Matches({{"env", "prod"}, {"zone", "eu"}, {"role", "web"}}));
  EXPECT_FALSE(sel.Matches({{"env", "prod"}, {"zone", "eu"}, {"role", "canary"}}));
  EXPECT_FALSE(sel.Matches({{"env", "prod"}}));
  EXPECT_FALSE(sel.Matches({{"zone", "eu"}}));
}

TEST(LabelSelectorTest, EmptyValueIsAllowed) {
  LabelSelector eq = MustParse("env=");
  EXPECT_TRUE(eq.Matches({{"env", ""}}));
  EXPECT_FALSE(eq.Matches({}));  // missing is not the empty value
  EXPECT_FALSE(eq.Matches({{"env", "x"}}));
  EXPECT_EQ(eq.ToString(), "env=");

  LabelSelector ne = MustParse("env!=");
  EXPECT_FALSE(ne.Matches({{"env", ""}}));
  EXPECT_TRUE(ne.Matches({}));
  EXPECT_TRUE(ne.Matches({{"env", "x"}}));
  EXPECT_EQ(ne.ToString(), "env!=");
}

TEST(LabelSelectorTest, ContradictoryTermsMatchNothing) {
  LabelSelector sel = MustParse("env=prod,env!=prod");
  EXPECT_EQ(sel.size(), 2u);
  EXPECT_FALSE(sel.Matches({{"env", "prod"}}));
  EXPECT_FALSE(sel.Matches({}));
  EXPECT_FALSE(sel.Matches({{"env", "dev"}}));
}

TEST(LabelSelectorTest, AllowedCharacters) {
  LabelSelector sel = MustParse("app.kubernetes.io/name=web-1_a.b,A9=Z/0");
  EXPECT_TRUE(sel.Matches({{"app.kubernetes.io/name", "web-1_a.b"}, {"A9", "Z/0"}}));
}

// ---------------------------------------------------------------------------------------
// LabelSelector: whitespace, canonical text

TEST(LabelSelectorTest, WhitespaceAroundTermsKeysAndValuesIsIgnored) {
  LabelSelector sel = MustParse("  env = prod ,\trole != canary  ");
  EXPECT_EQ(sel.ToString(), "env=prod,role!=canary");
  EXPECT_TRUE(sel.Matches({{"env", "prod"}}));
  EXPECT_FALSE(sel.Matches({{"env", "prod"}, {"role", "canary"}}));
}

TEST(LabelSelectorTest, ToStringIsSortedWithoutSpaces) {
  EXPECT_EQ(MustParse("zone=eu,env=prod,role!=canary").ToString(),
            "env=prod,role!=canary,zone=eu");
  // Same key: '=' before '!=', then by value.
  EXPECT_EQ(MustParse("env!=a,env=b,env=a").ToString(), "env=a,env=b,env!=a");
  EXPECT_EQ(MustParse("b=1, a=2").ToString(), MustParse("a=2,b=1").ToString());
}

TEST(LabelSelectorTest, DuplicateTermsAreDropped) {
  LabelSelector sel = MustParse("env=prod, env=prod,role!=x,role != x");
  EXPECT_EQ(sel.size(), 2u);
  EXPECT_EQ(sel.ToString(), "env=prod,role!=x");
}

TEST(LabelSelectorTest, CanonicalTextParsesToItself) {
  for (const char* text : {"env=prod", "b=2,a!=1,c=", " x = y , x != z "}) {
    LabelSelector sel = MustParse(text);
    LabelSelector again = MustParse(sel.ToString());
    EXPECT_EQ(again.ToString(), sel.ToString()) << text;
    EXPECT_EQ(again.size(), sel.size()) << text;
  }
}

// ---------------------------------------------------------------------------------------
// LabelSelector: errors

void ExpectParseError(absl::string_view text, absl::string_view want) {
  auto sel = LabelSelector::Parse(text);
  ASSERT_FALSE(sel.ok()) << "\"" << text << "\" parsed as " << sel->ToString();
  EXPECT_EQ(sel.status().code(), absl::StatusCode::kInvalidArgument) << text;
  EXPECT_THAT(std::string(sel.status().message()), HasSubstr(std::string(want))) << text;
}

TEST(LabelSelectorTest, EmptyTextIsAnError) {
  ExpectParseError("", "empty selector");
  ExpectParseError("   ", "empty selector");
  ExpectParseError("\t\n", "empty selector");
}

TEST(LabelSelectorTest, EmptyTermIsAnError) {
  ExpectParseError("env=prod,,role=web", "empty term");
  ExpectParseError("env=prod,", "empty term");
  ExpectParseError(",env=prod", "empty term");
  ExpectParseError("env=prod, ,role=web", "empty term");
  ExpectParseError(",", "empty term");
}

TEST(LabelSelectorTest, TermWithoutEqualsIsAnError) {
  ExpectParseError("env", "key=value or key!=value");
  ExpectParseError("env=prod,role", "key=value or key!=value");
  ExpectParseError("env:prod", "key=value or key!=value");
}

TEST(LabelSelectorTest, EmptyKeyIsAnError) {
  ExpectParseError("=prod", "the key must be 1-63");
  ExpectParseError(" = prod", "the key must be 1-63");
  ExpectParseError("!=prod", "the key must be 1-63");
}

TEST(LabelSelectorTest, BadCharactersAreErrors) {
  ExpectParseError("en v=prod", "the key");
  ExpectParseError("env=pr od", "the value");
  ExpectParseError("env=prod!", "the value");
  ExpectParseError("env==prod", "the value");
  ExpectParseError("env=a=b", "the value");
  ExpectParseError("e*v=prod", "the key");
  ExpectParseError("env=caf\xc3\xa9", "the value");
  ExpectParseError("env!=a!=b", "the value");
  ExpectParseError("env=\"prod\"", "the value");
}

TEST(LabelSelectorTest, KeyAndValueLengthLimits) {
  const std::string k63(63, 'k'), k64(64, 'k');
  const std::string v63(63, 'v'), v64(64, 'v');
  EXPECT_TRUE(LabelSelector::Parse(k63 + "=" + v63).ok());
  EXPECT_TRUE(LabelSelector::Parse(k63 + "!=" + v63).ok());
  ExpectParseError(k64 + "=v", "the key must be 1-63");
  ExpectParseError("k=" + v64, "the value must be 0-63");
  ExpectParseError("k!=" + v64, "the value must be 0-63");
}

TEST(LabelSelectorTest, ErrorNamesTheOffendingTerm) {
  ExpectParseError("env=prod, r*le=web", "\"r*le=web\"");
}

// ---------------------------------------------------------------------------------------
// ParseLabels

TEST(ParseLabelsTest, EmptyTextIsNoLabels) {
  for (const char* text : {"", "  ", "\t"}) {
    auto l = ParseLabels(text);
    ASSERT_TRUE(l.ok()) << l.status();
    EXPECT_TRUE(l->empty());
  }
}

TEST(ParseLabelsTest, ParsesPairsWithWhitespace) {
  auto l = ParseLabels(" env = prod ,role=web,zone=,app.io/name=a-b_c.d ");
  ASSERT_TRUE(l.ok()) << l.status();
  EXPECT_EQ(*l, (Labels{{"env", "prod"}, {"role", "web"}, {"zone", ""},
                        {"app.io/name", "a-b_c.d"}}));
}

void ExpectLabelsError(absl::string_view text, absl::string_view want) {
  auto l = ParseLabels(text);
  ASSERT_FALSE(l.ok()) << "\"" << text << "\" parsed";
  EXPECT_EQ(l.status().code(), absl::StatusCode::kInvalidArgument) << text;
  EXPECT_THAT(std::string(l.status().message()), HasSubstr(std::string(want))) << text;
}

TEST(ParseLabelsTest, DuplicateLabelIsAnError) {
  ExpectLabelsError("env=prod,env=dev", "\"env\" is given twice");
  ExpectLabelsError("env=prod, env = prod", "given twice");
}

TEST(ParseLabelsTest, NotEqualIsAnError) {
  ExpectLabelsError("env!=prod", "key=value,key2=value2");
  ExpectLabelsError("role=web,env!=prod", "key=value,key2=value2");
}

TEST(ParseLabelsTest, MissingEqualsOrEmptyTermIsAnError) {
  ExpectLabelsError("env", "key=value,key2=value2");
  ExpectLabelsError("env=prod,,role=web", "key=value,key2=value2");
  ExpectLabelsError("env=prod,", "key=value,key2=value2");
}

TEST(ParseLabelsTest, BadKeysAndValuesAreErrors) {
  ExpectLabelsError("=prod", "the key must be 1-63");
  ExpectLabelsError("e v=prod", "the key");
  ExpectLabelsError("env=p*d", "the value");
  ExpectLabelsError("env=a=b", "the value");
  ExpectLabelsError(std::string(64, 'k') + "=v", "the key must be 1-63");
  ExpectLabelsError("k=" + std::string(64, 'v'), "the value must be 0-63");
  EXPECT_TRUE(ParseLabels(std::string(63, 'k') + "=" + std::string(63, 'v')).ok());
}

TEST(ParseLabelsTest, LabelsParsedAreSelectable) {
  auto l = ParseLabels("env=prod,role=web");
  ASSERT_TRUE(l.ok());
  EXPECT_TRUE(MustParse("env=prod,role!=canary").Matches(*l));
  EXPECT_FALSE(MustParse("env=prod,role=db").Matches(*l));
}

}  // namespace
}  // namespace herd
