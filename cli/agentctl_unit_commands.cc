// agentctl's unit commands: info, list, describe, start, stop, restart, delete, logs, top,
// kill. restart and logs reach the fleet when given hosts.
#include <memory>
#include <string>

#include "CLI/CLI.hpp"
#include "cli/agentctl_app.h"

namespace herd::cli {
namespace {

// The unit name (or "all") of stop, restart and delete.
constexpr const char* kUnitOrAll = "Unit name, or all (every app; modules only by name)";

void AddInfo(CLI::App& app, AgentctlContext& ctx, CommandTable& table) {
  auto* info = app.add_subcommand("info", "agentd's version, pid, home and own resource use");
  table.Add(info, [&ctx] { return ctx.agent().Info(); });
}

void AddList(CLI::App& app, AgentctlContext& ctx, CommandTable& table) {
  auto* list = app.add_subcommand("list", "Every unit: name, status, pid, cpu, memory, restarts, uptime");
  list->alias("ls");
  table.Add(list, [&ctx] { return ctx.agent().List(); });
  // PM2's habits: `pm2 jlist` / `pm2 prettylist` print the list as JSON.
  auto* jlist = app.add_subcommand("jlist", "PM2's jlist: the list as JSON (= list -o json)");
  jlist->alias("prettylist");
  table.Add(jlist, [&ctx] {
    ctx.UseJson();
    return ctx.agent().List();
  });
}

void AddDescribe(CLI::App& app, AgentctlContext& ctx, CommandTable& table) {
  auto name = std::make_shared<std::string>();
  auto* describe = app.add_subcommand("describe", "One unit: spec, status and recent events");
  describe->alias("show");  // PM2's name
  describe->add_option("name", *name, "Unit name")->required();
  table.Add(describe, [&ctx, name] { return ctx.agent().Describe(*name); });
}

// The app fields of `start SCRIPT` (an ecosystem file has its own).
void AddStartAppFlags(CLI::App* start, StartFlags& sf) {
  start->add_option("args", sf.args, "Arguments for the script (after --)");
  start->add_option("--name", sf.name, "Unit name (default: the script's file name)");
  start->add_option("--interpreter", sf.interpreter,
                    "Program that runs the script (default: from extension or shebang; none = exec directly)");
  start->add_option("--interpreter-args", sf.interpreter_args, "Arguments for the interpreter");
  start->add_option("--cwd", sf.cwd, "Working directory");
  // Repeatable options take one value per occurrence, so they never swallow the `--` that
  // starts the script's own arguments.
  start->add_option("--env", sf.env, "Environment variable NAME=value (repeatable)")
      ->allow_extra_args(false);
  start->add_flag("--no-autorestart", sf.no_autorestart, "Do not restart when the process exits");
  start->add_flag("-f,--force", sf.force,
                  "Replace a unit of the same name with this script (otherwise refused, as PM2 "
                  "refuses a script already launched)");
  start->add_option("--max-restarts", sf.max_restarts,
                    "Unstable restarts before the unit is errored (default 16)");
  start->add_option("--min-uptime", sf.min_uptime, "Shorter runs are unstable (default 1000 ms)");
  start->add_option("--restart-delay", sf.restart_delay, "Delay before a restart (e.g. 500ms, 2s)");
  start->add_option("--exp-backoff-restart-delay", sf.exp_backoff_restart_delay,
                    "First delay of exponential backoff (x1.5 per unstable restart, max 15s)");
  start->add_option("--kill-timeout", sf.kill_timeout, "SIGTERM to SIGKILL delay (default 1600 ms)");
  start->add_option("--stop-exit-codes", sf.stop_exit_codes,
                    "Exit codes that mean done, no restart (repeatable or comma-separated)")
      ->allow_extra_args(false)
      ->delimiter(',');
  start->add_option("--max-memory-restart", sf.max_memory_restart,
                    "Restart when memory exceeds this (e.g. 200M, 1G)");
  start->add_option("--memory-max", sf.memory_max,
                    "Hard memory limit for the unit's whole tree, kernel-enforced (e.g. 512M)");
  start->add_option("--pids-max", sf.pids_max,
                    "Most processes and threads the unit's tree may have (kernel-enforced)");
  start->add_option("--cron-restart", sf.cron_restart, "Cron expression at which to restart");
  start->add_flag("--merge-logs", sf.merge_logs, "Write stderr into the stdout log");
  start->add_option("--log-date-format", sf.log_date_format,
                    "Prefix log lines with this time format (e.g. \"YYYY-MM-DD HH:mm:ss Z\")");
  start->add_flag("--time", sf.time, "Prefix log lines with an ISO time");
  start->add_option("--out-file", sf.out_file, "stdout log path");
  start->add_option("--error-file", sf.error_file, "stderr log path");
  start->add_option("--pid-file", sf.pid_files,
                    "Also sample the process named in this pid file (repeatable)")
      ->allow_extra_args(false);
}

void AddStart(CLI::App& app, AgentctlContext& ctx, CommandTable& table) {
  struct Args {
    std::string target;
    StartFlags flags;
  };
  auto args = std::make_shared<Args>();
  auto* start = app.add_subcommand(
      "start", "Start units from an ecosystem .json file, a script with flags, or an existing "
               "unit by name");
  start->add_option("target", args->target, "ecosystem.json, a script/program path, or a unit name")
      ->required();
  AddStartAppFlags(start, args->flags);
  start->add_option("--only", args->flags.only,
                    "With an ecosystem file: start only these apps (repeatable or comma-separated)")
      ->allow_extra_args(false)
      ->delimiter(',');
  table.Add(start, [&ctx, args] { return ctx.agent().Start(args->target, args->flags); });
}

void AddStop(CLI::App& app, AgentctlContext& ctx, CommandTable& table) {
  auto name = std::make_shared<std::string>();
  auto* stop = app.add_subcommand("stop", "Stop a unit (or all): SIGTERM, SIGKILL after kill_timeout");
  stop->add_option("name", *name, kUnitOrAll)->required();
  table.Add(stop, [&ctx, name] { return ctx.agent().Stop(*name); });
}

// On this host, or with hosts given, a module across the fleet as a rollout.
void AddRestart(CLI::App& app, AgentctlContext& ctx, CommandTable& table) {
  struct Args {
    std::string name;
    TargetFlags target;
    RolloutFlags rollout;
  };
  auto args = std::make_shared<Args>();
  auto* restart = app.add_subcommand(
      "restart", "Restart a unit (or all); with --selector/--host/--all-hosts, a module across "
                 "the fleet as a rollout, batch by batch");
  restart->alias("reload");  // PM2's graceful restart: a unit's restart already is one
  restart->add_option("name", args->name, kUnitOrAll)->required();
  AddTargetFlags(restart, args->target, false);
  RolloutFlags& rf = args->rollout;
  restart->add_option("--batch", rf.batch, "Hosts per batch: N or P% (fleet; default 1)");
  restart->add_option("--max-unavailable", rf.max_unavailable,
                      "Hosts restarting at once within a batch (fleet; default: the batch)");
  restart->add_option("--wait-healthy", rf.wait_healthy,
                      "A host is done once the module stayed online this long (fleet; default 1s)");
  restart->add_option("--failure-threshold", rf.failure_threshold,
                      "Stop the rollout after this many failed hosts (fleet; default 1)");
  restart->add_flag("--no-wait", rf.no_wait, "Start the rollout and return (fleet)");
  table.Add(restart, [&ctx, args] {
    if (!args->target.any()) return ctx.agent().Restart(args->name);
    return ctx.OnFleet(
        [&](FleetCommands& f) { return f.Restart(args->name, args->target, args->rollout); });
  });
}

void AddDelete(CLI::App& app, AgentctlContext& ctx, CommandTable& table) {
  auto name = std::make_shared<std::string>();
  auto* del = app.add_subcommand("delete", "Stop a unit (or all) and forget it");
  del->alias("del");
  del->add_option("name", *name, kUnitOrAll)->required();
  table.Add(del, [&ctx, name] { return ctx.agent().Delete(*name); });
}

// This host's logs, or with --host another's through the control plane.
void AddLogs(CLI::App& app, AgentctlContext& ctx, CommandTable& table) {
  struct Args {
    std::string name, host;
    uint32_t lines = 15;
    bool follow = false;
  };
  auto args = std::make_shared<Args>();
  auto* logs = app.add_subcommand("logs", "Last lines of a unit's logs; -f to follow");
  logs->add_option("name", args->name, "Unit name")->required();
  logs->add_option("--lines", args->lines, "Lines of each stream to show first")->capture_default_str();
  logs->add_flag("-f,--follow", args->follow, "Keep printing new lines");
  logs->add_option("--host", args->host, "Read the unit's logs on this host, through the control plane");
  table.Add(logs, [&ctx, args] {
    if (args->host.empty()) return ctx.agent().Logs(args->name, args->lines, args->follow);
    return ctx.OnFleet([&](FleetCommands& f) {
      return f.Logs(args->host, args->name, args->lines, args->follow);
    });
  });
}

void AddTop(CLI::App& app, AgentctlContext& ctx, CommandTable& table) {
  struct Args {
    double interval = 1.0;
    int iterations = 0;
  };
  auto args = std::make_shared<Args>();
  auto* top = app.add_subcommand("top", "Live view of every unit's CPU and memory (like pm2 monit)");
  top->alias("monit");
  top->add_option("--interval", args->interval, "Seconds between refreshes")->capture_default_str();
  top->add_option("--iterations", args->iterations, "Stop after N refreshes (0 = until Ctrl-C)");
  table.Add(top, [&ctx, args] { return ctx.agent().Top(args->interval, args->iterations); });
}

void AddKill(CLI::App& app, AgentctlContext& ctx, CommandTable& table) {
  auto* kill = app.add_subcommand("kill", "Stop every unit and exit agentd (units start again with agentd)");
  table.Add(kill, [&ctx] { return ctx.agent().Kill(); });
}

// PM2's save and resurrect: agentd does both by itself, so they say where and how.
void AddSaveResurrect(CLI::App& app, CommandTable& table) {
  auto* save = app.add_subcommand("save", "PM2's save: agentd already keeps the unit list");
  table.Add(save, [] {
    printf("nothing to do: agentd saves the unit list (and which should run) in HOME/state.json "
           "on every change\n");
    return 0;
  });
  auto* resurrect = app.add_subcommand("resurrect", "PM2's resurrect: agentd does it when it starts");
  table.Add(resurrect, [] {
    printf("nothing to do: agentd starts the units that were running when it starts; "
           "`agentctl start all` starts every stopped app\n");
    return 0;
  });
}

void AddFlush(CLI::App& app, AgentctlContext& ctx, CommandTable& table) {
  auto name = std::make_shared<std::string>();
  auto* flush = app.add_subcommand("flush", "Empty the log files of a unit, or of every unit (pm2 flush)");
  flush->add_option("name", *name, "Unit name (default: every unit)");
  table.Add(flush, [&ctx, name] { return ctx.agent().Flush(*name); });
}

}  // namespace

void AddUnitCommands(CLI::App& app, AgentctlContext& ctx, CommandTable& table) {
  AddInfo(app, ctx, table);
  AddList(app, ctx, table);
  AddDescribe(app, ctx, table);
  AddStart(app, ctx, table);
  AddStop(app, ctx, table);
  AddRestart(app, ctx, table);
  AddDelete(app, ctx, table);
  AddLogs(app, ctx, table);
  AddTop(app, ctx, table);
  AddKill(app, ctx, table);
  AddFlush(app, ctx, table);
  AddSaveResurrect(app, table);
}

}  // namespace herd::cli
