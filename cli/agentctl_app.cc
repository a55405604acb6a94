#include "cli/agentctl_app.h"

#include <stdio.h>
#include <stdlib.h>

#include <algorithm>
#include <vector>

#include "CLI/CLI.hpp"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/strip.h"
#include "cli/completion.h"
#include "cli/render.h"
#include "common/atomic_file.h"
#include "common/log_escape.h"
#include "common/utf8.h"

namespace herd::cli {
namespace {

std::string DefaultHome() {
  if (const char* h = getenv("HERD_HOME"); h && *h) return h;
  if (const char* h = getenv("HOME"); h && *h) return absl::StrCat(h, "/.herd");
  return "/var/lib/herd";
}

}  // namespace

AgentctlContext::AgentctlContext() {
  client_.home = DefaultHome();
  if (const char* e = getenv("HERD_CONTROLPLANE"); e && *e) fleet_.address = e;
  if (const char* e = getenv("HERD_TOKEN_FILE"); e && *e) fleet_.token_file = e;
}

void AgentctlContext::AddGlobalFlags(CLI::App& app) {
  app.add_option("--home", client_.home, "agentd's home directory (env HERD_HOME)")
      ->capture_default_str();
  app.add_option("--socket", client_.socket, "agentd's socket (default HOME/agent.sock)");
  app.add_option("-o,--output", output_,
                 "Output format for read commands: table, json or yaml (JSON numbers as "
                 "numbers, states as words, JSON values as themselves)")
      ->check(CLI::IsMember({"table", "json", "yaml"}))
      ->capture_default_str();
  app.add_option("--timeout", client_.timeout_seconds, "Seconds to wait for the agent")
      ->capture_default_str();
  app.add_option("--controlplane", fleet_.address,
                 "Control plane HOST:PORT for fleet commands, or HOST:PORT,HOST:PORT,... for "
                 "replicas (the first that answers; env HERD_CONTROLPLANE; default: the one the "
                 "local agent is linked to)");
  app.add_option("--token-file", fleet_.token_file,
                 "File with an API token of the control plane (env HERD_TOKEN_FILE, or the "
                 "token itself in HERD_TOKEN)");
  app.add_option("--tls-ca", fleet_.tls_ca, "PEM CA of the control plane's certificate (TLS)");
  app.add_option("--tls-cert", fleet_.tls_cert, "PEM client certificate (mTLS)");
  app.add_option("--tls-key", fleet_.tls_key, "PEM client key (mTLS)");
}

void AgentctlContext::OptionsParsed() {
  client_.json = output_ == "json" || output_ == "yaml";
  SetOutputFormat(output_ == "yaml" ? OutputFormat::kYaml : OutputFormat::kJson);
  fleet_.json = client_.json;
  fleet_.timeout_seconds = client_.timeout_seconds;
}

void AgentctlContext::UseJson() {
  output_ = "json";
  OptionsParsed();
  agent_.reset();  // made again with the JSON option
}

AgentCommands& AgentctlContext::agent() {
  if (!agent_) agent_ = std::make_unique<AgentCommands>(client_);
  return *agent_;
}

const std::optional<herd::v1::AgentInfo>& AgentctlContext::LocalInfo() {
  if (!info_fetched_) {
    local_info_ = agent().TryInfo();
    info_fetched_ = true;
  }
  return local_info_;
}

std::optional<FleetCommands> AgentctlContext::Fleet() {
  if (fleet_.address.empty()) {
    if (LocalInfo() && !LocalInfo()->controlplane_address().empty()) {
      // The replica the agent is connected to; when it is not, every replica it knows.
      fleet_.address = LocalInfo()->controlplane_address();
      if (!LocalInfo()->controlplane_connected() &&
          LocalInfo()->controlplane_addresses_size() > 1) {
        fleet_.address = absl::StrJoin(LocalInfo()->controlplane_addresses(), ",");
      }
    } else {
      fprintf(stderr,
              "agentctl: no control plane: pass --controlplane HOST:PORT (or set "
              "HERD_CONTROLPLANE), or run this on a host whose agentd is linked to one\n");
      return std::nullopt;
    }
  }
  if (const char* t = getenv("HERD_TOKEN"); t && *t) fleet_.token = t;
  if (!fleet_.token_file.empty()) {
    auto text = herd::ReadFileToString(fleet_.token_file);
    if (!text.ok()) {
      fprintf(stderr, "agentctl: --token-file: %s\n", std::string(text.status().message()).c_str());
      return std::nullopt;
    }
    fleet_.token = std::string(absl::StripAsciiWhitespace(*text));
  }
  return FleetCommands(fleet_);
}

int AgentctlContext::OnFleet(const std::function<int(FleetCommands&)>& call) {
  auto fleet = Fleet();
  if (!fleet) return 1;
  return call(*fleet);
}

std::string AgentctlContext::LinkedHost(const TargetFlags& scope) {
  if (scope.any()) return "";
  if (LocalInfo() && !LocalInfo()->controlplane_address().empty()) return LocalInfo()->host_id();
  return "";
}

void AddTargetFlags(CLI::App* c, TargetFlags& target, bool config_scope) {
  c->add_option("--selector", target.selector,
                "Hosts whose labels match, e.g. env=prod,role!=canary (fleet)");
  c->add_option("--host", target.hosts, "A host id or hostname (repeatable; fleet)")
      ->allow_extra_args(false);
  if (config_scope) {
    c->add_flag("--global", target.global, "Every host (fleet)");
  } else {
    c->add_flag("--all-hosts", target.all, "Every host of the fleet");
  }
}

void AddAgentctlCommands(CLI::App& app, AgentctlContext& ctx, CommandTable& table) {
  // Global flags after the command too (`agentctl list -o json`, as kubectl takes them):
  // what a subcommand does not know falls through to the app. Inherited by the subcommands
  // made below.
  app.fallthrough();
  ctx.AddGlobalFlags(app);
  AddUnitCommands(app, ctx, table);
  AddModuleCommands(app, ctx, table);
  AddFleetCommands(app, ctx, table);
  AddGenerateCommand(app, table);
  AddCompletionCommands(app, ctx, table);
}

void AddCompletionCommands(CLI::App& app, AgentctlContext& ctx, CommandTable& table) {
  auto shell = std::make_shared<std::string>();
  auto* completion = app.add_subcommand(
      "completion", "Print a completion script: source <(agentctl completion bash) (zsh), or "
                    "agentctl completion fish | source");
  completion->add_option("shell", *shell, "bash, zsh or fish")
      ->required()
      ->check(CLI::IsMember({"bash", "zsh", "fish"}));
  table.Add(completion, [&app, shell] {
    std::vector<std::string> names;
    for (const CLI::App* sub : app.get_subcommands([](const CLI::App*) { return true; })) {
      if (sub->get_group().empty()) continue;  // hidden
      names.push_back(sub->get_name());
      for (const auto& a : sub->get_aliases()) names.push_back(a);
    }
    std::sort(names.begin(), names.end());
    auto script = CompletionScript(*shell, names);
    if (!script.ok()) {
      fprintf(stderr, "agentctl: %s\n", std::string(script.status().message()).c_str());
      return 2;
    }
    printf("%s", script->c_str());
    return 0;
  });
  // What the scripts call when Tab is pressed; not in --help.
  auto kind = std::make_shared<std::string>();
  auto* complete = app.add_subcommand("__complete", "Names for shell completion")->group("");
  complete->add_option("kind", *kind, "units, modules or keys")
      ->required()
      ->check(CLI::IsMember({"units", "modules", "keys"}));
  table.Add(complete, [&ctx, kind] { return ctx.agent().CompleteNames(*kind); });
}

namespace {

size_t EditDistance(const std::string& a, const std::string& b) {
  std::vector<size_t> row(b.size() + 1);
  for (size_t j = 0; j <= b.size(); ++j) row[j] = j;
  for (size_t i = 1; i <= a.size(); ++i) {
    size_t diag = row[0];
    row[0] = i;
    for (size_t j = 1; j <= b.size(); ++j) {
      const size_t up = row[j];
      row[j] = std::min({row[j] + 1, row[j - 1] + 1, diag + (a[i - 1] == b[j - 1] ? 0 : 1)});
      diag = up;
    }
  }
  return row[b.size()];
}

// The app's options that take a value, as they may come before the command.
bool TakesValue(const CLI::App& app, const std::string& arg) {
  if (arg.find('=') != std::string::npos) return false;  // --home=/x
  for (const CLI::Option* o : app.get_options()) {
    if (o->get_expected_min() == 0) continue;  // a flag
    for (const auto& n : o->get_lnames()) {
      if (arg == "--" + n) return true;
    }
    for (const auto& n : o->get_snames()) {
      if (arg == "-" + n) return true;
    }
  }
  return false;
}

}  // namespace

std::vector<std::string> ExpandPm2Names(const CLI::App& app, int argc, const char* const* argv) {
  std::vector<std::string> out(argv, argv + argc);
  for (size_t i = 1; i < out.size(); ++i) {
    if (out[i] == "--") break;
    if (out[i].size() > 1 && out[i][0] == '-') {
      if (TakesValue(app, out[i])) ++i;
      continue;
    }
    // The command word. CLI11 takes no ':' in a command's name.
    if (out[i] == "module:update") {
      out[i] = "update";
      out.insert(out.begin() + static_cast<long>(i), "module");
    } else if (out[i] == "module:generate") {
      out[i] = "generate";
    }
    break;
  }
  return out;
}

std::optional<std::string> UnknownCommand(const CLI::App& app, int argc,
                                          const char* const* argv) {
  std::string word;
  for (int i = 1; i < argc; ++i) {
    const std::string arg = argv[i];
    if (arg == "--") return std::nullopt;
    if (arg.size() > 1 && arg[0] == '-') {
      if (TakesValue(app, arg)) ++i;
      continue;
    }
    word = arg;
    break;
  }
  if (word.empty()) return std::nullopt;
  std::vector<std::string> names;
  for (const CLI::App* sub : app.get_subcommands([](const CLI::App*) { return true; })) {
    names.push_back(sub->get_name());
    for (const auto& a : sub->get_aliases()) names.push_back(a);
  }
  if (std::find(names.begin(), names.end(), word) != names.end()) return std::nullopt;
  std::string best;
  size_t best_distance = 3;  // suggested only within 2 edits, or as a prefix
  for (const auto& n : names) {
    const size_t d = absl::StartsWith(n, word) && word.size() >= 2 ? 1 : EditDistance(word, n);
    if (d < best_distance) {
      best_distance = d;
      best = n;
    }
  }
  const std::string said = herd::EscapeForLog(word, 64);
  if (best.empty()) {
    return absl::StrCat("agentctl: unknown command \"", said,
                        "\": `agentctl --help` lists the commands");
  }
  return absl::StrCat("agentctl: unknown command \"", said, "\": did you mean \"", best,
                      "\"? (`agentctl --help` lists the commands)");
}

int CheckArgumentsUtf8(int argc, const char* const* argv) {
  // Otherwise protobuf logs an ERROR and the peer drops the request without a word: say
  // which argument is not, before anything is sent.
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
  return 0;
}

}  // namespace herd::cli
