#include "cli/render.h"

#include <algorithm>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "cli/json_output.h"
#include "common/units.h"
#include "google/protobuf/util/json_util.h"

namespace herd::cli {

using herd::v1::UnitState;
using herd::v1::UnitStatus;

std::string StateName(UnitState s) {
  switch (s) {
    case herd::v1::UNIT_STATE_LAUNCHING: return "launching";
    case herd::v1::UNIT_STATE_ONLINE: return "online";
    case herd::v1::UNIT_STATE_STOPPING: return "stopping";
    case herd::v1::UNIT_STATE_STOPPED: return "stopped";
    case herd::v1::UNIT_STATE_WAITING_RESTART: return "waiting restart";
    case herd::v1::UNIT_STATE_ERRORED: return "errored";
    default: return "unknown";
  }
}

std::string FormatTable(const std::vector<std::vector<std::string>>& rows) {
  std::vector<size_t> width;
  for (const auto& r : rows) {
    if (width.size() < r.size()) width.resize(r.size(), 0);
    for (size_t i = 0; i < r.size(); ++i) width[i] = std::max(width[i], r[i].size());
  }
  std::string out;
  for (const auto& r : rows) {
    std::string line;
    for (size_t i = 0; i < r.size(); ++i) {
      line += r[i];
      if (i + 1 < r.size()) line += std::string(width[i] - r[i].size() + 2, ' ');
    }
    while (!line.empty() && line.back() == ' ') line.pop_back();
    out += line + "\n";
  }
  return out;
}

namespace {

std::string Uptime(const UnitStatus& u, absl::Time now) {
  if (u.pid() == 0 || u.started_at_unix_ms() == 0) return "0";
  return FormatUptime(now - absl::FromUnixMillis(u.started_at_unix_ms()));
}

std::string Cpu(double pct) { return absl::StrFormat("%.1f%%", pct); }

std::string Bar(double fraction, int width) {
  fraction = std::clamp(fraction, 0.0, 1.0);
  int full = static_cast<int>(fraction * width + 0.5);
  return absl::StrCat("[", std::string(full, '|'), std::string(width - full, ' '), "]");
}

}  // namespace

std::string ProbeText(const herd::v1::Probe& p) {
  std::string v = p.value();
  if (!p.unit().empty() && !absl::EndsWith(v, p.unit())) absl::StrAppend(&v, " ", p.unit());
  return v;
}

std::string RenderUnitTable(const std::vector<UnitStatus>& units, absl::Time now) {
  // The PROBES column appears only when modules are listed (their main probes).
  bool any_module = false;
  for (const auto& u : units) any_module |= u.is_module();
  std::vector<std::vector<std::string>> rows = {
      {"NAME", "STATUS", "PID", "CPU", "MEMORY", "RESTARTS", "UPTIME"}};
  if (any_module) rows[0].push_back("PROBES");
  for (const auto& u : units) {
    const bool running = u.pid() != 0;
    rows.push_back({u.name(), StateName(u.state()), running ? absl::StrCat(u.pid()) : "-",
                    running ? Cpu(u.usage().cpu_percent()) : "-",
                    running ? FormatBytes(u.usage().rss_bytes()) : "-",
                    absl::StrCat(u.restarts()), Uptime(u, now)});
    if (any_module) {
      std::vector<std::string> probes;
      for (const auto& p : u.main_probes()) {
        probes.push_back(absl::StrCat(p.name(), "=", ProbeText(p)));
      }
      rows.back().push_back(u.is_module() ? (probes.empty() ? "-" : absl::StrJoin(probes, ", "))
                                          : "");
    }
  }
  return FormatTable(rows);
}

std::string RenderConfig(const herd::v1::ModuleConfig& c) {
  std::vector<std::vector<std::string>> rows = {
      {"KEY", "DEFAULT", "OVERRIDE", "EFFECTIVE", "SOURCE"}};
  for (const auto& e : c.entries()) {
    rows.push_back({e.key(), e.default_json().empty() ? "(undeclared)" : e.default_json(),
                    e.has_override() ? e.override_value() : "-", e.effective_json(),
                    e.source()});
  }
  return FormatTable(rows);
}

std::string RenderModule(const herd::v1::ModuleInfo& m) {
  std::vector<std::vector<std::string>> rows;
  auto add = [&](const std::string& k, const std::string& v) {
    if (!v.empty()) rows.push_back({k, v});
  };
  add("module", m.name());
  add("version", m.version());
  add("description", m.description());
  add("source", m.source());
  add("directory", m.dir());
  if (m.dev_mode()) add("development mode", "yes (restarted when a file changes)");
  add("channel", m.channel().connected() ? "connected" : "not connected");
  if (m.channel().invalid_json() + m.channel().oversized_lines() + m.channel().unknown_types() +
          m.channel().flood_dropped() >
      0) {
    add("channel errors",
        absl::StrCat(m.channel().invalid_json(), " invalid JSON, ", m.channel().oversized_lines(),
                     " too long, ", m.channel().unknown_types(), " unknown, ",
                     m.channel().flood_dropped(), " dropped (flood)"));
  }
  if (m.pid_override_size() > 0) {
    add("watching pids", absl::StrCat(absl::StrJoin(m.pid_override(), " "),
                                      m.pid_join() ? " (beside its own)" : " (instead of its own)"));
  }
  if (m.has_widget()) {
    add("widget", absl::StrCat(m.widget().type(), m.widget().logo().empty() ? "" : ", logo ",
                               m.widget().logo()));
    add("theme", absl::StrJoin(m.widget().theme(), " "));
    add("main probes", absl::StrJoin(m.widget().main_probes(), ", "));
  }
  add("issues", absl::StrCat(m.issues_count()));
  std::string out = "\n" + FormatTable(rows);
  if (m.config_size() > 0) {
    herd::v1::ModuleConfig c;
    c.mutable_entries()->CopyFrom(m.config());
    out += "\nconfig:\n" + RenderConfig(c);
  }
  if (m.probes_size() > 0) {
    std::vector<std::vector<std::string>> pr = {{"PROBE", "VALUE", "TYPE"}};
    for (const auto& p : m.probes()) pr.push_back({p.name(), ProbeText(p), p.type()});
    out += "\nprobes:\n" + FormatTable(pr);
  }
  if (m.actions_size() > 0) {
    std::vector<std::vector<std::string>> ac = {{"ACTION", "TYPE"}};
    for (const auto& a : m.actions()) ac.push_back({a.name(), a.type()});
    out += "\nactions:\n" + FormatTable(ac);
  }
  if (m.issues_size() > 0) out += "\nrecent issues:\n" + RenderIssues(m);
  if (m.events_size() > 0) {
    out += "\nrecent module events:\n";
    for (const auto& e : m.events()) {
      out += absl::StrCat(
          absl::FormatTime("  %Y-%m-%d %H:%M:%S ", absl::FromUnixMillis(e.at_unix_ms()),
                           absl::LocalTimeZone()),
          e.name(), " ", e.data_json(), "\n");
    }
  }
  return out;
}

std::string RenderIssues(const herd::v1::ModuleInfo& m) {
  std::string out;
  for (const auto& i : m.issues()) {
    // Grouped by name and message: how many times, the last (and first) time.
    const uint64_t count = std::max<uint64_t>(i.count(), 1);
    auto at = [](int64_t ms) {
      return absl::FormatTime("%Y-%m-%d %H:%M:%S", absl::FromUnixMillis(ms), absl::LocalTimeZone());
    };
    out += absl::StrCat("  ", at(i.at_unix_ms()), " ", i.name(), ": ", i.message(),
                        count > 1 ? absl::StrCat("  (x", count, " since ",
                                                 at(i.first_at_unix_ms()), ")")
                                  : "",
                        "\n");
    std::vector<std::string> stack = absl::StrSplit(i.stack(), '\n', absl::SkipEmpty());
    for (size_t k = 0; k < stack.size() && k < 4; ++k) {
      out += absl::StrCat("      ", stack[k], "\n");
    }
  }
  return out;
}

std::string RenderDetail(const herd::v1::UnitDetail& d, absl::Time now) {
  const auto& s = d.status();
  const auto& spec = d.spec();
  std::vector<std::vector<std::string>> rows;
  auto add = [&](const std::string& k, const std::string& v) {
    if (!v.empty()) rows.push_back({k, v});
  };
  add("name", spec.name());
  add("status", StateName(s.state()));
  add("reason", s.status_reason());
  add("pid", s.pid() ? absl::StrCat(s.pid()) : "-");
  add("uptime", Uptime(s, now));
  add("restarts", absl::StrCat(s.restarts(), " (", s.unstable_restarts(), " unstable)"));
  if (s.last_signal() != 0) {
    add("last exit", absl::StrCat("signal ", s.last_signal()));
  } else {
    add("last exit", absl::StrCat("code ", s.last_exit_code()));
  }
  if (s.pid() != 0) {
    add("cpu", Cpu(s.usage().cpu_percent()));
    add("memory", absl::StrCat(FormatBytes(s.usage().rss_bytes()), " rss, ",
                               FormatBytes(s.usage().pss_bytes()), " pss, ",
                               FormatBytes(s.usage().uss_bytes()), " uss"));
    add("threads", absl::StrCat(s.usage().threads()));
    add("processes", absl::StrJoin(s.sampled_pids(), " "));
  }
  add("cgroup", d.cgroup());
  for (const auto& e : d.escaped()) {
    // Left the unit's process group (double fork, setsid): still the unit's.
    rows.push_back({"escaped", absl::StrCat(e.pid(), " ", e.command())});
  }
  add("exec", s.exec_path());
  add("script", spec.script());
  add("args", absl::StrJoin(spec.args(), " "));
  add("interpreter", spec.interpreter().empty() ? "none" : spec.interpreter());
  add("interpreter args", absl::StrJoin(spec.interpreter_args(), " "));
  add("cwd", spec.cwd());
  add("autorestart", spec.autorestart() ? "true" : "false");
  add("max restarts", absl::StrCat(spec.max_restarts()));
  add("min uptime", absl::StrCat(spec.min_uptime_ms(), " ms"));
  add("restart delay", absl::StrCat(spec.restart_delay_ms(), " ms"));
  if (spec.exp_backoff_restart_delay_ms()) {
    add("exp backoff restart delay", absl::StrCat(spec.exp_backoff_restart_delay_ms(), " ms"));
  }
  add("kill timeout", absl::StrCat(spec.kill_timeout_ms(), " ms"));
  add("stop exit codes", absl::StrJoin(spec.stop_exit_codes(), " "));
  if (spec.max_memory_restart_bytes()) {
    add("max memory restart", FormatBytes(spec.max_memory_restart_bytes()));
  }
  if (spec.memory_max_bytes()) add("memory max", FormatBytes(spec.memory_max_bytes()));
  if (spec.pids_max()) add("pids max", absl::StrCat(spec.pids_max()));
  add("limits", d.limits());
  add("cron restart", spec.cron_restart());
  add("pid files", absl::StrJoin(spec.pid_files(), " "));
  add("out log", d.out_log_path());
  add("err log", d.err_log_path() == d.out_log_path() ? "(merged)" : d.err_log_path());
  add("log date format", spec.log_date_format());
  for (const auto& [k, v] : spec.env()) rows.push_back({absl::StrCat("env ", k), v});
  std::string out = FormatTable(rows);
  if (d.events_size() > 0) {
    out += "\nevents:\n";
    std::vector<std::vector<std::string>> ev;
    for (const auto& e : d.events()) {
      ev.push_back({absl::FormatTime("  %Y-%m-%d %H:%M:%S", absl::FromUnixMillis(e.at_unix_ms()),
                                     absl::LocalTimeZone()),
                    e.kind(), e.detail()});
    }
    out += FormatTable(ev);
  }
  if (d.has_module_info()) out += RenderModule(d.module_info());
  return out;
}

std::string RenderTop(const herd::v1::AgentInfo& info, const std::vector<UnitStatus>& units,
                      absl::Time now) {
  std::string out = absl::StrFormat(
      "agentd %s  pid %d  cpu %s  memory %s  units %d  sampling every %d ms\n\n",
      info.version(), info.pid(), Cpu(info.usage().cpu_percent()),
      FormatBytes(info.usage().rss_bytes()), units.size(), info.sample_interval_ms());
  uint64_t max_rss = 1;
  for (const auto& u : units) max_rss = std::max<uint64_t>(max_rss, u.usage().rss_bytes());
  std::vector<std::vector<std::string>> rows = {
      {"NAME", "STATUS", "PID", "CPU", "", "MEMORY", "", "THREADS", "RESTARTS", "UPTIME"}};
  for (const auto& u : units) {
    const bool running = u.pid() != 0;
    rows.push_back({u.name(), StateName(u.state()), running ? absl::StrCat(u.pid()) : "-",
                    Cpu(u.usage().cpu_percent()), Bar(u.usage().cpu_percent() / 100.0, 20),
                    FormatBytes(u.usage().rss_bytes()),
                    Bar(static_cast<double>(u.usage().rss_bytes()) / static_cast<double>(max_rss), 20),
                    absl::StrCat(u.usage().threads()), absl::StrCat(u.restarts()),
                    Uptime(u, now)});
  }
  return out + FormatTable(rows);
}

std::string RenderModulePane(const std::vector<UnitStatus>& units,
                             const std::map<std::string, std::vector<std::string>>& last_lines) {
  std::string out;
  for (const auto& u : units) {
    if (!u.is_module()) continue;
    std::vector<std::string> probes;
    for (const auto& p : u.main_probes()) probes.push_back(absl::StrCat(p.name(), " ", ProbeText(p)));
    out += absl::StrCat("\n", u.name(), " (", StateName(u.state()), ")",
                        probes.empty() ? "" : ": ", absl::StrJoin(probes, " | "), "\n");
    auto it = last_lines.find(u.name());
    if (it == last_lines.end() || it->second.empty()) {
      out += "  (no output yet)\n";
      continue;
    }
    for (const auto& l : it->second) out += absl::StrCat("  ", l, "\n");
  }
  return out.empty() ? out : "\nmodules:" + out;
}

namespace {
OutputFormat g_output_format = OutputFormat::kJson;
}  // namespace

void SetOutputFormat(OutputFormat format) { g_output_format = format; }

std::string StructuredText(const nlohmann::json& value, bool one_line) {
  if (g_output_format == OutputFormat::kYaml) {
    std::string yaml = ToYaml(value);
    if (!yaml.empty() && yaml.back() == '\n') yaml.pop_back();
    return one_line ? "---\n" + yaml : yaml;
  }
  // Text from outside (a unit's name, a probe's value) may hold bytes that are not UTF-8:
  // replaced, never a throw.
  return value.dump(one_line ? -1 : 2, ' ', false, nlohmann::json::error_handler_t::replace);
}

std::string ToJson(const google::protobuf::Message& m, bool one_line) {
  return StructuredText(FriendlyJson(m), one_line);
}

}  // namespace herd::cli
