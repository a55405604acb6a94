#include "cli/completion.h"

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_replace.h"
#include "absl/strings/str_split.h"

namespace herd::cli {
namespace {

// Which commands take what: unit names, module names, MODULE:KEY.
constexpr char kUnitCommands[] = "start stop restart reload delete describe show logs";
constexpr char kModuleCommands[] = "uninstall action issues conf";
constexpr char kKeyCommands[] = "set unset";
// Global options that take a value (the word after them is not the command).
constexpr char kValueOptions[] =
    "-o|--output|--home|--socket|--timeout|--controlplane|--token-file|--tls-ca|--tls-cert|"
    "--tls-key";

// bash, also used by zsh through bashcompinit. `agentctl __complete` is given the --home and
// --socket the command line has, so the names come from the agent the command would talk to.
constexpr char kBash[] = R"BASH(# agentctl completion for bash: source <(agentctl completion bash)
_agentctl() {
  local cur="${COMP_WORDS[COMP_CWORD]}" prev="${COMP_WORDS[COMP_CWORD-1]}"
  local cmd="" i where=()
  for ((i = 1; i < COMP_CWORD; i++)); do
    case "${COMP_WORDS[i]}" in
      --home|--socket) where+=("${COMP_WORDS[i]}" "${COMP_WORDS[i+1]}"); ((i++)) ;;
      @VALUE_OPTIONS@) ((i++)) ;;
      -*) ;;
      *) [[ -z "$cmd" ]] && cmd="${COMP_WORDS[i]}" ;;
    esac
  done
  case "$prev" in
    -o|--output) COMPREPLY=($(compgen -W "table json yaml" -- "$cur")); return ;;
    --home|--socket|--token-file|--tls-ca|--tls-cert|--tls-key)
      COMPREPLY=($(compgen -f -- "$cur")); return ;;
  esac
  if [[ -z "$cmd" ]]; then
    COMPREPLY=($(compgen -W "@COMMANDS@" -- "$cur"))
    return
  fi
  local words=""
  case " $cmd " in
    " completion ") words="bash zsh fish" ;;
    @UNIT_CASES@) words="$(agentctl "${where[@]}" __complete units 2>/dev/null)" ;;
    @MODULE_CASES@) words="$(agentctl "${where[@]}" __complete modules 2>/dev/null)" ;;
    @KEY_CASES@)
      # MODULE:KEY: bash splits words at ':' (COMP_WORDBREAKS), so there the part after
      # it is completed; zsh (bashcompinit) keeps the word whole and matches it itself.
      local all="$(agentctl "${where[@]}" __complete keys 2>/dev/null)"
      local line="${COMP_LINE:0:$COMP_POINT}"
      local word="${line##* }"
      COMPREPLY=($(compgen -W "$all" -- "$word"))
      if [[ -n "$BASH_VERSION" && "$word" == *:* && "$COMP_WORDBREAKS" == *:* ]]; then
        local k stripped=()
        for k in "${COMPREPLY[@]}"; do stripped+=("${k#*:}"); done
        COMPREPLY=("${stripped[@]}")
      fi
      return ;;
  esac
  COMPREPLY=($(compgen -W "$words" -- "$cur"))
}
complete -F _agentctl agentctl
)BASH";

constexpr char kZshPrologue[] =
    "# agentctl completion for zsh: source <(agentctl completion zsh)\n"
    "autoload -U +X bashcompinit && bashcompinit\n";

constexpr char kFish[] = R"FISH(# agentctl completion for fish: agentctl completion fish | source
complete -c agentctl -f
complete -c agentctl -s o -l output -x -a "table json yaml" -d "Output format"
complete -c agentctl -l home -r -d "agentd's home directory"
# The names of the agent the command line talks to (its --home or --socket, if given).
function __agentctl_names
  set -l words (commandline -opc)
  set -l where
  for i in (seq 2 (count $words))
    if contains -- $words[$i] --home --socket; and test $i -lt (count $words)
      set where $where $words[$i] $words[(math $i + 1)]
    end
  end
  agentctl $where __complete $argv 2>/dev/null
end
complete -c agentctl -n "__fish_use_subcommand" -a "@COMMANDS@"
complete -c agentctl -n "__fish_seen_subcommand_from @UNIT_COMMANDS@" -a "(__agentctl_names units)"
complete -c agentctl -n "__fish_seen_subcommand_from @MODULE_COMMANDS@" -a "(__agentctl_names modules)"
complete -c agentctl -n "__fish_seen_subcommand_from @KEY_COMMANDS@" -a "(__agentctl_names keys)"
complete -c agentctl -n "__fish_seen_subcommand_from completion" -a "bash zsh fish"
)FISH";

// "a b c" as a bash case pattern: " a "|" b "|" c ".
std::string CasePattern(absl::string_view words) {
  std::vector<std::string> out;
  for (absl::string_view w : absl::StrSplit(words, ' ', absl::SkipEmpty())) {
    out.push_back(absl::StrCat("\" ", w, " \""));
  }
  return absl::StrJoin(out, "|");
}

}  // namespace

absl::StatusOr<std::string> CompletionScript(const std::string& shell,
                                             const std::vector<std::string>& commands) {
  const std::string names = absl::StrJoin(commands, " ");
  if (shell == "bash" || shell == "zsh") {
    std::string bash = absl::StrReplaceAll(kBash, {{"@COMMANDS@", names},
                                                   {"@VALUE_OPTIONS@", kValueOptions},
                                                   {"@UNIT_CASES@", CasePattern(kUnitCommands)},
                                                   {"@MODULE_CASES@", CasePattern(kModuleCommands)},
                                                   {"@KEY_CASES@", CasePattern(kKeyCommands)}});
    return shell == "zsh" ? absl::StrCat(kZshPrologue, bash) : bash;
  }
  if (shell == "fish") {
    return absl::StrReplaceAll(kFish, {{"@COMMANDS@", names},
                                       {"@UNIT_COMMANDS@", kUnitCommands},
                                       {"@MODULE_COMMANDS@", kModuleCommands},
                                       {"@KEY_COMMANDS@", kKeyCommands}});
  }
  return absl::InvalidArgumentError(absl::StrCat(
      "no completion for shell \"", shell, "\": use bash, zsh or fish"));
}

}  // namespace herd::cli
