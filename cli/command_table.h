// CommandTable: which function runs for the subcommand the command line chose. Each command
// is registered with the CLI11 subcommand that selects it; the subcommand's CLI11 callback
// (called only once the whole command line parsed: never for --help, --version or a parse
// error) marks it chosen, and Run() runs it after parsing.
//
// Commands run after CLI11_PARSE rather than inside its callback so that a long-running one
// (top, logs -f, watch) does not run inside CLI11's parse, and its exit code is the
// process's whatever CLI11 does with callbacks.
#pragma once

#include <cstddef>
#include <functional>
#include <optional>
#include <utility>
#include <vector>

namespace CLI {
class App;
}

namespace herd::cli {

class CommandTable {
 public:
  using Command = std::function<int()>;
  // What Run() returns when no command was chosen (agentctl's "usage" exit code).
  static constexpr int kNoCommand = 2;

  CommandTable() = default;
  // The callbacks registered with CLI11 point at this table.
  CommandTable(const CommandTable&) = delete;
  CommandTable& operator=(const CommandTable&) = delete;

  // `command` runs when `sub` is on the command line. `sub` must outlive the table's use.
  void Add(CLI::App* sub, Command command);
  bool Has(const CLI::App* sub) const;
  // Runs the chosen command and returns its exit code, or kNoCommand.
  int Run();

 private:
  std::vector<std::pair<const CLI::App*, Command>> commands_;
  std::optional<size_t> chosen_;
};

}  // namespace herd::cli
