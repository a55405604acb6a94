#include "absl/strings/string_view.h"
#include "agent/supervisor/app_spec.h"

#include <sys/stat.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <optional>

#include "absl/container/flat_hash_set.h"
#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"
#include "absl/time/time.h"
#include "agent/supervisor/cron_schedule.h"
#include "common/json_parse.h"
#include "common/log_escape.h"
#include "common/units.h"
#include "nlohmann/json.hpp"

namespace herd::agent {
namespace {

using json = nlohmann::json;
using herd::v1::AppSpec;

std::string Quote(const json& v) { return JsonForMessage(v); }

std::string JoinPath(const std::string& base, const std::string& p) {
  if (p.empty() || p[0] == '/') return p;
  return (std::filesystem::path(base) / p).lexically_normal().string();
}

bool IsRegularFile(const std::string& p) {
  struct stat st{};
  return stat(p.c_str(), &st) == 0 && S_ISREG(st.st_mode);
}

bool IsDirectory(const std::string& p) {
  struct stat st{};
  return stat(p.c_str(), &st) == 0 && S_ISDIR(st.st_mode);
}

// Splits a PM2 `args` string the way a shell would for simple cases: whitespace separates,
// single and double quotes group.
std::vector<std::string> SplitArgs(absl::string_view s) {
  std::vector<std::string> out;
  std::string cur;
  bool in_token = false;
  char quote = 0;
  for (char c : s) {
    if (quote) {
      if (c == quote) {
        quote = 0;
      } else {
        cur.push_back(c);
      }
    } else if (c == '"' || c == '\'') {
      quote = c;
      in_token = true;
    } else if (absl::ascii_isspace(static_cast<unsigned char>(c))) {
      if (in_token) out.push_back(std::move(cur));
      cur.clear();
      in_token = false;
    } else {
      cur.push_back(c);
      in_token = true;
    }
  }
  if (in_token) out.push_back(std::move(cur));
  return out;
}

// The interpreter PM2 would choose from the script's extension; empty = run directly.
std::string InterpreterForExtension(absl::string_view script) {
  struct Ext {
    const char* ext;
    const char* interpreter;
  };
  static constexpr Ext kExts[] = {{".js", "node"},   {".mjs", "node"}, {".cjs", "node"},
                                  {".py", "python3"}, {".sh", "bash"},  {".rb", "ruby"},
                                  {".pl", "perl"},   {".php", "php"}};
  for (const auto& e : kExts) {
    if (absl::EndsWith(script, e.ext)) return e.interpreter;
  }
  return "";
}

// The program and optional single argument of a script's #! line, split the way the kernel
// does (the rest of the line after the program is one argument).
struct Shebang {
  std::string program;
  std::string arg;
};
std::optional<Shebang> ReadShebang(const std::string& path) {
  std::ifstream f(path, std::ios::binary);
  char buf[256] = {};
  f.read(buf, sizeof buf);
  absl::string_view head(buf, static_cast<size_t>(f.gcount()));
  if (!absl::ConsumePrefix(&head, "#!")) return std::nullopt;
  head = head.substr(0, head.find('\n'));
  head = absl::StripAsciiWhitespace(head);
  Shebang s;
  size_t space = head.find_first_of(" \t");
  s.program = std::string(head.substr(0, space));
  if (space != absl::string_view::npos) {
    s.arg = std::string(absl::StripAsciiWhitespace(head.substr(space)));
  }
  return s;
}

// Field readers. Each returns an error that starts with the field name.
class AppReader {
 public:
  explicit AppReader(std::string where) : where_(std::move(where)) {}

  absl::Status Error(absl::string_view field, absl::string_view what) const {
    // The field may be a key of the document (an unknown one): escaped, so that the message
    // stays one line when it is logged.
    return absl::InvalidArgumentError(
        absl::StrCat(where_, ": ", EscapeForLog(field, 64), ": ", what));
  }

