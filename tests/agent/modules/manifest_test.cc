#include "agent/modules/manifest.h"

#include <stdlib.h>
#include <sys/stat.h>

#include <filesystem>
#include <fstream>
#include <string>

#include "absl/strings/str_cat.h"
#include "absl/strings/string_view.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace herd::agent {
namespace {

using json = nlohmann::json;
using ::testing::HasSubstr;

std::string Message(const absl::Status& s) { return std::string(s.message()); }

// ---------------------------------------------------------------------------------------
// StripJsonComments

TEST(StripJsonComments, LineCommentBecomesSpacesAndKeepsTheNewline) {
  EXPECT_EQ(StripJsonComments("{\"a\": 1} // tail\n{}"), "{\"a\": 1}        \n{}");
}

TEST(StripJsonComments, LineCommentAtEndOfTextWithoutNewline) {
  EXPECT_EQ(StripJsonComments("1 // x"), "1     ");
}

TEST(StripJsonComments, BlockCommentBecomesSpacesAndKeepsNewlines) {
  EXPECT_EQ(StripJsonComments("a/* x\ny */b"), "a    \n    b");
}

TEST(StripJsonComments, SlashStarSlashDoesNotCloseABlockComment) {
  EXPECT_EQ(StripJsonComments("/*/ c */x"), "        x");
}

TEST(StripJsonComments, CommentMarkersInsideStringsAreUntouched) {
  const std::string text = R"({"url": "http://example.com/*x*/", "c": "// not a comment"})";
  EXPECT_EQ(StripJsonComments(text), text);
}

TEST(StripJsonComments, EscapedQuoteDoesNotEndTheString) {
  const std::string text = R"({"q": "say \"hi\" // still text"} // gone)";
  const std::string want = R"({"q": "say \"hi\" // still text"}        )";
  EXPECT_EQ(StripJsonComments(text), want);
}

TEST(StripJsonComments, EscapedBackslashBeforeTheClosingQuoteEndsTheString) {
  const std::string text = R"({"p": "C:\\"} // gone)";
  const std::string want = R"({"p": "C:\\"}        )";
  EXPECT_EQ(StripJsonComments(text), want);
}

