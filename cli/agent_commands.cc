#include "cli/agent_commands.h"

#include <errno.h>
#include <signal.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cctype>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <map>
#include <set>
#include <sstream>

#include "absl/status/status.h"
#include "absl/strings/match.h"
#include "cli/args.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/time/clock.h"
#include "cli/json_output.h"
#include "cli/render.h"
#include "common/json_parse.h"
#include "common/utf8.h"
#include "grpcpp/grpcpp.h"
#include "nlohmann/json.hpp"

namespace herd::cli {
namespace {

std::unique_ptr<grpc::ClientContext> Context(int timeout_seconds) {
  auto ctx = std::make_unique<grpc::ClientContext>();
  if (timeout_seconds > 0) {
    ctx->set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(timeout_seconds));
  }
  return ctx;
}

std::string Cwd() {
  char buf[4096];
  return getcwd(buf, sizeof buf) ? buf : "/";
}

bool IsRegularFile(const std::string& p) {
  struct stat st{};
  return stat(p.c_str(), &st) == 0 && S_ISREG(st.st_mode);
}

volatile sig_atomic_t g_interrupted = 0;

}  // namespace

AgentCommands::AgentCommands(ClientOptions options) : options_(std::move(options)) {
  socket_ = options_.socket.empty() ? absl::StrCat(options_.home, "/agent.sock") : options_.socket;
}

bool AgentCommands::Connect() {
  const std::string hint =
      absl::StrCat("agentd is not running at ", socket_, ": start it with `agentd --home ",
                   options_.home, " --daemon` (or `systemctl start herd-agent`)");
  struct stat st{};
  if (stat(socket_.c_str(), &st) != 0) {
    fprintf(stderr, "agentctl: %s\n", hint.c_str());
    return false;
  }
  if (access(socket_.c_str(), R_OK | W_OK) != 0) {
    fprintf(stderr,
            "agentctl: permission denied on %s: run as the agent's user or join its group\n",
            socket_.c_str());
    return false;
  }
  auto channel = grpc::CreateChannel(absl::StrCat("unix:", socket_),
                                     grpc::InsecureChannelCredentials());
  if (!channel->WaitForConnected(std::chrono::system_clock::now() + std::chrono::seconds(3))) {
    fprintf(stderr, "agentctl: %s\n", hint.c_str());
    return false;
  }
  stub_ = herd::v1::Agent::NewStub(channel);
  return true;
}

int AgentCommands::Fail(const grpc::Status& s) {
  if (s.error_code() == grpc::StatusCode::UNAVAILABLE) {
    fprintf(stderr, "agentctl: agentd at %s stopped answering (%s): check `%s/agentd.log` or "
                    "start it again with `agentd --home %s --daemon`\n",
            socket_.c_str(), s.error_message().c_str(), options_.home.c_str(),
            options_.home.c_str());
  } else if (s.error_code() == grpc::StatusCode::DEADLINE_EXCEEDED &&
             s.error_message() == "Deadline Exceeded") {
    // gRPC's own deadline (ours), not a timeout the agent reports (e.g. an action's).
    fprintf(stderr, "agentctl: agentd did not answer within %d s\n", options_.timeout_seconds);
  } else if (s.error_message().empty()) {
    // Never a bare "agentctl: ": an older or broken agentd may fail a call without a reason.
    // absl's code names are gRPC's ("UNIMPLEMENTED").
    const std::string code = absl::StatusCodeToString(static_cast<absl::StatusCode>(s.error_code()));
    fprintf(stderr, "agentctl: agentd answered %s without a reason: check `%s/agentd.log`\n",
            code.c_str(), options_.home.c_str());
  } else {
    fprintf(stderr, "agentctl: %s\n", s.error_message().c_str());
  }
  return 1;
}

