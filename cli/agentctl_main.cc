// agentctl: the Herd operator CLI. This file only declares the commands and flags; each
// command is one method of AgentCommands (cli/agent_commands.h).
#include <stdlib.h>

#include <string>

#include "CLI/CLI.hpp"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/strip.h"
#include "common/log_escape.h"
#include "common/utf8.h"
#include "cli/agent_commands.h"
#include "cli/fleet_commands.h"
#include "common/atomic_file.h"
#include "common/crash_handler.h"
#include "cli/generate.h"

namespace {

std::string DefaultHome() {
  if (const char* h = getenv("HERD_HOME"); h && *h) return h;
  if (const char* h = getenv("HOME"); h && *h) return absl::StrCat(h, "/.herd");
  return "/var/lib/herd";
}

}  // namespace

int main(int argc, char** argv) {
  herd::InstallCrashHandlers("agentctl");
  CLI::App app{"agentctl: drive the Herd agent on this host (units, logs, live view, modules) "
               "and the fleet through the control plane (hosts, config at a scope, rollouts, "
               "action fan-out)."};
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
  herd::cli::FleetOptions fopts;
  if (const char* e = getenv("HERD_CONTROLPLANE"); e && *e) fopts.address = e;
  if (const char* e = getenv("HERD_TOKEN_FILE"); e && *e) fopts.token_file = e;
  app.add_option("--controlplane", fopts.address,
                 "Control plane HOST:PORT for fleet commands (env HERD_CONTROLPLANE; default: "
                 "the one the local agent is linked to)");
  app.add_option("--token-file", fopts.token_file,
                 "File with an API token of the control plane (env HERD_TOKEN_FILE, or the "
                 "token itself in HERD_TOKEN)");
  app.add_option("--tls-ca", fopts.tls_ca, "PEM CA of the control plane's certificate (TLS)");
  app.add_option("--tls-cert", fopts.tls_cert, "PEM client certificate (mTLS)");
  app.add_option("--tls-key", fopts.tls_key, "PEM client key (mTLS)");
  herd::cli::TargetFlags tf;
  herd::cli::RolloutFlags rf;
  auto add_target = [&tf](CLI::App* c, bool config_scope) {
    c->add_option("--selector", tf.selector,
                  "Hosts whose labels match, e.g. env=prod,role!=canary (fleet)");
    c->add_option("--host", tf.hosts, "A host id or hostname (repeatable; fleet)")
        ->allow_extra_args(false);
    if (config_scope) {
      c->add_flag("--global", tf.global, "Every host (fleet)");
    } else {
      c->add_flag("--all-hosts", tf.all, "Every host of the fleet");
    }
  };

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
  stop->add_option("name", name, "Unit name, or all (every app; modules only by name)")->required();
  auto* restart = app.add_subcommand(
      "restart", "Restart a unit (or all); with --selector/--host/--all-hosts, a module across "
                 "the fleet as a rollout, batch by batch");
  restart->add_option("name", name, "Unit name, or all (every app; modules only by name)")->required();
  add_target(restart, false);
  restart->add_option("--batch", rf.batch, "Hosts per batch: N or P% (fleet; default 1)");
  restart->add_option("--max-unavailable", rf.max_unavailable,
                      "Hosts restarting at once within a batch (fleet; default: the batch)");
  restart->add_option("--wait-healthy", rf.wait_healthy,
                      "A host is done once the module stayed online this long (fleet; default 1s)");
  restart->add_option("--failure-threshold", rf.failure_threshold,
                      "Stop the rollout after this many failed hosts (fleet; default 1)");
  restart->add_flag("--no-wait", rf.no_wait, "Start the rollout and return (fleet)");
  auto* del = app.add_subcommand("delete", "Stop a unit (or all) and forget it");
  del->alias("del");
  del->add_option("name", name, "Unit name, or all (every app; modules only by name)")->required();

  uint32_t lines = 15;
  bool follow = false;
  auto* logs = app.add_subcommand("logs", "Last lines of a unit's logs; -f to follow");
  logs->add_option("name", name, "Unit name")->required();
  logs->add_option("--lines", lines, "Lines of each stream to show first")->capture_default_str();
  logs->add_flag("-f,--follow", follow, "Keep printing new lines");
  std::string logs_host;
  logs->add_option("--host", logs_host, "Read the unit's logs on this host, through the control plane");

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
  add_target(set, true);
  auto* unset = app.add_subcommand("unset", "Remove a module's config override and restart it");
  unset->add_option("target", target_key, "MODULE:KEY")->required();
  add_target(unset, true);
  auto* conf = app.add_subcommand("conf", "Module configuration: default, override, effective value");
  conf->add_option("module", name, "Module name (default: every module)");
  std::string conf_host;
  bool conf_fleet = false;
  conf->add_option("--host", conf_host, "That host's effective config, from the control plane");
  conf->add_flag("--fleet", conf_fleet, "Every override stored in the control plane");
  auto* action = app.add_subcommand("action", "Trigger a module's action and print its reply");
  action->add_option("module", name, "Module name")->required();
  action->add_option("action", action_name, "Action name")->required();
  action->add_option("--param", params, "Parameter KEY=VALUE (repeatable)")->allow_extra_args(false);
  action->add_option("--timeout", action_timeout, "Seconds to wait for the reply")
      ->capture_default_str()
      ->check(CLI::Range(1, 3600));
  add_target(action, false);

  // Fleet (control plane) reads.
  auto* hosts = app.add_subcommand("hosts", "Hosts of the fleet: status, labels, modules, config");
  add_target(hosts, false);
  auto* host = app.add_subcommand("host", "One host: units with probes, recent events");
  host->add_option("host", name, "Host id or hostname")->required();
  auto* fleet_modules = app.add_subcommand("modules", "Modules across the fleet with their probes");
  fleet_modules->add_option("module", name, "Only this module");
  add_target(fleet_modules, false);
  uint32_t limit = 20;
  auto* rollouts = app.add_subcommand("rollouts", "Recent rollouts");
  rollouts->add_option("--limit", limit, "How many")->capture_default_str();
  bool watch = false;
  auto* rollout = app.add_subcommand("rollout", "One rollout, host by host");
  rollout->add_option("id", name, "Rollout id")->required();
  rollout->add_flag("--watch", watch, "Follow it until it ends (progress bar)");
  auto* audit = app.add_subcommand("audit", "Who changed what (config, rollouts, actions)");
  audit->add_option("--limit", limit, "How many")->capture_default_str();
  int watch_count = 0;
  auto* watch_cmd = app.add_subcommand("watch", "Metrics batches of the fleet as they arrive");
  add_target(watch_cmd, false);
  watch_cmd->add_option("--count", watch_count, "Stop after N batches (0 = until Ctrl-C)");
  std::string series_unit, series_metric;
  auto* series = app.add_subcommand("series", "Recent history of one metric of a host or unit");
  series->add_option("host", name, "Host id or hostname")->required();
  series->add_option("metric", series_metric, "cpu, rss, probe:NAME (host: cpu, memory_available, load1)")
      ->required();
  series->add_option("--unit", series_unit, "Unit (default: the host itself)");

  std::string gen_lang = "node", gen_dir;
  auto* generate = app.add_subcommand(
      "generate", "Write a sample module that installs and runs as it is (pm2 module:generate)");
  generate->add_option("name", name, "Module name (also the directory, unless --dir)")->required();
  generate->add_option("--lang", gen_lang,
                       absl::StrCat("Language: ", absl::StrJoin(herd::cli::GeneratorLanguages(), ", ")))
      ->capture_default_str();
  generate->add_option("--dir", gen_dir, "Directory to create (default: ./NAME)");

  // Every name, path and value reaches agentd or the control plane as a protobuf string,
  // which must be UTF-8 (otherwise protobuf logs an ERROR and the peer drops the request
  // without a word): say which argument is not, before anything is sent.
  for (int i = 1; i < argc; ++i) {
    const size_t bad = herd::FirstInvalidUtf8(argv[i]);
    if (bad != std::string::npos) {
      fprintf(stderr,
              "agentctl: argument %d (\"%s\") is not valid UTF-8 at byte %zu: Herd sends names, "
              "paths and values as UTF-8 text; rename the file or fix the value\n",
              i, herd::EscapeForLog(argv[i], 200).c_str(), bad);
      return 2;
    }
  }
  CLI11_PARSE(app, argc, argv);
  copts.json = output == "json";
  herd::cli::AgentCommands cmd(copts);

  // Fleet commands: the control plane from --controlplane, or the one the local agent is
  // linked to; the token from --token-file or HERD_TOKEN.
  fopts.json = copts.json;
  fopts.timeout_seconds = copts.timeout_seconds;
  std::optional<herd::v1::AgentInfo> local_info;
  bool info_fetched = false;
  auto local = [&]() -> const std::optional<herd::v1::AgentInfo>& {
    if (!info_fetched) {
      local_info = cmd.TryInfo();
      info_fetched = true;
    }
    return local_info;
  };
  auto fleet = [&]() -> std::optional<herd::cli::FleetCommands> {
    if (fopts.address.empty()) {
      if (local() && !local()->controlplane_address().empty()) {
        fopts.address = local()->controlplane_address();
      } else {
        fprintf(stderr,
                "agentctl: no control plane: pass --controlplane HOST:PORT (or set "
                "HERD_CONTROLPLANE), or run this on a host whose agentd is linked to one\n");
        return std::nullopt;
      }
    }
    if (const char* t = getenv("HERD_TOKEN"); t && *t) fopts.token = t;
    if (!fopts.token_file.empty()) {
      auto text = herd::ReadFileToString(fopts.token_file);
      if (!text.ok()) {
        fprintf(stderr, "agentctl: --token-file: %s\n", std::string(text.status().message()).c_str());
        return std::nullopt;
      }
      fopts.token = std::string(absl::StripAsciiWhitespace(*text));
    }
    return herd::cli::FleetCommands(fopts);
  };
  // A linked agent's config belongs to the control plane: `set` without a scope means this
  // host there.
  auto linked_host = [&]() -> std::string {
    if (tf.any()) return "";
    if (local() && !local()->controlplane_address().empty()) return local()->host_id();
    return "";
  };
#define HERD_FLEET(call)            \
  do {                              \
    auto f = fleet();               \
    if (!f) return 1;               \
    return f->call;                 \
  } while (0)
  if (*hosts) HERD_FLEET(Hosts(tf));
  if (*host) HERD_FLEET(Host(name));
  if (*fleet_modules) HERD_FLEET(Modules(name, tf));
  if (*rollouts) HERD_FLEET(Rollouts(limit));
  if (*rollout) HERD_FLEET(Rollout(name, watch));
  if (*audit) HERD_FLEET(Audit(limit));
  if (*series) HERD_FLEET(Series(name, series_unit, series_metric));
  if (*watch_cmd) HERD_FLEET(Watch(tf, watch_count));
  if (*restart && tf.any()) HERD_FLEET(Restart(name, tf, rf));
  if (*action && tf.any()) HERD_FLEET(Action(name, action_name, params, action_timeout, tf));
  if (*logs && !logs_host.empty()) HERD_FLEET(Logs(logs_host, name, lines, follow));
  if (*conf && (!conf_host.empty() || conf_fleet)) HERD_FLEET(Conf(name, conf_host));
  if ((*set || *unset) && tf.any()) {
    if (*set) HERD_FLEET(Set(target_key, value, tf, force));
    HERD_FLEET(Unset(target_key, tf));
  }
  if (*set || *unset) {
    if (std::string h = linked_host(); !h.empty()) {
      tf.hosts = {h};
      if (*set) HERD_FLEET(Set(target_key, value, tf, force));
      HERD_FLEET(Unset(target_key, tf));
    }
    if (!fopts.address.empty()) {
      fprintf(stderr, "agentctl: with --controlplane, choose a scope: --global, --selector k=v or --host HOST\n");
      return 2;
    }
  }
#undef HERD_FLEET
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