TEST(StripJsonComments, PositionsArePreserved) {
  const std::string text =
      "// first\n{ /* a\n b */ \"k\": \"v//\", // c\n  \"n\": 1 /* d */ }\n";
  std::string out = StripJsonComments(text);
  ASSERT_EQ(out.size(), text.size());
  for (size_t i = 0; i < text.size(); ++i) {
    EXPECT_EQ(out[i] == '\n', text[i] == '\n') << "at byte " << i;
  }
  EXPECT_EQ(json::parse(out), json::parse(R"({"k": "v//", "n": 1})"));
}

TEST(StripJsonComments, UnterminatedBlockCommentBlanksToTheEnd) {
  EXPECT_EQ(StripJsonComments("{} /* never\nclosed"), "{}         \n      ");
}

TEST(StripJsonComments, LoneSlashAtTheEndIsKept) {
  EXPECT_EQ(StripJsonComments("1 /"), "1 /");
  EXPECT_EQ(StripJsonComments("1 /*"), "1   ");
}

// ---------------------------------------------------------------------------------------
// ParseManifest

// A package.json as PM2's module documentation shows one, comments included.
constexpr char kPm2Manifest[] = R"(// A PM2 module.
{
  "name": "@acme/pm2-probe",   // the npm name, scoped
  "version": "1.2.3",
  "description": "probes /* not a comment */ and // neither",
  /*
   * Defaults, overridable with `pm2 set pm2-probe:<key> <value>`.
   */
  "config": {
    "interval": 5,
    "verbose": false,
    "ratio": 0.5,
    "label": "main"
  },
  "apps": [{
    "name": "ignored",
    "script": "index.js",
    "max_memory_restart": "200M"
  }],
  "dependencies": {"@pm2/io": "^6.0.0"}
}
)";

TEST(ParseManifest, Pm2PackageJsonWithComments) {
  auto m = ParseManifest(kPm2Manifest, "/mods/probe/package.json");
  ASSERT_TRUE(m.ok()) << m.status();
  EXPECT_EQ(m->name, "pm2-probe");
  EXPECT_EQ(m->package, "@acme/pm2-probe");
  EXPECT_EQ(m->version, "1.2.3");
  EXPECT_EQ(m->description, "probes /* not a comment */ and // neither");
  EXPECT_EQ(m->config,
            json::parse(R"({"interval": 5, "verbose": false, "ratio": 0.5, "label": "main"})"));
  EXPECT_EQ(m->app["script"], "index.js");
  EXPECT_EQ(m->app["name"], "ignored");
  EXPECT_TRUE(m->is_node);
  EXPECT_TRUE(m->has_dependencies);
}

TEST(ParseManifest, MinimalManifestHasEmptyDefaults) {
  auto m = ParseManifest(R"({"name": "mini", "apps": [{"script": "run"}]})", "p");
  ASSERT_TRUE(m.ok()) << m.status();
  EXPECT_EQ(m->name, "mini");
  EXPECT_EQ(m->package, "mini");
  EXPECT_EQ(m->version, "");
  EXPECT_EQ(m->description, "");
  EXPECT_TRUE(m->config.is_object());
  EXPECT_TRUE(m->config.empty());
  EXPECT_FALSE(m->is_node);
  EXPECT_FALSE(m->has_dependencies);
}

TEST(ParseManifest, InvalidJsonNamesTheFileLineAndColumn) {
  // The error is the ',' on line 4, column 12; the comments before it must not shift it.
  const char* text =
      "// header comment\n"
      "{ /* a block\n"
      "  \"name\": \"x\", */ \"name\": \"x\",\n"
      "  \"apps\": [,]\n"
      "}\n";
  auto m = ParseManifest(text, "/mods/x/package.json");
  ASSERT_FALSE(m.ok());
  EXPECT_EQ(m.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(Message(m.status()), HasSubstr("/mods/x/package.json"));
  EXPECT_THAT(Message(m.status()), HasSubstr("line 4, column 12"));
  EXPECT_THAT(Message(m.status()), HasSubstr("invalid JSON"));
}

TEST(ParseManifest, InvalidJsonOnTheFirstLine) {
  auto m = ParseManifest("{\"name\": ]}", "/p/package.json");
  ASSERT_FALSE(m.ok());
  EXPECT_THAT(Message(m.status()), HasSubstr("line 1, column 10"));
  EXPECT_THAT(Message(m.status()), HasSubstr("/p/package.json"));
}

TEST(ParseManifest, InvalidTokenIsReportedAtItsLastCharacter) {
  // nlohmann/json reports the position where it gave up: the end of the offending token
  // ("x" spans columns 9-11), still inside it.
  auto m = ParseManifest("{\"name\" \"x\"}", "/p/package.json");
  ASSERT_FALSE(m.ok());
  EXPECT_THAT(Message(m.status()), HasSubstr("line 1, column 11"));
}

TEST(ParseManifest, UnterminatedBlockCommentIsInvalidJson) {
  auto m = ParseManifest("{\"name\": \"x\", /* \"apps\": [{\"script\": \"a.js\"}]}", "f");
  ASSERT_FALSE(m.ok());
  EXPECT_THAT(Message(m.status()), HasSubstr("invalid JSON"));
}

TEST(ParseManifest, EmptyTextIsInvalidJson) {
  auto m = ParseManifest("", "/p/package.json");
  ASSERT_FALSE(m.ok());
  EXPECT_THAT(Message(m.status()), HasSubstr("line 1, column 1"));
}

TEST(ParseManifest, NotAnObject) {
  for (const char* text : {"[]", "\"name\"", "42", "null"}) {
    SCOPED_TRACE(text);
    auto m = ParseManifest(text, "/p/package.json");
    ASSERT_FALSE(m.ok());
    EXPECT_EQ(m.status().code(), absl::StatusCode::kInvalidArgument);
    EXPECT_THAT(Message(m.status()), HasSubstr("/p/package.json"));
    EXPECT_THAT(Message(m.status()), HasSubstr("expected a JSON object"));
  }
}

TEST(ParseManifest, MissingEmptyOrNonStringName) {
  for (const char* text : {R"({"apps": [{"script": "a.js"}]})",
                           R"({"name": "", "apps": [{"script": "a.js"}]})",
                           R"({"name": 42, "apps": [{"script": "a.js"}]})",
                           R"({"name": null, "apps": [{"script": "a.js"}]})",
                           R"({"name": ["x"], "apps": [{"script": "a.js"}]})"}) {
    SCOPED_TRACE(text);
    auto m = ParseManifest(text, "/p/package.json");
    ASSERT_FALSE(m.ok());
    EXPECT_THAT(Message(m.status()), HasSubstr("/p/package.json"));
    EXPECT_THAT(Message(m.status()), HasSubstr("\"name\" is missing"));
  }
}

std::string WithName(const std::string& name) {
  return json({{"name", name}, {"apps", json::array({{{"script", "a.js"}}})}}).dump();
}

TEST(ParseManifest, ScopedNameDropsTheScope) {
  auto m = ParseManifest(WithName("@scope/x"), "p");
  ASSERT_TRUE(m.ok()) << m.status();
  EXPECT_EQ(m->name, "x");
  EXPECT_EQ(m->package, "@scope/x");
}

TEST(ParseManifest, BadScopedNames) {
  for (const char* name : {"@scope", "@scope/", "@"}) {
    SCOPED_TRACE(name);
    auto m = ParseManifest(WithName(name), "/p/package.json");
    ASSERT_FALSE(m.ok());
    EXPECT_THAT(Message(m.status()), HasSubstr("not a valid scoped name"));
    EXPECT_THAT(Message(m.status()), HasSubstr("/p/package.json"));
  }
}

TEST(ParseManifest, NamesThatCannotBeADirectoryOrUnitAreRefused) {
  for (const char* name : {"a/b", "@scope/a/b", "..", "a..b", "@scope/..", ".hidden",
                           "a\\b", "-dash", "all", "sp ace"}) {
    SCOPED_TRACE(name);
    auto m = ParseManifest(WithName(name), "/p/package.json");
    ASSERT_FALSE(m.ok());
    EXPECT_EQ(m.status().code(), absl::StatusCode::kInvalidArgument);
    EXPECT_THAT(Message(m.status()), HasSubstr("/p/package.json"));
    EXPECT_THAT(Message(m.status()), HasSubstr("\"name\""));
  }
}

TEST(ParseManifest, VersionAndDescriptionMustBeStrings) {
  for (const char* text : {R"({"name": "x", "version": 1, "apps": [{"script": "a.js"}]})",
                           R"({"name": "x", "version": null, "apps": [{"script": "a.js"}]})",
                           R"({"name": "x", "version": {"a": 1}, "apps": [{"script": "a.js"}]})"}) {
    SCOPED_TRACE(text);
    auto m = ParseManifest(text, "/p/package.json");
    ASSERT_FALSE(m.ok());
    EXPECT_THAT(Message(m.status()), HasSubstr("\"version\" must be a string"));
    EXPECT_THAT(Message(m.status()), HasSubstr("/p/package.json"));
  }
  auto m = ParseManifest(R"({"name": "x", "description": true, "apps": [{"script": "a.js"}]})",
                         "p");
  ASSERT_FALSE(m.ok());
  EXPECT_THAT(Message(m.status()), HasSubstr("\"description\" must be a string, not true"));
}

TEST(ParseManifest, ConfigMustBeAnObject) {
  for (const char* config : {"[]", "5", "\"x\"", "null"}) {
    SCOPED_TRACE(config);
    auto m = ParseManifest(absl::StrCat(R"({"name": "x", "config": )", config,
                                        R"(, "apps": [{"script": "a.js"}]})"),
                           "/p/package.json");
    ASSERT_FALSE(m.ok());
    EXPECT_THAT(Message(m.status()), HasSubstr("\"config\" must be an object"));
    EXPECT_THAT(Message(m.status()), HasSubstr("/p/package.json"));
  }
}

TEST(ParseManifest, ConfigValuesMayBeAnyJson) {
  // pm2-health's defaults, as published: objects, arrays, and PM2 modules' null defaults.
  const char* config = R"({"smtp": {"host": "h", "port": 587, "disabled": false},
      "events": ["exit"], "appsExcluded": [], "metric": {}, "slack_url": null, "n": 1})";
  auto m = ParseManifest(absl::StrCat(R"({"name": "x", "config": )", config,
                                      R"(, "apps": [{"script": "a.js"}]})"),
                         "/p/package.json");
  ASSERT_TRUE(m.ok()) << m.status();
  EXPECT_EQ(m->config, nlohmann::json::parse(config));
  EXPECT_TRUE(m->config["appsExcluded"].is_array());
  EXPECT_TRUE(m->config["slack_url"].is_null());
}