int AgentCommands::PrintUnits(const herd::v1::UnitsResponse& r, const char* verb) {
  if (options_.json) {
    printf("%s\n", ToJson(r).c_str());
  } else {
    std::vector<herd::v1::UnitStatus> units(r.units().begin(), r.units().end());
    if (verb != nullptr) {
      for (const auto& u : units) printf("%s %s\n", verb, u.name().c_str());
    }
    printf("%s", RenderUnitTable(units, absl::Now()).c_str());
  }
  int rc = 0;
  for (const auto& u : r.units()) {
    if (u.state() == herd::v1::UNIT_STATE_ERRORED) {
      fprintf(stderr, "agentctl: %s is errored: %s\n", u.name().c_str(),
              u.status_reason().c_str());
      rc = 1;
    }
  }
  return rc;
}

std::optional<herd::v1::AgentInfo> AgentCommands::TryInfo() {
  if (!stub_) {
    const std::string sock = options_.socket.empty() ? options_.home + "/agent.sock" : options_.socket;
    if (access(sock.c_str(), F_OK) != 0) return std::nullopt;
    socket_ = sock;
    stub_ = herd::v1::Agent::NewStub(grpc::CreateChannel("unix:" + sock, grpc::InsecureChannelCredentials()));
  }
  herd::v1::AgentInfo info;
  auto ctx = Context(5);
  if (!stub_->GetInfo(ctx.get(), {}, &info).ok()) return std::nullopt;
  return info;
}

int AgentCommands::Info() {
  if (!Connect()) return 1;
  herd::v1::AgentInfo info;
  auto ctx = Context(options_.timeout_seconds);
  grpc::Status s = stub_->GetInfo(ctx.get(), {}, &info);
  if (!s.ok()) return Fail(s);
  if (options_.json) {
    printf("%s\n", ToJson(info).c_str());
    return 0;
  }
  printf("%s", FormatTable({{"version", info.version()},
                            {"pid", absl::StrCat(info.pid())},
                            {"home", info.home()},
                            {"socket", socket_},
                            {"cpu", absl::StrCat(info.usage().cpu_percent(), "%")},
                            {"rss", absl::StrCat(info.usage().rss_bytes(), " bytes")},
                            {"sample interval", absl::StrCat(info.sample_interval_ms(), " ms")},
                            {"log writes dropped", absl::StrCat(info.log_lines_dropped())}})
                   .c_str());
  if (!info.controlplane_address().empty()) {
    std::vector<std::vector<std::string>> rows = {
        {"control plane", info.controlplane_address()},
        {"host id", info.host_id()},
        {"connected", info.controlplane_connected()
                          ? "yes"
                          : absl::StrCat("no (", info.controlplane_error(), ")")},
        {"config version", absl::StrCat(info.config_version())},
        {"metrics dropped", absl::StrCat(info.metrics_dropped())}};
    // Replicas: the row above is the one connected to (or dialled next), this is the list.
    if (info.controlplane_addresses_size() > 1) {
      rows.insert(rows.begin() + 1,
                  {"replicas", absl::StrJoin(info.controlplane_addresses(), ",")});
    }
    printf("%s", FormatTable(rows).c_str());
  }
  return 0;
}

int AgentCommands::List() {
  if (!Connect()) return 1;
  herd::v1::ListResponse r;
  auto ctx = Context(options_.timeout_seconds);
  grpc::Status s = stub_->List(ctx.get(), {}, &r);
  if (!s.ok()) return Fail(s);
  if (options_.json) {
    printf("%s\n", ToJson(r).c_str());
  } else {
    std::vector<herd::v1::UnitStatus> units(r.units().begin(), r.units().end());
    printf("%s", RenderUnitTable(units, absl::Now()).c_str());
  }
  return 0;
}

int AgentCommands::Describe(const std::string& name) {
  if (!Connect()) return 1;
  herd::v1::DescribeRequest req;
  req.set_name(name);
  herd::v1::UnitDetail d;
  auto ctx = Context(options_.timeout_seconds);
  grpc::Status s = stub_->Describe(ctx.get(), req, &d);
  if (!s.ok()) return Fail(s);
  printf("%s", options_.json ? (ToJson(d) + "\n").c_str() : RenderDetail(d, absl::Now()).c_str());
  return 0;
}

