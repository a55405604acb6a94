// agentctl: the Herd operator CLI. This file only declares the commands and flags; each
// command is one method of AgentCommands (cli/agent_commands.h).
#include <stdlib.h>

#include <string>

#include "CLI/CLI.hpp"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "cli/agent_commands.h"
#include "cli/generate.h"

namespace {

std::string DefaultHome() {
  if (const char* h = getenv("HERD_HOME"); h && *h) return h;
  if (const char* h = getenv("HOME"); h && *h) return absl::StrCat(h, "/.herd");
  return "/var/lib/herd";
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"agentctl: drive the Herd agent on this host (units, logs, live view)."};
  app.set_version_flag("--version", HERD_VERSION);
  app.require_subcommand(1);
  herd::cli::ClientOptions copts;
  copts.home = DefaultHome();
  std::string output = "table";
  app.add_option("--home", copts.home, "agentd's home directory (env HERD_HOME)")
      ->capture_default_str();
  app.add_option("--socket", copts.socket, "agentd's socket (default HOME/agent.sock)");
  app.add_option("-o,--output", output, "Output format for read commands: table or json")
      ->check(CLI::IsMember({"table", "json"}))
      ->capture_default_str();
  app.add_option("--timeout", copts.timeout_seconds, "Seconds to wait for the agent")
      ->capture_default_str();

  std::string name;
  auto* info = app.add_subcommand("info", "agentd's version, pid, home and own resource use");
  auto* list = app.add_subcommand("list", "Every unit: name, status, pid, cpu, memory, restarts, uptime");
  list->alias("ls");
  auto* describe = app.add_subcommand("describe", "One unit: spec, status and recent events");
  describe->add_option("name", name, "Unit name")->required();

  herd::cli::StartFlags sf;
  std::string target;
  auto* start = app.add_subcommand(
      "start", "Start units from an ecosystem .json file, a script with flags, or an existing "
               "unit by name");
  start->add_option("target", target, "ecosystem.json, a script/program path, or a unit name")
      ->required();
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
  start->add_option("--only", sf.only,
                    "With an ecosystem file: start only these apps (repeatable or comma-separated)")
      ->allow_extra_args(false)
      ->delimiter(',');

  auto* stop = app.add_subcommand("stop", "Stop a unit (or all): SIGTERM, SIGKILL after kill_timeout");
  stop->add_option("name", name, "Unit name or all")->required();
  auto* restart = app.add_subcommand("restart", "Restart a unit (or all)");
  restart->add_option("name", name, "Unit name or all")->required();
  auto* del = app.add_subcommand("delete", "Stop a unit (or all) and forget it");
  del->alias("del");
  del->add_option("name", name, "Unit name or all")->required();

  uint32_t lines = 15;
  bool follow = false;
  auto* logs = app.add_subcommand("logs", "Last lines of a unit's logs; -f to follow");
  logs->add_option("name", name, "Unit name")->required();
  logs->add_option("--lines", lines, "Lines of each stream to show first")->capture_default_str();
  logs->add_flag("-f,--follow", follow, "Keep printing new lines");

  double interval = 1.0;
  int iterations = 0;
  auto* top = app.add_subcommand("top", "Live view of every unit's CPU and memory (like pm2 monit)");
  top->alias("monit");
  top->add_option("--interval", interval, "Seconds between refreshes")->capture_default_str();
  top->add_option("--iterations", iterations, "Stop after N refreshes (0 = until Ctrl-C)");

  auto* kill = app.add_subcommand("kill", "Stop every unit and exit agentd (units start again with agentd)");

  // Modules (PM2's verbs).
  std::string source, target_key, value, action_name;
  bool keep_config = false, force = false;
  std::vector<std::string> params;
  int action_timeout = 30;
  auto* install = app.add_subcommand(
      "install", "Install a module from npm, a .tgz, or a directory (development mode) and start it");
  install->add_option("source", source, "npm package name, path to a .tgz, or a directory")
      ->required();
  auto* uninstall = app.add_subcommand("uninstall", "Stop a module and remove its files");
  uninstall->add_option("name", name, "Module name")->required();
  uninstall->add_flag("--keep-config", keep_config, "Keep its overrides in module_conf.json");
  auto* module = app.add_subcommand("module", "Module maintenance");
  auto* module_update = module->add_subcommand("update", "Reinstall a module (npm: the latest version)");
  module_update->add_option("name", name, "Module name")->required();
  module->require_subcommand(1);
  auto* set = app.add_subcommand("set", "Override a module's config key and restart it (pm2 set)");
  set->add_option("target", target_key, "MODULE:KEY")->required();
  set->add_option("value", value, "The new value (checked against the default's type)")->required();
  set->add_flag("--force", force, "Accept a key the module's manifest does not declare");
  auto* unset = app.add_subcommand("unset", "Remove a module's config override and restart it");
  unset->add_option("target", target_key, "MODULE:KEY")->required();
  auto* conf = app.add_subcommand("conf", "Module configuration: default, override, effective value");
  conf->add_option("module", name, "Module name (default: every module)");
  auto* action = app.add_subcommand("action", "Trigger a module's action and print its reply");
  action->add_option("module", name, "Module name")->required();
  action->add_option("action", action_name, "Action name")->required();
  action->add_option("--param", params, "Parameter KEY=VALUE (repeatable)")->allow_extra_args(false);
  action->add_option("--timeout", action_timeout, "Seconds to wait for the reply")
      ->capture_default_str()
      ->check(CLI::Range(1, 3600));

  std::string gen_lang = "node", gen_dir;
  auto* generate = app.add_subcommand(
      "generate", "Write a sample module that installs and runs as it is (pm2 module:generate)");
  generate->add_option("name", name, "Module name (also the directory, unless --dir)")->required();
  generate->add_option("--lang", gen_lang,
                       absl::StrCat("Language: ", absl::StrJoin(herd::cli::GeneratorLanguages(), ", ")))
      ->capture_default_str();
  generate->add_option("--dir", gen_dir, "Directory to create (default: ./NAME)");

  CLI11_PARSE(app, argc, argv);
  copts.json = output == "json";
  herd::cli::AgentCommands cmd(copts);
  if (*info) return cmd.Info();
  if (*list) return cmd.List();
  if (*describe) return cmd.Describe(name);
  if (*start) return cmd.Start(target, sf);
  if (*stop) return cmd.Stop(name);
  if (*restart) return cmd.Restart(name);
  if (*del) return cmd.Delete(name);
  if (*logs) return cmd.Logs(name, lines, follow);
  if (*top) return cmd.Top(interval, iterations);
  if (*kill) return cmd.Kill();
  if (*generate) {
    std::string dir = gen_dir.empty() ? name : gen_dir;
    auto files = herd::cli::GenerateModule(name, gen_lang, dir);
    if (!files.ok()) {
      fprintf(stderr, "agentctl: %s\n", std::string(files.status().message()).c_str());
      return 1;
    }
    printf("generated %s (%s) in %s:\n", name.c_str(), gen_lang.c_str(), dir.c_str());
    for (const auto& f : *files) printf("  %s\n", f.c_str());
    printf("install it with: agentctl install %s\n", dir.c_str());
    return 0;
  }
  if (*install) return cmd.Install(source);
  if (*uninstall) return cmd.Uninstall(name, keep_config);
  if (*module_update) return cmd.UpdateModule(name);
  if (*set) return cmd.Set(target_key, value, force);
  if (*unset) return cmd.Unset(target_key);
  if (*conf) return cmd.Conf(name);
  if (*action) return cmd.Action(name, action_name, params, action_timeout);
  return 2;
}
