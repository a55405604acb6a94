// agentctl's command line as main() builds it: every subcommand runs a command, and the
// commands that reach either the local agent or the fleet choose the right one. The home
// has no agent socket, so nothing connects anywhere: which side was chosen shows in the
// message each side gives when it has nothing to talk to.
#include "cli/agentctl_app.h"

#include <stdlib.h>

#include <string>
#include <vector>

#include "CLI/CLI.hpp"
#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace herd::cli {
namespace {

constexpr char kNoAgent[] = "agentd is not running at /nonexistent/herd-home/agent.sock";
constexpr char kNoControlPlane[] = "agentctl: no control plane: pass --controlplane";

struct Outcome {
  int exit_code = -1;
  std::string err;
};

// Builds agentctl's app, parses `args` (after the program name and --home) and runs the
// chosen command, as main() does.
Outcome RunAgentctl(std::vector<std::string> args) {
  unsetenv("HERD_CONTROLPLANE");
  unsetenv("HERD_TOKEN_FILE");
  unsetenv("HERD_TOKEN");
  args.insert(args.begin(), {"agentctl", "--home", "/nonexistent/herd-home", "--timeout", "1"});
  CLI::App app;
  app.require_subcommand(1);
  AgentctlContext ctx;
  CommandTable table;
  AddAgentctlCommands(app, ctx, table);
  std::vector<const char*> raw;
  for (auto& a : args) raw.push_back(a.c_str());
  args = ExpandPm2Names(app, static_cast<int>(raw.size()), raw.data());
  std::vector<char*> argv;
  for (auto& a : args) argv.push_back(a.data());
  Outcome out;
  testing::internal::CaptureStderr();
  try {
    app.parse(static_cast<int>(argv.size()), argv.data());
    ctx.OptionsParsed();
    out.exit_code = table.Run();
  } catch (const CLI::ParseError& e) {
    out.exit_code = e.get_exit_code();
  }
  out.err = testing::internal::GetCapturedStderr();
  return out;
}

void ExpectEveryLeafHasACommand(const CLI::App& app, const CommandTable& table) {
  for (const CLI::App* sub : app.get_subcommands([](const CLI::App*) { return true; })) {
    if (sub->get_subcommands([](const CLI::App*) { return true; }).empty()) {
      EXPECT_TRUE(table.Has(sub)) << sub->get_name() << " has no command";
    } else {
      ExpectEveryLeafHasACommand(*sub, table);
    }
  }
}

TEST(AgentctlApp, EverySubcommandRunsACommand) {
  CLI::App app;
  AgentctlContext ctx;
  CommandTable table;
  AddAgentctlCommands(app, ctx, table);
  ExpectEveryLeafHasACommand(app, table);
  EXPECT_EQ(app.get_subcommands([](const CLI::App*) { return true; }).size(), 37u);
}

TEST(AgentctlApp, RestartWithoutHostsIsLocalAndWithHostsAFleetRollout) {
  Outcome local = RunAgentctl({"restart", "web"});
  EXPECT_EQ(local.exit_code, 1);
  EXPECT_NE(local.err.find(kNoAgent), std::string::npos) << local.err;
  Outcome fleet = RunAgentctl({"restart", "web", "--host", "h1"});
  EXPECT_EQ(fleet.exit_code, 1);
  EXPECT_NE(fleet.err.find(kNoControlPlane), std::string::npos) << fleet.err;
}

TEST(AgentctlApp, LogsActionAndConfGoToTheFleetOnlyWithAHost) {
  EXPECT_NE(RunAgentctl({"logs", "web"}).err.find(kNoAgent), std::string::npos);
  EXPECT_NE(RunAgentctl({"logs", "web", "--host", "h1"}).err.find(kNoControlPlane),
            std::string::npos);
  EXPECT_NE(RunAgentctl({"action", "m", "ping"}).err.find(kNoAgent), std::string::npos);
  EXPECT_NE(RunAgentctl({"action", "m", "ping", "--all-hosts"}).err.find(kNoControlPlane),
            std::string::npos);
  EXPECT_NE(RunAgentctl({"conf", "m"}).err.find(kNoAgent), std::string::npos);
  EXPECT_NE(RunAgentctl({"conf", "m", "--fleet"}).err.find(kNoControlPlane), std::string::npos);
}

TEST(AgentctlApp, SetWithoutScopeIsLocalUnlessAControlPlaneIsNamed) {
  Outcome local = RunAgentctl({"set", "m:k", "v"});
  EXPECT_EQ(local.exit_code, 1);
  EXPECT_NE(local.err.find(kNoAgent), std::string::npos) << local.err;
  Outcome scoped = RunAgentctl({"unset", "m:k", "--global"});
  EXPECT_NE(scoped.err.find(kNoControlPlane), std::string::npos) << scoped.err;
  Outcome unscoped = RunAgentctl({"--controlplane", "127.0.0.1:1", "set", "m:k", "v"});
  EXPECT_EQ(unscoped.exit_code, 2);
  EXPECT_NE(unscoped.err.find("with --controlplane, choose a scope"), std::string::npos)
      << unscoped.err;
}

TEST(AgentctlApp, FleetReadsNeedAControlPlane) {
  for (std::vector<std::string> args :
       {std::vector<std::string>{"hosts"}, {"host", "h1"}, {"modules"}, {"rollouts"},
        {"rollout", "r1"}, {"audit"}, {"watch"}, {"series", "h1", "cpu"}}) {
    Outcome out = RunAgentctl(args);
    EXPECT_EQ(out.exit_code, 1) << args[0];
    EXPECT_NE(out.err.find(kNoControlPlane), std::string::npos) << args[0] << ": " << out.err;
  }
}

TEST(AgentctlApp, TokenFileThatCannotBeReadIsNamed) {
  Outcome out = RunAgentctl(
      {"--controlplane", "127.0.0.1:1", "--token-file", "/nonexistent/token", "hosts"});
  EXPECT_EQ(out.exit_code, 1);
  EXPECT_NE(out.err.find("agentctl: --token-file: "), std::string::npos) << out.err;
}

TEST(AgentctlApp, GlobalFlagsAreTakenAfterTheCommandToo) {
  // Parsed (a parse error would exit 106 and say "not expected"), then the command ran.
  for (std::vector<std::string> args :
       {std::vector<std::string>{"list", "-o", "json"}, {"describe", "web", "--output=json"},
        {"logs", "web", "--socket", "/nonexistent/agent.sock"}}) {
    Outcome out = RunAgentctl(args);
    EXPECT_EQ(out.exit_code, 1) << args[0] << ": " << out.err;
    EXPECT_NE(out.err.find("agentd is not running at"), std::string::npos)
        << args[0] << ": " << out.err;
  }
  // And used: the socket named after the command is the one tried.
  EXPECT_NE(RunAgentctl({"list", "--socket", "/nonexistent/agent.sock"})
                .err.find("not running at /nonexistent/agent.sock"),
            std::string::npos);
}

TEST(AgentctlApp, Pm2sCommandNamesWorkWhereTheyMeanTheSame) {
  for (std::vector<std::string> args :
       {std::vector<std::string>{"ls"}, {"jlist"}, {"prettylist"}, {"show", "web"},
        {"reload", "web"}, {"monit"}, {"flush"}, {"conf"}, {"module:update", "web"},
        {"-o", "json", "module:update", "web@1.2.0"}}) {
    Outcome out = RunAgentctl(args);
    EXPECT_NE(out.err.find(kNoAgent), std::string::npos) << args[0] << ": " << out.err;
  }
}

TEST(AgentctlApp, AnUnknownCommandIsNamedWithTheClosestOne) {
  CLI::App app;
  AgentctlContext ctx;
  CommandTable table;
  AddAgentctlCommands(app, ctx, table);
  auto unknown = [&](std::vector<const char*> argv) {
    argv.insert(argv.begin(), "agentctl");
    return UnknownCommand(app, static_cast<int>(argv.size()), argv.data());
  };
  EXPECT_EQ(unknown({"lst"}).value_or(""),
            "agentctl: unknown command \"lst\": did you mean \"list\"? (`agentctl --help` "
            "lists the commands)");
  EXPECT_THAT(unknown({"--home", "/x", "-o", "json", "instal", "m"}).value_or(""),
              ::testing::HasSubstr("did you mean \"install\""));
  EXPECT_THAT(unknown({"frobnicate"}).value_or(""),
              ::testing::HasSubstr("unknown command \"frobnicate\": `agentctl --help`"));
  // Known names and aliases, a value of a global option, and no command at all: not for us.
  EXPECT_FALSE(unknown({"list"}).has_value());
  EXPECT_FALSE(unknown({"prettylist"}).has_value());
  EXPECT_FALSE(unknown({"--home", "lst", "list"}).has_value());
  EXPECT_FALSE(unknown({"--version"}).has_value());
}

TEST(AgentctlApp, ArgumentsMustBeUtf8) {
  const char* good[] = {"agentctl", "list", "naïve"};
  EXPECT_EQ(CheckArgumentsUtf8(3, good), 0);
  const char* bad[] = {"agentctl", "describe", "a\xff"};
  testing::internal::CaptureStderr();
  EXPECT_EQ(CheckArgumentsUtf8(3, bad), 2);
  const std::string err = testing::internal::GetCapturedStderr();
  EXPECT_NE(err.find("argument 2"), std::string::npos) << err;
  EXPECT_NE(err.find("at byte 1"), std::string::npos) << err;
}

}  // namespace
}  // namespace herd::cli