namespace {

// --env NAME=value flags into the app's env; false (after saying which) for one without a
// name.
bool AddEnv(const std::vector<std::string>& flags, nlohmann::json& app) {
  nlohmann::json env = nlohmann::json::object();
  for (const auto& kv : flags) {
    size_t eq = kv.find('=');
    if (eq == std::string::npos || eq == 0) {
      fprintf(stderr, "agentctl: --env %s: use NAME=value\n", kv.c_str());
      return false;
    }
    env[kv.substr(0, eq)] = kv.substr(eq + 1);
  }
  app["env"] = env;
  return true;
}

}  // namespace

int AgentCommands::Start(const std::string& target, const StartFlags& f) {
  herd::v1::StartRequest req;
  req.set_base_dir(Cwd());
  for (const auto& o : f.only) req.add_only(o);
  const bool is_file = IsRegularFile(target);
  if (is_file && (absl::EndsWith(target, ".json") || absl::EndsWith(target, ".config.json"))) {
    std::ifstream in(target);
    std::stringstream ss;
    ss << in.rdbuf();
    if (!in.good() && !in.eof()) {
      fprintf(stderr, "agentctl: cannot read %s\n", target.c_str());
      return 1;
    }
    // The document travels as a protobuf string, which must be UTF-8: find the app and field
    // of a bad byte here (agentd would only see a request it cannot parse).
    if (const size_t bad = FirstInvalidUtf8(ss.str()); bad != std::string::npos) {
      auto parsed = ParseJson(ss.str());  // names the line, app and field
      const std::string where = parsed.ok() ? absl::StrCat(LineColumn(ss.str(), bad), ": byte ",
                                                           bad, " is not valid UTF-8")
                                            : std::string(parsed.status().message());
      fprintf(stderr, "agentctl: %s: %s: an ecosystem file must be UTF-8 text\n", target.c_str(),
              where.c_str());
      return 2;
    }
    req.set_ecosystem_json(ss.str());
  } else if (is_file || target.find('/') != std::string::npos) {
    // A script: the flags describe the app.
    nlohmann::json app;
    app["script"] = target;
    if (!f.name.empty()) app["name"] = f.name;
    if (!f.args.empty()) app["args"] = f.args;
    if (!f.interpreter.empty()) app["interpreter"] = f.interpreter;
    if (!f.interpreter_args.empty()) app["interpreter_args"] = f.interpreter_args;
    if (!f.cwd.empty()) app["cwd"] = f.cwd;
    if (f.no_autorestart) app["autorestart"] = false;
    if (f.max_restarts) app["max_restarts"] = *f.max_restarts;
    if (!f.min_uptime.empty()) app["min_uptime"] = f.min_uptime;
    if (!f.restart_delay.empty()) app["restart_delay"] = f.restart_delay;
    if (!f.exp_backoff_restart_delay.empty()) {
      app["exp_backoff_restart_delay"] = f.exp_backoff_restart_delay;
    }
    if (!f.kill_timeout.empty()) app["kill_timeout"] = f.kill_timeout;
    if (!f.stop_exit_codes.empty()) app["stop_exit_codes"] = f.stop_exit_codes;
    if (!f.max_memory_restart.empty()) app["max_memory_restart"] = f.max_memory_restart;
    if (!f.cron_restart.empty()) app["cron_restart"] = f.cron_restart;
    if (!f.memory_max.empty()) app["memory_max"] = f.memory_max;
    if (f.pids_max) app["pids_max"] = *f.pids_max;
    if (f.merge_logs) app["merge_logs"] = true;
    if (!f.log_date_format.empty()) app["log_date_format"] = f.log_date_format;
    if (f.time) app["time"] = true;
    if (!f.out_file.empty()) app["out_file"] = f.out_file;
    if (!f.error_file.empty()) app["error_file"] = f.error_file;
    if (!f.pid_files.empty()) app["pid_files"] = f.pid_files;
    if (!f.env.empty() && !AddEnv(f.env, app)) return 2;
    req.set_ecosystem_json(nlohmann::json{{"apps", {app}}}.dump());
    req.set_new_only(!f.force);
  } else {
    req.set_name(target);
  }
  if (!Connect()) return 1;
  herd::v1::UnitsResponse r;
  auto ctx = Context(options_.timeout_seconds);
  grpc::Status s = stub_->Start(ctx.get(), req, &r);
  if (!s.ok()) {
    if (s.error_code() == grpc::StatusCode::NOT_FOUND && req.has_name()) {
      if (target.find('.') != std::string::npos) {
        // Meant as a file (app.js, ecosystem.json): say that first.
        fprintf(stderr, "agentctl: %s: no such file in %s (and no unit of that name: "
                        "`agentctl list` shows the units)\n", target.c_str(), Cwd().c_str());
        return 1;
      }
      fprintf(stderr, "agentctl: %s (to start a new unit, give a script path or an ecosystem "
                      ".json file)\n", s.error_message().c_str());
      return 1;
    }
    return Fail(s);
  }
  return PrintUnits(r, "started");
}