TEST(ParseManifest, NothingToRun) {
  auto m = ParseManifest(R"({"name": "x"})", "/p/package.json");
  ASSERT_FALSE(m.ok());
  EXPECT_THAT(Message(m.status()), HasSubstr("nothing to run"));
  EXPECT_THAT(Message(m.status()), HasSubstr("\"apps\""));
  EXPECT_THAT(Message(m.status()), HasSubstr("/p/package.json"));
}

// PM2 runs a module without `apps` from `bin` (its first command), else `main`.
TEST(ParseManifest, RunsBinOrMainWithoutApps) {
  const std::pair<const char*, const char*> cases[] = {
      {R"("main": "App.js")", "App.js"},
      {R"("bin": "cli.js", "main": "App.js")", "cli.js"},
      {R"("bin": {"other": "o.js", "x": "bin/x.js"}, "main": "App.js")", "bin/x.js"},
      {R"("bin": {"b": "b.js", "a": "a.js"})", "a.js"},
      {R"("apps": {"script": "a.js"}, "main": "App.js")", "a.js"},
  };
  for (const auto& [fields, script] : cases) {
    SCOPED_TRACE(fields);
    auto m = ParseManifest(absl::StrCat(R"({"name": "x", )", fields, "}"), "/p/package.json");
    ASSERT_TRUE(m.ok()) << m.status();
    EXPECT_EQ(m->app["script"], script);
    EXPECT_TRUE(m->is_node);
  }
}

