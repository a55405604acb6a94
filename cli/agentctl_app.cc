#include "cli/agentctl_app.h"

#include <stdio.h>
#include <stdlib.h>

#include "CLI/CLI.hpp"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/strip.h"
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
  app.add_option("-o,--output", output_, "Output format for read commands: table or json")
      ->check(CLI::IsMember({"table", "json"}))
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
  client_.json = output_ == "json";
  fleet_.json = client_.json;
  fleet_.timeout_seconds = client_.timeout_seconds;
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
  ctx.AddGlobalFlags(app);
  AddUnitCommands(app, ctx, table);
  AddModuleCommands(app, ctx, table);
  AddFleetCommands(app, ctx, table);
  AddGenerateCommand(app, table);
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