int AgentCommands::Stop(const std::string& name) {
  if (!Connect()) return 1;
  herd::v1::UnitSelector sel;
  sel.set_name(name);
  herd::v1::UnitsResponse r;
  auto ctx = Context(options_.timeout_seconds);
  grpc::Status s = stub_->Stop(ctx.get(), sel, &r);
  if (!s.ok()) return Fail(s);
  return PrintUnits(r, "stopped");
}

int AgentCommands::Restart(const std::string& name) {
  if (!Connect()) return 1;
  herd::v1::UnitSelector sel;
  sel.set_name(name);
  herd::v1::UnitsResponse r;
  auto ctx = Context(options_.timeout_seconds);
  grpc::Status s = stub_->Restart(ctx.get(), sel, &r);
  if (!s.ok()) return Fail(s);
  return PrintUnits(r, "restarted");
}

int AgentCommands::Delete(const std::string& name) {
  if (!Connect()) return 1;
  herd::v1::UnitSelector sel;
  sel.set_name(name);
  herd::v1::UnitsResponse r;
  auto ctx = Context(options_.timeout_seconds);
  grpc::Status s = stub_->Delete(ctx.get(), sel, &r);
  if (!s.ok()) return Fail(s);
  if (options_.json) {
    printf("%s\n", ToJson(r).c_str());
  } else {
    for (const auto& u : r.units()) printf("deleted %s\n", u.name().c_str());
  }
  return 0;
}

int AgentCommands::Logs(const std::string& name, uint32_t lines, bool follow) {
  if (!Connect()) return 1;
  herd::v1::LogsRequest req;
  req.set_name(name);
  req.set_lines(lines);
  req.set_follow(follow);
  auto ctx = Context(follow ? 0 : options_.timeout_seconds);
  auto reader = stub_->Logs(ctx.get(), req);
  herd::v1::LogLine line;
  size_t shown = 0;
  while (reader->Read(&line)) {
    ++shown;
    if (options_.json) {
      printf("{\"unit\":%s,\"stream\":%s,\"text\":%s}\n", nlohmann::json(line.unit()).dump().c_str(),
             nlohmann::json(line.stream()).dump().c_str(),
             nlohmann::json(line.text()).dump(-1, ' ', false, nlohmann::json::error_handler_t::replace).c_str());
    } else {
      FILE* out = line.stream() == "err" ? stderr : stdout;
      fprintf(out, "%s|%s| %s\n", line.unit().c_str(), line.stream().c_str(), line.text().c_str());
    }
    fflush(stdout);
  }
  grpc::Status s = reader->Finish();
  if (!s.ok() && s.error_code() != grpc::StatusCode::CANCELLED) return Fail(s);
  if (shown == 0 && !follow && !options_.json) {
    // Nothing written yet: where it will be, so one can look (or tail) there.
    herd::v1::DescribeRequest dreq;
    dreq.set_name(name);
    herd::v1::UnitDetail d;
    auto dctx = Context(options_.timeout_seconds);
    if (stub_->Describe(dctx.get(), dreq, &d).ok()) {
      printf("%s has written nothing yet: %s%s%s\n", name.c_str(), d.out_log_path().c_str(),
             d.err_log_path() == d.out_log_path() ? "" : ", ",
             d.err_log_path() == d.out_log_path() ? "" : d.err_log_path().c_str());
    }
  }
  return 0;
}