TEST(ParseManifest, BinOrMainThatNamesNoFile) {
  for (const char* fields : {R"("main": 5)", R"("main": "")", R"("bin": {})",
                             R"("bin": [1, 2])", R"("bin": {"t": null})"}) {
    SCOPED_TRACE(fields);
    auto m = ParseManifest(absl::StrCat(R"({"name": "x", )", fields, "}"), "/p/package.json");
    ASSERT_FALSE(m.ok());
    EXPECT_THAT(Message(m.status()), HasSubstr("must name the entry point"));
  }
}

TEST(ParseManifest, AppsNotANonEmptyArrayOfObjects) {
  for (const char* apps : {"\"a.js\"", "[]", "[\"a.js\"]", "[1]",
                           "null"}) {
    SCOPED_TRACE(apps);
    auto m = ParseManifest(absl::StrCat(R"({"name": "x", "apps": )", apps, "}"),
                           "/p/package.json");
    ASSERT_FALSE(m.ok());
    EXPECT_THAT(Message(m.status()), HasSubstr("\"apps\" must be a non-empty array of objects"));
    EXPECT_THAT(Message(m.status()), HasSubstr("/p/package.json"));
  }
}

TEST(ParseManifest, MissingOrNonStringScript) {
  for (const char* app : {"{}", "{\"script\": 5}", "{\"name\": \"a\"}", "{\"script\": null}"}) {
    SCOPED_TRACE(app);
    auto m = ParseManifest(absl::StrCat(R"({"name": "x", "apps": [)", app, "]}"),
                           "/p/package.json");
    ASSERT_FALSE(m.ok());
    EXPECT_THAT(Message(m.status()), HasSubstr("apps[0].script is missing"));
    EXPECT_THAT(Message(m.status()), HasSubstr("/p/package.json"));
  }
}

TEST(ParseManifest, OnlyTheFirstAppIsUsed) {
  auto m = ParseManifest(
      R"({"name": "x", "apps": [{"script": "first.py"}, {"script": "second.js"}]})", "p");
  ASSERT_TRUE(m.ok()) << m.status();
  EXPECT_EQ(m->app["script"], "first.py");
  EXPECT_FALSE(m->is_node);
}

bool IsNode(const std::string& app) {
  auto m = ParseManifest(absl::StrCat(R"({"name": "x", "apps": [)", app, "]}"), "p");
  EXPECT_TRUE(m.ok()) << m.status();
  return m.ok() && m->is_node;
}

