#include "cli/command_table.h"

#include "CLI/CLI.hpp"

namespace herd::cli {

void CommandTable::Add(CLI::App* sub, Command command) {
  const size_t index = commands_.size();
  commands_.emplace_back(sub, std::move(command));
  sub->callback([this, index] { chosen_ = index; });
}

bool CommandTable::Has(const CLI::App* sub) const {
  for (const auto& [app, command] : commands_) {
    if (app == sub) return true;
  }
  return false;
}

int CommandTable::Run() {
  if (!chosen_) return kNoCommand;
  return commands_[*chosen_].second();
}

}  // namespace herd::cli
