#include "agent/supervisor/state_file.h"

#include <chrono>

#include "absl/time/clock.h"

#include "absl/strings/str_cat.h"
#include "agent/supervisor/app_spec.h"
#include "common/atomic_file.h"
#include "common/backoff.h"
#include "common/logging.h"
#include "nlohmann/json.hpp"

namespace herd::agent {

using nlohmann::json;

namespace {

// AppSpec <-> JSON by hand rather than through protobuf's JSON utilities: those pull in
// descriptor reflection, which costs agentd ~1.6 MiB of resident memory for one call.
// Keys are the proto field names; a field added to AppSpec must be added here (the state
// file round-trip test fails otherwise).
json SpecToJson(const herd::v1::AppSpec& s) {
  json j;
  j["name"] = s.name();
  j["script"] = s.script();
  j["args"] = std::vector<std::string>(s.args().begin(), s.args().end());
  j["interpreter"] = s.interpreter();
  j["interpreter_args"] =
      std::vector<std::string>(s.interpreter_args().begin(), s.interpreter_args().end());
  j["cwd"] = s.cwd();
  j["env"] = json::object();
  for (const auto& [k, v] : s.env()) j["env"][k] = v;
  j["autorestart"] = s.autorestart();
  j["max_restarts"] = s.max_restarts();
  j["min_uptime_ms"] = s.min_uptime_ms();
  j["restart_delay_ms"] = s.restart_delay_ms();
  j["exp_backoff_restart_delay_ms"] = s.exp_backoff_restart_delay_ms();
  j["kill_timeout_ms"] = s.kill_timeout_ms();
  j["stop_exit_codes"] =
      std::vector<int32_t>(s.stop_exit_codes().begin(), s.stop_exit_codes().end());
  j["max_memory_restart_bytes"] = s.max_memory_restart_bytes();
  j["cron_restart"] = s.cron_restart();
  j["memory_max_bytes"] = s.memory_max_bytes();
  j["pids_max"] = s.pids_max();
  j["merge_logs"] = s.merge_logs();
  j["log_date_format"] = s.log_date_format();
  j["out_file"] = s.out_file();
  j["error_file"] = s.error_file();
  j["pid_files"] = std::vector<std::string>(s.pid_files().begin(), s.pid_files().end());
  j["pid_files_join"] = s.pid_files_join();
  j["log_max_size_bytes"] = s.log_max_size_bytes();
  j["log_retain"] = s.log_retain();
  if (s.channel() != herd::v1::CHANNEL_KIND_NONE) {
    j["channel"] = s.channel() == herd::v1::CHANNEL_KIND_NODE ? "node" : "native";
  }
  return j;
}

// Throws json::exception on a wrong type; the caller turns it into a DataLoss error.
herd::v1::AppSpec SpecFromJson(const json& j) {
  herd::v1::AppSpec s;
  auto str = [&](const char* k) { return j.value(k, std::string()); };
  auto strs = [&](const char* k) {
    return j.contains(k) ? j.at(k).get<std::vector<std::string>>() : std::vector<std::string>{};
  };
  s.set_name(str("name"));
  s.set_script(str("script"));
  for (auto& a : strs("args")) s.add_args(a);
  s.set_interpreter(str("interpreter"));
  for (auto& a : strs("interpreter_args")) s.add_interpreter_args(a);
  s.set_cwd(str("cwd"));
  if (j.contains("env")) {
    for (const auto& [k, v] : j.at("env").items()) (*s.mutable_env())[k] = v.get<std::string>();
  }
  s.set_autorestart(j.value("autorestart", true));
  s.set_max_restarts(j.value("max_restarts", 16u));
  s.set_min_uptime_ms(j.value("min_uptime_ms", uint64_t{1000}));
  s.set_restart_delay_ms(j.value("restart_delay_ms", uint64_t{0}));
  s.set_exp_backoff_restart_delay_ms(j.value("exp_backoff_restart_delay_ms", uint64_t{0}));
  s.set_kill_timeout_ms(j.value("kill_timeout_ms", uint64_t{1600}));
  if (j.contains("stop_exit_codes")) {
    for (int c : j.at("stop_exit_codes").get<std::vector<int>>()) s.add_stop_exit_codes(c);
  }
  s.set_max_memory_restart_bytes(j.value("max_memory_restart_bytes", uint64_t{0}));
  s.set_cron_restart(str("cron_restart"));
  s.set_memory_max_bytes(j.value("memory_max_bytes", uint64_t{0}));
  s.set_pids_max(j.value("pids_max", 0u));
  s.set_merge_logs(j.value("merge_logs", false));
  s.set_log_date_format(str("log_date_format"));
  s.set_out_file(str("out_file"));
  s.set_error_file(str("error_file"));
  for (auto& p : strs("pid_files")) s.add_pid_files(p);
  s.set_pid_files_join(j.value("pid_files_join", false));
  s.set_log_max_size_bytes(j.value("log_max_size_bytes", uint64_t{0}));
  s.set_log_retain(j.value("log_retain", 0u));
  const std::string channel = j.value("channel", "");
  s.set_channel(channel == "node"     ? herd::v1::CHANNEL_KIND_NODE
                : channel == "native" ? herd::v1::CHANNEL_KIND_NATIVE
                                      : herd::v1::CHANNEL_KIND_NONE);
  return s;
}

}  // namespace

std::string SerializeState(const std::vector<PersistedUnit>& units) {
  json doc;
  doc["version"] = 1;
  doc["units"] = json::array();
  for (const auto& u : units) {
    json j;
    j["spec"] = SpecToJson(u.spec);
    j["desired_running"] = u.desired_running;
    j["pid"] = u.pid;
    j["start_ticks"] = u.start_ticks;
    doc["units"].push_back(std::move(j));
  }
  return doc.dump(2) + "\n";
}

absl::StatusOr<std::vector<PersistedUnit>> ParseState(absl::string_view text,
                                                      absl::string_view origin) {
  json doc = json::parse(text.begin(), text.end(), nullptr, /*allow_exceptions=*/false);
  if (doc.is_discarded() || !doc.is_object() || !doc.contains("units") ||
      !doc["units"].is_array()) {
    return absl::DataLossError(absl::StrCat(
        origin, " is not a Herd state file (expected {\"version\":1,\"units\":[...]}); move it "
                "aside to start with no units"));
  }
  std::vector<PersistedUnit> out;
  size_t i = 0;
  for (const auto& j : doc["units"]) {
    PersistedUnit u;
    try {
      if (!j.is_object() || !j.contains("spec") || !j["spec"].is_object()) {
        throw std::runtime_error("no spec object");
      }
      u.spec = SpecFromJson(j["spec"]);
      u.desired_running = j.value("desired_running", false);
      u.pid = j.value("pid", 0);
      u.start_ticks = j.value("start_ticks", uint64_t{0});
    } catch (const std::exception& e) {
      return absl::DataLossError(absl::StrCat(origin, ": units[", i, "]: ", e.what(),
                                              "; fix or move the file aside"));
    }
    if (absl::Status v = ValidateAppSpec(u.spec); !v.ok()) {
      return absl::DataLossError(absl::StrCat(origin, ": units[", i, "]: ", v.message()));
    }
    out.push_back(std::move(u));
    ++i;
  }
  return out;
}

StateFile::StateFile(std::string path) : path_(std::move(path)), thread_([this] { Run(); }) {}

StateFile::~StateFile() {
  {
    absl::MutexLock l(&mu_);
    stopping_ = true;
  }
  thread_.join();
}

absl::StatusOr<std::vector<PersistedUnit>> StateFile::Load() const {
  auto content = ReadFileToString(path_);
  if (!content.ok()) {
    if (absl::IsNotFound(content.status())) return std::vector<PersistedUnit>{};
    return content.status();
  }
  return ParseState(*content, path_);
}

void StateFile::Save(std::string content) {
  absl::MutexLock l(&mu_);
  pending_ = std::move(content);
  ++queued_;
}

uint64_t StateFile::saves() const {
  absl::MutexLock l(&mu_);
  return queued_;
}

absl::Status StateFile::Flush() {
  absl::MutexLock l(&mu_);
  uint64_t target = queued_;
  auto done = [this, target]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) { return written_ >= target; };
  mu_.Await(absl::Condition(&done));
  return last_status_;
}

