// agentctl's fleet reads, from the control plane's Fleet API: hosts, host, modules,
// rollouts, rollout, audit, watch, series.
#include <memory>
#include <string>

#include "CLI/CLI.hpp"
#include "cli/agentctl_app.h"

namespace herd::cli {
namespace {

// Most fleet reads take one name (a host, a module, a rollout id) and a scope.
struct FleetArgs {
  std::string name;
  TargetFlags target;
  uint32_t limit = 20;
  bool watch = false;
  int count = 0;
  std::string unit, metric;
};

using FleetCall = int (*)(FleetCommands&, const FleetArgs&);

void Register(CommandTable& table, CLI::App* command, AgentctlContext& ctx,
              std::shared_ptr<FleetArgs> args, FleetCall call) {
  table.Add(command, [&ctx, args, call] {
    return ctx.OnFleet([&](FleetCommands& f) { return call(f, *args); });
  });
}

void AddHosts(CLI::App& app, AgentctlContext& ctx, CommandTable& table) {
  auto args = std::make_shared<FleetArgs>();
  auto* hosts = app.add_subcommand("hosts", "Hosts of the fleet: status, labels, modules, config");
  AddTargetFlags(hosts, args->target, false);
  Register(table, hosts, ctx, args, [](FleetCommands& f, const FleetArgs& a) { return f.Hosts(a.target); });
}

void AddHost(CLI::App& app, AgentctlContext& ctx, CommandTable& table) {
  auto args = std::make_shared<FleetArgs>();
  auto* host = app.add_subcommand("host", "One host: units with probes, recent events");
  host->add_option("host", args->name, "Host id or hostname")->required();
  Register(table, host, ctx, args, [](FleetCommands& f, const FleetArgs& a) { return f.Host(a.name); });
}

void AddModules(CLI::App& app, AgentctlContext& ctx, CommandTable& table) {
  auto args = std::make_shared<FleetArgs>();
  auto* modules = app.add_subcommand("modules", "Modules across the fleet with their probes");
  modules->add_option("module", args->name, "Only this module");
  AddTargetFlags(modules, args->target, false);
  Register(table, modules, ctx, args,
           [](FleetCommands& f, const FleetArgs& a) { return f.Modules(a.name, a.target); });
}

void AddRollouts(CLI::App& app, AgentctlContext& ctx, CommandTable& table) {
  auto args = std::make_shared<FleetArgs>();
  auto* rollouts = app.add_subcommand("rollouts", "Recent rollouts");
  rollouts->add_option("--limit", args->limit, "How many")->capture_default_str();
  Register(table, rollouts, ctx, args,
           [](FleetCommands& f, const FleetArgs& a) { return f.Rollouts(a.limit); });
}

void AddRollout(CLI::App& app, AgentctlContext& ctx, CommandTable& table) {
  auto args = std::make_shared<FleetArgs>();
  auto* rollout = app.add_subcommand("rollout", "One rollout, host by host");
  rollout->add_option("id", args->name, "Rollout id")->required();
  rollout->add_flag("--watch", args->watch, "Follow it until it ends (progress bar)");
  Register(table, rollout, ctx, args,
           [](FleetCommands& f, const FleetArgs& a) { return f.Rollout(a.name, a.watch); });
}

void AddAudit(CLI::App& app, AgentctlContext& ctx, CommandTable& table) {
  auto args = std::make_shared<FleetArgs>();
  auto* audit = app.add_subcommand("audit", "Who changed what (config, rollouts, actions)");
  audit->add_option("--limit", args->limit, "How many")->capture_default_str();
  Register(table, audit, ctx, args, [](FleetCommands& f, const FleetArgs& a) { return f.Audit(a.limit); });
}

void AddWatch(CLI::App& app, AgentctlContext& ctx, CommandTable& table) {
  auto args = std::make_shared<FleetArgs>();
  auto* watch = app.add_subcommand("watch", "Metrics batches of the fleet as they arrive");
  AddTargetFlags(watch, args->target, false);
  watch->add_option("--count", args->count, "Stop after N batches (0 = until Ctrl-C)");
  Register(table, watch, ctx, args,
           [](FleetCommands& f, const FleetArgs& a) { return f.Watch(a.target, a.count); });
}

void AddSeries(CLI::App& app, AgentctlContext& ctx, CommandTable& table) {
  auto args = std::make_shared<FleetArgs>();
  auto* series = app.add_subcommand("series", "Recent history of one metric of a host or unit");
  series->add_option("host", args->name, "Host id or hostname")->required();
  series->add_option("metric", args->metric, "cpu, rss, probe:NAME (host: cpu, memory_available, load1)")
      ->required();
  series->add_option("--unit", args->unit, "Unit (default: the host itself)");
  Register(table, series, ctx, args,
           [](FleetCommands& f, const FleetArgs& a) { return f.Series(a.name, a.unit, a.metric); });
}

}  // namespace

// Which modules run where: declared at a scope, converged to by the agents.
void AddDeploy(CLI::App& app, AgentctlContext& ctx, CommandTable& table) {
  struct Args {
    FleetCommands::DeployFlags deploy;
    std::string name;
    TargetFlags scope;
  };
  auto args = std::make_shared<Args>();
  auto* deploy = app.add_subcommand(
      "deploy", "Declare a module the hosts of a scope must have: an npm spec, or a .tgz or "
                "directory here (uploaded to the control plane once; agents fetch it from "
                "there); their agents install or upgrade it");
  deploy->add_option("source", args->deploy.source,
                     "e.g. pm2-server-monit@3.0.0, ./my-module.tgz, ./my-module/")
      ->required();
  deploy->add_option("--name", args->deploy.name, "The module's name (derived from an npm spec)");
  deploy->add_option("--version", args->deploy.version,
                     "The version the hosts must reach (derived from NAME@VERSION)");
  deploy->add_flag("--host-path", args->deploy.host_path,
                   "SOURCE is an absolute path on the hosts: do not upload it");
  // A change of version runs as a rollout over the online hosts under the declaration.
  RolloutFlags& rf = args->deploy.rollout;
  deploy->add_option("--batch", rf.batch, "Rollout: hosts per batch, N or P% (default 1)");
  deploy->add_option("--max-unavailable", rf.max_unavailable,
                     "Rollout: hosts moving at once within a batch (default: the batch)");
  deploy->add_option("--wait-healthy", rf.wait_healthy,
                     "Rollout: a host passes once the module is online this long at the new "
                     "version without a restart (default 10s)");
  deploy->add_option("--failure-threshold", rf.failure_threshold,
                     "Rollout: stop after this many hosts failed (default 1)");
  deploy->add_option("--host-timeout", args->deploy.host_timeout,
                     "Rollout: a host that has not passed after this long failed (default 5m)");
  deploy->add_flag("--no-rollback", args->deploy.no_rollback,
                   "Rollout: leave failed hosts at the new version (default: moved back)");
  deploy->add_flag("--all-at-once", args->deploy.all_at_once,
                   "No rollout: every host moves to the new version at once");
  deploy->add_flag("--no-wait", rf.no_wait, "Rollout: start it and return");
  AddTargetFlags(deploy, args->scope, true);
  table.Add(deploy, [&ctx, args] {
    return ctx.OnFleet([&](FleetCommands& f) { return f.Deploy(args->deploy, args->scope); });
  });

  auto uargs = std::make_shared<Args>();
  auto* undeploy = app.add_subcommand(
      "undeploy", "Remove a module's declaration at a scope; hosts no longer wanting it "
                  "uninstall it (if their agent installed it for a deployment)");
  undeploy->add_option("name", uargs->name, "Module name")->required();
  AddTargetFlags(undeploy, uargs->scope, true);
  table.Add(undeploy, [&ctx, uargs] {
    return ctx.OnFleet([&](FleetCommands& f) { return f.Undeploy(uargs->name, uargs->scope); });
  });

  auto largs = std::make_shared<FleetArgs>();
  auto* list = app.add_subcommand(
      "deployments", "Declared modules: where, which version, which hosts converged or not");
  list->add_option("module", largs->name, "Only this module");
  Register(table, list, ctx, largs,
           [](FleetCommands& f, const FleetArgs& a) { return f.Deployments(a.name); });

  auto aargs = std::make_shared<FleetArgs>();
  auto* artifacts = app.add_subcommand(
      "artifacts", "Module archives uploaded to the control plane (by agentctl deploy FILE)");
  artifacts->add_option("module", aargs->name, "Only this module's");
  Register(table, artifacts, ctx, aargs,
           [](FleetCommands& f, const FleetArgs& a) { return f.Artifacts(a.name); });
}

void AddFleetCommands(CLI::App& app, AgentctlContext& ctx, CommandTable& table) {
  AddDeploy(app, ctx, table);
  AddHosts(app, ctx, table);
  AddHost(app, ctx, table);
  AddModules(app, ctx, table);
  AddRollouts(app, ctx, table);
  AddRollout(app, ctx, table);
  AddAudit(app, ctx, table);
  AddWatch(app, ctx, table);
  AddSeries(app, ctx, table);
}

}  // namespace herd::cli