int AgentCommands::Top(double interval_seconds, int iterations) {
  if (!Connect()) return 1;
  signal(SIGINT, [](int) { g_interrupted = 1; });
  const bool tty = isatty(STDOUT_FILENO);
  // Into a pipe or a file: one frame, unless more were asked for.
  if (!tty && iterations == 0) iterations = 1;
  for (int i = 0; iterations == 0 || i < iterations; ++i) {
    if (i > 0) {
      absl::Time until = absl::Now() + absl::Seconds(interval_seconds);
      while (!g_interrupted && absl::Now() < until) absl::SleepFor(absl::Milliseconds(50));
    }
    if (g_interrupted) break;
    herd::v1::AgentInfo info;
    herd::v1::ListResponse list;
    auto c1 = Context(options_.timeout_seconds);
    grpc::Status s = stub_->GetInfo(c1.get(), {}, &info);
    auto c2 = Context(options_.timeout_seconds);
    if (s.ok()) s = stub_->List(c2.get(), {}, &list);
    if (!s.ok()) return Fail(s);
    if (options_.json) {
      nlohmann::json j;
      j["agent"] = FriendlyJson(info);
      j["units"] = FriendlyJson(list)["units"];
      printf("%s\n", StructuredText(j, /*one_line=*/true).c_str());
    } else {
      std::vector<herd::v1::UnitStatus> units(list.units().begin(), list.units().end());
      if (tty) printf("\033[H\033[2J");
      printf("%s", RenderTop(info, units, absl::Now()).c_str());
      std::map<std::string, std::vector<std::string>> last;
      for (const auto& u : units) {
        if (u.is_module()) last[u.name()] = LastLines(u.name(), 3);
      }
      printf("%s", RenderModulePane(units, last).c_str());
      if (tty) printf("\n(refreshing every %.1fs, Ctrl-C to quit)\n", interval_seconds);
    }
    fflush(stdout);
  }
  return 0;
}

std::vector<std::string> AgentCommands::LastLines(const std::string& name, uint32_t n) {
  herd::v1::LogsRequest req;
  req.set_name(name);
  req.set_lines(n);
  auto ctx = Context(options_.timeout_seconds);
  auto reader = stub_->Logs(ctx.get(), req);
  std::vector<std::string> out;
  herd::v1::LogLine line;
  while (reader->Read(&line)) {
    out.push_back(absl::StrCat(line.stream() == "err" ? "err| " : "", line.text()));
  }
  (void)reader->Finish();  // the pane shows what came; an error shows as no lines
  while (out.size() > n) out.erase(out.begin());
  return out;
}

int AgentCommands::Flush(const std::string& name) {
  if (!Connect()) return 1;
  std::vector<std::string> names;
  if (name.empty()) {
    herd::v1::ListResponse r;
    auto ctx = Context(options_.timeout_seconds);
    grpc::Status s = stub_->List(ctx.get(), {}, &r);
    if (!s.ok()) return Fail(s);
    for (const auto& u : r.units()) names.push_back(u.name());
  } else {
    names.push_back(name);
  }
  int failed = 0;
  for (const auto& n : names) {
    herd::v1::DescribeRequest req;
    req.set_name(n);
    herd::v1::UnitDetail d;
    auto ctx = Context(options_.timeout_seconds);
    grpc::Status s = stub_->Describe(ctx.get(), req, &d);
    if (!s.ok()) return Fail(s);
    std::set<std::string> paths = {d.out_log_path(), d.err_log_path()};
    for (const auto& p : paths) {
      if (p.empty()) continue;
      if (truncate(p.c_str(), 0) != 0 && errno != ENOENT) {
        fprintf(stderr, "agentctl: cannot empty %s: %s\n", p.c_str(), strerror(errno));
        ++failed;
        continue;
      }
      printf("flushed %s\n", p.c_str());
    }
  }
  return failed ? 1 : 0;
}