TEST(ParseManifest, NodeDetection) {
  EXPECT_TRUE(IsNode(R"({"script": "index.js"})"));
  EXPECT_TRUE(IsNode(R"({"script": "lib/index.mjs"})"));
  EXPECT_TRUE(IsNode(R"({"script": "index.cjs"})"));
  EXPECT_TRUE(IsNode(R"({"script": "server", "interpreter": "node"})"));
  EXPECT_TRUE(IsNode(R"({"script": "server", "interpreter": "/usr/bin/node"})"));
  EXPECT_TRUE(IsNode(R"({"script": "server", "interpreter": "nodejs"})"));
  EXPECT_TRUE(IsNode(R"({"script": "server", "exec_interpreter": "node"})"));
  EXPECT_FALSE(IsNode(R"({"script": "main.py"})"));
  EXPECT_FALSE(IsNode(R"({"script": "index.json"})"));
  EXPECT_FALSE(IsNode(R"({"script": "bin/probe"})"));
  EXPECT_FALSE(IsNode(R"({"script": "index.js", "interpreter": "python3"})"));
  EXPECT_FALSE(IsNode(R"({"script": "index.js", "exec_interpreter": "bun"})"));
}

TEST(ParseManifest, NonStringInterpreterIsNotACrash) {
  // Left to ModuleAppSpec to refuse with the field's name; parsing must not throw.
  auto m = ParseManifest(R"({"name": "x", "apps": [{"script": "a.js", "interpreter": 5}]})",
                         "p");
  ASSERT_TRUE(m.ok()) << m.status();
  EXPECT_EQ(m->app["interpreter"], 5);
}

TEST(ParseManifest, HasDependencies) {
  auto deps = [](const char* d) {
    auto m = ParseManifest(
        absl::StrCat(R"({"name": "x", "apps": [{"script": "a.js"}])", d, "}"), "p");
    EXPECT_TRUE(m.ok()) << m.status();
    return m.ok() && m->has_dependencies;
  };
  EXPECT_TRUE(deps(R"(, "dependencies": {"pmx": "^1.6.8"})"));
  EXPECT_FALSE(deps(R"(, "dependencies": {})"));
  EXPECT_FALSE(deps(R"(, "dependencies": ["pmx"])"));
  EXPECT_FALSE(deps(R"(, "devDependencies": {"jest": "^29"})"));
  EXPECT_FALSE(deps(""));
}

// ---------------------------------------------------------------------------------------
// ValidateModuleName

TEST(ValidateModuleName, AcceptsUnitNames) {
  for (const char* name : {"pm2-logrotate", "probe_2", "a.b", "X"}) {
    EXPECT_TRUE(ValidateModuleName(name).ok()) << name;
  }
}

TEST(ValidateModuleName, RefusesPathsAndBadUnitNames) {
  for (const char* name :
       {"a/b", "/abs", "a\\b", "..", "x..y", ".hidden", "", "all", "-x", "a b", "@scope"}) {
    SCOPED_TRACE(name);
    absl::Status s = ValidateModuleName(name);
    EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument);
    EXPECT_THAT(Message(s), HasSubstr("module name"));
  }
  EXPECT_FALSE(ValidateModuleName(std::string(65, 'a')).ok());
  EXPECT_TRUE(ValidateModuleName(std::string(64, 'a')).ok());
}

// ---------------------------------------------------------------------------------------
// LoadManifest and ModuleAppSpec (on disk)

class ManifestDiskTest : public ::testing::Test {
 protected:
  void SetUp() override {
    char tmpl[] = "/tmp/herd-manifest-XXXXXX";
    char* d = mkdtemp(tmpl);
    ASSERT_NE(d, nullptr);
    root_ = d;
    dir_ = root_ + "/mod";
    bin_ = root_ + "/bin";
    std::filesystem::create_directories(dir_);
    std::filesystem::create_directories(bin_);
    // A fake `node` for the interpreter lookup on the search path.
    WriteFile(bin_ + "/node", "#!/bin/sh\n", 0755);
  }
  void TearDown() override { std::filesystem::remove_all(root_); }

  static void WriteFile(const std::string& path, const std::string& content, int mode = 0644) {
    std::filesystem::create_directories(std::filesystem::path(path).parent_path());
    std::ofstream(path, std::ios::binary) << content;
    ASSERT_EQ(chmod(path.c_str(), static_cast<mode_t>(mode)), 0) << path;
  }

