// CommandTable: the command of the subcommand CLI11 parsed runs, once, after parsing; none
// runs for --help or a parse error.
#include "cli/command_table.h"

#include <string>
#include <vector>

#include "CLI/CLI.hpp"
#include "gtest/gtest.h"

namespace herd::cli {
namespace {

// Parses like CLI11_PARSE, without exiting: true when the command line parsed, false when
// CLI11 stopped (help, version, an error).
bool Parse(CLI::App& app, std::vector<std::string> args) {
  std::vector<char*> argv;
  for (auto& a : args) argv.push_back(a.data());
  try {
    app.parse(static_cast<int>(argv.size()), argv.data());
  } catch (const CLI::ParseError&) {
    return false;
  }
  return true;
}

TEST(CommandTable, RunsTheCommandOfTheParsedSubcommandOnce) {
  CLI::App app;
  CommandTable table;
  std::vector<std::string> ran;
  table.Add(app.add_subcommand("list"), [&] { ran.push_back("list"); return 0; });
  table.Add(app.add_subcommand("stop"), [&] { ran.push_back("stop"); return 7; });
  ASSERT_TRUE(Parse(app, {"agentctl", "stop"}));
  EXPECT_TRUE(ran.empty()) << "commands run after parsing, not inside it";
  EXPECT_EQ(table.Run(), 7);
  EXPECT_EQ(ran, std::vector<std::string>{"stop"});
}

TEST(CommandTable, NestedSubcommandRunsItsOwnCommand) {
  CLI::App app;
  CommandTable table;
  auto* module = app.add_subcommand("module");
  module->require_subcommand(1);
  std::string name;
  auto* update = module->add_subcommand("update");
  update->add_option("name", name)->required();
  table.Add(update, [&] { return name == "redis" ? 5 : 1; });
  ASSERT_TRUE(Parse(app, {"agentctl", "module", "update", "redis"}));
  EXPECT_EQ(table.Run(), 5);
}

TEST(CommandTable, NothingRunsWithoutACommand) {
  CLI::App app;
  CommandTable table;
  bool ran = false;
  table.Add(app.add_subcommand("list"), [&] { ran = true; return 0; });
  ASSERT_TRUE(Parse(app, {"agentctl"}));
  EXPECT_EQ(table.Run(), CommandTable::kNoCommand);
  EXPECT_FALSE(ran);
}

TEST(CommandTable, NothingRunsForHelpOrAParseError) {
  for (std::vector<std::string> args :
       {std::vector<std::string>{"agentctl", "describe", "--help"},
        std::vector<std::string>{"agentctl", "describe"},  // its name is required
        std::vector<std::string>{"agentctl", "describe", "web", "--bogus"}}) {
    CLI::App app;
    CommandTable table;
    std::string name;
    auto* describe = app.add_subcommand("describe");
    describe->add_option("name", name)->required();
    bool ran = false;
    table.Add(describe, [&] { ran = true; return 0; });
    EXPECT_FALSE(Parse(app, args)) << args.back();
    EXPECT_EQ(table.Run(), CommandTable::kNoCommand) << args.back();
    EXPECT_FALSE(ran) << args.back();
  }
}

TEST(CommandTable, HasOnlyTheSubcommandsAdded) {
  CLI::App app;
  CommandTable table;
  auto* list = app.add_subcommand("list");
  auto* stop = app.add_subcommand("stop");
  table.Add(list, [] { return 0; });
  EXPECT_TRUE(table.Has(list));
  EXPECT_FALSE(table.Has(stop));
}

}  // namespace
}  // namespace herd::cli