void StateFile::Run() {
  static auto log = herd::Logger("state");
  // A write that failed (a full disk, most often) is tried again after a pause that doubles
  // from 1 s up to 30 s, even if nothing changes meanwhile: otherwise the units started
  // while the disk was full would be missing from the file until the next change, and an
  // agentd killed in between would not know them (they would run on, unsupervised). No
  // jitter: one agent's own file, nobody to fall in step with.
  BackoffOptions retries;
  retries.initial = absl::Seconds(1);
  retries.max = absl::Seconds(30);
  retries.multiplier = 2.0;
  retries.jitter = 0;
  Backoff backoff(retries);
  std::optional<std::string> failed;  // the snapshot whose write failed, to try again
  absl::Duration retry;               // the pause before trying it again
  while (true) {
    std::string content;
    uint64_t version;
    {
      absl::MutexLock l(&mu_);
      auto ready = [this]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
        return pending_.has_value() || stopping_;
      };
      if (failed.has_value()) {
        // Not AwaitWithTimeout: this Abseil turns its timeout into a wall-clock deadline, so
        // a clock stepped back an hour would hold the retry that long. Short sleeps instead
        // (only while a write is failing), the pause measured on the monotonic clock.
        const auto until = std::chrono::steady_clock::now() +
                           std::chrono::nanoseconds(absl::ToInt64Nanoseconds(retry));
        while (!ready() && std::chrono::steady_clock::now() < until) {
          mu_.Unlock();
          absl::SleepFor(absl::Milliseconds(100));
          mu_.Lock();
        }
      } else {
        mu_.Await(absl::Condition(&ready));
      }
      if (pending_.has_value()) {
        content = std::move(*pending_);  // a newer snapshot supersedes the failed one
        pending_.reset();
      } else if (failed.has_value()) {
        content = std::move(*failed);  // time to try again (or a last try when stopping)
      } else {
        return;
      }
      failed.reset();
      version = queued_;
    }
    absl::Status st = WriteFileAtomically(path_, content, 0600);
    if (!st.ok()) {
      retry = backoff.Next();
      log->error("event=state_write_failed path={} error=\"{}\" retry_in={}", path_,
                 st.message(), absl::FormatDuration(retry));
      failed = std::move(content);
    } else if (backoff.attempts() > 0) {  // the previous try had failed
      log->info("event=state_write_recovered path={}", path_);
      backoff.Reset();
    }
    absl::MutexLock l(&mu_);
    last_status_ = st;
    written_ = version;
    if (failed.has_value() && stopping_ && !pending_.has_value()) {
      // Stopping: the destructor's caller gets no more tries than the one just made.
      return;
    }
  }
}

}  // namespace herd::agent
