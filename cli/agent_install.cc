// agentctl install / module update: each step as the agent begins it (npm pack, tar, npm
// install, stop, start) with the time since the start, then the `agentctl set` lines for the
// module's configuration, as PM2 prints them.
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <functional>
#include <mutex>
#include <thread>

#include "absl/strings/str_cat.h"
#include "cli/agent_commands.h"
#include "cli/json_output.h"
#include "cli/render.h"
#include "grpcpp/grpcpp.h"
#include "nlohmann/json.hpp"

namespace herd::cli {
namespace {

// A value as one shell word: bare when safe, else in single quotes.
std::string ShellWord(const std::string& v) {
  const bool bare = !v.empty() && std::all_of(v.begin(), v.end(), [](unsigned char c) {
    return std::isalnum(c) || std::strchr("_./:@%+=,-", c) != nullptr;
  });
  if (bare) return v;
  std::string out = "'";
  for (char c : v) out += c == '\'' ? std::string("'\\''") : std::string(1, c);
  return out + "'";
}

// After an install, as PM2 prints its module's configuration: the command for each key.
void PrintSetLines(const herd::v1::ModuleInfo& info) {
  if (info.config_size() == 0) return;
  printf("configure it (each line sets a key to its current value):\n");
  for (const auto& e : info.config()) {
    auto v = nlohmann::json::parse(e.effective_json(), nullptr, false);
    const std::string text = v.is_string() ? v.get<std::string>() : e.effective_json();
    printf("  agentctl set %s:%s %s\n", info.name().c_str(), e.key().c_str(),
           ShellWord(text).c_str());
  }
}

std::string Seconds(int64_t ms) {
  char buf[32];
  snprintf(buf, sizeof buf, "%5.1fs", static_cast<double>(ms) / 1000);
  return buf;
}

// Shows the steps on stderr: one line each; on a terminal the running step's line counts
// the seconds until the next one begins.
class StepPrinter {
 public:
  explicit StepPrinter(bool live) : live_(live) {
    if (live_) ticker_ = std::thread([this] { Tick(); });
  }
  ~StepPrinter() {
    {
      std::lock_guard<std::mutex> l(mu_);
      done_ = true;
      EndLineLocked();
    }
    if (ticker_.joinable()) ticker_.join();
  }
  void Step(const herd::v1::InstallStep& s) {
    std::lock_guard<std::mutex> l(mu_);
    EndLineLocked();
    step_ = s.step();
    step_at_ms_ = s.elapsed_ms();
    since_ = std::chrono::steady_clock::now();
    if (live_) {
      DrawLocked();
    } else {
      fprintf(stderr, "%s %s\n", Seconds(step_at_ms_).c_str(), step_.c_str());
    }
  }

 private:
  void EndLineLocked() {
    if (live_ && !step_.empty()) {
      DrawLocked();
      fputc('\n', stderr);
    }
    step_.clear();
  }
  void DrawLocked() {
    const auto running = std::chrono::duration_cast<std::chrono::milliseconds>(
                             std::chrono::steady_clock::now() - since_).count();
    const std::string took =
        running < 1000 ? "" : absl::StrCat(" (", running / 1000, "s)");
    fprintf(stderr, "\r\033[K%s %s%s", Seconds(step_at_ms_).c_str(), step_.c_str(),
            took.c_str());
    fflush(stderr);
  }
  void Tick() {
    std::unique_lock<std::mutex> l(mu_);
    while (!done_) {
      l.unlock();
      std::this_thread::sleep_for(std::chrono::milliseconds(250));
      l.lock();
      if (!done_ && !step_.empty()) DrawLocked();
    }
  }

  const bool live_;
  std::mutex mu_;
  bool done_ = false;
  std::string step_;
  int64_t step_at_ms_ = 0;
  std::chrono::steady_clock::time_point since_;
  std::thread ticker_;
};

std::unique_ptr<grpc::ClientContext> LongContext(int timeout_seconds) {
  auto ctx = std::make_unique<grpc::ClientContext>();
  // npm can take minutes: at least 10.
  ctx->set_deadline(std::chrono::system_clock::now() +
                    std::chrono::seconds(std::max(timeout_seconds, 600)));
  return ctx;
}

}  // namespace

// Reads the steps (printed unless `quiet`) into `info`; an agent from before the steps
// existed (UNIMPLEMENTED, nothing read) gets the one-reply call instead.
grpc::Status AgentCommands::RunSteps(
    bool quiet,
    const std::function<std::unique_ptr<grpc::ClientReader<herd::v1::InstallStep>>(
        grpc::ClientContext*)>& steps,
    const std::function<grpc::Status(grpc::ClientContext*)>& unary, herd::v1::ModuleInfo* info) {
  auto ctx = LongContext(options_.timeout_seconds);
  auto reader = steps(ctx.get());
  bool read_any = false;
  {
    std::unique_ptr<StepPrinter> printer;
    if (!quiet) printer = std::make_unique<StepPrinter>(isatty(STDERR_FILENO) == 1);
    herd::v1::InstallStep s;
    while (reader->Read(&s)) {
      read_any = true;
      if (s.has_module()) *info = s.module();
      if (!s.step().empty() && printer) printer->Step(s);
    }
  }
  grpc::Status st = reader->Finish();
  if (st.error_code() == grpc::StatusCode::UNIMPLEMENTED && !read_any) {
    auto again = LongContext(options_.timeout_seconds);
    return unary(again.get());
  }
  if (st.ok() && info->name().empty()) {
    return grpc::Status(grpc::StatusCode::INTERNAL, "the agent ended the install without a result");
  }
  return st;
}

int AgentCommands::Install(const std::string& source) {
  if (!Connect()) return 1;
  herd::v1::InstallModuleRequest req;
  req.set_source(source);
  char cwd[4096];
  req.set_base_dir(getcwd(cwd, sizeof cwd) ? cwd : "/");
  herd::v1::ModuleInfo info;
  grpc::Status s = RunSteps(
      options_.json, [&](grpc::ClientContext* c) { return stub_->InstallModuleSteps(c, req); },
      [&](grpc::ClientContext* c) { return stub_->InstallModule(c, req, &info); }, &info);
  if (!s.ok()) return Fail(s);
  if (options_.json) {
    printf("%s\n", ToJson(info).c_str());
  } else {
    printf("installed %s %s from %s%s\n", info.name().c_str(), info.version().c_str(),
           info.source().c_str(),
           info.dev_mode() ? " (development mode: restarts when a file changes)" : "");
    PrintSetLines(info);
  }
  return 0;
}

int AgentCommands::UpdateModule(const std::string& target) {
  if (!Connect()) return 1;
  herd::v1::UpdateModuleRequest req;
  // NAME or NAME@VERSION (a module's name has no scope: the @ is the version's).
  const size_t at = target.find('@', 1);
  req.set_name(target.substr(0, at));
  if (at != std::string::npos) req.set_version(target.substr(at + 1));
  herd::v1::ModuleInfo info;
  grpc::Status s = RunSteps(
      options_.json, [&](grpc::ClientContext* c) { return stub_->UpdateModuleSteps(c, req); },
      [&](grpc::ClientContext* c) { return stub_->UpdateModule(c, req, &info); }, &info);
  if (!s.ok()) return Fail(s);
  if (options_.json) {
    printf("%s\n", ToJson(info).c_str());
  } else {
    printf("updated %s to %s\n", info.name().c_str(), info.version().c_str());
    PrintSetLines(info);
  }
  return 0;
}

}  // namespace herd::cli
