// agentctl's module commands (PM2's verbs): install, uninstall, module update, set, unset,
// conf, action; and generate. set, unset, conf and action reach the fleet when given a scope.
#include <stdio.h>

#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "CLI/CLI.hpp"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "cli/agentctl_app.h"
#include "cli/generate.h"

namespace herd::cli {
namespace {

void AddInstall(CLI::App& app, AgentctlContext& ctx, CommandTable& table) {
  auto source = std::make_shared<std::string>();
  auto* install = app.add_subcommand(
      "install", "Install a module from npm, a .tgz, or a directory (development mode) and start it");
  install->add_option("source", *source, "npm package name, path to a .tgz, or a directory")
      ->required();
  table.Add(install, [&ctx, source] { return ctx.agent().Install(*source); });
}

void AddUninstall(CLI::App& app, AgentctlContext& ctx, CommandTable& table) {
  struct Args {
    std::string name;
    bool keep_config = false;
  };
  auto args = std::make_shared<Args>();
  auto* uninstall = app.add_subcommand("uninstall", "Stop a module and remove its files");
  uninstall->add_option("name", args->name, "Module name")->required();
  uninstall->add_flag("--keep-config", args->keep_config, "Keep its overrides in module_conf.json");
  table.Add(uninstall, [&ctx, args] { return ctx.agent().Uninstall(args->name, args->keep_config); });
}

void AddModuleUpdate(CLI::App& app, AgentctlContext& ctx, CommandTable& table) {
  auto name = std::make_shared<std::string>();
  auto* module = app.add_subcommand("module", "Module maintenance");
  auto* update = module->add_subcommand(
      "update", "Reinstall a module (npm: the latest version, or NAME@VERSION)");
  update->add_option("name", *name, "Module name, or NAME@VERSION (from npm)")->required();
  module->require_subcommand(1);
  table.Add(update, [&ctx, name] { return ctx.agent().UpdateModule(*name); });
}

// set and unset: at the scope given, in the control plane; without one, for this host in
// the control plane it is linked to, or in the local module_conf.json of an agent that is
// not linked.
int ChangeConfig(AgentctlContext& ctx, TargetFlags& scope,
                 const std::function<int(FleetCommands&, const TargetFlags&)>& on_fleet,
                 const std::function<int()>& on_agent) {
  if (scope.any()) return ctx.OnFleet([&](FleetCommands& f) { return on_fleet(f, scope); });
  if (std::string host = ctx.LinkedHost(scope); !host.empty()) {
    scope.hosts = {host};
    return ctx.OnFleet([&](FleetCommands& f) { return on_fleet(f, scope); });
  }
  if (!ctx.controlplane().empty()) {
    fprintf(stderr, "agentctl: with --controlplane, choose a scope: --global, --selector k=v or --host HOST\n");
    return 2;
  }
  return on_agent();
}

struct ConfigArgs {
  std::string target;  // MODULE:KEY
  std::string value;
  bool force = false;
  TargetFlags scope;
};

void AddSet(CLI::App& app, AgentctlContext& ctx, CommandTable& table) {
  auto args = std::make_shared<ConfigArgs>();
  auto* set = app.add_subcommand("set", "Override a module's config key and restart it (pm2 set)");
  set->add_option("target", args->target, "MODULE:KEY")->required();
  set->add_option("value", args->value, "The new value (checked against the default's type)")->required();
  set->add_flag("--force", args->force, "Accept a key the module's manifest does not declare");
  AddTargetFlags(set, args->scope, true);
  table.Add(set, [&ctx, args] {
    return ChangeConfig(
        ctx, args->scope,
        [&](FleetCommands& f, const TargetFlags& scope) {
          return f.Set(args->target, args->value, scope, args->force);
        },
        [&] { return ctx.agent().Set(args->target, args->value, args->force); });
  });
}

void AddUnset(CLI::App& app, AgentctlContext& ctx, CommandTable& table) {
  auto args = std::make_shared<ConfigArgs>();
  auto* unset = app.add_subcommand("unset", "Remove a module's config override and restart it");
  unset->add_option("target", args->target, "MODULE:KEY")->required();
  AddTargetFlags(unset, args->scope, true);
  table.Add(unset, [&ctx, args] {
    return ChangeConfig(
        ctx, args->scope,
        [&](FleetCommands& f, const TargetFlags& scope) { return f.Unset(args->target, scope); },
        [&] { return ctx.agent().Unset(args->target); });
  });
}

// This host's module config, or with --host/--fleet the control plane's.
void AddConf(CLI::App& app, AgentctlContext& ctx, CommandTable& table) {
  struct Args {
    std::string module, host;
    bool fleet = false;
  };
  auto args = std::make_shared<Args>();
  auto* conf = app.add_subcommand("conf", "Module configuration: default, override, effective value");
  conf->add_option("module", args->module, "Module name (default: every module)");
  conf->add_option("--host", args->host, "That host's effective config, from the control plane");
  conf->add_flag("--fleet", args->fleet, "Every override stored in the control plane");
  table.Add(conf, [&ctx, args] {
    if (args->host.empty() && !args->fleet) return ctx.agent().Conf(args->module);
    return ctx.OnFleet([&](FleetCommands& f) { return f.Conf(args->module, args->host); });
  });
}

// On this host, or with hosts given, fanned out across the fleet.
void AddAction(CLI::App& app, AgentctlContext& ctx, CommandTable& table) {
  struct Args {
    std::string module, action;
    std::vector<std::string> params;
    int timeout = 30;
    TargetFlags target;
  };
  auto args = std::make_shared<Args>();
  auto* action = app.add_subcommand("action", "Trigger a module's action and print its reply");
  action->add_option("module", args->module, "Module name")->required();
  action->add_option("action", args->action, "Action name")->required();
  action->add_option("--param", args->params, "Parameter KEY=VALUE (repeatable)")->allow_extra_args(false);
  action->add_option("--timeout", args->timeout, "Seconds to wait for the reply")
      ->capture_default_str()
      ->check(CLI::Range(1, 3600));
  AddTargetFlags(action, args->target, false);
  table.Add(action, [&ctx, args] {
    if (!args->target.any()) {
      return ctx.agent().Action(args->module, args->action, args->params, args->timeout);
    }
    return ctx.OnFleet([&](FleetCommands& f) {
      return f.Action(args->module, args->action, args->params, args->timeout, args->target);
    });
  });
}

// A module's issues (grouped) on this host; --clear forgets them, here or across hosts.
void AddIssues(CLI::App& app, AgentctlContext& ctx, CommandTable& table) {
  struct Args {
    std::string module;
    bool clear = false;
    TargetFlags target;
  };
  auto args = std::make_shared<Args>();
  auto* issues = app.add_subcommand("issues", "A module's issues, grouped by message; --clear forgets them");
  issues->add_option("module", args->module, "Module name")->required();
  issues->add_flag("--clear", args->clear, "Forget the module's issues (the dashboard's Clear)");
  AddTargetFlags(issues, args->target, false);
  table.Add(issues, [&ctx, args] {
    if (!args->target.any()) return ctx.agent().Issues(args->module, args->clear);
    if (!args->clear) {
      fprintf(stderr, "agentctl: issues across hosts: see the dashboard, or GetHost; "
                      "--clear with --host/--selector/--all-hosts clears them there\n");
      return 2;
    }
    return ctx.OnFleet([&](FleetCommands& f) {
      return f.Action(args->module, "herd:clear-issues", {}, 10, args->target);
    });
  });
}

}  // namespace

void AddModuleCommands(CLI::App& app, AgentctlContext& ctx, CommandTable& table) {
  AddInstall(app, ctx, table);
  AddUninstall(app, ctx, table);
  AddModuleUpdate(app, ctx, table);
  AddSet(app, ctx, table);
  AddUnset(app, ctx, table);
  AddConf(app, ctx, table);
  AddAction(app, ctx, table);
  AddIssues(app, ctx, table);
}

void AddGenerateCommand(CLI::App& app, CommandTable& table) {
  struct Args {
    std::string name, lang = "node", dir;
  };
  auto args = std::make_shared<Args>();
  auto* generate = app.add_subcommand(
      "generate", "Write a sample module that installs and runs as it is (pm2 module:generate)");
  generate->add_option("name", args->name, "Module name (also the directory, unless --dir)")->required();
  generate->add_option("--lang", args->lang,
                       absl::StrCat("Language: ", absl::StrJoin(GeneratorLanguages(), ", ")))
      ->capture_default_str();
  generate->add_option("--dir", args->dir, "Directory to create (default: ./NAME)");
  table.Add(generate, [args] {
    const std::string dir = args->dir.empty() ? args->name : args->dir;
    auto files = GenerateModule(args->name, args->lang, dir);
    if (!files.ok()) {
      fprintf(stderr, "agentctl: %s\n", std::string(files.status().message()).c_str());
      return 1;
    }
    printf("generated %s (%s) in %s:\n", args->name.c_str(), args->lang.c_str(), dir.c_str());
    for (const auto& f : *files) printf("  %s\n", f.c_str());
    printf("install it with: agentctl install %s\n", dir.c_str());
    return 0;
  });
}

}  // namespace herd::cli