  absl::StatusOr<std::string> String(const char* field, const json& v) const {
    if (v.is_string()) return v.get<std::string>();
    return Error(field, absl::StrCat(Quote(v), " must be a string"));
  }
  absl::StatusOr<bool> Bool(const char* field, const json& v) const {
    if (v.is_boolean()) return v.get<bool>();
    if (v.is_string() && (v == "true" || v == "false")) return v == "true";
    return Error(field, absl::StrCat(Quote(v), " must be true or false"));
  }
  absl::StatusOr<uint64_t> Count(const char* field, const json& v) const {
    if (v.is_number_unsigned()) return v.get<uint64_t>();
    if (v.is_string()) {
      uint64_t n;
      if (absl::SimpleAtoi(v.get<std::string>(), &n)) return n;
    }
    return Error(field, absl::StrCat(Quote(v), " must be a whole number >= 0"));
  }
  // Milliseconds, at most `max_ms`: a whole or fractional number, or a duration string.
  absl::StatusOr<uint64_t> DurationMs(const char* field, const json& v, uint64_t max_ms) const {
    const std::string forms = "milliseconds (e.g. 1500) or a duration string (e.g. \"1.5s\", \"2m\")";
    double ms = -1;
    if (v.is_number_unsigned()) {
      const uint64_t n = v.get<uint64_t>();
      if (n > max_ms) return TooLong(field, v, max_ms);
      return n;
    } else if (v.is_number()) {
      ms = v.get<double>();  // negative integers and floats; parsed numbers are finite
    } else if (v.is_string()) {
      auto parsed = ParseDurationMs(v.get<std::string>());
      if (!parsed.ok()) return Error(field, parsed.status().message());
      if (*parsed > max_ms) return TooLong(field, v, max_ms);
      return *parsed;
    } else {
      return Error(field, absl::StrCat(Quote(v), " must be ", forms));
    }
    if (!(ms >= 0)) return Error(field, absl::StrCat(Quote(v), " must be >= 0: ", forms));
    if (ms > static_cast<double>(max_ms)) return TooLong(field, v, max_ms);
    return static_cast<uint64_t>(ms);  // whole milliseconds, as before (2000.9 -> 2000)
  }
  absl::Status TooLong(const char* field, const json& v, uint64_t max_ms) const {
    return Error(field, absl::StrCat(Quote(v), " is longer than the maximum of ", max_ms,
                                     " ms (", absl::FormatDuration(absl::Milliseconds(max_ms)),
                                     "); give a shorter duration"));
  }
  absl::StatusOr<uint64_t> Size(const char* field, const json& v) const {
    if (v.is_number_unsigned()) return v.get<uint64_t>();
    if (v.is_string()) {
      auto b = ParseSize(v.get<std::string>());
      if (b.ok()) return b;
      return Error(field, b.status().message());
    }
    return Error(field, absl::StrCat(Quote(v), " is not a size: use a number of bytes, or a "
                                     "string like \"200M\" or \"1G\""));
  }
  absl::StatusOr<std::vector<std::string>> StringList(const char* field, const json& v) const {
    if (v.is_string()) return SplitArgs(v.get<std::string>());
    if (v.is_array()) {
      std::vector<std::string> out;
      for (const json& e : v) {
        if (e.is_string()) {
          out.push_back(e.get<std::string>());
        } else if (e.is_number()) {
          out.push_back(e.dump());
        } else {
          return Error(field, absl::StrCat("element ", Quote(e), " must be a string"));
        }
      }
      return out;
    }
    return Error(field, absl::StrCat(Quote(v), " must be a string or an array of strings"));
  }

