// FakeCommandRunner: a CommandRunner (agent/modules/command_runner.h) whose commands do what
// the test scripted, per argv, without running anything. A script may act on the filesystem
// as the real command would (write the archive `npm pack` makes, the files tar extracts):
//
//   FakeCommandRunner commands;
//   commands.On({"npm", "pack"}, [&](const CommandRequest& r) { ...; return Exit(0); });
//   commands.OnExit({"tar"}, 2, "tar: bad archive");
//
// A script matches when the base name of argv[0] and the arguments after it start with its
// prefix; the latest script given for a command wins. A command nothing matches fails with
// an error naming it. Thread-safe: installs run commands on their worker thread.
#pragma once

#include <functional>
#include <mutex>
#include <string>
#include <utility>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/str_join.h"
#include "agent/modules/command_runner.h"

namespace herd::testing {

class FakeCommandRunner final : public agent::CommandRunner {
 public:
  using Script =
      std::function<absl::StatusOr<agent::CommandResult>(const agent::CommandRequest&)>;

  static agent::CommandResult Exit(int code, std::string output = "") {
    agent::CommandResult r;
    r.exit_code = code;
    r.output = std::move(output);
    return r;
  }

  void On(std::vector<std::string> prefix, Script script) {
    std::lock_guard<std::mutex> l(mu_);
    scripts_.emplace_back(std::move(prefix), std::move(script));
  }
  void OnExit(std::vector<std::string> prefix, int code, std::string output = "") {
    On(std::move(prefix), [code, output](const agent::CommandRequest&) { return Exit(code, output); });
  }

  absl::StatusOr<agent::CommandResult> Run(const agent::CommandRequest& request) override {
    Script script;
    {
      std::lock_guard<std::mutex> l(mu_);
      calls_.push_back(request);
      for (auto it = scripts_.rbegin(); it != scripts_.rend() && !script; ++it) {
        if (Matches(it->first, request.argv)) script = it->second;
      }
    }
    if (!script) {
      return absl::InternalError("FakeCommandRunner: nothing scripted for " +
                                 absl::StrJoin(request.argv, " "));
    }
    return script(request);
  }

  std::vector<agent::CommandRequest> calls() const {
    std::lock_guard<std::mutex> l(mu_);
    return calls_;
  }
  // The commands run, each as "program arg1 arg2..." with the program's base name.
  std::vector<std::string> ran() const {
    std::vector<std::string> out;
    for (const auto& c : calls()) {
      std::vector<std::string> argv = c.argv;
      if (!argv.empty()) argv[0] = BaseName(argv[0]);
      out.push_back(absl::StrJoin(argv, " "));
    }
    return out;
  }

 private:
  static std::string BaseName(const std::string& p) { return p.substr(p.rfind('/') + 1); }
  static bool Matches(const std::vector<std::string>& prefix, const std::vector<std::string>& argv) {
    if (prefix.empty() || argv.size() < prefix.size()) return false;
    if (BaseName(argv[0]) != prefix[0]) return false;
    for (size_t i = 1; i < prefix.size(); ++i) {
      if (argv[i] != prefix[i]) return false;
    }
    return true;
  }

  mutable std::mutex mu_;
  std::vector<std::pair<std::vector<std::string>, Script>> scripts_;
  std::vector<agent::CommandRequest> calls_;
};

}  // namespace herd::testing