  absl::StatusOr<herd::v1::AppSpec> SpecFor(const std::string& package_json) {
    WriteFile(dir_ + "/package.json", package_json);
    auto m = LoadManifest(dir_);
    if (!m.ok()) return m.status();
    return ModuleAppSpec(*m, dir_, bin_);
  }

  std::string root_, dir_, bin_;
};

TEST_F(ManifestDiskTest, LoadsPackageJson) {
  WriteFile(dir_ + "/package.json", kPm2Manifest);
  auto m = LoadManifest(dir_);
  ASSERT_TRUE(m.ok()) << m.status();
  EXPECT_EQ(m->name, "pm2-probe");
  EXPECT_EQ(m->config["interval"], 5);
}

TEST_F(ManifestDiskTest, MissingFileIsNotFoundNamingThePath) {
  auto m = LoadManifest(dir_);
  ASSERT_FALSE(m.ok());
  EXPECT_EQ(m.status().code(), absl::StatusCode::kNotFound);
  EXPECT_THAT(Message(m.status()), HasSubstr(dir_ + "/package.json"));
}

TEST_F(ManifestDiskTest, ParseErrorsNameTheFile) {
  WriteFile(dir_ + "/package.json", "{\n  \"name\": \"x\",\n  oops\n}\n");
  auto m = LoadManifest(dir_);
  ASSERT_FALSE(m.ok());
  EXPECT_EQ(m.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(Message(m.status()), HasSubstr(dir_ + "/package.json"));
  EXPECT_THAT(Message(m.status()), HasSubstr("line 3, column 3"));
}

TEST_F(ManifestDiskTest, OversizedFileIsRefused) {
  std::string big = R"({"name": "x", "apps": [{"script": "a.js"}], "description": ")";
  big += std::string((1 << 20) + 1, 'a');
  big += "\"}";
  WriteFile(dir_ + "/package.json", big);
  auto m = LoadManifest(dir_);
  ASSERT_FALSE(m.ok());
  EXPECT_THAT(Message(m.status()), HasSubstr("larger than 1 MiB"));
}

TEST_F(ManifestDiskTest, NodeModuleSpec) {
  WriteFile(dir_ + "/index.js", "// module\n");
  auto spec = SpecFor(R"({
    "name": "@acme/probe",
    "apps": [{"name": "something-else", "script": "index.js", "max_restarts": 3}]
  })");
  ASSERT_TRUE(spec.ok()) << spec.status();
  EXPECT_EQ(spec->name(), "probe");  // the module's name wins over apps[0].name
  EXPECT_EQ(spec->cwd(), dir_);
  EXPECT_EQ(spec->script(), dir_ + "/index.js");
  EXPECT_EQ(spec->interpreter(), bin_ + "/node");
  EXPECT_EQ(spec->max_restarts(), 3u);
  EXPECT_EQ(spec->channel(), herd::v1::CHANNEL_KIND_NODE);
}

TEST_F(ManifestDiskTest, NativeModuleSpecWithRelativeScriptInASubdirectory) {
  WriteFile(dir_ + "/bin/probe", "#!/bin/sh\nexit 0\n", 0755);
  auto spec = SpecFor(R"({"name": "native-probe", "apps": [{"script": "bin/probe"}]})");
  ASSERT_TRUE(spec.ok()) << spec.status();
  EXPECT_EQ(spec->name(), "native-probe");
  EXPECT_EQ(spec->cwd(), dir_);
  EXPECT_EQ(spec->script(), dir_ + "/bin/probe");
  EXPECT_EQ(spec->interpreter(), "");
  EXPECT_EQ(spec->channel(), herd::v1::CHANNEL_KIND_NATIVE);
}

TEST_F(ManifestDiskTest, ExplicitCwdIsRelativeToTheModuleDirectory) {
  WriteFile(dir_ + "/work/main.js", "");
  auto spec = SpecFor(R"({"name": "m", "apps": [{"script": "main.js", "cwd": "work"}]})");
  ASSERT_TRUE(spec.ok()) << spec.status();
  EXPECT_EQ(spec->cwd(), dir_ + "/work");
  EXPECT_EQ(spec->script(), dir_ + "/work/main.js");
  EXPECT_EQ(spec->channel(), herd::v1::CHANNEL_KIND_NODE);
}