 private:
  std::string where_;
};

// Fields PM2 has that Herd accepts only with their no-op value, so that existing ecosystem
// files still load.
absl::Status CheckNoOpField(const AppReader& r, const std::string& key, const json& v) {
  if (key == "instances" && (v == 1 || v == "1")) return absl::OkStatus();
  if (key == "exec_mode" && (v == "fork" || v == "fork_mode")) return absl::OkStatus();
  if ((key == "watch" || key == "vizion" || key == "pmx" || key == "automation") &&
      v.is_boolean() && !v.get<bool>()) {
    return absl::OkStatus();
  }
  if (key == "instances" || key == "exec_mode") {
    return r.Error(key, absl::StrCat(Quote(v), ": Herd runs one process per unit (fork mode); "
                                     "remove the field or set instances: 1"));
  }
  return r.Error(key, absl::StrCat(Quote(v), ": not supported by Herd; remove the field or set "
                                   "it to false"));
}

// What ParseApp gathers while it reads an app's fields, before the spec is completed.
struct AppFields {
  AppSpec spec;
  std::string script_raw;
  bool interpreter_given = false;
  bool time_prefix = false;
};

// The field parsers below each take one group of fields: they return true when the key is
// theirs (and was stored), false when it is not, or the field's error.
#define HERD_TRY(lhs, expr)                     \
  auto lhs##_or = (expr);                       \
  if (!lhs##_or.ok()) return lhs##_or.status(); \
  auto lhs = *std::move(lhs##_or);

absl::Status ParseEnv(const AppReader& r, const char* k, const json& v, AppSpec& spec) {
  if (!v.is_object()) return r.Error(k, "must be an object of NAME: value");
  for (const auto& [ek, ev] : v.items()) {
    if (ek.empty() || ek.find('=') != std::string::npos) {
      return r.Error(k, absl::StrCat("\"", EscapeForLog(ek, 64), "\" is not a valid variable name"));
    }
    if (ev.is_string()) {
      (*spec.mutable_env())[ek] = ev.get<std::string>();
    } else if (ev.is_number() || ev.is_boolean()) {
      (*spec.mutable_env())[ek] = ev.dump();
    } else {
      return r.Error(k, absl::StrCat(ek, ": ", Quote(ev), " must be a string, number or bool"));
    }
  }
  return absl::OkStatus();
}

// What runs, where, and with which environment.
absl::StatusOr<bool> ParseProgramField(const AppReader& r, const std::string& key, const json& v,
                                       const AppSpecContext& ctx, AppFields& f) {
  const char* k = key.c_str();
  AppSpec& spec = f.spec;
  if (key == "name") {
    HERD_TRY(s, r.String(k, v));
    spec.set_name(s);
  } else if (key == "script") {
    HERD_TRY(s, r.String(k, v));
    f.script_raw = s;
  } else if (key == "args") {
    HERD_TRY(l, r.StringList(k, v));
    for (auto& a : l) spec.add_args(a);
  } else if (key == "interpreter" || key == "exec_interpreter") {
    HERD_TRY(s, r.String(k, v));
    spec.set_interpreter(s);
    f.interpreter_given = true;
  } else if (key == "interpreter_args" || key == "node_args") {
    HERD_TRY(l, r.StringList(k, v));
    for (auto& a : l) spec.add_interpreter_args(a);
  } else if (key == "cwd") {
    HERD_TRY(s, r.String(k, v));
    spec.set_cwd(JoinPath(ctx.base_dir, s));
  } else if (key == "env") {
    if (auto s = ParseEnv(r, k, v, spec); !s.ok()) return s;
  } else {
    return false;
  }
  return true;
}

absl::Status ParseStopExitCodes(const AppReader& r, const char* k, const json& v, AppSpec& spec) {
  json list = v.is_array() ? v : json::array({v});
  for (const json& c : list) {
    if (!c.is_number_integer() || c.get<int64_t>() < 0 || c.get<int64_t>() > 255) {
      return r.Error(k, absl::StrCat(Quote(c), " is not an exit code: use integers 0-255, "
                                     "e.g. [0, 3]"));
    }
    spec.add_stop_exit_codes(c.get<int32_t>());
  }
  return absl::OkStatus();
}

// When and how the unit is restarted and stopped.
absl::StatusOr<bool> ParseRestartField(const AppReader& r, const std::string& key, const json& v,
                                       AppSpec& spec) {
  const char* k = key.c_str();
  if (key == "autorestart") {
    HERD_TRY(b, r.Bool(k, v));
    spec.set_autorestart(b);
  } else if (key == "max_restarts") {
    HERD_TRY(n, r.Count(k, v));
    if (n > 1'000'000'000) return r.Error(k, "must be at most 1000000000");
    spec.set_max_restarts(static_cast<uint32_t>(n));
  } else if (key == "min_uptime") {
    HERD_TRY(ms, r.DurationMs(k, v, kMaxDelayMs));
    spec.set_min_uptime_ms(ms);
  } else if (key == "restart_delay") {
    HERD_TRY(ms, r.DurationMs(k, v, kMaxDelayMs));
    spec.set_restart_delay_ms(ms);
  } else if (key == "exp_backoff_restart_delay") {
    HERD_TRY(ms, r.DurationMs(k, v, kMaxDelayMs));
    spec.set_exp_backoff_restart_delay_ms(ms);
  } else if (key == "kill_timeout") {
    HERD_TRY(ms, r.DurationMs(k, v, kMaxKillTimeoutMs));
    spec.set_kill_timeout_ms(ms);
  } else if (key == "stop_exit_codes") {
    if (auto s = ParseStopExitCodes(r, k, v, spec); !s.ok()) return s;
  } else if (key == "max_memory_restart") {
    HERD_TRY(b, r.Size(k, v));
    spec.set_max_memory_restart_bytes(b);
  } else if (key == "memory_max") {
    HERD_TRY(b, r.Size(k, v));
    spec.set_memory_max_bytes(b);
  } else if (key == "pids_max") {
    HERD_TRY(n, r.Count(k, v));
    // The kernel's own ceiling (PID_MAX_LIMIT, 2^22).
    if (n > 4'194'304) return r.Error(k, "must be at most 4194304");
    spec.set_pids_max(static_cast<uint32_t>(n));
  } else if (key == "cron_restart" || key == "cron") {
    HERD_TRY(s, r.String(k, v));
    auto cron = CronSchedule::Parse(s);
    if (!cron.ok()) return r.Error(k, cron.status().message());
    spec.set_cron_restart(s);
  } else {
    return false;
  }
  return true;
}

// Where output goes and which processes are sampled.
absl::StatusOr<bool> ParseLogField(const AppReader& r, const std::string& key, const json& v,
                                   const AppSpecContext& ctx, AppFields& f) {
  const char* k = key.c_str();
  AppSpec& spec = f.spec;
  if (key == "merge_logs" || key == "combine_logs") {
    HERD_TRY(b, r.Bool(k, v));
    spec.set_merge_logs(b);
  } else if (key == "log_date_format") {
    HERD_TRY(s, r.String(k, v));
    spec.set_log_date_format(s);
  } else if (key == "time") {
    HERD_TRY(b, r.Bool(k, v));
    f.time_prefix = b;
  } else if (key == "out_file" || key == "output") {
    HERD_TRY(s, r.String(k, v));
    spec.set_out_file(s);
  } else if (key == "error_file" || key == "error") {
    HERD_TRY(s, r.String(k, v));
    spec.set_error_file(s);
  } else if (key == "pid_files") {
    HERD_TRY(l, r.StringList(k, v));
    for (auto& p : l) spec.add_pid_files(JoinPath(ctx.base_dir, p));
  } else if (key == "pid_files_join") {
    HERD_TRY(b, r.Bool(k, v));
    spec.set_pid_files_join(b);
  } else if (key == "log_max_size") {
    HERD_TRY(b, r.Size(k, v));
    spec.set_log_max_size_bytes(b);
  } else if (key == "log_retain") {
    HERD_TRY(n, r.Count(k, v));
    if (n > 1000) return r.Error(k, "must be at most 1000");
    spec.set_log_retain(static_cast<uint32_t>(n));
  } else {
    return false;
  }
  return true;
}
#undef HERD_TRY

// One field of an app: the first group that takes the key stores it.
absl::Status ParseField(const AppReader& r, const std::string& key, const json& v,
                        const AppSpecContext& ctx, AppFields& f) {
  absl::StatusOr<bool> parsed = ParseProgramField(r, key, v, ctx, f);
  if (parsed.ok() && !*parsed) parsed = ParseRestartField(r, key, v, f.spec);
  if (parsed.ok() && !*parsed) parsed = ParseLogField(r, key, v, ctx, f);
  if (!parsed.ok()) return parsed.status();
  if (*parsed) return absl::OkStatus();
  if (key == "instances" || key == "exec_mode" || key == "watch" || key == "vizion" ||
      key == "pmx" || key == "automation") {
    return CheckNoOpField(r, key, v);
  }
  return r.Error(key, "unknown field; see README.md \"App fields\" for the accepted fields "
                      "(PM2's names: name, script, args, interpreter, cwd, env, autorestart, "
                      "max_restarts, min_uptime, restart_delay, exp_backoff_restart_delay, "
                      "kill_timeout, stop_exit_codes, max_memory_restart, cron_restart, "
                      "memory_max, pids_max, "
                      "merge_logs, log_date_format, out_file, error_file, ...)");
}

// The script's absolute path: a file relative to cwd or base_dir, or a command on PATH; and
// the unit's name from it when none was given.
absl::Status ResolveScript(const AppReader& r, const AppSpecContext& ctx, AppFields& f) {
  AppSpec& spec = f.spec;
  const std::string& script_raw = f.script_raw;
  std::string script = JoinPath(spec.cwd(), script_raw);
  if (!IsRegularFile(script)) {
    std::string alt = JoinPath(ctx.base_dir, script_raw);
    if (IsRegularFile(alt)) {
      script = alt;
    } else if (script_raw.find('/') == std::string::npos) {
      script = FindInPath(script_raw, ctx.search_path);
    } else {
      script.clear();
    }
  }
  if (script.empty()) {
    return r.Error("script", absl::StrCat("\"", script_raw, "\" not found (looked in ",
                                          spec.cwd(), " and on PATH)"));
  }
  spec.set_script(script);
  if (spec.name().empty()) {
    // PM2 names an app after its script file without the extension.
    std::string stem = std::filesystem::path(script).stem().string();
    spec.set_name(stem);
  }
  if (auto s = ValidateUnitName(spec.name()); !s.ok()) return r.Error("name", s.message());
  return absl::OkStatus();
}

// The interpreter when none was given: from the extension, or the #! line of a script that is
// not executable.
absl::Status ChooseInterpreter(const AppReader& r, AppSpec& spec) {
  const std::string& script = spec.script();
  std::string interp = InterpreterForExtension(script);
  if (interp.empty() && access(script.c_str(), X_OK) != 0) {
    // Not executable, so exec would fail with EACCES despite a #! line: run the #! program
    // ourselves, the way the kernel would for an executable script.
    std::optional<Shebang> shebang = ReadShebang(script);
    if (!shebang.has_value() || shebang->program.empty()) {
      return r.Error("interpreter", absl::StrCat("cannot tell how to run \"", script,
                                                 "\": make it executable, add a #! line, or "
                                                 "set interpreter (e.g. \"bash\")"));
    }
    interp = shebang->program;
    if (!shebang->arg.empty()) {
      // The #! argument comes first, before any interpreter_args given.
      std::vector<std::string> args = {shebang->arg};
      args.insert(args.end(), spec.interpreter_args().begin(), spec.interpreter_args().end());
      spec.clear_interpreter_args();
      for (auto& a : args) spec.add_interpreter_args(std::move(a));
    }
  }
  spec.set_interpreter(interp);
  return absl::OkStatus();
}

// The interpreter's absolute path ("none": run the script itself).
absl::Status ResolveInterpreter(const AppReader& r, const AppSpecContext& ctx, AppFields& f) {
  AppSpec& spec = f.spec;
  if (!f.interpreter_given) {
    if (auto s = ChooseInterpreter(r, spec); !s.ok()) return s;
  } else if (spec.interpreter() == "none") {
    spec.clear_interpreter();
  }
  if (!spec.interpreter().empty() && spec.interpreter().find('/') == std::string::npos) {
    std::string found = FindInPath(spec.interpreter(), ctx.search_path);
    if (found.empty()) {
      return r.Error("interpreter", absl::StrCat("\"", spec.interpreter(),
                                                 "\" not found on PATH: install it or give "
                                                 "its absolute path"));
    }
    spec.set_interpreter(found);
  }
  return absl::OkStatus();
}

absl::StatusOr<AppSpec> ParseApp(const json& app, const std::string& where,
                                 const AppSpecContext& ctx) {
  AppReader r(where);
  if (!app.is_object()) {
    return absl::InvalidArgumentError(absl::StrCat(where, ": an app must be a JSON object, got ",
                                                   Quote(app)));
  }
  AppFields f;
  AppSpec& spec = f.spec;
  spec.set_autorestart(true);
  spec.set_max_restarts(kDefaultMaxRestarts);
  spec.set_min_uptime_ms(kDefaultMinUptimeMs);
  spec.set_kill_timeout_ms(kDefaultKillTimeoutMs);
  for (const auto& [key, v] : app.items()) {
    if (auto s = ParseField(r, key, v, ctx, f); !s.ok()) return s;
  }

  if (f.script_raw.empty()) return r.Error("script", "is required (the program or file to run)");
  if (f.time_prefix && spec.log_date_format().empty()) {
    spec.set_log_date_format("YYYY-MM-DDTHH:mm:ss");
  }
  if (spec.cwd().empty()) spec.set_cwd(ctx.base_dir);
  if (!IsDirectory(spec.cwd())) {
    return r.Error("cwd", absl::StrCat("\"", spec.cwd(), "\" is not a directory"));
  }
  if (auto s = ResolveScript(r, ctx, f); !s.ok()) return s;
  if (auto s = ResolveInterpreter(r, ctx, f); !s.ok()) return s;
  for (auto* file : {spec.mutable_out_file(), spec.mutable_error_file()}) {
    if (!file->empty()) *file = JoinPath(spec.cwd(), *file);
  }
  return std::move(f.spec);
}

}  // namespace

absl::Status ValidateUnitName(absl::string_view name) {
  if (name.empty() || name.size() > 64) {
    return absl::InvalidArgumentError(
        absl::StrCat("\"", EscapeForLog(name, 80), "\" must be 1 to 64 characters long"));
  }
  if (name == "all") {
    return absl::InvalidArgumentError("\"all\" is reserved (it selects every unit)");
  }
  if (name[0] == '.' || name[0] == '-') {
    return absl::InvalidArgumentError(
        absl::StrCat("\"", EscapeForLog(name), "\" must not start with '.' or '-'"));
  }
  for (char c : name) {
    if (!absl::ascii_isalnum(static_cast<unsigned char>(c)) && c != '.' && c != '_' && c != '-') {
      return absl::InvalidArgumentError(absl::StrCat(
          "\"", EscapeForLog(name), "\" may only contain letters, digits, '.', '_' and '-'"));
    }
  }
  return absl::OkStatus();
}

absl::Status ValidateAppSpec(const AppSpec& spec) {
  if (auto s = ValidateUnitName(spec.name()); !s.ok()) return s;
  if (spec.script().empty() || spec.script()[0] != '/') {
    return absl::InvalidArgumentError(
        absl::StrCat(spec.name(), ": script must be an absolute path"));
  }
  if (spec.cwd().empty() || spec.cwd()[0] != '/') {
    return absl::InvalidArgumentError(absl::StrCat(spec.name(), ": cwd must be absolute"));
  }
  if (!spec.cron_restart().empty()) {
    auto cron = CronSchedule::Parse(spec.cron_restart());
    if (!cron.ok()) return cron.status();
  }
  return absl::OkStatus();
}

absl::StatusOr<std::vector<AppSpec>> ParseEcosystem(absl::string_view json_text,
                                                    const AppSpecContext& ctx) {
  // ParseJson never throws (a number too large for a double is an error like any other) and
  // names the app and field the bad value is in, e.g. "at apps[0].kill_timeout".
  auto parsed = ParseJson(json_text);
  if (!parsed.ok()) return absl::InvalidArgumentError(absl::StrCat("invalid JSON at ", parsed.status().message()));
  const json doc = *std::move(parsed);
  std::vector<AppSpec> specs;
  absl::flat_hash_set<std::string> names;
  auto add = [&](const json& app, const std::string& where) -> absl::Status {
    std::string label = where;
    if (app.is_object() && app.contains("name") && app["name"].is_string()) {
      label = absl::StrCat(where, " (\"", EscapeForLog(app["name"].get<std::string>(), 80), "\")");
    }
    auto spec = ParseApp(app, label, ctx);
    if (!spec.ok()) return spec.status();
    if (!names.insert(spec->name()).second) {
      return absl::InvalidArgumentError(
          absl::StrCat(label, ": name: \"", spec->name(), "\" is used by two apps"));
    }
    specs.push_back(*std::move(spec));
    return absl::OkStatus();
  };
  if (doc.is_object() && doc.contains("apps")) {
    const json& apps = doc["apps"];
    if (!apps.is_array() && !apps.is_object()) {
      return absl::InvalidArgumentError("\"apps\" must be an array of app objects");
    }
    if (apps.is_object()) {
      if (auto s = add(apps, "apps"); !s.ok()) return s;
    } else {
      if (apps.empty()) return absl::InvalidArgumentError("\"apps\" is empty: nothing to start");
      for (size_t i = 0; i < apps.size(); ++i) {
        if (auto s = add(apps[i], absl::StrCat("apps[", i, "]")); !s.ok()) return s;
      }
    }
    for (const auto& [key, v] : doc.items()) {
      if (key != "apps" && key != "deploy") {
        return absl::InvalidArgumentError(absl::StrCat(
            "unknown top-level field \"", key, "\": an ecosystem file has an \"apps\" array"));
      }
    }
  } else if (doc.is_object()) {
    if (auto s = add(doc, "app"); !s.ok()) return s;
  } else {
    return absl::InvalidArgumentError(
        "an ecosystem document must be an object: {\"apps\": [{\"name\": ..., \"script\": ...}]}");
  }
  return specs;
}

std::vector<std::string> ExecArgv(const AppSpec& spec) {
  std::vector<std::string> argv;
  if (!spec.interpreter().empty()) {
    argv.push_back(spec.interpreter());
    for (const auto& a : spec.interpreter_args()) argv.push_back(a);
  }
  argv.push_back(spec.script());
  for (const auto& a : spec.args()) argv.push_back(a);
  return argv;
}

std::string FindInPath(absl::string_view name, absl::string_view search_path) {
  for (absl::string_view dir : absl::StrSplit(search_path, ':', absl::SkipEmpty())) {
    std::string p = absl::StrCat(dir, "/", name);
    if (IsRegularFile(p) && access(p.c_str(), X_OK) == 0) return p;
  }
  return "";
}

}  // namespace herd::agent
