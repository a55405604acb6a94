// agentctl's command line: the global flags and every command, each a small function that
// declares its flags and registers what it runs in a CommandTable (cli/command_table.h).
// main() (cli/agentctl_main.cc) only builds the app, checks the arguments, parses and runs.
//
// Commands are declared in the order `agentctl --help` lists them: units
// (agentctl_unit_commands.cc), modules (agentctl_module_commands.cc), fleet reads
// (agentctl_fleet_commands.cc), then generate.
#pragma once

#include <functional>
#include <memory>
#include <optional>
#include <string>

#include "cli/agent_commands.h"
#include "cli/command_table.h"
#include "cli/fleet_commands.h"

namespace CLI {
class App;
}

namespace herd::cli {

// What every command shares: the global flags, the local agent (asked at most once for its
// info), and the control plane that fleet commands talk to.
class AgentctlContext {
 public:
  // Defaults from the environment: HERD_HOME (or HOME/.herd), HERD_CONTROLPLANE,
  // HERD_TOKEN_FILE.
  AgentctlContext();

  void AddGlobalFlags(CLI::App& app);
  // Once the command line is parsed: -o and --timeout apply to the agent and the fleet.
  void OptionsParsed();
  // JSON output whatever -o says (PM2's jlist), before the first call.
  void UseJson();

  // The local agent's commands (built on first use, with the parsed options).
  AgentCommands& agent();
  // Runs `call` on the control plane from --controlplane, or the one the local agent is
  // linked to, with the token from --token-file or HERD_TOKEN; 1 (after saying why) when
  // there is none or its token file cannot be read.
  int OnFleet(const std::function<int(FleetCommands&)>& call);
  // A linked agent's config belongs to the control plane: with no scope given, the host id
  // of the local agent if it is linked to one, else "".
  std::string LinkedHost(const TargetFlags& scope);
  // --controlplane or HERD_CONTROLPLANE (or the linked agent's, once OnFleet found it).
  const std::string& controlplane() const { return fleet_.address; }

 private:
  const std::optional<herd::v1::AgentInfo>& LocalInfo();
  std::optional<FleetCommands> Fleet();

  ClientOptions client_;
  FleetOptions fleet_;
  std::string output_ = "table";
  std::unique_ptr<AgentCommands> agent_;
  std::optional<herd::v1::AgentInfo> local_info_;
  bool info_fetched_ = false;
};

// Registration, in help order. Each keeps its flags alive in the command it registers.
void AddUnitCommands(CLI::App& app, AgentctlContext& ctx, CommandTable& table);
void AddModuleCommands(CLI::App& app, AgentctlContext& ctx, CommandTable& table);
void AddFleetCommands(CLI::App& app, AgentctlContext& ctx, CommandTable& table);
void AddGenerateCommand(CLI::App& app, CommandTable& table);
// `completion bash|zsh|fish`, and the hidden `__complete` its scripts call.
void AddCompletionCommands(CLI::App& app, AgentctlContext& ctx, CommandTable& table);
// The whole command line: global flags and every command, in that order.
void AddAgentctlCommands(CLI::App& app, AgentctlContext& ctx, CommandTable& table);

// The scope flags of fleet-capable commands: --selector, --host, and --global (config) or
// --all-hosts.
void AddTargetFlags(CLI::App* command, TargetFlags& target, bool config_scope);

// Every name, path and value reaches agentd or the control plane as a protobuf string,
// which must be UTF-8: 0 when every argument is, else 2 after naming the one that is not.
// The command the command line names, when it is not one of `app`'s (a name or alias):
// what to tell the operator ("unknown command "lst": did you mean "list"?"); nullopt when
// the command is known or there is none (CLI11 then says what is wrong).
// argv with PM2's colon commands (`module:update`, `module:generate`) as agentctl's.
std::vector<std::string> ExpandPm2Names(const CLI::App& app, int argc, const char* const* argv);
std::optional<std::string> UnknownCommand(const CLI::App& app, int argc, const char* const* argv);

int CheckArgumentsUtf8(int argc, const char* const* argv);

}  // namespace herd::cli