int AgentCommands::Kill() {
  if (!Connect()) return 1;
  herd::v1::ShutdownResponse r;
  auto ctx = Context(options_.timeout_seconds);
  grpc::Status s = stub_->Shutdown(ctx.get(), {}, &r);
  if (!s.ok()) return Fail(s);
  // Wait for the socket to disappear: the agent removes it once every unit has stopped.
  for (int i = 0; i < options_.timeout_seconds * 20; ++i) {
    struct stat st{};
    if (stat(socket_.c_str(), &st) != 0) {
      printf("agentd stopped\n");
      return 0;
    }
    absl::SleepFor(absl::Milliseconds(50));
  }
  fprintf(stderr, "agentctl: agentd is still shutting down after %d s\n", options_.timeout_seconds);
  return 1;
}

// ---------------------------------------------------------------------------------------
// Modules

namespace {

// MODULE:KEY, as in `pm2 set module:key value`.

}  // namespace

int AgentCommands::Uninstall(const std::string& name, bool keep_config) {
  if (!Connect()) return 1;
  herd::v1::UninstallModuleRequest req;
  req.set_name(name);
  req.set_keep_config(keep_config);
  herd::v1::UninstallModuleResponse resp;
  auto ctx = Context(options_.timeout_seconds);
  grpc::Status s = stub_->UninstallModule(ctx.get(), req, &resp);
  if (!s.ok()) return Fail(s);
  if (options_.json) {
    printf("%s\n", ToJson(resp).c_str());
  } else {
    printf("uninstalled %s%s%s\n", resp.name().c_str(),
           resp.removed_dir().empty() ? "" : " (removed ",
           resp.removed_dir().empty() ? "" : (resp.removed_dir() + ")").c_str());
  }
  return 0;
}

int AgentCommands::CompleteNames(const std::string& kind) {
  // For a shell's Tab: names one per line, nothing else (errors go to stderr, which the
  // completion scripts discard).
  if (!Connect()) return 1;
  auto ctx = Context(std::min(options_.timeout_seconds, 3));
  if (kind == "keys") {
    herd::v1::GetConfigResponse resp;
    grpc::Status s = stub_->GetConfig(ctx.get(), {}, &resp);
    if (!s.ok()) return Fail(s);
    for (const auto& m : resp.modules()) {
      for (const auto& e : m.entries()) printf("%s:%s\n", m.module().c_str(), e.key().c_str());
    }
    return 0;
  }
  herd::v1::ListResponse r;
  grpc::Status s = stub_->List(ctx.get(), {}, &r);
  if (!s.ok()) return Fail(s);
  for (const auto& u : r.units()) {
    if (kind == "units" || (kind == "modules" && u.is_module())) printf("%s\n", u.name().c_str());
  }
  return 0;
}

int AgentCommands::Conf(const std::string& module) {
  if (!Connect()) return 1;
  herd::v1::GetConfigRequest req;
  req.set_module(module);
  herd::v1::GetConfigResponse resp;
  auto ctx = Context(options_.timeout_seconds);
  grpc::Status s = stub_->GetConfig(ctx.get(), req, &resp);
  if (!s.ok()) return Fail(s);
  if (options_.json) {
    printf("%s\n", ToJson(resp).c_str());
    return 0;
  }
  if (resp.modules_size() == 0) printf("no modules installed\n");
  for (const auto& m : resp.modules()) {
    printf("%s:\n%s\n", m.module().c_str(), RenderConfig(m).c_str());
  }
  return 0;
}