TEST_F(ManifestDiskTest, BadAppFieldNamesPackageJsonAndApps0) {
  WriteFile(dir_ + "/index.js", "");
  auto spec = SpecFor(R"({"name": "m", "apps": [{"script": "index.js", "max_restarts": "many"}]})");
  ASSERT_FALSE(spec.ok());
  EXPECT_EQ(spec.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(Message(spec.status()), HasSubstr(dir_ + "/package.json: apps[0]: "));
  EXPECT_THAT(Message(spec.status()), HasSubstr("max_restarts"));
}

TEST_F(ManifestDiskTest, NonStringInterpreterIsRefusedByModuleAppSpec) {
  WriteFile(dir_ + "/index.js", "");
  auto spec = SpecFor(R"({"name": "m", "apps": [{"script": "index.js", "interpreter": 5}]})");
  ASSERT_FALSE(spec.ok());
  EXPECT_THAT(Message(spec.status()), HasSubstr(dir_ + "/package.json: apps[0]: "));
  EXPECT_THAT(Message(spec.status()), HasSubstr("interpreter"));
}

TEST_F(ManifestDiskTest, MissingScriptNamesPackageJson) {
  auto spec = SpecFor(R"({"name": "m", "apps": [{"script": "lib/missing.js"}]})");
  ASSERT_FALSE(spec.ok());
  EXPECT_THAT(Message(spec.status()), HasSubstr(dir_ + "/package.json: apps[0]: "));
  EXPECT_THAT(Message(spec.status()), HasSubstr("lib/missing.js"));
}

// Issue 20: 1e99999 is a number too large for a double; nlohmann throws out_of_range (406)
// for it, not parse_error, and that exception ended agentd.
TEST(ParseManifest, NumberTooLargeForADoubleIsRefusedNamingTheKeyNotThrown) {
  const std::string text =
      R"({"name":"m","version":"1.0.0","config":{"k":1e99999},"apps":[{"script":"main.sh"}]})";
  absl::StatusOr<Manifest> m = absl::InternalError("not parsed");
  EXPECT_NO_THROW(m = ParseManifest(text, "/mods/m/package.json"));
  ASSERT_FALSE(m.ok());
  EXPECT_EQ(m.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(Message(m.status()), HasSubstr("/mods/m/package.json"));
  EXPECT_THAT(Message(m.status()), HasSubstr("config.k"));
  EXPECT_THAT(Message(m.status()), HasSubstr("number overflow"));
  EXPECT_THAT(Message(m.status()), HasSubstr("line 1, column 51"));  // the end of 1e99999
}

TEST(ParseManifest, HugeNegativeNumberInAppsIsRefusedNamingThePath) {
  absl::StatusOr<Manifest> m = absl::InternalError("not parsed");
  EXPECT_NO_THROW(m = ParseManifest(
                      R"({"name":"m","apps":[{"script":"a.sh","kill_timeout":-9e999}]})", "p"));
  ASSERT_FALSE(m.ok());
  EXPECT_THAT(Message(m.status()), HasSubstr("apps[0].kill_timeout"));
}

TEST(ParseManifest, DeepNestingIsRefusedWithItsPosition) {
  // Parsing is iterative but copying and dump() recurse: 100,000 levels would overflow the
  // stack later on.
  std::string deep = R"({"name":"m","apps":[{"script":"a.sh"}],"x":)" + std::string(100000, '[') +
                     std::string(100000, ']') + "}";
  auto m = ParseManifest(deep, "/p/package.json");
  ASSERT_FALSE(m.ok());
  EXPECT_THAT(Message(m.status()), HasSubstr("nested deeper than"));
  EXPECT_THAT(Message(m.status()), HasSubstr("line 1, column"));
}

TEST(ParseManifest, ANonStringMainIsQuotedShortInTheError) {
  std::string big = "[\"" + std::string(100000, 'x') + "\"]";
  auto m = ParseManifest(absl::StrCat(R"({"name":"m","main":)", big, "}"), "p");
  ASSERT_FALSE(m.ok());
  EXPECT_THAT(Message(m.status()), HasSubstr("must name the entry point"));
  EXPECT_LT(m.status().message().size(), 1000u);
}

}  // namespace
}  // namespace herd::agent
