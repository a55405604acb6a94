// agentctl: the Herd operator CLI. main() only wires: the commands are declared and
// registered in cli/agentctl_app.h (one function each), and each runs one method of
// AgentCommands (cli/agent_commands.h) or FleetCommands (cli/fleet_commands.h).
#include <stdio.h>

#include <string>
#include <vector>

#include "CLI/CLI.hpp"
#include "cli/agentctl_app.h"
#include "cli/command_table.h"
#include "common/crash_handler.h"

int main(int argc, char** argv) {
  herd::InstallCrashHandlers("agentctl");
  CLI::App app{"agentctl: drive the Herd agent on this host (units, logs, live view, modules) "
               "and the fleet through the control plane (hosts, config at a scope, rollouts, "
               "action fan-out)."};
  app.set_version_flag("--version", HERD_VERSION);
  app.require_subcommand(1);
  herd::cli::AgentctlContext ctx;
  herd::cli::CommandTable commands;
  herd::cli::AddAgentctlCommands(app, ctx, commands);

  if (int bad = herd::cli::CheckArgumentsUtf8(argc, argv); bad != 0) return bad;
  std::vector<std::string> args = herd::cli::ExpandPm2Names(app, argc, argv);
  std::vector<const char*> expanded;
  for (const auto& a : args) expanded.push_back(a.c_str());
  const int n = static_cast<int>(expanded.size());
  if (auto unknown = herd::cli::UnknownCommand(app, n, expanded.data())) {
    fprintf(stderr, "%s\n", unknown->c_str());
    return 1;
  }
  CLI11_PARSE(app, n, expanded.data());
  ctx.OptionsParsed();
  return commands.Run();
}