int AgentCommands::Set(const std::string& target, const std::string& value, bool force) {
  herd::v1::SetConfigRequest req;
  std::string module, key;
  if (!SplitModuleKey(target, &module, &key)) return 2;
  if (!Connect()) return 1;
  req.set_module(module);
  req.set_key(key);
  req.set_value(value);
  req.set_force(force);
  herd::v1::ModuleConfig resp;
  auto ctx = Context(options_.timeout_seconds);
  grpc::Status s = stub_->SetConfig(ctx.get(), req, &resp);
  if (!s.ok()) return Fail(s);
  if (options_.json) {
    printf("%s\n", ToJson(resp).c_str());
  } else {
    printf("%s:%s = %s (%s restarted)\n%s", module.c_str(), key.c_str(), value.c_str(),
           module.c_str(), RenderConfig(resp).c_str());
  }
  return 0;
}

int AgentCommands::Unset(const std::string& target) {
  herd::v1::UnsetConfigRequest req;
  std::string module, key;
  if (!SplitModuleKey(target, &module, &key)) return 2;
  if (!Connect()) return 1;
  req.set_module(module);
  req.set_key(key);
  herd::v1::ModuleConfig resp;
  auto ctx = Context(options_.timeout_seconds);
  grpc::Status s = stub_->UnsetConfig(ctx.get(), req, &resp);
  if (!s.ok()) return Fail(s);
  if (options_.json) {
    printf("%s\n", ToJson(resp).c_str());
  } else {
    printf("%s:%s unset (%s restarted)\n%s", module.c_str(), key.c_str(), module.c_str(),
           RenderConfig(resp).c_str());
  }
  return 0;
}

int AgentCommands::Issues(const std::string& module, bool clear) {
  if (clear) return Action(module, "herd:clear-issues", {}, 10);
  if (!Connect()) return 1;
  herd::v1::DescribeRequest req;
  req.set_name(module);
  herd::v1::UnitDetail d;
  auto ctx = Context(options_.timeout_seconds);
  grpc::Status s = stub_->Describe(ctx.get(), req, &d);
  if (!s.ok()) return Fail(s);
  if (!d.has_module_info()) {
    fprintf(stderr, "agentctl: %s is a unit, not a module: only modules report issues\n",
            module.c_str());
    return 1;
  }
  if (options_.json) {
    herd::v1::ModuleInfo only;
    only.set_name(d.module_info().name());
    only.set_issues_count(d.module_info().issues_count());
    only.mutable_issues()->CopyFrom(d.module_info().issues());
    printf("%s\n", ToJson(only).c_str());
  } else if (d.module_info().issues_size() == 0) {
    printf("%s has reported no issues\n", module.c_str());
  } else {
    printf("%s", RenderIssues(d.module_info()).c_str());
  }
  return 0;
}

int AgentCommands::Action(const std::string& module, const std::string& action,
                          const std::vector<std::string>& params, int timeout_seconds) {
  herd::v1::TriggerActionRequest req;
  req.set_module(module);
  req.set_action(action);
  if (!ParseParams(params, req.mutable_params())) return 2;
  req.set_timeout_ms(static_cast<uint32_t>(timeout_seconds) * 1000);
  if (!Connect()) return 1;
  herd::v1::TriggerActionResponse resp;
  auto ctx = Context(timeout_seconds + 5);
  grpc::Status s = stub_->TriggerAction(ctx.get(), req, &resp);
  if (!s.ok()) return Fail(s);
  if (options_.json) {
    printf("%s\n", ToJson(resp).c_str());
    return 0;
  }
  for (const auto& line : resp.stream()) printf("%s\n", line.c_str());
  // A string reply prints as text; anything else as JSON.
  auto reply = nlohmann::json::parse(resp.reply_json(), nullptr, false);
  if (!reply.is_discarded() && reply.is_string()) {
    printf("%s\n", reply.get<std::string>().c_str());
  } else {
    printf("%s\n", resp.reply_json().c_str());
  }
  return 0;
}

}  // namespace herd::cli
